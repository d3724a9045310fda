"""Streaming benchmark: what a new step costs an RNN, a KV-cache Transformer and window recomputation.

    .venv/bin/python benchmarks/streaming.py [--contexts 16,64,256,1024] [--recipe fp32] [--runs 200] [--out DIR]

One run: the zoo GRU and a causal zoo Transformer at preset small (about the same parameter count; untrained, since
latency does not depend on the weights) are exported as streaming models (GRU step model; Transformer KV cache and
window model per context) and profiled on the local target in stream mode (1 thread, whole steps timed: set x/pos,
invoke, carry state). Prints a markdown table: the ratios at context 256 (window recompute / RNN and KV cache / RNN
per-step latency, whole step and invoke only) and the growth slopes of latency and memory against the context.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEQ_LEN, FEATURES, CLASSES = 64, 16, 10


def _models(out: Path, max_len: int) -> tuple[Path, Path]:
    import keras

    from edgeseq.models.zoo import build_model

    keras.utils.set_random_seed(0)
    gru = build_model("gru", "small", seq_len=SEQ_LEN, num_features=FEATURES, num_outputs=CLASSES, name="gru-small")
    tf = build_model("transformer", "small", seq_len=SEQ_LEN, num_features=FEATURES, num_outputs=CLASSES,
                     causal=True, max_len=max_len, name="transformer-small-causal")
    paths = out / "gru-small.keras", out / "transformer-small-causal.keras"
    gru.save(paths[0])
    tf.save(paths[1])
    print(f"gru small: {gru.count_params():,} params; causal transformer small: {tf.count_params():,} params",
          file=sys.stderr)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", default="16,64,256,1024")
    p.add_argument("--at", type=int, default=256, help="context of the ratio columns")
    p.add_argument("--recipe", default="fp32")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--out", default=None, help="keep the exports and the results store here")
    args = p.parse_args(argv)

    from edgeseq.models.streamkind import StreamKind
    from edgeseq.streams.profile import fit_slopes, parse_contexts, stream_sweep
    from edgeseq.streams.report import render_markdown

    contexts = parse_contexts(args.contexts)
    if args.at not in contexts:
        contexts = sorted({*contexts, args.at})
    out = Path(args.out or tempfile.mkdtemp(prefix="edgeseq-bench-stream-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models = _models(out, max(contexts))
    rows = stream_sweep(list(models), contexts, out_dir=out / "exports", recipe=args.recipe, runs=args.runs,
                        warmup=20, db=out / "results.db", hop_ms=10.0, say=lambda m: print(m, file=sys.stderr))
    wall = time.perf_counter() - started

    at = {r["kind"]: r for r in rows if r["context"] == args.at}
    rnn, kv, win = (at.get(k) for k in (StreamKind.RECURRENT_STEP, StreamKind.KV_CACHE, StreamKind.WINDOW))

    def ratio(a, b, key):
        return f"{a[key] / b[key]:.1f}x" if a and b and a.get(key) and b.get(key) else "-"

    print(f"# Streaming benchmark ({args.recipe}, local target, 1 thread; {wall:.0f} s)\n")
    print(f"## Ratios at context {args.at}\n")
    print("| per-step latency | RNN (GRU) µs | KV cache µs | window µs | KV / RNN | window / RNN |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, what in (("p50_us", "whole step p50"), ("invoke_p50_us", "invoke only p50")):
        vals = [f"{r[key]:.1f}" if r and r.get(key) else "-" for r in (rnn, kv, win)]
        print(f"| {what} | {' | '.join(vals)} | {ratio(kv, rnn, key)} | {ratio(win, rnn, key)} |")
    mem = [f"{r['state_bytes']:,}" if r else "-" for r in (rnn, kv, win)]
    print(f"| state bytes carried | {' | '.join(mem)} | {ratio(kv, rnn, 'state_bytes')} "
          f"| {ratio(win, rnn, 'state_bytes')} |")
    print("\n## Growth with the context (least-squares slopes)\n")
    print("| kind | contexts | p50 µs per step of context | state bytes per step of context | peak RSS KB per step |"
          " p50 µs first -> last |")
    print("|---|---|---:|---:|---:|---|")
    for s in sorted(fit_slopes(rows), key=lambda s: s["kind"].label):
        def f(v, d):
            return "-" if v is None else f"{(0.0 if abs(v) < 0.5 * 10**-d else v):.{d}f}"

        print(f"| {s['kind'].label} | {s['contexts'][0]}..{s['contexts'][-1]} | {f(s['latency_us_per_step'], 3)} "
              f"| {f(s['state_bytes_per_step'], 1)} | {f(s['rss_kb_per_step'], 2)} "
              f"| {s['p50_us_first']:.1f} -> {s['p50_us_last']:.1f} |")
    print("\n<details><summary>all rows</summary>\n")
    print(render_markdown(rows))
    print("</details>")
    from edgeseq.streams.report import plot_streaming

    png = plot_streaming(rows, out / "streaming.png")
    print(f"\nplot: {png}; store: {out / 'results.db'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
