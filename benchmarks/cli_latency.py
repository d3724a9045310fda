"""How long the CLI takes for what needs no model: `edgeseq models`, bare `edgeseq`, and every verb's `--help`.

Issue 26's goals: `edgeseq models` under 1 s, every `--help` under 0.5 s. Each command runs REPEAT times in a fresh
process and the median wall time is reported; the ratio to a bare `python -c pass` start is printed too, so a
loaded machine shows as a slower baseline rather than as a regression. Prints a table; exits 1 when a goal fails.

    .venv/bin/python benchmarks/cli_latency.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from edgeseq.cli import COMMANDS


def wall(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cli = [sys.executable, "-m", "edgeseq.cli"]
    base = wall([sys.executable, "-c", "pass"], args.repeat)
    cases = [("edgeseq models", [*cli, "models"], 1.0), ("edgeseq", cli, 0.5), ("edgeseq --help", [*cli, "--help"], 0.5)]
    cases += [(f"edgeseq {v} --help", [*cli, v, "--help"], 0.5) for v in sorted(COMMANDS)]
    failed = 0
    print(f"python start: {base * 1000:.0f} ms (median of {args.repeat})")
    print(f"{'command':<28}{'median ms':>10}{'x start':>9}{'goal ms':>9}  ok")
    for label, argv, goal in cases:
        s = wall(argv, args.repeat)
        ok = s <= goal
        failed += not ok
        print(f"{label:<28}{s * 1000:>10.0f}{s / base:>9.1f}{goal * 1000:>9.0f}  {'yes' if ok else 'NO'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
