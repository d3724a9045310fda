"""Describe any .tflite: signature, op histogram by dtype, weights, MACs, peak activation memory. No TensorFlow.

Estimates are static: MACs count multiply-accumulates of the matmul-like ops (elementwise ops are not MACs); a WHILE
loop counts its body times its trip count when the loop bound is a constant in the file. Peak activation memory is a
simple liveness pass over the main subgraph's execution order (each tensor lives from its producer to its last
consumer), so it is what a good arena planner could reach, not what a given runtime allocates.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from edgeseq.quantize.tflite_file import TFLiteFile, read_tflite

QUANTIZED_DTYPES = ("int8", "uint8", "int16")
FLOAT_DTYPES = ("float32", "float16")
_MATMUL_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")


def _is_const(f: TFLiteFile, tensor: Any) -> bool:
    return bool(f.buffer_data(tensor.buffer))


def _qparams(tensor: Any) -> tuple[list[float] | None, list[int] | None]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None
    return [float(s) for s in q.scale], [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [])]


def describe_tensor(f: TFLiteFile, tensor: Any) -> dict[str, Any]:
    scale, zero = _qparams(tensor)
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    out = {"name": name, "dtype": f.tensor_dtype(tensor), "shape": shape}
    if scale is not None:
        out["scale"] = scale[0] if len(scale) == 1 else scale
        out["zero_point"] = (zero[0] if len(zero) == 1 else zero) if zero else 0
    return out


def _op_dtype(f: TFLiteFile, sg: Any, op: Any) -> str:
    """The dtype an op computes in: its first non-constant input's, else its first output's."""
    for i in op.inputs if op.inputs is not None else []:
        if i >= 0 and not _is_const(f, sg.tensors[i]):
            return f.tensor_dtype(sg.tensors[i])
    outs = op.outputs if op.outputs is not None else []
    return f.tensor_dtype(sg.tensors[outs[0]]) if len(outs) else "none"


def _shape(sg: Any, index: int) -> list[int]:
    t = sg.tensors[index]
    return [max(int(d), 1) for d in (t.shape if t.shape is not None else [])]


def _op_macs(name: str, sg: Any, op: Any) -> int:
    ins, outs = list(op.inputs), list(op.outputs)
    out_elems = int(np.prod(_shape(sg, outs[0]), dtype=np.int64)) if outs else 0
    if name == "FULLY_CONNECTED":
        return out_elems * _shape(sg, ins[1])[-1]
    if name in ("CONV_2D", "CONV_3D"):
        w = _shape(sg, ins[1])
        return out_elems * int(np.prod(w[1:], dtype=np.int64))
    if name == "DEPTHWISE_CONV_2D":
        w = _shape(sg, ins[1])
        return out_elems * int(np.prod(w[1:3], dtype=np.int64))
    if name == "TRANSPOSE_CONV":
        w = _shape(sg, ins[1])
        return int(np.prod(_shape(sg, ins[2]), dtype=np.int64)) * int(np.prod(w[:3], dtype=np.int64))
    if name == "BATCH_MATMUL":
        a = _shape(sg, ins[0])
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        k = a[-2] if adj_x and len(a) > 1 else a[-1]
        return out_elems * k
    return 0


def _trip_count(f: TFLiteFile, parent: Any, while_op: Any, cond: Any) -> int | None:
    """The constant bound of a WHILE loop: a LESS in the cond graph against a constant (in cond or passed in)."""
    bounds = []
    for op in cond.operators or []:
        if f.op_names[op.opcodeIndex] not in ("LESS", "LESS_EQUAL"):
            continue
        idx = int(op.inputs[1])
        value = f.constant(cond.tensors[idx])
        if value is None and idx in list(cond.inputs):
            pos = list(cond.inputs).index(idx)
            value = f.constant(parent.tensors[int(while_op.inputs[pos])])
        if value is not None and value.size == 1:
            bounds.append(int(value.reshape(-1)[0]) + (1 if f.op_names[op.opcodeIndex] == "LESS_EQUAL" else 0))
    return min(bounds) if bounds else None


def _subgraph_macs(f: TFLiteFile, index: int, notes: list[str], seen: tuple = ()) -> Counter:
    if index in seen:
        return Counter()
    sg = f.model.subgraphs[index]
    macs: Counter = Counter()
    for op in sg.operators or []:
        name = f.op_names[op.opcodeIndex]
        if name in _MATMUL_OPS:
            macs[name] += _op_macs(name, sg, op)
        elif name == "WHILE":
            opts = op.builtinOptions
            body = _subgraph_macs(f, opts.bodySubgraphIndex, notes, seen + (index,))
            trips = _trip_count(f, sg, op, f.model.subgraphs[opts.condSubgraphIndex])
            if trips is None:
                notes.append(f"WHILE loop (subgraph {opts.bodySubgraphIndex}): trip count not derivable; body counted once")
                trips = 1
            else:
                notes.append(f"WHILE loop (subgraph {opts.bodySubgraphIndex}): body x {trips} iterations")
            for k, v in body.items():
                macs[k] += v * trips
        elif name == "IF":
            opts = op.builtinOptions
            branches = [_subgraph_macs(f, i, notes, seen + (index,))
                        for i in (opts.thenSubgraphIndex, opts.elseSubgraphIndex)]
            macs.update(max(branches, key=lambda c: sum(c.values())))
    return macs


def peak_activation_bytes(f: TFLiteFile) -> int:
    """Largest sum of live non-constant tensors at any op of the main subgraph (simple liveness)."""
    sg = f.model.subgraphs[0]
    ops = list(sg.operators or [])
    first: dict[int, int] = {int(i): -1 for i in (sg.inputs if sg.inputs is not None else [])}
    last: dict[int, int] = {int(i): len(ops) for i in (sg.outputs if sg.outputs is not None else [])}
    for n, op in enumerate(ops):
        for t in op.outputs if op.outputs is not None else []:
            first.setdefault(int(t), n)
        for t in op.inputs if op.inputs is not None else []:
            if t >= 0:
                last[int(t)] = max(last.get(int(t), n), n)
    live = [t for t in set(first) | set(last) if not _is_const(f, sg.tensors[t])]
    peak = 0
    for n in range(-1, len(ops) + 1):
        total = sum(f.tensor_bytes(sg.tensors[t]) for t in live if first.get(t, -1) <= n <= last.get(t, first.get(t, -1)))
        peak = max(peak, total)
    return int(peak)


def _weights(f: TFLiteFile) -> dict[str, Any]:
    """Unique constant buffers: bytes by dtype and parameter count (int32 counts only as FC/conv bias)."""
    bias_tensors = set()
    for si, sg in enumerate(f.model.subgraphs):
        for op in sg.operators or []:
            if f.op_names[op.opcodeIndex] in _MATMUL_OPS and op.inputs is not None and len(op.inputs) > 2:
                bias_tensors.add((si, int(op.inputs[2])))
    seen: set[int] = set()
    by_dtype: Counter = Counter()
    params = 0
    for si, sg in enumerate(f.model.subgraphs):
        for ti, t in enumerate(sg.tensors or []):
            if t.buffer in seen:
                continue
            raw = f.buffer_data(t.buffer)
            if not raw:
                continue
            seen.add(t.buffer)
            dtype = f.tensor_dtype(t)
            by_dtype[dtype] += len(raw)
            if dtype in FLOAT_DTYPES + QUANTIZED_DTYPES or (dtype == "int32" and (si, ti) in bias_tensors):
                params += int(np.prod([max(int(d), 1) for d in (t.shape if t.shape is not None else [])], dtype=np.int64))
    return {"bytes": int(sum(by_dtype.values())), "bytes_by_dtype": dict(by_dtype), "parameters": int(params)}


def analyze(f: TFLiteFile) -> dict[str, Any]:
    main = f.model.subgraphs[0]
    by_type: dict[str, Counter] = defaultdict(Counter)
    for sg in f.model.subgraphs:
        for op in sg.operators or []:
            by_type[f.op_names[op.opcodeIndex]][_op_dtype(f, sg, op)] += 1
    total = sum(sum(c.values()) for c in by_type.values())
    quantized = sum(n for c in by_type.values() for d, n in c.items() if d in QUANTIZED_DTYPES)
    floating = {k: sum(n for d, n in c.items() if d in FLOAT_DTYPES) for k, c in by_type.items()}
    notes: list[str] = []
    macs = _subgraph_macs(f, 0, notes)
    return {
        "path": f.path,
        "bytes": len(f.data),
        "sha256": hashlib.sha256(f.data).hexdigest(),
        "inputs": [describe_tensor(f, main.tensors[i]) for i in (main.inputs if main.inputs is not None else [])],
        "outputs": [describe_tensor(f, main.tensors[i]) for i in (main.outputs if main.outputs is not None else [])],
        "subgraphs": len(f.model.subgraphs),
        "ops": {
            "total": total,
            "by_type": {k: {"count": sum(c.values()), "dtypes": dict(c)} for k, c in sorted(by_type.items())},
        },
        "dtype_coverage": {
            "quantized_ops": quantized,
            "float_ops": sum(floating.values()),
            "quantized_share": round(quantized / total, 4) if total else 0.0,
            "float_op_types": {k: v for k, v in sorted(floating.items()) if v},
        },
        "weights": _weights(f),
        "macs": {"total": int(sum(macs.values())), "by_op": dict(macs), "notes": notes},
        "peak_activation_bytes": peak_activation_bytes(f),
        "flex_ops": f.is_flex(),
    }


def inspect_tflite(path: str | os.PathLike) -> dict[str, Any]:
    """The `edgeseq inspect` report for a .tflite file; ModelError for anything that is not a readable model."""
    return analyze(read_tflite(path))
