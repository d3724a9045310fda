"""Two models or runs side by side (`edgeseq compare`): their figures and the ratios B/A."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgeseq.core.errors import InputError
from edgeseq.core.finite import is_number
from edgeseq.core.stats import memory_figures
from edgeseq.profiling.ops import compare_op_types, op_fields, render_compare_ops
from edgeseq.report.rows import Fmt, Warn, accuracy_text, count_text, fixed, warn_damage
from edgeseq.store.results import ResultsStore

COMPARE_METRICS: list[tuple[str, str, Fmt]] = [
    ("p50_us", "p50 µs", fixed(2)),
    ("p90_us", "p90 µs", fixed(2)),
    ("p99_us", "p99 µs", fixed(2)),
    ("mean_us", "mean µs", fixed(2)),
    ("std_us", "std µs", fixed(2)),
    ("min_us", "min µs", fixed(2)),
    ("max_us", "max µs", fixed(2)),
    ("throughput_per_s", "inferences/s", fixed(0)),
    ("init_ms", "init ms", fixed(2)),
    ("first_inference_ms", "first inference ms", fixed(3)),
    ("model_peak_kb", "model memory MB", fixed(2, 1 / 1024)),  # peak minus the runtime's baseline
    ("peak_rss_kb", "process peak MB", fixed(2, 1 / 1024)),
    ("model_size_bytes", "model size KiB", fixed(1, 1 / 1024)),
    ("params", "parameters", count_text),
    ("accuracy", "accuracy", accuracy_text),
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
        warn_damage(store, warn)
    rows = []
    for key, name, fmt in COMPARE_METRICS:
        va, vb = _metric(ra, key), _metric(rb, key)
        ratio = vb / va if is_number(va) and is_number(vb) and va != 0 else None  # no ratio of a NaN (shown as NaN)
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
    out = {"a": _brief(ra), "b": _brief(rb), "rows": rows}
    fa, fb = (op_fields((r.get("agent") or {}).get("ops"), _metric(r, "p50_us")) for r in (ra, rb))
    if fa or fb:  # one of them was measured with --ops: op types side by side
        out["ops"] = {"a": _ops_brief(fa), "b": _ops_brief(fb), "op_types": compare_op_types(fa, fb)}
    return out


def _ops_brief(f: dict) -> dict:
    return {k: f.get(k) for k in ("ops_route", "ops_reason", "ops_sum_us", "ops_coverage")}


def _metric(run: dict, key: str):
    if key in ("params", "accuracy", "model_size_bytes", "peak_rss_kb"):
        v = run.get(key)
        if v is not None:
            return v
    if key == "model_peak_kb" and "model_peak_kb" not in (run.get("stats") or {}):  # stored before agent/2
        return memory_figures((run.get("agent") or {}).get("memory"))["model_peak_kb"]
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
        + _ops_text(result)
    )


def _ops_text(result: dict) -> str:
    ops = result.get("ops")
    if not ops:
        return ""
    notes = "".join(f"{side}: per-op time not measured: {ops[side.lower()]['ops_reason']}\n"
                    for side in ("A", "B") if ops[side.lower()]["ops_route"] is None)
    return render_compare_ops(ops["op_types"], ops["a"], ops["b"]) + notes


def print_compare(result: dict, stream=None, as_json: bool = False) -> None:
    """`compare_runs`'s result as JSON, or as a table: rich on a TTY, plain text otherwise."""
    stream = stream or sys.stdout
    if as_json:
        stream.write(json.dumps({"schema": "edgeseq.compare/1", **result}, indent=2, default=str) + "\n")
        return
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
    stream.write(_ops_text(result))
