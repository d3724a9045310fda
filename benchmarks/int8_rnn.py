"""int8 RNN routes benchmark (issue 11): size, parity, accuracy, latency and convert time per route and length.

    .venv/bin/python benchmarks/int8_rnn.py [--archs gru,lstm] [--lengths 64,256,1024] [--epochs 40]
                                           [--fsdd DIR [--fsdd-epochs 15]]

Trains each architecture at preset small once on JapaneseVowels pre-padded (zeros before the 29 real steps, as the
data set itself pads) to T=64, cached under --cache. The same weights are rebuilt at every T, and the data is
pre-padded to that T, so accuracy is measured at every length. Per (arch, T): fp32 (looped, the yardstick), int8
with --rnn-strategy auto (what `edgeseq convert --recipe int8` does: its time includes every route it tried and both
weight-scale conversions), then every other int8 route forced. Latency: LiteRT, one thread, median of 300 invokes
after 30 warm-ups, in a fresh process. With `--fsdd DIR` (a folder holding FSDD's recordings/, e.g.
/work/shared/datasets/fsdd), each architecture is also trained on FSDD's log-mel features (T=49, F=32, 10 digits,
2700 train / 300 test) and its fp32 and int8 (auto) files are compared there: the accuracy floor is asked on both
data sets. Prints a markdown table and the floors. Not a test: CPU-heavy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert import latency_us  # noqa: E402 - benchmarks/convert.py: the same latency measurement

ROUTES = {"lstm": ("fused", "loop", "unroll"), "gru": ("loop", "unroll")}


def padded(ds, length: int):
    """JapaneseVowels with zeros before the real steps up to `length` (its own padding, extended)."""
    import numpy as np

    from edgeseq.datasets.base import Dataset

    def pad(X):
        out = np.zeros((len(X), length, X.shape[2]), np.float32)
        out[:, length - X.shape[1]:] = X
        return out

    return Dataset(f"{ds.name}-pad{length}", ds.task, pad(ds.X_train), ds.y_train, pad(ds.X_test), ds.y_test,
                   num_classes=ds.num_classes, class_names=ds.class_names, meta=dict(ds.meta))


def trained(arch: str, ds64, cache: Path, epochs: int, tag: str = "jv64") -> Path:
    run_dir = cache / f"{arch}-small-{tag}"
    if (run_dir / "model.keras").exists():
        return run_dir / "model.keras"
    from edgeseq.models.train import TrainOptions, train_model

    started = time.perf_counter()
    res = train_model(arch, ds64, run_dir, preset="small", options=TrainOptions(epochs=epochs, patience=8),
                      overwrite=True)
    print(f"  trained {arch}-small ({tag}, {epochs} epochs max) in {time.perf_counter() - started:.0f} s: "
          f"{res.record['test_metrics']}", file=sys.stderr, flush=True)
    return res.model_path


def at_length(model_path: Path, arch: str, length: int, ds) -> Path:
    """The trained weights in a model built for `length` steps."""
    out = model_path.parent / f"T{length}" / "model.keras"
    if out.exists():
        return out
    import keras

    from edgeseq.models.zoo import build_model

    src = keras.models.load_model(model_path)
    model = build_model(arch, "small", seq_len=length, num_features=ds.num_features, num_outputs=ds.output_dim)
    model.set_weights(src.get_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out


def model_memory_kb(path: Path) -> float | None:
    """The agent's model memory (memory.model_peak_kb: peak less the baseline and the runtime's code), LiteRT, one
    thread, the median of five fresh processes (one run to the next varies by a few 4 kB pages)."""
    import statistics

    from edgeseq.core.errors import EdgeseqError
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.runner import AgentOptions, run_agent

    try:
        runs = [run_agent(LocalTarget(), path, AgentOptions(runs=30, warmup=3, threads=1))["memory"]["model_peak_kb"]
                for _ in range(5)]
    except EdgeseqError:
        return None
    return statistics.median(runs)


def input_kb(path: Path) -> float:
    """The model's input tensors (a whole-sequence model holds its [1, T, F] input in its arena: 4 bytes per value in
    float, on every route)."""
    from edgeseq.quantize.tflite.reader import read_tflite

    f = read_tflite(path)
    sg = f.model.subgraphs[0]
    return sum(f.tensor_bytes(sg.tensors[int(i)]) for i in sg.inputs) / 1024


def row_of(res, fp32_bytes: int | None) -> dict:
    if not res.ok:
        return {"recipe": res.recipe.slug, "error": res.error.one_line()[:200]}
    m, v = res.manifest, res.validation
    tm, km = v.get("tflite_metrics") or {}, v.get("keras_metrics") or {}
    size = m["artifact"]["bytes"]
    return {"recipe": res.recipe.slug, "route": m["route"]["rnn"], "bytes": size,
            "scales": {"per-channel": "pc", "per-tensor": "pt"}.get(m["route"].get("weight_scales"), "-"),
            # both files auto made (route.granularity.candidates): size flatness per weight-scale kind
            "candidate_bytes": {k: c["bytes"] for k, c in
                                (m["route"].get("granularity") or {}).get("candidates", {}).items() if "bytes" in c},
            "ratio": size / fp32_bytes if fp32_bytes else None, "parity": v.get("passed"),
            "mean_abs_diff": v.get("mean_abs_diff"),
            "acc_delta_pts": (tm["accuracy"] - km["accuracy"]) * 100 if "accuracy" in tm else None,
            "convert_validate_s": m["timing"]["convert_s"] + m["timing"]["validate_s"]
                                  + m["timing"].get("rnn_fallback_s", 0.0),
            "latency_us": latency_us(res.tflite_path), "model_kb": model_memory_kb(res.tflite_path),
            "input_kb": input_kb(res.tflite_path),
            "path": str(res.tflite_path), "reason": m["route"].get("rnn_reason", "")}


def bench(arch: str, length: int, model_path: Path, ds, out: Path, every_route: bool = True) -> list[dict]:
    from edgeseq.quantize.convert import convert_model

    def one(recipe: str):
        started = time.perf_counter()
        [res] = convert_model(model_path, [recipe], out_dir=out, calibration=ds, raise_on_error=False)
        print(f"  {arch} T={length} {recipe}: {time.perf_counter() - started:.0f} s"
              f"{'' if res.ok else ' FAILED ' + res.error.one_line()[:160]}", file=sys.stderr, flush=True)
        return res

    fp32 = one("fp32")
    fp32_bytes = fp32.manifest["artifact"]["bytes"] if fp32.ok else None
    rows = [row_of(fp32, fp32_bytes)]
    auto = one("int8")
    rows.append(row_of(auto, fp32_bytes))
    for route in ROUTES[arch] if every_route else ():
        if auto.ok and auto.manifest["route"]["rnn"] == route:
            continue
        rows.append(row_of(one(f"int8-{route}"), fp32_bytes))
    for r in rows:
        r.update(arch=arch, T=length, dataset=ds.name.split("-pad")[0])
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data | arch | T | recipe | route | scales | size KB | x fp32 | parity (mean abs diff) | acc delta pts | "
             "latency p50 us | model memory KB | convert+validate s |",
             "|---|---|---:|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        data = r.get("dataset", "japanese_vowels")
        if "error" in r:
            lines.append(f"| {data} | {r['arch']} | {r['T']} | {r['recipe']} | - | - | - | - | fails: "
                         f"{r['error'][:120]} | - | - | - | - |")
            continue
        lat = f"{r['latency_us']:.0f}" if r["latency_us"] is not None else "n/a"
        acc = f"{r['acc_delta_pts']:+.2f}" if r["acc_delta_pts"] is not None else "n/a"
        parity = {True: "ok", False: "FAIL", None: "n/a"}[r["parity"]]
        mem = f"{r['model_kb']:.0f}" if r.get("model_kb") is not None else "-"
        lines.append(f"| {data} | {r['arch']} | {r['T']} | {r['recipe']} | {r['route']} | {r.get('scales', '-')} | "
                     f"{r['bytes'] / 1024:.1f} | {r['ratio']:.2f} | {parity} ({r['mean_abs_diff']:.1e}) | {acc} | "
                     f"{lat} | {mem} | {r['convert_validate_s']:.1f} |")
    return "\n".join(lines)


def memory_growth(lo: dict, hi: dict) -> str:
    """Model memory from the shortest to the longest T: as measured, then less the input tensor (which any
    whole-sequence model holds, fp32 too), and what each added time step costs."""
    if not (lo.get("model_kb") and hi.get("model_kb")):
        return ""
    grew = hi["model_kb"] / lo["model_kb"] - 1
    text = f"; model memory T={lo['T']}->{hi['T']} {lo['model_kb']:.0f}->{hi['model_kb']:.0f} KB {grew:+.1%} "
    text += f"({'ok' if abs(grew) <= 0.10 else 'MISSED'})"
    if lo.get("input_kb") is not None and hi.get("input_kb") is not None:
        a, b = lo["model_kb"] - lo["input_kb"], hi["model_kb"] - hi["input_kb"]
        per_step = (hi["model_kb"] - lo["model_kb"]) * 1024 / (hi["T"] - lo["T"])
        text += f", less the input tensor {a:.0f}->{b:.0f} KB {b / a - 1:+.1%}, {per_step:.0f} B per added step"
    return text


def floors(rows: list[dict]) -> str:
    out = ["Floors: int8 <= 0.35x fp32 at every T; size flat in T (within 10 % from the shortest to the longest T); "
           "convert + validate at T=1024 <= 60 s; int8 (auto) accuracy within 1.0 pt of float on every data set. "
           "Per route (auto = what `--recipe int8` kept):", ""]
    for data in dict.fromkeys(r.get("dataset", "japanese_vowels") for r in rows):
        for r in rows:
            if (r.get("dataset", "japanese_vowels") == data and r["recipe"] == "int8" and "error" not in r
                    and r["acc_delta_pts"] is not None):
                out.append(f"- accuracy, {data}, {r['arch']} T={r['T']}: int8 {r['acc_delta_pts']:+.2f} pts vs float "
                           f"({'ok' if r['acc_delta_pts'] >= -1.0 - 1e-9 else 'MISSED'})")
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = [r for r in rows if r["arch"] == arch and r["recipe"] != "fp32" and "error" not in r
                and r.get("dataset", "japanese_vowels") == "japanese_vowels"]
        routes = {"auto": [r for r in mine if r["recipe"] == "int8"]}
        for r in mine:
            routes.setdefault(r["route"], []).append(r)  # auto's file counts for the route it kept too
        for name, rs in routes.items():
            if not rs:
                continue
            lo, hi = min(rs, key=lambda r: r["T"]), max(rs, key=lambda r: r["T"])
            growth = hi["bytes"] / lo["bytes"] - 1
            mem = memory_growth(lo, hi)
            scales = sorted({r.get("scales", "-") for r in rs})
            ratios = ", ".join(f"T={r['T']} {r['ratio']:.3f}x" for r in sorted(rs, key=lambda r: r["T"]))
            both = [r.get("candidate_bytes") or {} for r in (lo, hi)]
            same = "; ".join(f"{k} only {both[1][k] / both[0][k] - 1:+.1%}" for k in both[0] if k in both[1])
            out.append(f"- {arch} {name}: {ratios} ({'ok' if all(r['ratio'] <= 0.35 for r in rs) else 'MISSED'}); "
                       f"T={lo['T']}->{hi['T']} {growth:+.1%} ({'ok' if abs(growth) <= 0.10 else 'MISSED'}"
                       f"{'' if len(scales) == 1 else ', weight scales ' + '/'.join(scales) + ' differ by T'}"
                       f"{'; ' + same if same and len(scales) > 1 else ''}){mem}; "
                       f"convert+validate {hi['convert_validate_s']:.1f} s at T={hi['T']} "
                       f"({'ok' if hi['convert_validate_s'] <= 60 else 'MISSED'})")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="gru,lstm")
    ap.add_argument("--lengths", default="64,256,1024")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--cache", default="benchmarks/results/int8-rnn-cache")
    ap.add_argument("--fsdd", default=None, metavar="DIR",
                    help="Also train on FSDD (recordings/ under DIR) and compare float and int8 accuracy there.")
    ap.add_argument("--fsdd-epochs", type=int, default=15)
    ap.add_argument("--skip-jv", action="store_true", help="Only the FSDD part (with --fsdd).")
    ap.add_argument("--add-memory", action="store_true",
                    help="With --from-json: measure the model memory of rows that lack it (their files must exist).")
    ap.add_argument("--remeasure-memory", action="store_true",
                    help="With --from-json: measure the model memory of every row again (e.g. after an agent change).")
    ap.add_argument("--json", dest="json_out", default=None, help="Also write the raw rows here.")
    ap.add_argument("--from-json", default=None, help="Only print the table of an earlier --json file.")
    args = ap.parse_args()
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
        if args.add_memory or args.remeasure_memory:  # rows written before the column, or before an agent change
            for r in rows:
                if ("error" not in r and (args.remeasure_memory or r.get("model_kb") is None) and r.get("path")
                        and Path(r["path"]).exists()):
                    r["model_kb"] = model_memory_kb(Path(r["path"]))
                    r["input_kb"] = input_kb(Path(r["path"]))
            Path(args.from_json).write_text(json.dumps(rows, indent=1))
    else:
        from edgeseq.datasets import load_dataset

        jv = load_dataset("japanese_vowels")
        cache = Path(args.cache)
        rows = []
        for arch in args.archs.split(",") if not args.skip_jv else ():
            base = trained(arch, padded(jv, 64), cache, args.epochs)
            for length in (int(t) for t in args.lengths.split(",")):
                ds = padded(jv, length)
                rows += bench(arch, length, at_length(base, arch, length, ds), ds,
                              cache / "out" / f"{arch}-T{length}")
                if args.json_out:
                    Path(args.json_out).write_text(json.dumps(rows, indent=1))
        if args.fsdd:
            fsdd = load_dataset("fsdd", data_dir=args.fsdd)
            for arch in args.archs.split(","):
                model = trained(arch, fsdd, cache, args.fsdd_epochs, tag="fsdd")
                rows += bench(arch, fsdd.X_test.shape[1], model, fsdd, cache / "out" / f"{arch}-fsdd",
                              every_route=False)
                if args.json_out:
                    Path(args.json_out).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    print()
    print(floors(rows))


if __name__ == "__main__":
    main()
