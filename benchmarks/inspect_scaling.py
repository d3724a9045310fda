"""`edgeseq inspect` on long graphs: read + verify + analyze time and peak RSS against the number of ops.

    .venv/bin/python benchmarks/inspect_scaling.py [--ops 1000,4000,16000,64000]

Each size runs `python -m edgeseq.cli inspect --json` in a fresh process on a chain of FULLY_CONNECTED/TANH ops
built without TensorFlow (tests/_tiny_tflite.py chain_model), so the times include start-up (~0.2 s) and are what a
user waits. In-process, the parse (verify + unpack + checks) and the analysis are timed separately. The test suite
only checks the ratio (tests/test_inspect.py); absolute times belong here.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default="1000,4000,16000,64000")
    args = ap.parse_args()

    from _tiny_tflite import chain_model

    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.tflite.reader import parse_bytes

    print("| ops | file | CLI wall | CLI peak RSS | parse | analyze |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.ops.split(",")):
            data = chain_model(n)
            path = Path(tmp) / f"chain-{n}.tflite"
            path.write_bytes(data)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "inspect", "--json", str(path)],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - started
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return 1
            t0 = time.perf_counter()
            f = parse_bytes(data, path.name)
            t1 = time.perf_counter()
            analyze(f)
            t2 = time.perf_counter()
            peak = f"{rss / 1024:.0f} MB" if rss > before else "(below an earlier run)"
            print(f"| {n:,} | {len(data) / 2**20:.1f} MB | {wall:.2f} s | {peak} | {t1 - t0:.2f} s | {t2 - t1:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
