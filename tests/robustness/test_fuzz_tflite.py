"""Fuzz the .tflite reader: every mutated file either parses (and then the whole `inspect` analysis completes) or is
one ModelError; never another exception, a hang or a blow-up.

Seeded mutations (byte flips, int32 overwrites, splices, truncations, and index/shape/size edits through the
flatbuffers object API) of small realistic models built without TensorFlow: a dense classifier, a three-subgraph
WHILE loop, an int8 conv with per-channel quantization and a custom op, a long chain. Iteration i uses its own RNG
seeded from (EDGESEQ_FUZZ_SEED, i), so a failure names the exact case to replay.

    make fuzz                                        # 20000 cases (default 500 here, ~1 s)
    EDGESEQ_FUZZ_SEED=7 EDGESEQ_FUZZ_ITERATIONS=1 ... # replay
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import time

import flatbuffers
import numpy as np
import pytest
from _tiny_tflite import chain_model, conv_int8_model, dense_model, while_model
from ai_edge_litert import schema_py_generated as schema

from edgeseq.commands.inspect import render
from edgeseq.core.errors import ModelError
from edgeseq.quantize.inspect import analyze
from edgeseq.quantize.tflite.reader import parse_bytes

ITERATIONS = int(os.environ.get("EDGESEQ_FUZZ_ITERATIONS", "500"))
SEED = int(os.environ.get("EDGESEQ_FUZZ_SEED", "0"))
CASE_TIMEOUT_S = 20  # one parse + analysis of a <100 KB file; far above the ~10 ms it takes
MAX_RSS_MB = 1500
INTERESTING = (0, 1, 2, 3, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE)


@pytest.fixture(scope="module")
def bases() -> dict[str, bytes]:
    return {"dense": dense_model(), "while": while_model(), "conv-int8": conv_int8_model(), "chain": chain_model(40)}


def _pack(model) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _edit_object(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One index, shape, size or type edit through the object API (what a buggy writer would produce)."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sg = rng.choice(m.subgraphs)
    value = rng.choice([-2, -1, 0, 1, 2, 3, 5, 7, 100, 2**31 - 1, -(2**31), rng.randrange(-50, 50)])
    kind = rng.choice(["tensor.buffer", "tensor.shape", "tensor.type", "op.input", "op.output", "op.opcode",
                       "sg.inputs", "sg.outputs", "options", "opcode.builtin", "buffer.data", "drop", "quant",
                       "swap-ops", "name"])
    t = rng.choice(sg.tensors) if sg.tensors else None
    op = rng.choice(sg.operators) if sg.operators else None
    if kind == "tensor.buffer" and t is not None:
        t.buffer = value % 2**32
    elif kind == "tensor.shape" and t is not None:
        shape = list(t.shape) if t.shape is not None else []
        if shape and rng.random() < 0.7:
            shape[rng.randrange(len(shape))] = value
        else:
            shape.append(value)
        t.shape = [int(np.int32(d)) if -(2**31) <= d < 2**31 else 0 for d in shape]
    elif kind == "tensor.type" and t is not None:
        t.type = rng.randrange(-3, 30) % 128
    elif kind in ("op.input", "op.output") and op is not None:
        vec = list(op.inputs if kind == "op.input" else op.outputs)
        if vec and rng.random() < 0.8:
            vec[rng.randrange(len(vec))] = value
        elif vec and rng.random() < 0.5:
            vec.pop()
        else:
            vec.append(value)
        if kind == "op.input":
            op.inputs = vec
        else:
            op.outputs = vec
    elif kind == "op.opcode" and op is not None:
        op.opcodeIndex = value % 2**32
    elif kind in ("sg.inputs", "sg.outputs"):
        vec = list(getattr(sg, kind[3:]) or [])
        vec = vec[:-1] if vec and rng.random() < 0.3 else vec + [value] if rng.random() < 0.5 else [value] + vec[1:]
        setattr(sg, kind[3:], vec)
    elif kind == "options" and op is not None:
        opts = op.builtinOptions
        fields = [f for f in ("condSubgraphIndex", "bodySubgraphIndex", "adjX", "fusedActivationFunction")
                  if hasattr(opts, f)]
        if fields and rng.random() < 0.7:
            setattr(opts, rng.choice(fields), value % 2**31 if "Subgraph" in fields[0] else abs(value) % 3)
        else:
            op.builtinOptions, op.builtinOptionsType = None, 0
    elif kind == "opcode.builtin":
        code = rng.choice(m.operatorCodes)
        code.builtinCode = rng.choice([value % 2**31, 32, 118, 119, 209, 210, 255])
        code.deprecatedBuiltinCode = min(max(code.builtinCode, 0), 127)
    elif kind == "buffer.data":
        full = [b for b in m.buffers if b.data is not None and len(b.data)]
        if full:
            buf = rng.choice(full)
            n = len(buf.data)
            buf.data = np.frombuffer(bytes(buf.data)[: rng.randrange(n)] if rng.random() < 0.6
                                     else bytes(buf.data) + bytes(rng.randrange(1, 9)), np.uint8)
    elif kind == "drop":
        target = rng.choice([(sg, "tensors"), (sg, "operators"), (sg, "inputs"), (m, "buffers"),
                             (op, "inputs"), (op, "outputs"), (m, "operatorCodes")])
        if target[0] is not None:
            setattr(target[0], target[1], None if rng.random() < 0.5 else [])
    elif kind == "quant" and t is not None:
        q = t.quantization or schema.QuantizationParametersT()
        q.scale = [0.1] * rng.randrange(0, 4)
        q.zeroPoint = [0] * rng.randrange(0, 4)
        q.quantizedDimension = rng.randrange(-1, 5)
        t.quantization = q
    elif kind == "swap-ops" and len(sg.operators or []) > 1:
        i, j = rng.sample(range(len(sg.operators)), 2)
        sg.operators[i], sg.operators[j] = sg.operators[j], sg.operators[i]
    elif kind == "name" and t is not None:
        t.name = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
    return _pack(m), f"object edit {kind} value {value}"


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    how = rng.choice(["flip", "flip", "int32", "int32", "truncate", "splice", "object", "object", "object"])
    buf = bytearray(data)
    if how == "flip":
        spots = [rng.randrange(8, len(buf)) for _ in range(rng.randint(1, 4))]
        for s in spots:
            buf[s] ^= rng.randrange(1, 256)
        return bytes(buf), f"flip bytes {spots}"
    if how == "int32":
        at = rng.randrange(8, len(buf) - 4) & ~3
        value = rng.choice(INTERESTING + (len(buf), len(buf) - at, rng.randrange(2**32)))
        buf[at : at + 4] = int(value % 2**32).to_bytes(4, "little")
        return bytes(buf), f"int32 {value:#x} at {at}"
    if how == "truncate":
        cut = rng.randrange(0, len(buf))
        return bytes(buf[:cut]), f"truncate to {cut}"
    if how == "splice":
        n = rng.randrange(4, 64)
        src, dst = rng.randrange(0, len(buf) - n), rng.randrange(8, len(buf) - n)
        buf[dst : dst + n] = buf[src : src + n]
        return bytes(buf), f"copy {n} bytes {src}->{dst}"
    return _edit_object(rng, data)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def check_one(data: bytes) -> str:
    """'ok' or 'refused'; anything else (another exception, a timeout) propagates."""
    try:
        f = parse_bytes(data, "fuzz.tflite")
    except ModelError as exc:
        assert "\n" not in exc.one_line()
        return "refused"
    report = analyze(f)
    json.dumps(report)
    render(report)
    return "ok"


def test_mutated_models_parse_or_are_refused(bases, tmp_path):
    names = sorted(bases)
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}
    old = signal.signal(signal.SIGALRM, _alarm)
    started = time.monotonic()
    try:
        for i in range(ITERATIONS):
            rng = random.Random(f"{SEED}-{i}")
            base = names[rng.randrange(len(names))]
            data, how = bases[base], []
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                try:
                    data, what = mutate(rng, data)
                except Exception as exc:  # noqa: BLE001 - an object edit of a broken file cannot unpack: keep it
                    what = f"(edit skipped: {type(exc).__name__})"
                how.append(what)
                if len(data) < 16:
                    break
            signal.alarm(CASE_TIMEOUT_S)
            try:
                outcomes[check_one(data)] += 1
            except BaseException as exc:
                bad = tmp_path / f"fuzz-{SEED}-{i}.tflite"
                bad.write_bytes(data)
                raise AssertionError(f"seed {SEED} iteration {i} ({base}: {'; '.join(how)}) raised "
                                     f"{type(exc).__name__}: {exc}; file kept at {bad}") from exc
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fuzz: {ITERATIONS} cases in {time.monotonic() - started:.1f} s, {outcomes}, peak RSS {rss_mb:.0f} MB")
    assert rss_mb < MAX_RSS_MB
    assert outcomes["refused"] > 0 and (ITERATIONS < 50 or outcomes["ok"] > 0)


def test_unmutated_bases_parse_and_analyze(bases):
    for name, data in bases.items():
        assert check_one(data) == "ok", name
