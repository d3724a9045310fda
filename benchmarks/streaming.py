"""Streaming benchmark: what a new step costs an RNN, a KV-cache Transformer and window recomputation, with the
state carried by the host and kept inside the model.

    .venv/bin/python benchmarks/streaming.py [--contexts 16,64,256] [--recipe fp32] [--runs 1000] [--out DIR]
                                             [--state both|external|internal]

One run: the zoo GRU, LSTM and a causal zoo Transformer at preset small (about the same parameter count; untrained,
since latency does not depend on the weights) are exported as streaming models (GRU and LSTM step models;
Transformer KV cache and window model per context), each step model in both forms (`--state both`: the state
carried by the host, and inside the model in resource variables), and profiled on the local target in stream mode
(1 thread, whole steps timed: set the input, invoke, carry what the host carries, read the output). A
third-party-style model is built here too, the way microWakeWord's and kws_streaming's internal-state exports are
made (TF's own converter over tf.Variables: int8, input [1, 3, 40], 12 resource variables, CALL_ONCE, no manifest),
and profiled the same way. Prints markdown: the ratios at context 256, the growth slopes, and the host-carried vs
state-inside table (whole step, invoke, their ratio, host overhead, state bytes, model memory) with the report's
advice on which form to ship. Not part of the test run.
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


def _models(out: Path, max_len: int) -> tuple[Path, ...]:
    import keras

    from edgeseq.models.zoo import build_model

    made = []
    for arch, name, extra in (("gru", "gru-small", {}), ("lstm", "lstm-small", {}),
                              ("transformer", "transformer-small-causal", {"causal": True, "max_len": max_len})):
        keras.utils.set_random_seed(0)
        model = build_model(arch, "small", seq_len=SEQ_LEN, num_features=FEATURES, num_outputs=CLASSES, name=name,
                            **extra)
        model.save(out / f"{name}.keras")
        made.append(out / f"{name}.keras")
        print(f"{name}: {model.count_params():,} params", file=sys.stderr)
    return tuple(made)


def wake_word_tflite(path: Path, features: int = 40, stride: int = 3, seed: int = 0) -> Path:
    """A microWakeWord-style spotter written by TF's converter: int8 input [1, stride, features]; five conv layers,
    each keeping its last kernel-1 inputs in a ring-buffer variable, a gated cell (two variables), a running pool,
    a peak hold, two counters and the input's running energy: 12 resource variables in all, zeroed by CALL_ONCE.
    Untrained (latency needs no weights)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    convs = [(5, features, 32), (3, 32, 32), (3, 32, 48), (3, 48, 48), (3, 48, 64)]  # (kernel, in, out)
    units = 32

    def w(*shape):
        return tf.constant(rng.normal(0, 1.0 / np.sqrt(shape[-2] * (shape[0] if len(shape) == 3 else 1)),
                                      shape).astype(np.float32))

    class Spotter(tf.Module):
        def __init__(self):
            super().__init__()
            self.rings = [tf.Variable(tf.zeros([1, k - 1, c_in]), name=f"ring{i}")
                          for i, (k, c_in, _) in enumerate(convs)]
            self.kernels = [w(k, c_in, c_out) for k, c_in, c_out in convs]
            self.h = tf.Variable(tf.zeros([1, units]), name="h")
            self.c = tf.Variable(tf.zeros([1, units]), name="c")
            self.pool = tf.Variable(tf.zeros([1, units]), name="pool")
            self.count = tf.Variable(tf.zeros([1, 1]), name="count")
            self.steps = tf.Variable(tf.zeros([1, 1]), name="steps")
            self.peak = tf.Variable(tf.zeros([1, 2]), name="peak")
            self.energy = tf.Variable(tf.zeros([1, 1]), name="energy")  # the input's running energy
            self.a, self.b, self.d = w(convs[-1][2], 2 * units), w(units, 2 * units), w(units, 2)

        @tf.function(input_signature=[tf.TensorSpec([1, stride, features], tf.float32, name="x")])
        def step(self, x):
            self.energy.assign(0.95 * self.energy.read_value() + 0.05 * tf.reduce_mean(x * x, axis=[1, 2])[:, None])
            h = x
            for ring, kernel in zip(self.rings, self.kernels, strict=True):
                buf = tf.concat([ring.read_value(), h], axis=1)
                ring.assign(buf[:, -(kernel.shape[0] - 1):])
                h = tf.nn.relu(tf.nn.conv1d(buf, kernel, 1, "VALID"))
            gates = tf.reduce_mean(h, axis=1) @ self.a + self.h.read_value() @ self.b
            z, g = tf.split(tf.sigmoid(gates), 2, axis=1)
            c = z * self.c.read_value() + (1 - z) * tf.tanh(g)
            hh = tf.tanh(c)
            self.c.assign(c)
            self.h.assign(hh)
            pool = 0.9 * self.pool.read_value() + 0.1 * hh  # a running (exponential) pool
            self.pool.assign(pool)
            self.count.assign(self.count.read_value() + 1.0)
            self.steps.assign(tf.minimum(self.steps.read_value() + 1.0, 100.0))
            y = tf.nn.softmax(pool @ self.d)
            self.peak.assign(tf.maximum(self.peak.read_value(), y))
            return {"y": y}

    module = Spotter()
    saved = path.with_suffix(".savedmodel")
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.step})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.experimental_enable_resource_variables = True
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ({"x": rng.standard_normal((1, stride, features)).astype(np.float32)}
                                           for _ in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", default="16,64,256")
    p.add_argument("--at", type=int, default=256, help="context of the ratio columns")
    p.add_argument("--recipe", default="fp32")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--state", choices=["both", "external", "internal"], default="both")
    p.add_argument("--out", default=None, help="keep the exports and the results store here")
    args = p.parse_args(argv)

    from edgeseq.models.streamkind import StreamKind
    from edgeseq.streams.profile import fit_slopes, parse_contexts, profile_contexts, stream_sweep
    from edgeseq.streams.report import render_markdown, ship_advice, state_pairs

    contexts = parse_contexts(args.contexts)
    if args.at not in contexts:
        contexts = sorted({*contexts, args.at})
    out = Path(args.out or tempfile.mkdtemp(prefix="edgeseq-bench-stream-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models = _models(out, max(contexts))
    rows = stream_sweep(list(models), contexts, out_dir=out / "exports", recipe=args.recipe, runs=args.runs,
                        warmup=100, db=out / "results.db", hop_ms=10.0, say=lambda m: print(m, file=sys.stderr),
                        state=args.state)
    spotter = wake_word_tflite(out / "exports" / "spotter-int8.tflite")
    rows += profile_contexts([spotter], contexts, runs=args.runs, warmup=100, db=out / "results.db", hop_ms=10.0)
    wall = time.perf_counter() - started

    at = {r["kind"]: r for r in rows if r["context"] == args.at and r["model"] in ("gru-small",
                                                                                   "transformer-small-causal")}
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
    print("| model | kind | contexts | p50 µs per step of context | state bytes per step of context "
          "| peak RSS KB per step | p50 µs first -> last |")
    print("|---|---|---|---:|---:|---:|---|")
    for s in sorted(fit_slopes(rows), key=lambda s: (s["model"], s["kind"].label)):
        def f(v, d):
            return "-" if v is None else f"{(0.0 if abs(v) < 0.5 * 10**-d else v):.{d}f}"

        print(f"| {s['model']} | {s['kind'].label} | {s['contexts'][0]}..{s['contexts'][-1]} "
              f"| {f(s['latency_us_per_step'], 3)} "
              f"| {f(s['state_bytes_per_step'], 1)} | {f(s['rss_kb_per_step'], 2)} "
              f"| {s['p50_us_first']:.1f} -> {s['p50_us_last']:.1f} |")
    print("\n## State carried by the host vs kept inside the model (whole step vs invoke, p50 µs)\n")
    print("| model | form | context | host: step | invoke | step/invoke | inside: step | invoke | step/invoke "
          "| host overhead host / inside | state bytes | model KB host / inside |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    pairs = state_pairs(rows)
    for h, i in pairs:
        def kb(r):
            return "-" if r.get("model_peak_kb") is None else f"{r['model_peak_kb']:,.0f}"

        print(f"| {h['model']} | {h['kind'].label} | {h['context']} | {h['p50_us']:.2f} | {h['invoke_p50_us']:.2f} "
              f"| {h['p50_us'] / h['invoke_p50_us']:.2f}x | {i['p50_us']:.2f} | {i['invoke_p50_us']:.2f} "
              f"| {i['p50_us'] / i['invoke_p50_us']:.2f}x | {h['p50_us'] - h['invoke_p50_us']:.2f} / "
              f"{i['p50_us'] - i['invoke_p50_us']:.2f} | {h['state_bytes']:,} | {kb(h)} / {kb(i)} |")
    for r in (r for r in rows if r["model"] == "spotter-int8"):
        print(f"| spotter-int8 (third-party style, {r['frames']} frames per invoke) | state inside | {r['context']} "
              f"| - | - | - | {r['p50_us']:.2f} | {r['invoke_p50_us']:.2f} | {r['p50_us'] / r['invoke_p50_us']:.2f}x "
              f"| - / {r['p50_us'] - r['invoke_p50_us']:.2f} | {r['state_bytes']:,} | - / {r['model_peak_kb']:,.0f} |")
    print()
    for line in ship_advice(pairs):
        print(f"- {line}")
    print("\n<details><summary>all rows</summary>\n")
    print(render_markdown(rows))
    print("</details>")
    from edgeseq.streams.report import plot_streaming

    png = plot_streaming(rows, out / "streaming.png")
    print(f"\nplot: {png}; store: {out / 'results.db'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
