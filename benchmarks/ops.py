"""Per-op time of the zoo's Transformer and GRU (preset small, JapaneseVowels) in fp32 and int8: which op types make
the int8 Transformer slower than fp32 on this machine. Prints markdown tables.

    python benchmarks/ops.py [--work DIR] [--runs-dir DIR] [--runs 500] [--repeat 3] [--epochs 1]

Models: DIR/<arch>-small/model.keras from --runs-dir when it is there, else `edgeseq train --preset small --dataset
japanese_vowels` (latency does not depend on how well the weights are trained: --epochs 1 is enough). Then `edgeseq
convert --recipe fp32,int8 --dataset japanese_vowels` with the default routes (the fp32 GRU keeps its WHILE loop,
the int8 GRU is unrolled) and `edgeseq profile --ops --json --repeat N` on the local target, 1 thread, XNNPACK on.
Per model the figures are the medians over the N runs (each a fresh agent process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ARCHS = ("transformer", "gru")
RECIPES = ("fp32", "int8")


def _edgeseq(*args: str) -> str:
    exe = Path(sys.executable).with_name("edgeseq")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"edgeseq {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return done.stdout


def models(work: Path, runs_dir: Path | None, epochs: int) -> dict[tuple[str, str], Path]:
    out = {}
    for arch in ARCHS:
        keras_file = (runs_dir / f"{arch}-small" / "model.keras") if runs_dir else None
        if keras_file is None or not keras_file.is_file():
            keras_file = work / "runs" / f"{arch}-small" / "model.keras"
            if not keras_file.is_file():
                _edgeseq("train", "--arch", arch, "--preset", "small", "--dataset", "japanese_vowels", "--epochs",
                         str(epochs), "--out", str(keras_file.parent), "--overwrite")
        name = f"{arch}-small"
        wanted = {r: work / "artifacts" / f"{name}-{r}.tflite" for r in RECIPES}
        if not all(p.is_file() for p in wanted.values()):
            _edgeseq("convert", str(keras_file), "--recipe", ",".join(RECIPES), "--dataset", "japanese_vowels",
                     "--out", str(work / "artifacts"), "--name", name)
        out.update({(arch, r): p for r, p in wanted.items()})
    return out


def profile(paths: list[Path], work: Path, runs: int, repeat: int) -> dict[str, list[dict]]:
    text = _edgeseq("profile", *map(str, paths), "--ops", "--json", "--runs", str(runs), "--warmup", "50",
                    "--repeat", str(repeat), "--threads", "1", "--db", str(work / "ops.db"))
    by_model: dict[str, list[dict]] = defaultdict(list)
    for row in json.loads(text)["runs"]:
        by_model[row["model"]].append(row)
    return by_model


def summarize(rows: list[dict]) -> dict:
    """Medians over the repeated runs: p50, the ops' sum, and each op type's µs per invoke."""
    types: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    for r in rows:
        for t in r.get("op_types") or []:
            types[t["type"]].append(t["mean_us"])
            counts[t["type"]] = t["count"]
    med = statistics.median
    return {
        "p50_us": med(r["p50_us"] for r in rows),
        "ops_sum_us": med(r["ops_sum_us"] for r in rows) if rows[0].get("ops_route") else None,
        "route": rows[0].get("ops_route"),
        "reason": rows[0].get("ops_reason"),
        "n_ops": len(rows[0].get("ops") or []),
        "calls": sum(op["calls"] for op in rows[0].get("ops") or []),
        "types": {k: med(v) for k, v in types.items()},
        "counts": counts,
    }


def _f(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def report(s: dict[tuple[str, str], dict]) -> str:
    out = ["## Per model (medians over the repeats)", "",
           "| model | p50 µs | ops | op calls/invoke | sum of ops µs | sum / p50 | top op types (µs per invoke) |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for (arch, recipe), m in s.items():
        top = sorted(m["types"].items(), key=lambda kv: -kv[1])[:4]
        cov = m["ops_sum_us"] / m["p50_us"] if m["ops_sum_us"] else None
        out.append(f"| {arch} {recipe} | {_f(m['p50_us'])} | {m['n_ops']} | {m['calls']} | {_f(m['ops_sum_us'])} | "
                   f"{_f(cov)} | " + ", ".join(f"{k} {v:.2f}" for k, v in top) + " |")
    for arch in ARCHS:
        a, b = s[(arch, "fp32")], s[(arch, "int8")]
        delta = b["p50_us"] - a["p50_us"]
        out += ["", f"## {arch}: op types, fp32 vs int8 (µs per invoke)", "",
                f"p50 fp32 {a['p50_us']:.2f} µs, int8 {b['p50_us']:.2f} µs: int8/fp32 {b['p50_us'] / a['p50_us']:.2f}, "
                f"difference {delta:+.2f} µs.", "",
                "| op type | ops fp32 | µs fp32 | ops int8 | µs int8 | int8 - fp32 | share of the p50 difference | cumulative |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        names = sorted(set(a["types"]) | set(b["types"]),
                       key=lambda k: -(b["types"].get(k, 0.0) - a["types"].get(k, 0.0)))
        cum = 0.0
        for k in names:
            d = b["types"].get(k, 0.0) - a["types"].get(k, 0.0)
            share = d / delta if delta > 0 else None  # what explains a slowdown (int8 faster: no shares)
            cum += share or 0.0
            out.append(f"| {k} | {a['counts'].get(k, 0)} | {_f(a['types'].get(k))} | {b['counts'].get(k, 0)} | "
                       f"{_f(b['types'].get(k))} | {d:+.2f} | "
                       + (f"{100 * share:.0f}% | {100 * cum:.0f}% |" if share is not None else "- | - |"))
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("bench-ops"))
    ap.add_argument("--runs-dir", type=Path, default=None, help="folder with <arch>-small/model.keras")
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    paths = models(a.work, a.runs_dir, a.epochs)
    rows = profile(list(paths.values()), a.work, a.runs, a.repeat)
    summary = {key: summarize(rows[p.stem]) for key, p in paths.items()}
    for key, m in summary.items():
        if m["route"] is None:
            print(f"note: {key}: per-op time not measured: {m['reason']}")
    print(report(summary))


if __name__ == "__main__":
    main()
