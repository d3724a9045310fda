"""Scaling benchmark (issue 13): the textbook comparison measured with `edgeseq sweep --mode cost` on this machine.

    .venv/bin/python benchmarks/scaling.py [--lengths 16,32,...,2048] [--archs gru,lstm,transformer-causal]
                                           [--recipes fp32,int8] [--out /tmp/edgeseq-bench-scaling] [--runs 30]

GRU, LSTM and the causal Transformer at preset small, untrained (latency and memory do not depend on the weights),
fp32 and int8, whole-sequence and streaming (RNN state / KV cache), profiled locally with one thread. Then the same
sweep again, which has nothing left to do: its wall time is the resume overhead. Prints (and writes to
benchmarks/results/scaling.md) the fitted exponents with their 95% CIs, the crossover lengths, the per-step
streaming ratios and the two wall times. Not a test: CPU-heavy (tens of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _fit_text(fit: dict | None) -> str:
    if not fit:
        return "-"
    lo, hi = fit["ci95"]
    return f"{fit['exponent']:.2f} [{lo:.2f}, {hi:.2f}] (n {min(fit['lengths'])}..{max(fit['lengths'])})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="16,32,...,2048")
    ap.add_argument("--archs", default="gru,lstm,transformer-causal")
    ap.add_argument("--recipes", default="fp32,int8")
    ap.add_argument("--out", default="/tmp/edgeseq-bench-scaling")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--hop-ms", type=float, default=10.0)
    ap.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    args = ap.parse_args()

    from edgeseq.sweep.claims import claims_markdown, textbook_claims
    from edgeseq.sweep.grid import spec_from_options
    from edgeseq.sweep.rows import failed_cells, sweep_rows
    from edgeseq.sweep.run import run_sweep
    from edgeseq.sweep.scaling import crossovers, scaling_fits, streaming_costs

    out = Path(args.out)
    db = out / "results.db"
    spec = spec_from_options({"mode": "cost", "arch": args.archs, "preset": "small", "seq_len": args.lengths,
                              "recipe": args.recipes, "stream": True, "target": "local", "runs": args.runs,
                              "warmup": 5, "jobs": args.jobs, "hop_ms": args.hop_ms, "out": str(out / "sweep"),
                              "db": str(db), "retry_failed": args.retry_failed or None})
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    first = run_sweep(spec, say=say)
    sweep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = run_sweep(replace(spec, retry_failed=False), say=say)  # nothing left: the resume overhead
    resume_s = time.perf_counter() - t0

    rows = sweep_rows(db)
    lines = ["# Scaling benchmark (edgeseq sweep --mode cost)", "",
             f"`{' '.join(sys.argv)}`: {first.cells} cells ({first.ok} measured now, {first.skipped} recorded "
             f"earlier, {first.failed} failed) in {sweep_s:.0f} s; the same sweep again: {again.skipped} skipped, "
             f"{again.ok} run, in {resume_s:.2f} s.", "",
             "## Fitted exponents (p50 latency per invoke, model memory, state bytes)", "",
             "| arch | recipe | form | latency exponent [95% CI] | memory exponent | state exponent |",
             "|---|---|---|---|---|---|"]
    for f in sorted(scaling_fits(rows), key=lambda f: (f["form"], f["arch"], f["recipe"])):
        lines.append(f"| {f['arch']} | {f['recipe']} | {f['form']} | {_fit_text(f['latency'])} | "
                     f"{_fit_text(f['memory'])} | {_fit_text(f.get('state'))} |")
    lines += ["", "## Crossovers (p50)", "", "| recipe | form | a | b | crossover n | note |", "|---|---|---|---|---|---|"]
    for c in crossovers(rows):
        n = f"{c['crossover_n']:.0f}" if c.get("crossover_n") else "none in range"
        lines.append(f"| {c['recipe']} | {c['form']} | {c['arch_a']} | {c['arch_b']} | {n} | {c['note']} |")
    lines += ["", f"## Per-step streaming cost (hop {args.hop_ms} ms)", "",
              "| recipe | n | arch | served | p50 µs/step | p99 µs/step | x fastest | rtf |", "|---|---|---|---|---|---|---|---|"]
    for s in sorted(streaming_costs(rows, args.hop_ms), key=lambda s: (s["recipe"], s["n"], s["arch"])):
        rtf = f"{s['rtf']:.4f}" if s.get("rtf") is not None else "-"
        lines.append(f"| {s['recipe']} | {s['n']} | {s['arch']} | {s['served']} | {s['p50_us']:.1f} | "
                     f"{s['p99_us']:.1f} | {s['vs_fastest']:.2f} | {rtf} |")
    lines += ["", claims_markdown(textbook_claims(rows))]
    fails = failed_cells(db)
    if fails:
        lines += ["", f"## Failed cells ({len(fails)})", ""]
        lines += [f"- {c['config']['arch']} n={c['config']['seq_len']} {c['config']['recipe']} {c['config']['form']}:"
                  f" {c['reason']}" for c in fails]
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "scaling.md").write_text(text)
    (results / "scaling.json").write_text(json.dumps({"sweep_s": sweep_s, "resume_s": resume_s, "rows": rows},
                                                     indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
