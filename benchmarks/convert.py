"""Conversion benchmark: per architecture (preset small) and recipe, size, time, parity, accuracy and latency.

    .venv/bin/python benchmarks/convert.py [--datasets japanese_vowels,fsdd] [--epochs 40] [--cache DIR]

Trains each model once (cached under --cache, by default benchmarks/results/, which git ignores), converts it with every
recipe through `convert_model` (child process, LiteRT validation), then times each .tflite on LiteRT with one thread
in a fresh process (median of 300 invokes after 30 warm-ups). Prints markdown tables and the floors of issue 3.
Not a test: it takes tens of minutes on 2 shared cores. FSDD needs EDGESEQ_DATA_DIR (or --data-dir).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RECIPES = ["fp32", "fp16", "dynamic", "int8", "int16x8"]
ARCHS = ["rnn", "lstm", "gru", "transformer"]
LATENCY_CODE = """
import sys, time, numpy as np
from edgeseq.quantize.runtime import load_interpreter
i = load_interpreter(sys.argv[1], num_threads=1)
d = i.get_input_details()[0]
x = np.random.default_rng(0).standard_normal(d['shape']).astype(np.float32)
if np.issubdtype(d['dtype'], np.integer):
    s, z = d['quantization']; x = np.clip(np.round(x / s + z), -128, 127).astype(d['dtype'])
i.set_tensor(d['index'], x)
for _ in range(30): i.invoke()
ts = []
for _ in range(300):
    t = time.perf_counter_ns(); i.invoke(); ts.append(time.perf_counter_ns() - t)
print(float(np.median(ts)) / 1000.0)
"""


def latency_us(path: Path) -> float | None:
    proc = subprocess.run([sys.executable, "-c", LATENCY_CODE, str(path)], capture_output=True, text=True, timeout=300)
    return float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def trained_model(arch: str, preset: str, dataset, cache: Path, epochs: int) -> Path:
    run_dir = cache / f"{arch}-{preset}-{dataset.name}"
    if (run_dir / "model.keras").exists():
        return run_dir / "model.keras"
    from edgeseq.models.train import TrainOptions, train_model

    started = time.perf_counter()
    result = train_model(arch, dataset, run_dir, preset=preset, options=TrainOptions(epochs=epochs, patience=8),
                         overwrite=True)
    print(f"  trained {arch}-{preset} on {dataset.name} in {time.perf_counter() - started:.0f} s: "
          f"{result.record['test_metrics']}", file=sys.stderr, flush=True)
    return result.model_path


def bench_model(model_path: Path, dataset, out_dir: Path) -> list[dict]:
    from edgeseq.quantize.convert import convert_model

    results = convert_model(model_path, RECIPES, out_dir=out_dir, calibration=dataset, raise_on_error=False)
    fp32 = next((r.manifest["artifact"]["bytes"] for r in results if r.ok and r.recipe.mode == "fp32"), None)
    rows = []
    for r in results:
        row = {"recipe": r.recipe.slug}
        if not r.ok:
            rows.append(row | {"error": r.error.one_line()})
            continue
        m, v = r.manifest, r.validation
        size = m["artifact"]["bytes"]
        tm, km = v.get("tflite_metrics", {}), v.get("keras_metrics", {})
        row |= {
            "route": m["route"]["rnn"],
            "kb": size / 1024,
            "ratio": size / fp32 if fp32 else None,
            "convert_validate_s": m["timing"]["convert_s"] + m["timing"]["validate_s"],
            "parity": v["passed"],
            "max_abs_diff": v["max_abs_diff"],
            "acc": tm.get("accuracy"),
            "acc_delta_pts": (tm["accuracy"] - km["accuracy"]) * 100 if "accuracy" in tm else None,
            "keras_acc": km.get("accuracy"),
            "latency_us": latency_us(r.tflite_path),
            "quantized_share": m["dtype_coverage"]["quantized_share"],
        }
        rows.append(row)
    return rows


def table(dataset: str, arch_rows: dict[str, list[dict]]) -> str:
    lines = [f"### {dataset}", "",
             "| arch | recipe | route | size KB | x fp32 | convert+validate s | parity (max abs diff) | "
             "acc (Keras) | delta pts | latency us (1 thr) |",
             "|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for arch, rows in arch_rows.items():
        for r in rows:
            if "error" in r:
                reason = r["error"].split("ai-edge-litert: ")[-1].split("refused: ")[-1].rsplit(" (", 1)[0][:110]
                lines.append(f"| {arch} | {r['recipe']} | - | - | - | - | fails: {reason} | - | - | - |")
                continue
            lat = f"{r['latency_us']:.0f}" if r["latency_us"] is not None else "n/a"
            lines.append(
                f"| {arch} | {r['recipe']} | {r['route']} | {r['kb']:.1f} | {r['ratio']:.2f} | "
                f"{r['convert_validate_s']:.1f} | {'ok' if r['parity'] else 'FAIL'} ({r['max_abs_diff']:.1e}) | "
                f"{r['acc']:.4f} ({r['keras_acc']:.4f}) | {r['acc_delta_pts']:+.2f} | {lat} |"
            )
    return "\n".join(lines)


def floors(all_rows: dict[str, dict[str, list[dict]]]) -> str:
    out = ["### Floors (issue 3)", ""]
    for ds, arch_rows in all_rows.items():
        for arch, rows in arch_rows.items():
            int8 = next((r for r in rows if r["recipe"] == "int8" and "error" not in r), None)
            if int8 is None:
                out.append(f"- {ds}/{arch}: int8 did not convert")
                continue
            acc_ok = abs(int8["acc_delta_pts"]) <= 1.0 or int8["acc_delta_pts"] > 0
            size = (f"{int8['ratio']:.2f}x fp32 ({'<= 0.35 ok' if int8['ratio'] <= 0.35 else '> 0.35 MISSED'})"
                    if int8["route"] != "unroll" else f"{int8['ratio']:.2f}x fp32 (unrolled: floor n/a)")
            slowest = max(r["convert_validate_s"] for r in rows if "error" not in r)
            out.append(f"- {ds}/{arch}: int8 accuracy delta {int8['acc_delta_pts']:+.2f} pts "
                       f"({'ok' if acc_ok else 'MISSED'}); size {size}; slowest convert+validate {slowest:.1f} s "
                       f"({'ok' if slowest <= 60 else 'MISSED'})")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="japanese_vowels,fsdd")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--cache", default="benchmarks/results/convert-cache")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", dest="json_out", default=None, help="Also write the raw rows here.")
    ap.add_argument("--from-json", default=None, help="Only print the tables of an earlier --json file.")
    args = ap.parse_args()
    if args.from_json:
        all_rows = json.loads(Path(args.from_json).read_text())
        for ds, arch_rows in all_rows.items():
            print(table(ds, arch_rows) + "\n")
        print(floors(all_rows))
        return

    from edgeseq.datasets import load_dataset

    cache = Path(args.cache)
    all_rows: dict[str, dict[str, list[dict]]] = {}
    for spec in args.datasets.split(","):
        dataset = load_dataset(spec, data_dir=args.data_dir)
        all_rows[dataset.name] = {}
        for arch in args.archs.split(","):
            print(f"{dataset.name} / {arch}", file=sys.stderr, flush=True)
            model = trained_model(arch, args.preset, dataset, cache, args.epochs)
            all_rows[dataset.name][arch] = bench_model(model, dataset, cache / "artifacts" / dataset.name)
            print(table(dataset.name, {arch: all_rows[dataset.name][arch]}), file=sys.stderr, flush=True)
    for ds, arch_rows in all_rows.items():
        print(table(ds, arch_rows) + "\n")
    print(floors(all_rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(all_rows, indent=2))


if __name__ == "__main__":
    main()
