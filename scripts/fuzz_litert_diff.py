"""Differential fuzz: mutated .tflite files that edgeseq's parser ACCEPTS, loaded by the real LiteRT interpreter.

A file we accept but LiteRT refuses while building the interpreter (or crashes on) points at a structural rule the
validator (quantize/tflite/verify.py) lacks. Errors LiteRT raises later, in a kernel's Prepare (shape or type
mismatches between ops), are semantics, not structure, and are only counted.

    .venv/bin/python scripts/fuzz_litert_diff.py [--iterations N] [--seed S] [--keep DIR]

LiteRT runs in a child process that takes files one by one, so a crash costs one restart and names its file.
Uses the mutators of tests/robustness/test_fuzz_tflite.py (same seeds, same cases).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import select
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "robustness")]

CHILD = r"""
import gc, json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
for line in sys.stdin:
    path = line.strip()
    stage = "build"
    try:
        it = Interpreter(model_path=path, num_threads=1)
        stage = "allocate"
        it.allocate_tensors()
        stage = "invoke"
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        out = {"stage": "ok"}
    except Exception as exc:
        out = {"stage": stage, "error": " ".join(str(exc).split())[:300]}
    it = None
    gc.collect()  # a crash while freeing this interpreter belongs to this file, not the next
    print(json.dumps(out), flush=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="Seconds LiteRT may take on one file.")
    ap.add_argument("--keep", type=Path, default=None, help="Copy files we accept but LiteRT rejects here.")
    args = ap.parse_args()

    import test_fuzz_tflite as fz

    from edgeseq.core.errors import ModelError
    from edgeseq.quantize.tflite.reader import parse_bytes

    bases = {"dense": fz.dense_model(), "while": fz.while_model(), "conv-int8": fz.conv_int8_model(),
             "chain": fz.chain_model(40)}
    names = sorted(bases)
    counts: collections.Counter = collections.Counter()
    findings: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeseq-fuzz-") as tmp:
        child = None
        for i in range(args.iterations):
            rng = random.Random(f"{args.seed}-{i}")
            base = names[rng.randrange(len(names))]
            data, how = bases[base], []
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                try:
                    data, what = fz.mutate(rng, data)
                except Exception:  # noqa: BLE001 - an object edit of a broken file cannot unpack: keep it
                    what = "(edit skipped)"
                how.append(what)
                if len(data) < 16:
                    break
            try:
                parse_bytes(data, "fuzz.tflite")
            except ModelError:
                counts["refused by edgeseq"] += 1
                continue
            path = Path(tmp) / f"case-{i}.tflite"
            path.write_bytes(data)
            if child is None:
                child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
            try:
                child.stdin.write(f"{path}\n")
                child.stdin.flush()
                ready = select.select([child.stdout], [], [], args.timeout)[0]
                line = child.stdout.readline() if ready else None
            except BrokenPipeError:
                line = ""
            if line is None:  # e.g. a WHILE whose condition never turns false: valid structure, endless run
                child.kill()
                child.wait()
                child = None
                result = {"stage": "hang", "error": f"no answer in {args.timeout} s"}
            elif not line:
                code = child.wait()
                child = None
                result = {"stage": "crash", "error": f"LiteRT died (exit {code})"}
            else:
                result = json.loads(line)
            counts[f"accepted; LiteRT {result['stage']}"] += 1
            if result["stage"] in ("build", "allocate", "crash", "hang"):
                key = f"{result['stage']}: {re.sub(r'[0-9]+', 'N', result.get('error', ''))[:160]}"
                findings[key] += 1
                examples.setdefault(key, f"seed {args.seed} iteration {i} ({base}: {'; '.join(how)})")
                if args.keep:
                    (args.keep / f"{result['stage']}-{args.seed}-{i}.tflite").write_bytes(data)
            path.unlink()
        if child is not None:
            child.stdin.close()
            child.wait()
    print(json.dumps(dict(counts), indent=1))
    for key, n in findings.most_common():
        print(f"{n:5}  {key}\n       e.g. {examples[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
