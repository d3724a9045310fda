"""Quantization that pays (issue 23): the zoo at preset small x {fp32, dynamic, int8, int8 --float-ops auto, int4w}.

    .venv/bin/python benchmarks/quantization.py [--archs rnn,lstm,gru,transformer] [--fsdd DIR] [--lengths 64,1024]
                                               [--db STORE] [--from-json FILE]

Per data set (JapaneseVowels at its own T=29; FSDD's log-mel features at T=49 with `--fsdd DIR`, e.g.
/work/shared/datasets/fsdd), each architecture is trained once (cached under --cache, shared with
benchmarks/convert.py) and converted with each recipe through `convert_model` (child processes, LiteRT validation
against Keras on the test split): size and its ratio to fp32, parity, accuracy delta against the Keras model,
model memory (the agent's model_peak_kb, median of 5 fresh processes) and p50 latency (LiteRT, one thread, 300
invokes after 30 warm-ups in a fresh process; the median of 3 rounds that take every file of one model in turn, so
the ratios compare figures measured side by side). `int8-float+auto` decides from the stored `profile --ops` runs of
`local` in --db when there are any, else the x86-64 default table (the manifest says which).
Then GRU and LSTM trained on JapaneseVowels pre-padded to T=64 (benchmarks/int8_rnn.py's models) are rebuilt at each
of --lengths and converted fp32 and int4w: the 4-bit file's size at every T (a WHILE loop: constant in T).
Prints markdown tables and the floors of issue 23; writes the rows to benchmarks/results/quantization.json.
Not a test: tens of minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from convert import latency_us, trained_model  # noqa: E402 - benchmarks/convert.py: training cache and latency
from int8_rnn import at_length, model_memory_kb, padded, trained  # noqa: E402 - the same models and memory

RECIPES = ["fp32", "dynamic", "int8", "int8-float+auto", "int4w"]
ROUNDS = 3


def convert_rows(model_path: Path, ds, out: Path, recipes: list[str], evidence: dict | None, tag: dict) -> list[dict]:
    from edgeseq.quantize.convert import convert_model

    results = convert_model(model_path, recipes, out_dir=out, calibration=ds, raise_on_error=False, strict=False,
                            op_evidence=evidence)
    fp32 = next((r.manifest["artifact"]["bytes"] for r in results if r.ok and r.recipe.slug == "fp32"), None)
    rows = []
    for r in results:
        row = {**tag, "recipe": r.recipe.slug}
        if not r.ok:
            rows.append(row | {"error": r.error.one_line()[:240]})
            continue
        m, v = r.manifest, r.validation
        tm, km = v.get("tflite_metrics") or {}, v.get("keras_metrics") or {}
        kept = (m["route"].get("float_ops") or {})
        rows.append(row | {
            "bytes": m["artifact"]["bytes"], "ratio": m["artifact"]["bytes"] / fp32 if fp32 else None,
            "route": m["route"]["rnn"], "parity": v.get("passed"), "accuracy": tm.get("accuracy"),
            "keras_accuracy": km.get("accuracy"),
            "acc_delta_pts": (tm["accuracy"] - km["accuracy"]) * 100 if "accuracy" in tm and "accuracy" in km else None,
            "float_ops": kept.get("ops"), "float_ops_source": kept.get("source"),
            "model_kb": model_memory_kb(r.tflite_path), "path": str(r.tflite_path)})
        print(f"  {tag} {r.recipe.slug}: {rows[-1]['bytes'] / 1024:.1f} KiB, acc {rows[-1]['acc_delta_pts']}",
              file=sys.stderr, flush=True)
    return rows


def add_latency(rows: list[dict]) -> None:
    """p50 of every file: ROUNDS rounds over the rows of one model, interleaved, the median per file."""
    samples: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for r in rows:
            if r.get("path"):
                us = latency_us(Path(r["path"]))
                if us is not None:
                    samples.setdefault(r["path"], []).append(us)
    for r in rows:
        got = samples.get(r.get("path") or "")
        r["p50_us"] = statistics.median(got) if got else None
        r["p50_rounds"] = got


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: list[dict]) -> str:
    head = ("| data | model | recipe | size KiB | x fp32 | p50 µs | x fp32 p50 | model memory KiB | accuracy | "
            "delta pts | parity | kept float |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|")
    lines = [head]
    base = {(r["data"], r["arch"]): r for r in rows if r["recipe"] == "fp32" and "error" not in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | {r['arch']} | `{r['recipe']}` | refused: {r['error']} |||||||||")
            continue
        b = base.get((r["data"], r["arch"]), {})
        speed = r["p50_us"] / b["p50_us"] if r.get("p50_us") and b.get("p50_us") else None
        lines.append(f"| {r['data']} | {r['arch']} | `{r['recipe']}` | {r['bytes'] / 1024:.1f} | "
                     f"{_f(r['ratio'], '.3f')} | {_f(r.get('p50_us'), '.1f')} | {_f(speed, '.2f')} | "
                     f"{_f(r.get('model_kb'), '.0f')} | {_f(r['accuracy'], '.4f')} | "
                     f"{_f(r['acc_delta_pts'], '+.2f')} | {'ok' if r['parity'] else 'FAILED'} | "
                     f"{','.join(r.get('float_ops') or []) or '-'} |")
    return "\n".join(lines)


def length_table(rows: list[dict]) -> str:
    lines = ["| model | T | fp32 KiB | int4w KiB | x fp32 | delta pts | parity |", "|---|--:|--:|--:|--:|--:|---|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['T']} | {r['fp32_bytes'] / 1024:.1f} | {r['bytes'] / 1024:.1f} | "
                     f"{r['ratio']:.3f} | {_f(r['acc_delta_pts'], '+.2f')} | {'ok' if r['parity'] else 'FAILED'} |")
    return "\n".join(lines)


def floors(rows: list[dict], lengths: list[dict]) -> list[str]:
    out = []

    def get(data, arch, recipe):
        return next((r for r in rows if (r["data"], r["arch"], r["recipe"]) == (data, arch, recipe)
                     and "error" not in r), None)

    fp32, sel, i4 = (get("japanese_vowels", "transformer", k) for k in ("fp32", "int8-float+auto", "int4w"))
    if fp32 and sel:
        ok = sel["p50_us"] <= fp32["p50_us"] and sel["ratio"] <= 0.5 and abs(sel["acc_delta_pts"]) <= 0.5
        out.append(f"- Transformer JV int8 --float-ops auto: p50 {sel['p50_us']:.1f} vs fp32 {fp32['p50_us']:.1f} µs, "
                   f"size {sel['ratio']:.3f}x, accuracy {sel['acc_delta_pts']:+.2f} pt: {'MET' if ok else 'NOT MET'}")
    if fp32 and i4:
        ok = i4["ratio"] <= 0.25 and abs(i4["acc_delta_pts"]) <= 1.0
        out.append(f"- Transformer JV int4w: size {i4['ratio']:.3f}x, accuracy {i4['acc_delta_pts']:+.2f} pt: "
                   f"{'MET' if ok else 'NOT MET'}")
    for arch in sorted({r["arch"] for r in lengths}):
        mine = [r for r in lengths if r["arch"] == arch]
        ok = all(r["ratio"] <= 0.25 and r["acc_delta_pts"] is not None and abs(r["acc_delta_pts"]) <= 1.0
                 for r in mine) and len({r["bytes"] for r in mine}) == 1
        out.append(f"- {arch} int4w at T=" + ", ".join(f"{r['T']}: {r['bytes']} B = {r['ratio']:.3f}x fp32, "
                                                      f"{r['acc_delta_pts']:+.2f} pt" for r in mine)
                   + f" (constant in T: {len({r['bytes'] for r in mine}) == 1}): {'MET' if ok else 'NOT MET'}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="rnn,lstm,gru,transformer")
    ap.add_argument("--fsdd", default=None, help="a folder holding FSDD's recordings/")
    ap.add_argument("--lengths", default="64,1024")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--fsdd-epochs", type=int, default=15)
    ap.add_argument("--db", default=None, help="results store whose profile --ops runs decide --float-ops auto")
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--from-json", default=None, help="print the tables of an earlier run")
    args = ap.parse_args()
    cache = Path(args.cache)
    out_json = cache / "quantization.json"
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
    else:
        from edgeseq.datasets import load_dataset
        from edgeseq.profiling.ops import stored_op_evidence

        evidence = stored_op_evidence(args.db, "local") if args.db else None
        sets = [load_dataset("japanese_vowels")]
        if args.fsdd:
            sets.append(load_dataset("fsdd", data_dir=args.fsdd))
        rows: list[dict] = []
        for ds in sets:
            for arch in args.archs.split(","):
                epochs = args.fsdd_epochs if ds.name == "fsdd" else args.epochs
                model = trained_model(arch, "small", ds, cache, epochs)
                mine = convert_rows(model, ds, cache / "quant" / f"{arch}-{ds.name}", RECIPES, evidence,
                                    {"data": ds.name, "arch": arch, "T": int(ds.X_test.shape[1])})
                add_latency(mine)
                rows += mine
        lengths: list[dict] = []
        jv = load_dataset("japanese_vowels")
        for arch in ("gru", "lstm"):
            base = trained(arch, padded(jv, 64), cache, args.epochs)
            for T in [int(t) for t in args.lengths.split(",")]:
                ds = padded(jv, T)
                fp32, i4 = convert_rows(at_length(base, arch, T, ds), ds, cache / "quant" / f"{arch}-jv-T{T}",
                                        ["fp32", "int4w"], None, {"data": ds.name, "arch": arch, "T": T})
                if "error" not in i4:
                    lengths.append(i4 | {"fp32_bytes": fp32.get("bytes")})
        saved = {"rows": rows, "lengths": lengths}
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(saved, indent=1))
    print(table(saved["rows"]))
    print()
    print(length_table(saved["lengths"]))
    print()
    print("\n".join(floors(saved["rows"], saved["lengths"])))


if __name__ == "__main__":
    main()
