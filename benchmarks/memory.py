"""Memory benchmark: the model's own memory, measured by the agent and predicted from the file.

    .venv/bin/python benchmarks/memory.py [--models DIR] [--repeats 3] [--lengths 64,256,1024] [--json FILE]

Models (random weights: memory does not depend on training), converted the way `edgeseq convert` does it (auto
route: RNNs fp32 as a WHILE loop; int8 a fused LSTM op or an int8 WHILE loop), cached in DIR:
- the zoo at preset small, T=64, F=16, 10 classes, x {fp32, int8}, plus the RNNs' unrolled int8 route (`int8-unroll`:
  one copy of the cell per time step, so XNNPACK packs its weights 64 times); the GRU's streaming step model x
  {fp32, int8};
- the Transformer and the GRU (fp32, non-streaming) at T = 64, 256, 1024: attention scores are T x T per head, so
  the Transformer's arena should grow quadratically with T; the looped GRU's should grow linearly (its input).

Each model runs in the agent on the local target (1 thread, fresh process, the median of `--repeats` runs); the
table holds the measured model memory (the peak of resident memory less the runtime's code pages, over the same at
the baseline: `memory.model_peak_kb`), the predicted `memory_estimate.total_kb` from `edgeseq inspect`, their ratio,
the arena and XNNPACK parts, the runtime code a first model paged in (`memory.code_kb`, not in either figure) against
its prediction, and the process baseline. The fit
over T is a least-squares line through (log T, log arena). Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

T, F, CLASSES = 64, 16, 10
ARCHS = ("rnn", "lstm", "gru", "transformer")
RECIPES = ("fp32", "int8")
UNROLL = ("int8-unroll",)


def _save(arch: str, out: Path, seq_len: int, **extra) -> Path:
    import keras

    from edgeseq.models.zoo import build_model

    keras.utils.set_random_seed(0)
    name = f"{arch}-small" + (f"-T{seq_len}" if seq_len != T else "")
    model = build_model(arch, "small", seq_len=seq_len, num_features=F, num_outputs=CLASSES, name=name, **extra)
    path = out / f"{name}.keras"
    model.save(path)
    return path


def build_models(out: Path, lengths: tuple[int, ...]) -> dict[str, list[Path]]:
    """{"zoo": [...], "stream": [...], "scaling": [...]}: converted once, then reused from `out`."""
    from edgeseq.quantize.convert import convert_model
    from edgeseq.quantize.stream.convert import convert_stream

    out.mkdir(parents=True, exist_ok=True)
    zoo = [out / f"{a}-small-{r}.tflite" for a in ARCHS for r in (*RECIPES, *(UNROLL if a != "transformer" else ()))]
    stream = [out / f"gru-small-step-{r}.tflite" for r in RECIPES]
    scaling = [out / (f"{a}-small-fp32.tflite" if n == T else f"{a}-small-T{n}-fp32.tflite")
               for a in ("transformer", "gru") for n in lengths]
    for arch in ARCHS:
        recipes = [r for r in (*RECIPES, *(UNROLL if arch != "transformer" else ()))
                   if not (out / f"{arch}-small-{r}.tflite").exists()]
        if recipes:
            print(f"converting {arch} small: {', '.join(recipes)}", file=sys.stderr)
            src = out / f"{arch}-small.keras"
            convert_model(src if src.exists() else _save(arch, out, T), recipes, out_dir=out, name=f"{arch}-small",
                          validate=False)
    if not all(p.exists() for p in stream):
        print("exporting the GRU step model", file=sys.stderr)
        convert_stream(out / "gru-small.keras", list(RECIPES), out_dir=out, name="gru-small", validate=False)
    for arch in ("transformer", "gru"):
        for n in lengths:
            path = out / f"{arch}-small-T{n}-fp32.tflite"
            if n == T or path.exists():
                continue
            print(f"converting {arch} small at T={n}", file=sys.stderr)
            extra = {"max_len": max(n, 256)} if arch == "transformer" else {}
            convert_model(_save(arch, out, n, **extra), ["fp32"], out_dir=out, name=f"{arch}-small-T{n}",
                          validate=False)
    return {"zoo": zoo, "stream": stream, "scaling": scaling}


def measure(path: Path, repeats: int, python: str | None = None) -> dict:
    """The agent's memory figures for `path` (median over `repeats` fresh processes), local target, 1 thread."""
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.runner import AgentOptions, run_agent

    stream = "-step-" in path.name
    opts = AgentOptions(runs=50, warmup=5, threads=1, stream=stream, steps=64 if stream else None)
    runs = [run_agent(LocalTarget(python=python), path, opts)["memory"] for _ in range(repeats)]
    return {key: statistics.median(r[key] for r in runs) for key in ("model_peak_kb", "baseline_kb", "code_kb")} | {
        "method": f"{runs[0]['method']}/{runs[0]['code_method']}"}


def predict(path: Path, runtime: str = "ai_edge_litert") -> dict:
    from edgeseq.quantize.memory_estimate import estimate_memory
    from edgeseq.quantize.tflite.reader import read_tflite

    return estimate_memory(read_tflite(path), runtime)


def _mb(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.2f}"


def _exponent(ts: list[int], ys: list[float]) -> float | None:
    pts = [(math.log(t), math.log(y)) for t, y in zip(ts, ys, strict=True) if y and y > 0]
    if len(pts) < 2:
        return None
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "edgeseq-bench-memory")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lengths", default="64,256,1024")
    p.add_argument("--tflite-runtime", dest="trt", default=None,
                   help="a python with tflite-runtime 2.14 (numpy<2): its measured vs predicted columns too")
    p.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = p.parse_args(argv)
    import platform

    lengths = tuple(int(v) for v in args.lengths.split(","))
    t0, load0 = time.time(), os.getloadavg()[0]
    models = build_models(args.models, lengths)
    rows = []
    for path in models["zoo"] + models["stream"] + [m for m in models["scaling"] if m not in models["zoo"]]:
        m, e = measure(path, args.repeats), predict(path)
        row = {"model": path.stem, "file_kib": path.stat().st_size / 1024, "measured_kb": m["model_peak_kb"],
               "baseline_kb": m["baseline_kb"], "code_kb": m["code_kb"], "method": m["method"], "predicted": e}
        if args.trt:
            row["trt_measured_kb"] = measure(path, args.repeats, args.trt)["model_peak_kb"]
            row["trt_predicted_kb"] = predict(path, "tflite_runtime")["total_kb"]
        rows.append(row)
        print(f"  {path.stem}: measured {m['model_peak_kb']:.0f} kB, predicted {e['total_kb']:.0f} kB", file=sys.stderr)
    by = {r["model"]: r for r in rows}

    print(f"\n### Model memory, measured vs predicted ({platform.machine()}, Python {platform.python_version()}, "
          f"ai-edge-litert, 1 thread, median of {args.repeats} runs; {time.time() - t0:.0f} s, load {load0:.1f})\n")
    trt_head = " tflite-runtime measured MB | predicted MB | ratio |" if args.trt else ""
    print("| model | file KiB | measured model MB | predicted MB | predicted / measured | arena KB | XNNPACK KB "
          f"| code KB measured / predicted | process baseline MB |{trt_head}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.trt else ""))
    for r in rows:
        if "-T" in r["model"] and r["model"] not in [x.stem for x in models["zoo"]]:
            continue
        e = r["predicted"]
        line = (f"| {r['model']} | {r['file_kib']:.1f} | {_mb(r['measured_kb'])} | {_mb(e['total_kb'])} "
                f"| {e['total_kb'] / r['measured_kb']:.3f} | {e['arena_kb']:,.0f} | {e['xnnpack_kb']:,.0f} "
                f"| {r['code_kb']:,.0f} / {e['code_kb']:,.0f} | {_mb(r['baseline_kb'])} |")
        if args.trt:
            line += (f" {_mb(r['trt_measured_kb'])} | {_mb(r['trt_predicted_kb'])} "
                     f"| {r['trt_predicted_kb'] / r['trt_measured_kb']:.3f} |")
        print(line)
    ratios = [r["predicted"]["total_kb"] / r["measured_kb"] for r in rows]
    inside = sum(abs(r["predicted"]["total_kb"] - r["measured_kb"]) <= max(0.2 * r["measured_kb"], 256) for r in rows)
    print(f"\npredicted / measured over all {len(rows)} models: {min(ratios):.3f}-{max(ratios):.3f}; {inside}/{len(rows)} "
          f"within 20 % or 256 kB. Method: {', '.join(sorted({r['method'] for r in rows}))}.")

    print("\n### Non-streaming length scaling (fp32; model memory in MB, arena in KB)\n")
    print("| model | T | measured model MB | predicted MB | ratio | predicted arena KB | measured - predicted non-arena KB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    fits = []
    for arch in ("transformer", "gru"):
        ts, arena_pred, arena_meas = [], [], []
        for n in lengths:
            r = by[f"{arch}-small-fp32" if n == T else f"{arch}-small-T{n}-fp32"]
            e = r["predicted"]
            rest = e["total_kb"] - e["arena_kb"]
            ts.append(n)
            arena_pred.append(e["arena_kb"])
            arena_meas.append(r["measured_kb"] - rest)
            print(f"| {arch} | {n} | {_mb(r['measured_kb'])} | {_mb(e['total_kb'])} "
                  f"| {e['total_kb'] / r['measured_kb']:.3f} | {e['arena_kb']:,.0f} | {r['measured_kb'] - rest:,.0f} |")
        fits.append((arch, _exponent(ts, arena_pred), _exponent(ts[-2:], arena_pred[-2:]), _exponent(ts, arena_meas),
                     _exponent(ts[-2:], arena_meas[-2:])))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    print()

    def exp(v: float | None) -> str:  # None: a measured arena at or below zero (the non-arena parts over-predicted)
        return "n/a" if v is None else f"{v:.2f}"

    for arch, pred, pred_tail, meas, meas_tail in fits:
        print(f"- {arch}: arena ~ T^{exp(pred)} predicted over T = {args.lengths} (T^{exp(pred_tail)} between the "
              f"two longest); measured (model memory less the predicted non-arena parts) T^{exp(meas)} "
              f"(T^{exp(meas_tail)} between the two longest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
