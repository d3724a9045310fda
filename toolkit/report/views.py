"""What the CLI prints for each verb's result: one place for the words and units people read.

Commands call one library function (edgeseq.api) and print what these functions make of its result; notebooks can
call them too. One unit style everywhere: KiB for sizes, µs for latency.
"""

from __future__ import annotations

import json
from typing import Any


def convert_summary(r) -> str:
    """One line per converted recipe: file, size, route, parity, training reference, metrics, scales, time."""
    m, v = r.manifest, r.validation
    size = m["artifact"]["bytes"] / 1024
    route = m["route"]["rnn"]
    parts = [f"{r.tflite_path}", f"{size:.1f} KiB", f"route {route}" if route != "none" else "no RNN"]
    if m["route"].get("fallback"):
        parts[-1] = "TF's plain converter route (fallback: route.fallback)"
    if v.get("skipped"):
        parts.append(f"not validated ({v['reason']})")
    else:
        parity = f"parity {'ok' if v['passed'] else 'FAILED'} max|d| {v['max_abs_diff']:.2g}"
        if "top1_agreement" in v:
            parity += f" {'agree' if v.get('agreement') else 'top-1'} {v['top1_agreement']:.1%}"
        if v.get("data", {}).get("source") in ("random-normal", "random-ids"):
            parity += " on random N(0,1) inputs (--dataset random)"
        parts.append(parity)
        ref = v.get("training_reference")
        if ref:  # the outputs of the backend that trained the model, stored in its run directory
            keras_only = "max_abs_diff" not in ref  # --stream: TF's Keras is checked against them
            diff = ref["keras_tensorflow_vs_training"]["max_abs_diff"] if keras_only else ref.get("max_abs_diff")
            parts.append(f"{'keras ' if keras_only else ''}vs the {ref['backend']}-trained reference: " + (
                f"not checked ({ref['skipped']})" if "skipped" in ref else
                f"{'ok' if ref['passed'] else 'FAILED'} max|d| {diff:.2g} on {ref.get('samples', 0)} samples"))
        tm, km = v.get("tflite_metrics"), v.get("keras_metrics")
        if tm and km:
            key = "accuracy" if "accuracy" in tm else "mse"
            parts.append(f"{key} {tm[key]:.4f} (keras {km[key]:.4f})")
    gran = m["route"].get("granularity") or {}
    if "candidates" in gran:
        sizes = " / ".join(f"{k} {c['bytes'] / 1024:.1f} KiB" for k, c in gran["candidates"].items() if "bytes" in c)
        parts.append(f"kept {gran['kept']} scales (auto: {sizes or 'per-tensor failed'})")
    kept_float = m["route"].get("float_ops")
    if kept_float:  # selective int8: which op types stayed float (the why is in the manifest)
        parts.append(f"float: {','.join(kept_float['ops']) or 'none'}")
    parts.append(f"{m['timing']['convert_s'] + m['timing']['validate_s']:.1f} s")
    return "  ".join(parts)



def conversion_failed(r) -> str:
    return f"FAILED {r.recipe.slug}: {r.error.one_line()}"


# Several recipes: each is attempted; the exit code is the worst (highest) of the failed recipes' codes.
SEVERAL_RECIPES_RULE = ("every recipe is attempted; a summary lists each as written or failed, one line each; the "
                        "exit code is the worst (highest) of the failed recipes' codes, 0 when all were written")


def recipes_summary(results: list) -> tuple[list[str], Any]:
    """(the summary's lines, the error to exit with or None): one line per recipe, written (its file) or failed (its
    exit code and reason), under a header with the counts; the error carries the worst exit code and names every
    failed recipe, so its one stderr line is the whole story."""
    from edgeseq.core.errors import EdgeseqError

    failed = [r for r in results if not r.ok]
    width = max(len(r.recipe.slug) for r in results)
    lines = [f"summary: {len(results) - len(failed)} of {len(results)} recipes written"
             + (f", {len(failed)} failed" if failed else "")]
    for r in results:
        lines.append(f"  written  {r.recipe.slug:<{width}}  {r.tflite_path}" if r.ok else
                     f"  failed   {r.recipe.slug:<{width}}  exit {r.error.exit_code}: {r.error.one_line()[:160]}")
    if not failed:
        return lines, None
    worst = max(failed, key=lambda r: r.error.exit_code)
    if len(results) == 1:
        return lines, worst.error
    written = [r.recipe.slug for r in results if r.ok]
    err = EdgeseqError(f"{len(failed)} of {len(results)} recipes failed ({', '.join(r.recipe.slug for r in failed)}); "
                       f"written: {', '.join(written) or 'none'}; worst: {worst.recipe.slug}: {worst.error.message}",
                       worst.error.hint)
    err.exit_code = worst.error.exit_code
    return lines, err


def evaluation_line(e) -> str:
    """`evaluate`'s line from an `edgeseq.api.Evaluation`."""
    metric = ", ".join(f"{k} {v:.4f}" for k, v in e.metrics.items())
    if e.per_frame:
        metric = f"per-frame {metric} over {e.raw['frames']} frames"
    source = " (data set from the manifest)" if e.raw.get("dataset_from") == "manifest" else ""
    line = f"{e.model} on {e.dataset}{source} ({e.n} test samples, {e.runtime}): {metric}"
    return f"{line}; labels read as {e.raw['reading']}" if e.raw.get("reading") else line


def trained_lines(t, arch: str, preset: str, dataset_name: str) -> list[str]:
    """`train`'s two lines from an `edgeseq.api.Trained`."""
    rec = t.record
    metric = ", ".join(f"{k} {v:.4f}" for k, v in t.test_metrics.items())
    return [f"{arch}-{preset} on {dataset_name}: test {metric}; {rec['parameters']:,} parameters; "
            f"{rec['epochs_run']} epochs in {rec['wall_time_s']:.1f} s on {_where(rec)}",
            f"wrote {t.model_path} and {t.out_dir / 'training.json'}"]


def _where(rec: dict) -> str:
    """'tensorflow cpu', 'jax gpu (DataParallel over 2 devices)', 'torch cpu (one device: ...)'."""
    b = rec.get("backend") or {}
    where = f"{b.get('name', 'tensorflow')} {rec['device']['kind']}"
    return f"{where} ({b['note']})" if b.get("note") else where


def run_rows(rows: list[dict], repeat: int) -> list[dict]:
    """`profile`'s rows as the runs table shows them (one stored run each)."""
    return [{**r, "label": r["model"] + (f" #{r['run_id']}" if repeat > 1 else ""), "where": r["target"],
             "runs": 1, "device": r["device_facts"]} for r in rows]


def stale_manifest_notes(rows: list[dict]) -> list[str]:
    return [f"note: the manifest next to {r['model']} describes another file (sha256 differs); its recipe/accuracy "
            "were not used" for r in rows if r.get("manifest_stale")]


def stream_output(rows: list[dict], as_json: bool) -> str:
    """`profile --stream --contexts`: the per-context table (markdown) and slopes, or the edgeseq.stream/1 JSON."""
    from edgeseq.streams.profile import fit_slopes
    from edgeseq.streams.report import render_markdown

    if as_json:
        return json.dumps({"schema": "edgeseq.stream/1", "rows": rows, "slopes": fit_slopes(rows)}, indent=2) + "\n"
    return render_markdown(rows)


def demo_stream_lines(rows: list[dict]) -> list[str]:
    """The demo's streaming table: p50 of a whole step, state bytes, model memory, ratio to the GRU step."""
    if not rows:
        return []
    out = ["", "streaming, one step at a time (p50 of a whole step; x GRU = ratio to the GRU step):",
           f"{'model':<28}{'kind':>18}{'context':>9}{'p50 µs':>10}{'state B':>10}{'model MiB':>11}{'x GRU':>8}"]
    for r in rows:
        mem = "-" if r.get("model_peak_kb") is None else f"{r['model_peak_kb'] / 1024:.1f}"
        out.append(f"{r['model']:<28}{r['kind'].label:>18}{r['context']:>9}{r['p50_us']:>10.1f}"
                   f"{r['state_bytes']:>10,}{mem:>11}{r['x_rnn']:>8.1f}")
    return out


STREAM_NOTE = ("note: {model} takes the whole sequence, so --stream measured it as window recompute: every step re-runs "
               "all {window} steps (export a step model with `edgeseq convert --stream` to carry state instead)")


def stream_run_lines(rows: list[dict]) -> list[str]:
    """`profile --stream`: per step, what a device app pays every hop (µs), and the deadline when --hop-ms was given."""
    rows = [r for r in rows if r.get("stream")]
    if not rows:
        return []
    hop = any(r["stream"].get("hop_ms") for r in rows)
    head = f"{'model':<28}{'kind':>16}{'step p50':>10}{'step p99':>10}{'invoke p50':>11}{'host':>8}"
    head += f"{'in time':>9}{'RTF':>7}" if hop else ""
    out = ["per step (µs; host = step - invoke at p50" + ("; RTF = step p99 / hop, < 1 keeps up)" if hop else ")"),
           head]
    for r in rows:
        s = r["stream"]
        line = (f"{r['model'][:27]:<28}{str(s.get('kind') or '-'):>16}{_us(s.get('step_p50_us')):>10}"
                f"{_us(s.get('step_p99_us')):>10}{_us(s.get('invoke_p50_us')):>11}{_us(s.get('host_overhead_us')):>8}")
        if hop:
            share, rtf = s.get("deadline_met_share"), s.get("real_time_factor")
            line += f"{'-' if share is None else f'{share:.0%}':>9}{'-' if rtf is None else f'{rtf:.2f}':>7}"
        out.append(line)
    hops = sorted({s["hop_ms"] for s in (r["stream"] for r in rows) if s.get("hop_ms")})
    if hops:
        out.append(f"deadline: one hop = {', '.join(f'{h:g} ms' for h in hops)} ({', '.join(f'{h * 1000:g} µs' for h in hops)})")
    for r in rows:
        if r["stream"].get("kind") == "window":
            out.append(STREAM_NOTE.format(model=r["model"], window=r["stream"].get("window") or "?"))
    return out


def _us(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _db(v) -> str:
    return "exact" if v is None else f"{v:.1f}"


def quant_report_rows(r: dict, top: int | None = None) -> tuple[list[str], list[list[str]]]:
    """The per-op table of a quant report: ranked ops first (worst first), then the rest in graph order."""
    by_index = {op["index"]: op for op in r["ops"]}
    order = r["ranked"] + [op["index"] for op in r["ops"] if op["index"] not in set(r["ranked"])]
    head = ["rank", "op", "type", "layer", "out", "local SNR dB", "local cos", "SNR dB", "cosine", "MSE"]
    cells = []
    for i in order[:top] if top is not None else order:
        op = by_index[i]
        if "unmatched" in op:
            cells.append(["-", str(i), op["type"], op.get("layer") or "-", op.get("output_dtype") or "-",
                          "unmatched", "", "", "", ""])
            continue
        cells.append([str(op.get("rank", "-")), str(i), op["type"], op.get("layer") or "-",
                      op.get("output_dtype") or "-", _db(op.get("local_snr_db")) if "local_mse" in op else "-",
                      f"{op['local_cosine']:.5f}" if "local_cosine" in op else "-", _db(op.get("snr_db")),
                      f"{op['cosine']:.5f}", f"{op['mse']:.3g}"])
    return head, cells


def quant_report_lines(r: dict, top: int | None = None) -> list[str]:
    """`quant-report`'s text: what was compared, the table, the summary line, where it was saved."""
    from edgeseq.report.text import render_cells

    head, cells = quant_report_rows(r, top)
    lines = [f"{r['model']} ({r.get('recipe') or 'recipe unknown'}) against {r['reference']}, on {r['samples']} "
             f"test samples of {r['dataset']}; {r['matched']} of {r['total']} ops matched; {r['runtime']}"]
    lines += render_cells([head, *cells], "table", left=len(head)).split("\n")
    lines.append(r["summary"])
    if r.get("written"):
        lines.append(f"saved: {r['written']}")
    return lines
def estimate_lines(rows: list[dict]) -> list[str]:
    """`edgeseq estimate`: one line per file (p50 and its range, per invoke or step, model memory), then fallbacks."""
    out = []
    for r in rows:
        lo, hi = r["p50_us_range"]
        out.append(f"{r['model_path']}  p50 ~{r['p50_us']:.1f} µs per {r['per']} ({lo:.1f}-{hi:.1f})  "
                   f"model {r['model_kb']:,.0f} KiB  on {r['target']} ({r['toolchain']}, "
                   f"XNNPACK {'on' if r['xnnpack'] else 'off'}), estimated")
        for op, why in sorted(r["fallbacks"].items()):
            out.append(f"  {op}: never timed on {r['target']}; {why}")
        for note in r.get("notes") or []:
            out.append(f"  note: {note}")
    return out


def calibrate_line(r: dict) -> str:
    """`edgeseq calibrate`'s summary line (and one line per file that failed)."""
    line = (f"calibrated {r['target']}: {r['files']} files in {r['folder']}, {r['runs_added']} runs added, "
            f"{r['skipped']} already timed, {r['seconds']:.0f} s")
    return "\n".join([line, *(f"  failed: {k}: {v}" for k, v in sorted(r["failed"].items()))])
