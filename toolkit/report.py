"""Turn the results store into tables (terminal, markdown, csv, json), PNG plots and one self-contained HTML page,
and put two models or runs side by side (`compare`).

Rows are grouped by target and device, then by model file (sha256) and measuring options; a group shows its
latest run, how many runs it has, and the spread of p50 across them (CV), so a repeated measurement is visible as
such instead of as duplicate lines.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from edgeseq.errors import EdgeseqError, InputError, StoreError
from edgeseq.stats import cv
from edgeseq.store import ResultsStore

FORMATS = ("table", "md", "csv", "json", "html")

# key, header, formatter
Fmt = Callable[[object], str]


def _f(digits: int, scale: float = 1.0) -> Fmt:
    return lambda v: "-" if v is None else f"{float(v) * scale:.{digits}f}"


def _int(v) -> str:
    return "-" if v is None else f"{int(v):,}"


def _acc(v) -> str:
    return "-" if v is None else f"{float(v):.4f}"


COLUMNS: list[tuple[str, str, Fmt]] = [
    ("label", "model", str),
    ("recipe", "recipe", lambda v: v or "-"),
    ("params", "params", _int),
    ("accuracy", "acc", _acc),
    ("init_ms", "init ms", _f(2)),
    ("first_inference_ms", "first ms", _f(3)),
    ("mean_us", "mean µs", _f(1)),
    ("std_us", "std µs", _f(1)),
    ("min_us", "min µs", _f(1)),
    ("p50_us", "p50 µs", _f(1)),
    ("p90_us", "p90 µs", _f(1)),
    ("p99_us", "p99 µs", _f(1)),
    ("max_us", "max µs", _f(1)),
    ("throughput_per_s", "inf/s", _f(0)),
    ("peak_rss_kb", "peak MB", _f(1, 1 / 1024)),
    ("model_size_bytes", "size KiB", _f(1, 1 / 1024)),
    ("runs", "runs", lambda v: "-" if v is None else str(v)),
]


def _where(row: dict) -> str:
    dev = row.get("device") or {}
    host = dev.get("hostname") if isinstance(dev, dict) else None
    return f"{row['target']} on {host}" if host and host != row["target"] else row["target"]


def _opts_key(row: dict) -> tuple:
    o = row.get("options") or {}
    c = row.get("constraints") or {}
    return (
        o.get("threads"),
        o.get("xnnpack"),
        o.get("input"),
        c.get("cpus"),
        c.get("memory_limit_bytes"),
        c.get("cpu_quota"),
        o.get("steps") or -1 if o.get("stream") else None,  # stream runs: one group per context
    )


def _opts_suffix(row: dict, common: tuple | None) -> str:
    key = _opts_key(row)
    if common is not None and key == common:
        return ""
    threads, xnn, inp, cpus, mem, quota, stream = key
    bits = []
    if stream is not None:
        bits.append("stream" + (f"{stream}" if stream > 0 else ""))
    if threads is not None:
        bits.append(f"t{threads}")
    if xnn is False:
        bits.append("no-xnnpack")
    if cpus:
        bits.append(f"cpus{cpus}")
    if mem:
        bits.append(f"mem{mem // (1 << 20)}M")
    if quota:
        bits.append(f"quota{quota:g}")
    if inp:
        bits.append(f"in:{inp}")
    return f" [{' '.join(bits)}]" if bits else ""


def load_groups(store: ResultsStore, target: str | None = None, with_samples: bool = False) -> list[dict]:
    """One dict per (target, device, model sha256, options): the latest run's figures plus `runs` and `p50_cv`."""
    runs = store.runs(target=target, with_samples=with_samples)
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["target"], r["device_key"], r["model_sha256"], _opts_key(r))
        groups.setdefault(key, []).append(r)
    keys_by_model: dict[tuple, set] = {}
    for key in groups:
        keys_by_model.setdefault((key[0], key[1], key[2]), set()).add(key[3])
    names_by_sha: dict[str, set] = {}
    for r in runs:
        names_by_sha.setdefault(r["model_name"], set()).add(r["model_sha256"])
    out = []
    for key, members in groups.items():
        last = members[-1]
        stats = last.get("stats") or {}
        label = last["model_name"]
        if len(names_by_sha.get(label, ())) > 1:
            label += f" ({last['model_sha256'][:6]})"
        variants = keys_by_model[(key[0], key[1], key[2])]
        label += _opts_suffix(last, next(iter(variants)) if len(variants) == 1 else None)
        row = {
            "run_id": last["id"],
            "created_at": last["created_at"],
            "target": last["target"],
            "device_key": last["device_key"],
            "where": _where(last),
            "label": label,
            "model": last["model_name"],
            "model_path": last["model_path"],
            "sha256": last["model_sha256"],
            "recipe": last.get("recipe"),
            "params": last.get("params"),
            "accuracy": last.get("accuracy"),
            "runtime": f"{last.get('runtime_name')} {last.get('runtime_version')}",
            "options": last.get("options"),
            "constraints": last.get("constraints"),
            "device": last.get("device"),
            # the columns stored beside the stats, for a stats object that lacks them
            "p50_us": last.get("p50_us"),
            "mean_us": last.get("mean_us"),
            "peak_rss_kb": last.get("peak_rss_kb"),
            "model_size_bytes": last.get("model_size_bytes"),
            **stats,
            "runs": len(members),
            "p50_cv": _p50_cv(members),
        }
        if with_samples:
            row["samples_us"] = (last["samples"] / 1e3).tolist()
        out.append(row)
    out.sort(key=lambda r: (r["where"], r.get("p50_us") is None, r.get("p50_us") or 0.0))
    return out


def _p50_cv(members: list[dict]) -> float | None:
    p50s = [m["p50_us"] for m in members if m.get("p50_us") is not None]
    return cv(p50s) if len(p50s) > 1 else None


Warn = Callable[[str], None] | None


def _warn_damage(store: ResultsStore, warn: Warn) -> None:
    note = store.damage_note()
    if note and warn is not None:
        warn(note)


def load_report(db: str | Path | None, target: str | None = None, warn: Warn = None) -> list[dict]:
    """`load_groups` of the store at `db`, opened read-only; `warn` gets one line when damaged rows were skipped."""
    with ResultsStore(db, create=False) as store:
        rows = load_groups(store, target=target)
        _warn_damage(store, warn)
    return rows


def _by_where(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["where"], []).append(r)
    return out


def _device_line(rows: list[dict]) -> str:
    d = rows[0].get("device") or {}
    bits = [
        d.get("machine"),
        d.get("board") or d.get("cpu_model"),
        f"{d.get('cpus_allowed')} cpus",
        f"{(d.get('mem_total_kb') or 0) / 1048576:.1f} GB RAM",
        d.get("os_release"),
        f"Python {d.get('python')}",
        rows[0].get("runtime"),
    ]
    return ", ".join(str(b) for b in bits if b)


# ---------------------------------------------------------------------------------------- text formats
def render_text(rows: list[dict]) -> str:
    """Plain fixed-width table per target (for pipes and logs)."""
    parts = []
    for where, group in _by_where(rows).items():
        parts.append(f"== {where}: {_device_line(group)}")
        cells = [[h for _, h, _ in COLUMNS]] + [[fmt(r.get(k)) for k, _, fmt in COLUMNS] for r in group]
        widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
        for row in cells:
            parts.append(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
        parts.append("")
    return "\n".join(parts)


# Dropped first when a terminal is too narrow for every column; the rest (model, p50, p99, peak, size...) stay.
DROP_ORDER = (
    "std_us",
    "min_us",
    "max_us",
    "params",
    "first_inference_ms",
    "throughput_per_s",
    "init_ms",
    "runs",
    "p90_us",
    "mean_us",
    "recipe",
    "accuracy",
)


def fit_columns(rows: list[dict], width: int) -> list[tuple[str, str, Fmt]]:
    """The columns that fit in `width` characters (rich draws 3 per column for borders and padding)."""
    cols = list(COLUMNS)

    def needed(cs) -> int:
        return 1 + sum(3 + max([len(h)] + [len(f(r.get(k))) for r in rows]) for k, h, f in cs)

    for key in DROP_ORDER:
        if needed(cols) <= width:
            break
        cols = [c for c in cols if c[0] != key]
    return cols


def render_rich(rows: list[dict], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for where, group in _by_where(rows).items():
        cols = fit_columns(group, console.width)
        caption = _device_line(group)
        if len(cols) < len(COLUMNS):
            caption += (
                f"; {len(COLUMNS) - len(cols)} columns hidden: widen the terminal, or --format md/csv/json"
            )
        table = Table(title=f"{where}", caption=caption, title_justify="left", header_style="bold")
        for i, (_, header, _) in enumerate(cols):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
        for r in group:
            table.add_row(*[fmt(r.get(k)) for k, _, fmt in cols])
        console.print(table)


def print_table(rows: list[dict], stream=None) -> None:
    """Rich on a TTY, plain text otherwise."""
    import sys

    stream = stream or sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        from rich.console import Console

        render_rich(rows, Console(file=stream))
    else:
        stream.write(render_text(rows) + ("\n" if rows else "no runs\n"))


def render_md(rows: list[dict]) -> str:
    parts = ["# edgeseq profile report", ""]
    for where, group in _by_where(rows).items():
        parts += [f"## {where}", "", f"{_device_line(group)}", ""]
        parts.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
        parts.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|")
        for r in group:
            parts.append("| " + " | ".join(fmt(r.get(k)) for k, _, fmt in COLUMNS) + " |")
        parts.append("")
    return "\n".join(parts)


CSV_FIELDS = [
    "run_id",
    "created_at",
    "target",
    "device_key",
    "model",
    "model_path",
    "sha256",
    "recipe",
    "params",
    "accuracy",
    "runtime",
    "threads",
    "xnnpack",
    "runs",
    "p50_cv",
    "count",
    "init_ms",
    "load_ms",
    "allocate_ms",
    "first_inference_ms",
    "mean_us",
    "std_us",
    "min_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "cv",
    "throughput_per_s",
    "peak_rss_kb",
    "model_size_bytes",
]


def _flat(r: dict) -> dict:
    o = r.get("options") or {}
    return {**{k: r.get(k) for k in CSV_FIELDS}, "threads": o.get("threads"), "xnnpack": o.get("xnnpack")}


def render_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(_flat(r))
    return buf.getvalue()


def render_json(rows: list[dict]) -> str:
    keep = [{k: v for k, v in r.items() if k != "samples_us"} for r in rows]
    return json.dumps({"schema": "edgeseq.report/1", "groups": keep}, indent=2, default=str)


PROVENANCE_HEADERS = (
    "model",
    "where",
    "latest run",
    "when (UTC)",
    "sha256",
    "runtime",
    "options",
    "constraints",
    "file",
)


def _provenance_html(rows: list[dict]) -> list[str]:
    """Where each row's figures came from, so a reader can trace or redo them."""
    out = ["<h2>Provenance</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in PROVENANCE_HEADERS) + "</tr>"]
    for r in rows:
        o = r.get("options") or {}
        opts = " ".join(f"{k}={o.get(k)}" for k in ("threads", "xnnpack", "runs", "warmup"))
        cons = ", ".join(f"{k}={v}" for k, v in (r.get("constraints") or {}).items() if v and k != "cpu_list")
        cells = (
            r["label"],
            r["where"],
            f"#{r['run_id']}",
            r["created_at"][:19],
            r["sha256"][:16],
            r["runtime"],
            opts,
            cons or "-",
            r["model_path"],
        )
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return out


def render_html(rows: list[dict], pngs: list[Path]) -> str:
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgeseq report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "font-size:13px;margin-bottom:1em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}img{max-width:100%;"
        "border:1px solid #ddd;margin:0.5em 0}.muted{color:#666;font-size:12px}</style></head><body>",
        "<h1>edgeseq profile report</h1>",
        f"<p class='muted'>generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
        "latency figures are per invoke, computed on the host from raw samples; peak memory is the agent "
        "process's VmHWM.</p>",
    ]
    for where, group in _by_where(rows).items():
        out.append(f"<h2>{esc(where)}</h2><p class='muted'>{esc(_device_line(group))}</p><table><tr>")
        out += [f"<th>{esc(h)}</th>" for _, h, _ in COLUMNS]
        out.append("</tr>")
        for r in group:
            out.append("<tr>" + "".join(f"<td>{esc(fmt(r.get(k)))}</td>" for k, _, fmt in COLUMNS) + "</tr>")
        out.append("</table>")
    out.append("<h2>Plots</h2>")
    for p in pngs:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        out.append(f"<div><img alt='{esc(p.stem)}' src='data:image/png;base64,{data}'></div>")
    out += _provenance_html(rows)
    out.append("</body></html>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- files
def write_report(
    db: str | Path | None, out_dir: str | Path, fmt: str = "html", target: str | None = None, warn: Warn = None
) -> Path:
    """Write the report in `fmt` (plus the PNG plots) under `out_dir`; returns the main file's path. The store is
    only read; `warn` gets one line when damaged rows were skipped."""
    from edgeseq.fsio import atomic_write_text
    from edgeseq.plots import write_plots

    if fmt not in FORMATS:
        raise InputError(f"unknown report format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    with ResultsStore(db, create=False) as store:
        rows = load_groups(store, target=target, with_samples=True)
        _warn_damage(store, warn)
    if not rows:
        raise StoreError(f"the results store {store.path} holds no runs", "run `edgeseq profile` first")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        pngs = write_plots([r for r in rows if _plottable(r)], out_dir)
        from edgeseq.stream_profile import streaming_section  # "" when no streaming runs are stored

        streaming = streaming_section(db, out_dir, fmt, target)
        if fmt == "html":
            page = render_html(rows, pngs)
            path = atomic_write_text(out_dir / "report.html", page.replace("</body>", streaming + "</body>", 1))
        else:
            text = {"table": render_text, "md": render_md, "csv": render_csv, "json": render_json}[fmt](rows)
            text += streaming
            path = atomic_write_text(out_dir / f"report.{'txt' if fmt == 'table' else fmt}", text)
        path.chmod(0o644)  # atomic writes start private (mkstemp); a report is meant to be shared
        return path
    except OSError as exc:
        raise InputError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None


def _plottable(row: dict) -> bool:
    """The figures every plot draws, finite: a row without them (benchmark_model prints no p90, a store row can be
    incomplete) stays in the tables but out of the plots."""
    return all(
        isinstance(row.get(k), int | float) and not isinstance(row.get(k), bool) and math.isfinite(row[k])
        for k in ("p50_us", "min_us", "p90_us", "model_size_bytes")
    )


# ---------------------------------------------------------------------------------------- compare
COMPARE_METRICS: list[tuple[str, str, Fmt]] = [
    ("p50_us", "p50 µs", _f(2)),
    ("p90_us", "p90 µs", _f(2)),
    ("p99_us", "p99 µs", _f(2)),
    ("mean_us", "mean µs", _f(2)),
    ("std_us", "std µs", _f(2)),
    ("min_us", "min µs", _f(2)),
    ("max_us", "max µs", _f(2)),
    ("throughput_per_s", "inferences/s", _f(0)),
    ("init_ms", "init ms", _f(2)),
    ("first_inference_ms", "first inference ms", _f(3)),
    ("peak_rss_kb", "peak RSS MB", _f(2, 1 / 1024)),
    ("model_size_bytes", "model size KiB", _f(1, 1 / 1024)),
    ("params", "parameters", _int),
    ("accuracy", "accuracy", _acc),
]


def resolve_ref(store: ResultsStore, ref: str, target: str | None = None) -> dict:
    """A run id (`12` or `#12`), or a model by file stem / recipe-qualified name / sha256 prefix (latest run)."""
    text = ref.strip()
    digits = text.lstrip("#")
    if digits.isascii() and digits.isdigit():
        run = store.get_run(int(digits)) if len(digits) <= 19 else None  # no id is past SQLite's integers
        if run is not None and (target is None or run["target"] == target):
            return run
        if text.startswith("#"):
            raise InputError(f"no run with id {text if len(text) <= 24 else text[:21] + '...'}")
    runs = store.runs(target=target)
    low = text.lower()
    hits = [r for r in runs if r["model_name"].lower() == low or Path(r["model_path"]).name.lower() == low]
    if not hits:
        hits = [r for r in runs if len(low) >= 4 and r["model_sha256"].startswith(low)]
    if not hits:
        hits = [r for r in runs if low in r["model_name"].lower()]
    if not hits:
        raise InputError(
            f"no stored run matches {ref!r}",
            "give a run id, a model name or a sha256 prefix; see `edgeseq report`",
        )
    shas = {r["model_sha256"] for r in hits}
    if len(shas) > 1:
        names = sorted({f"{r['model_name']} ({r['model_sha256'][:8]})" for r in hits})
        raise InputError(
            f"{ref!r} matches {len(shas)} models: {', '.join(names[:6])}",
            "be more specific, or give a run id",
        )
    return store.get_run(hits[-1]["id"])


def compare_runs(db: str | Path | None, a: str, b: str, target: str | None = None, warn: Warn = None) -> dict:
    """Figures of two runs side by side with ratios B/A (below 1: B is smaller/faster). The store is only read;
    `warn` gets one line when damaged rows were skipped."""
    with ResultsStore(db, create=False) as store:
        ra, rb = resolve_ref(store, a, target), resolve_ref(store, b, target)
        _warn_damage(store, warn)
    rows = []
    for key, name, fmt in COMPARE_METRICS:
        va, vb = _metric(ra, key), _metric(rb, key)
        ratio = vb / va if va not in (None, 0) and vb is not None else None
        rows.append(
            {
                "metric": name,
                "key": key,
                "a": va,
                "b": vb,
                "ratio": ratio,
                "a_text": fmt(va),
                "b_text": fmt(vb),
            }
        )
    return {"a": _brief(ra), "b": _brief(rb), "rows": rows}


def _metric(run: dict, key: str):
    if key in ("params", "accuracy", "model_size_bytes", "peak_rss_kb"):
        v = run.get(key)
        if v is not None:
            return v
    return (run.get("stats") or {}).get(key)


def _brief(run: dict) -> dict:
    return {
        "run_id": run["id"],
        "model": run["model_name"],
        "sha256": run["model_sha256"],
        "recipe": run.get("recipe"),
        "target": run["target"],
        "device_key": run["device_key"],
        "created_at": run["created_at"],
        "options": run.get("options"),
    }


def render_compare_text(result: dict) -> str:
    a, b = result["a"], result["b"]
    ha = f"A: {a['model']} #{a['run_id']} @{a['target']}"
    hb = f"B: {b['model']} #{b['run_id']} @{b['target']}"
    cells = [["metric", ha, hb, "B/A"]]
    for r in result["rows"]:
        cells.append(
            [r["metric"], r["a_text"], r["b_text"], "-" if r["ratio"] is None else f"{r['ratio']:.3f}"]
        )
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return (
        "\n".join(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in cells
        )
        + "\n"
    )


def print_compare(result: dict, stream=None) -> None:
    import sys

    stream = stream or sys.stdout
    if not getattr(stream, "isatty", lambda: False)():
        stream.write(render_compare_text(result))
        return
    from rich.console import Console
    from rich.table import Table

    a, b = result["a"], result["b"]
    t = Table(header_style="bold")
    t.add_column("metric")
    t.add_column(f"A: {a['model']} #{a['run_id']}\n@{a['target']}", justify="right")
    t.add_column(f"B: {b['model']} #{b['run_id']}\n@{b['target']}", justify="right")
    t.add_column("B/A", justify="right")
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        t.add_row(r["metric"], r["a_text"], r["b_text"], ratio)
    Console(file=stream).print(t)


__all__ = ["EdgeseqError", "FORMATS", "load_groups", "load_report", "write_report", "compare_runs", "print_table"]
