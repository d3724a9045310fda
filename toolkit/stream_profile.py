"""Streaming measurements: per-step latency and memory as the context grows, stored and reported.

    rows = profile_contexts(["gru-step-fp32.tflite", "tf-kv*.tflite", "tf-win*.tflite"], contexts=[16, 64, 256])
    rows = stream_sweep(["runs/gru/model.keras", "runs/tf-causal/model.keras"], contexts=[16, ..., 1024], out_dir=...)

Three ways to serve a stream, told apart by the agent's answer (never by file name):
- "recurrent state": a step model without a position input: constant work and memory per step, whatever the context;
- "kv cache": a step model with a `pos` input: attention over a cache of `capacity` slots, exported per context;
- "window recompute": a plain [1, W, F] model, re-run on the whole window for every new step.

Each (model, context) is one agent run (`--stream --steps context`), stored like any profile run (its options say
stream/steps/hop_ms; the agent's "stream" block holds state bytes and deadline figures). The report's streaming
section is built from those runs: a table per model and kind, least-squares slopes of per-step latency and of
state bytes against the context, and one PNG. No TensorFlow here (only the .keras sweep converts, in children).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeseq.errors import InputError

DEFAULT_CONTEXTS = (16, 32, 64, 128, 256, 512, 1024)
KINDS = ("recurrent state", "kv cache", "window recompute")


def parse_contexts(text: str | Sequence[int]) -> list[int]:
    """'16,32,64' or '16,32,...,1024' (the ellipsis goes on with the ratio of the two values before it) -> ints."""
    try:
        if not isinstance(text, str):
            vals = [int(v) for v in text]
        else:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            vals = []
            for i, p in enumerate(parts):
                if p not in ("...", "\u2026"):
                    vals.append(int(p))
                    continue
                if len(vals) < 2 or i + 1 >= len(parts) or vals[-1] <= vals[-2] or vals[-1] % vals[-2]:
                    raise ValueError
                ratio, last = vals[-1] // vals[-2], int(parts[i + 1])
                while vals[-1] * ratio < last:
                    vals.append(vals[-1] * ratio)
    except (TypeError, ValueError):
        raise InputError(f"cannot read contexts {text!r}", "pass e.g. 16,32,64 or 16,32,...,1024") from None
    if not vals or any(v < 1 for v in vals):
        raise InputError(f"contexts must be positive integers, got {text!r}")
    return sorted(set(vals))


def kind_of(stream: dict) -> str:
    if stream.get("mode") == "window":
        return "window recompute"
    return "kv cache" if stream.get("position_input") else "recurrent state"


def _base_name(run: dict) -> str:
    """The model a streaming export came from: its manifest's source file, else the file stem without suffixes."""
    name = run.get("model_name") or ""
    for part in ("-step-", "-kv", "-win"):
        if part in name:
            return name.split(part)[0]
    return name


# ------------------------------------------------------------------------------------------ measuring
def profile_contexts(
    models: Sequence[str | Path],
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    *,
    target: str = "local",
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = 1,
    hop_ms: float | None = None,
    db: str | Path | None = None,
    input: str | Path | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Profile each .tflite in stream mode at each context it can serve; returns streaming rows (see stream_row).

    A recurrent step model is measured at every context; a KV-cache model only at its own capacity, a window model
    only at its own window (export one per context: edgeseq convert --stream --kv-capacity / --window)."""
    from edgeseq.profiling import profile_models
    from edgeseq.store import ResultsStore

    contexts = parse_contexts(contexts)
    plan = []
    for m in models:
        serves = _serves(Path(m))
        plan += [(m, c) for c in contexts if serves is None or c == serves]
    if not plan:
        raise InputError("no model serves any of the contexts asked for",
                         "a KV-cache or window export serves only its own capacity; export one per context")
    rows = []
    for m, c in plan:
        for r in profile_models([m], target=target, runs=max(runs, c), warmup=warmup, threads=threads, db=db,
                                input=input, stream=True, steps=c, hop_ms=hop_ms):
            with ResultsStore(db) as store:
                row = _row_from_run(store.get_run(r["run_id"]))
            rows.append(row)
            if on_result is not None:
                on_result(row)
    return rows


def _serves(path: Path) -> int | None:
    """The one context a KV/window export serves (from its manifest), or None for a recurrent step model."""
    from edgeseq.profiling import read_manifest

    manifest = read_manifest(path) or {}
    s = manifest.get("stream") or {}
    if s.get("kind") == "kv-cache":
        return int(s["kv_capacity"])
    if s.get("kind") == "window":
        return int(s["window"])
    if not s:
        inputs = (manifest.get("signature") or {}).get("inputs") or []
        if len(inputs) == 1 and len(inputs[0].get("shape") or []) == 3:
            return int(inputs[0]["shape"][1])  # a plain batch model: the window baseline at its own length
        raise InputError(f"{path} has no streaming manifest next to it",
                         "export it with edgeseq convert --stream (or --window W)")
    return None


def _p50(ns) -> float | None:
    return float(np.percentile(np.asarray(ns, np.float64), 50) / 1e3) if ns else None


def _row_from_run(run: dict) -> dict | None:
    """One stored stream run -> a streaming row; None for a run that was not a streaming one."""
    opts = run.get("options") or {}
    stream = (run.get("agent") or {}).get("stream")
    if not opts.get("stream") or not stream:
        return None
    stats = run.get("stats") or {}
    return {
        "run_id": run["id"], "model": _base_name(run), "file": run["model_name"], "recipe": run.get("recipe"),
        "kind": kind_of(stream), "context": int(stream.get("steps") or opts.get("steps") or 0),
        "p50_us": stats.get("p50_us"), "p99_us": stats.get("p99_us"), "mean_us": stats.get("mean_us"),
        "invoke_p50_us": _p50(stream.get("invoke_ns")), "state_bytes": stream.get("state_bytes"),
        "peak_rss_kb": stats.get("peak_rss_kb"), "deadline_met_share": stream.get("deadline_met_share"),
        "hop_ms": stream.get("hop_ms"), "target": run["target"],
    }


def rows_from_store(db: str | Path | None, target: str | None = None) -> list[dict]:
    """Streaming rows of every stream run in the store (the latest per model file, kind and context)."""
    from edgeseq.store import ResultsStore

    with ResultsStore(db, create=False) as store:
        runs = store.runs(target=target)
    latest: dict[tuple, dict] = {}
    for run in runs:
        row = _row_from_run(run)
        if row is not None:
            latest[(run["target"], run["model_sha256"], row["kind"], row["context"])] = row
    return sorted(latest.values(), key=lambda r: (r["target"], r["model"], KINDS.index(r["kind"]), r["context"]))


# ------------------------------------------------------------------------------------------ slopes
def fit_slopes(rows: list[dict]) -> list[dict]:
    """Per (model, kind): least-squares slope of p50 µs, state bytes and peak RSS against the context."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("target"), r["model"], r["kind"]), []).append(r)
    out = []
    for (target, model, kind), members in groups.items():
        members.sort(key=lambda r: r["context"])
        ctx = np.array([r["context"] for r in members], np.float64)

        def slope(key, members=members, ctx=ctx):
            ys = [r.get(key) for r in members]
            if len(members) < 2 or any(y is None for y in ys) or np.ptp(ctx) == 0:
                return None
            value = float(np.polyfit(ctx, np.asarray(ys, np.float64), 1)[0])
            return 0.0 if abs(value) < 1e-9 * max(1.0, float(np.max(np.abs(ys)))) else value

        out.append({
            "target": target, "model": model, "kind": kind, "contexts": [int(c) for c in ctx],
            "latency_us_per_step": slope("p50_us"), "state_bytes_per_step": slope("state_bytes"),
            "rss_kb_per_step": slope("peak_rss_kb"),
            "p50_us_first": members[0]["p50_us"], "p50_us_last": members[-1]["p50_us"],
            "state_bytes_first": members[0]["state_bytes"], "state_bytes_last": members[-1]["state_bytes"],
        })
    return out


# ------------------------------------------------------------------------------------------ rendering
def _fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def render_markdown(rows: list[dict]) -> str:
    """A table per context row plus the slopes; empty string without streaming rows."""
    if not rows:
        return ""
    lines = ["## Streaming", "",
             "Per-step latency (whole step: set x/pos, invoke, carry state) and memory as the context grows.", "",
             "| model | kind | context | p50 µs/step | p99 µs/step | invoke p50 µs | state bytes | peak RSS MB |"
             " deadline met |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        met = "-" if r.get("deadline_met_share") is None else f"{r['deadline_met_share']:.0%} of {r['hop_ms']:g} ms"
        rss = None if r.get("peak_rss_kb") is None else r["peak_rss_kb"] / 1024
        lines.append(f"| {r['model']} | {r['kind']} | {r['context']} | {_fmt(r['p50_us'])} | {_fmt(r.get('p99_us'))} "
                     f"| {_fmt(r.get('invoke_p50_us'), 2)} | {_fmt(r.get('state_bytes'), 0)} | {_fmt(rss)} | {met} |")
    lines += ["", "Fitted slopes (least squares over the contexts measured):", "",
              "| model | kind | contexts | µs per step of context | state bytes per step of context | RSS KB per step |",
              "|---|---|---|---:|---:|---:|"]
    for s in fit_slopes(rows):
        ctx = f"{s['contexts'][0]}..{s['contexts'][-1]}" if s["contexts"] else "-"
        lines.append(f"| {s['model']} | {s['kind']} | {ctx} | {_fmt(s['latency_us_per_step'], 4)} "
                     f"| {_fmt(s['state_bytes_per_step'], 1)} | {_fmt(s['rss_kb_per_step'], 2)} |")
    return "\n".join(lines) + "\n"


def render_html(rows: list[dict], png: Path | None) -> str:
    import base64
    import html

    if not rows:
        return ""
    out = ["<h2>Streaming</h2><p class='muted'>Per-step latency (set x/pos, invoke, carry state) and memory as the "
           "context grows: a recurrent state stays flat, a KV cache grows with its capacity, window recomputation "
           "re-runs the whole window for every step.</p><table><tr>"]
    heads = ["model", "kind", "context", "p50 µs/step", "p99 µs/step", "invoke p50 µs", "state bytes", "peak MB",
             "deadline met"]
    out += [f"<th>{h}</th>" for h in heads] + ["</tr>"]
    for r in rows:
        met = "-" if r.get("deadline_met_share") is None else f"{r['deadline_met_share']:.0%} of {r['hop_ms']:g} ms"
        rss = None if r.get("peak_rss_kb") is None else r["peak_rss_kb"] / 1024
        cells = [r["model"], r["kind"], r["context"], _fmt(r["p50_us"]), _fmt(r.get("p99_us")),
                 _fmt(r.get("invoke_p50_us"), 2), _fmt(r.get("state_bytes"), 0), _fmt(rss), met]
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table><table><tr><th>model</th><th>kind</th><th>µs per step of context</th>"
               "<th>state bytes per step of context</th><th>RSS KB per step</th></tr>")
    for s in fit_slopes(rows):
        cells = [s["model"], s["kind"], _fmt(s["latency_us_per_step"], 4), _fmt(s["state_bytes_per_step"], 1),
                 _fmt(s["rss_kb_per_step"], 2)]
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    if png is not None and Path(png).is_file():
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        out.append(f"<div><img alt='streaming' src='data:image/png;base64,{data}'></div>")
    return "\n".join(out)


_STYLE = {"recurrent state": ("o", "-"), "kv cache": ("s", "--"), "window recompute": ("^", ":")}


def plot_streaming(rows: list[dict], path: str | Path) -> Path | None:
    """Per-step latency and state bytes against the context (log-log), one line per model and kind, slope in
    the legend. None without streaming rows."""
    if not rows:
        return None
    from edgeseq.plots import DPI, _plt

    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.6))
    cmap = plt.get_cmap("tab10")
    slopes = {(s["target"], s["model"], s["kind"]): s for s in fit_slopes(rows)}
    keys = sorted({(r.get("target"), r["model"], r["kind"]) for r in rows}, key=lambda k: (k[1], KINDS.index(k[2])))
    models = sorted({k[1] for k in keys})

    def tag(value, unit, top, span):
        """The fitted slope; 'flat' when it moves the value by < 5% over the contexts measured."""
        if value is None:
            return ""
        return " (flat)" if abs(value) * span < 0.05 * top else f" ({value:+.3g} {unit}/step)"

    for key in keys:
        pts = sorted((r for r in rows if (r.get("target"), r["model"], r["kind"]) == key), key=lambda r: r["context"])
        marker, ls = _STYLE[key[2]]
        colour = cmap((models.index(key[1]) * 3 + KINDS.index(key[2])) % 10)
        s = slopes[key]
        ctx = [r["context"] for r in pts]
        span = max(ctx) - min(ctx)
        name = f"{key[1]} {key[2]}"
        lat = [r["p50_us"] for r in pts]
        ax1.plot(ctx, lat, marker=marker, ls=ls, color=colour,
                 label=name + tag(s["latency_us_per_step"], "µs", max(lat), span))
        for ax, field, unit, scale in ((ax2, "state_bytes", "B", 1.0), (ax3, "peak_rss_kb", "KB", 1024.0)):
            ys = [r.get(field) for r in pts]
            if all(y is not None for y in ys):
                slope = s["state_bytes_per_step" if field == "state_bytes" else "rss_kb_per_step"]
                ax.plot(ctx, [y / scale for y in ys] if field == "peak_rss_kb" else ys, marker=marker, ls=ls,
                        color=colour, label=name + tag(slope, unit, max(ys), span))
    panels = ((ax1, "p50 per-step latency (µs)", "Per-step latency", True),
              (ax2, "state / KV cache / window bytes", "Memory carried between steps", True),
              (ax3, "agent peak RSS (MB)", "Process peak memory (VmHWM)", False))
    for ax, ylabel, title, logy in panels:
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("context (steps)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    wheres = sorted({str(r.get("target")) for r in rows})
    fig.suptitle(f"Streaming: cost per new step as the context grows ({', '.join(wheres)})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def streaming_section(db: str | Path | None, out_dir: str | Path | None, fmt: str, target: str | None = None) -> str:
    """The report's streaming section in `fmt` (html/md/table), writing streaming.png to out_dir; "" without runs."""
    try:
        rows = rows_from_store(db, target)
    except Exception:  # noqa: BLE001 - a report without its streaming section beats no report
        return ""
    if not rows:
        return ""
    png = plot_streaming(rows, Path(out_dir) / "streaming.png") if out_dir is not None else None
    if fmt == "html":
        return render_html(rows, png)
    if fmt in ("md", "table"):
        return "\n" + render_markdown(rows)
    return ""


# ------------------------------------------------------------------------------------------ CLI
def profile_streaming_cli(models, contexts: str, *, target: str, runs: int, warmup: int, threads: int | None,
                          hop_ms: float | None, db, input_path, as_json: bool, live: bool,
                          export_dir: str | Path = "artifacts") -> list[dict]:
    """`edgeseq profile --stream --contexts ...`: .tflite exports are profiled as they are; .keras models are
    exported to `export_dir` first (their step, KV-cache and window models). Prints the table and the slopes."""
    import json

    import click

    ctx = parse_contexts(contexts)
    keras_models = [m for m in models if str(m).endswith(".keras")]
    tflites = [m for m in models if not str(m).endswith(".keras")]

    def say(row: dict) -> None:
        if live:
            click.echo(f"  {row['file']} @ context {row['context']}: p50 {row['p50_us']:.1f} µs/step", err=True)

    rows = []
    if tflites:
        rows += profile_contexts(tflites, ctx, target=target, runs=runs, warmup=warmup, threads=threads,
                                 hop_ms=hop_ms, db=db, input=input_path, on_result=say)
    if keras_models:
        rows += stream_sweep(keras_models, ctx, out_dir=export_dir, target=target, runs=runs, warmup=warmup,
                             threads=threads, hop_ms=hop_ms, db=db,
                             say=lambda m: click.echo(m, err=True) if live else None)
    if as_json:
        click.echo(json.dumps({"schema": "edgeseq.stream/1", "rows": rows, "slopes": fit_slopes(rows)}, indent=2))
    else:
        click.echo(render_markdown(rows), nl=False)
    return rows


# ------------------------------------------------------------------------------------------ .keras sweep
def stream_sweep(
    models: Sequence[str | Path],
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    *,
    out_dir: str | Path,
    recipe: str = "fp32",
    target: str = "local",
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = 1,
    hop_ms: float | None = None,
    db: str | Path | None = None,
    windows: bool = True,
    say: Callable[[str], None] | None = None,
) -> list[dict]:
    """Export the streaming variants of each .keras model (RNN: one step model; causal Transformer: a KV cache per
    context, and the window baseline per context) and profile them at every context. Exports are not re-validated
    here (edgeseq convert --stream does that)."""
    from edgeseq.quantize.stream import convert_stream, streaming_kind

    say = say or (lambda _m: None)
    contexts = parse_contexts(contexts)
    files: list[Path] = []
    for m in models:
        kind = streaming_kind(m)
        if kind == "window":
            res = convert_stream(m, [recipe], out_dir=out_dir, window=contexts[0], contexts=contexts,
                                 validate=False, raise_on_error=False)
        else:
            res = convert_stream(m, [recipe], out_dir=out_dir, contexts=contexts if kind == "kv-cache" else None,
                                 windows=windows and kind == "kv-cache", validate=False, raise_on_error=False)
        for r in res:
            if r.ok:
                files.append(r.tflite_path)
            else:
                say(f"skipped: {r.error.one_line()}")
    return profile_contexts(files, contexts, target=target, runs=runs, warmup=warmup, threads=threads, hop_ms=hop_ms,
                            db=db)
