"""Describe any .tflite: signature, op histogram by dtype, weights, MACs, peak activation memory. No TensorFlow.

Estimates are static: MACs count multiply-accumulates of the matmul-like ops (elementwise ops are not MACs); a WHILE
loop counts its body times its trip count when the loop bound is a constant in the file. Peak activation memory is a
simple liveness pass over the main subgraph's execution order (each tensor lives from its producer to its last
consumer), so it is what a good arena planner could reach, not what a given runtime allocates. `memory_estimate`
predicts what the model costs a process on LiteRT (the agent's `memory.model_peak_kb`): weights, graph records, the
arena as LiteRT plans it, state, XNNPACK's packed copies and runtime code (edgeseq.quantize.memory_estimate).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from typing import Any

from edgeseq.quantize.memory_estimate import estimate_memory
from edgeseq.quantize.tflite.reader import TFLiteFile, read_tflite

QUANTIZED_DTYPES = ("int8", "uint8", "int16")
FLOAT_DTYPES = ("float32", "float16")
_MATMUL_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")


MAC_CAP = 2**62  # a crafted loop nest could claim any count; estimates saturate here


def _is_const(f: TFLiteFile, tensor: Any) -> bool:
    return f.is_constant(tensor)


def _qparams(tensor: Any) -> tuple[list[float] | None, list[int] | None]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None
    return [float(s) for s in q.scale], [int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [])]


def describe_tensor(f: TFLiteFile, tensor: Any) -> dict[str, Any]:
    scale, zero = _qparams(tensor)
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "")
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    out = {"name": name, "dtype": f.tensor_dtype(tensor), "shape": shape}
    if scale is not None:
        out["scale"] = scale[0] if len(scale) == 1 else scale
        out["zero_point"] = (zero[0] if len(zero) == 1 else zero) if zero else 0
    return out


def _ins(op: Any) -> list[int]:
    return [int(i) for i in op.inputs] if op.inputs is not None else []


def _outs(op: Any) -> list[int]:
    return [int(i) for i in op.outputs] if op.outputs is not None else []


def _op_dtype(f: TFLiteFile, sg: Any, op: Any) -> str:
    """The dtype an op computes in: its first non-constant input's, else its first output's."""
    for i in _ins(op):
        if i >= 0 and not _is_const(f, sg.tensors[i]):
            return f.tensor_dtype(sg.tensors[i])
    outs = _outs(op)
    return f.tensor_dtype(sg.tensors[outs[0]]) if outs else "none"


def _shape(sg: Any, index: int) -> list[int]:
    """Dims (0 and dynamic count as 1) of tensor `index`; [] for an absent optional input (-1)."""
    if index < 0:
        return []
    t = sg.tensors[index]
    return [max(int(d), 1) for d in (t.shape if t.shape is not None else [])]


def _prod(dims: list[int]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def _op_macs(name: str, sg: Any, op: Any) -> int:
    """Multiply-accumulates of one matmul-like op (the verifier guarantees the inputs these formulas read)."""
    ins, outs = _ins(op), _outs(op)
    out_elems = _prod(_shape(sg, outs[0])) if outs else 0
    w = _shape(sg, ins[1]) if len(ins) > 1 else []
    if not w:
        return 0
    if name == "FULLY_CONNECTED":
        return out_elems * w[-1]
    if name in ("CONV_2D", "CONV_3D"):
        return out_elems * _prod(w[1:])
    if name == "DEPTHWISE_CONV_2D":
        return out_elems * _prod(w[1:3])
    if name == "TRANSPOSE_CONV":
        return _prod(_shape(sg, ins[2])) * _prod(w[:3]) if len(ins) > 2 else 0
    if name == "BATCH_MATMUL":
        a = _shape(sg, ins[0])
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        k = (a[-2] if adj_x and len(a) > 1 else a[-1]) if a else 1
        return out_elems * k
    return 0


def _trip_count(f: TFLiteFile, parent: Any, while_op: Any, cond: Any) -> int | None:
    """The constant bound of a WHILE loop: a LESS in the cond graph against a constant (in cond or passed in)."""
    bounds = []
    cond_inputs = [int(i) for i in cond.inputs] if cond.inputs is not None else []
    loop_inputs = _ins(while_op)
    for op in cond.operators or []:
        name = f.op_names[op.opcodeIndex]
        ins = _ins(op)
        if name not in ("LESS", "LESS_EQUAL") or len(ins) < 2 or ins[1] < 0:
            continue
        idx = ins[1]
        value = f.constant(cond.tensors[idx])
        if value is None and idx in cond_inputs:
            pos = cond_inputs.index(idx)
            if pos < len(loop_inputs) and loop_inputs[pos] >= 0:
                value = f.constant(parent.tensors[loop_inputs[pos]])
        if value is not None and value.size == 1 and value.dtype.kind in "iub":
            bounds.append(max(int(value.reshape(-1)[0]) + (1 if name == "LESS_EQUAL" else 0), 0))
    return min(bounds) if bounds else None


def _subgraph_macs(f: TFLiteFile, index: int, notes: list[str]) -> Counter:
    """MACs of subgraph `index`, loops multiplied out. Memoized, in callee-first order (no recursion): the verifier
    guarantees control flow is acyclic, and a deep or diamond-shaped nest of subgraphs stays linear."""
    subgraphs = f.model.subgraphs
    order: list[int] = []  # post-order from `index`: every callee before its callers
    seen, stack = {index}, [(index, iter(sorted(_callees(f, subgraphs[index]))))]
    while stack:
        node, it = stack[-1]
        callee = next(it, None)
        if callee is None:
            order.append(node)
            stack.pop()
        elif callee not in seen:
            seen.add(callee)
            stack.append((callee, iter(sorted(_callees(f, subgraphs[callee])))))
    done: dict[int, Counter] = {}
    sg_notes: dict[int, list[str]] = {}

    def visit(i: int) -> None:
        sg = subgraphs[i]
        macs: Counter = Counter()
        mine: list[str] = []
        for op in sg.operators or []:
            name = f.op_names[op.opcodeIndex]
            if name in _MATMUL_OPS:
                macs[name] += _op_macs(name, sg, op)
            elif name == "WHILE":
                opts = op.builtinOptions
                body = done[opts.bodySubgraphIndex]
                mine += sg_notes[opts.bodySubgraphIndex]
                trips = _trip_count(f, sg, op, subgraphs[opts.condSubgraphIndex])
                if trips is None:
                    mine.append(f"WHILE loop (subgraph {opts.bodySubgraphIndex}): trip count not derivable; "
                                "body counted once")
                    trips = 1
                else:
                    mine.append(f"WHILE loop (subgraph {opts.bodySubgraphIndex}): body x {trips} iterations")
                for k, v in body.items():
                    macs[k] += v * trips
            elif name == "IF":
                opts = op.builtinOptions
                branches = [done[j] for j in (opts.thenSubgraphIndex, opts.elseSubgraphIndex)]
                for j in (opts.thenSubgraphIndex, opts.elseSubgraphIndex):
                    mine += sg_notes[j]
                macs.update(max(branches, key=lambda c: sum(c.values())))
        done[i] = Counter({k: min(v, MAC_CAP) for k, v in macs.items()})
        sg_notes[i] = mine[:50]

    for i in order:
        visit(i)
    notes.extend(sg_notes[index])
    return done[index]


def _callees(f: TFLiteFile, sg: Any) -> set[int]:
    out = set()
    for op in sg.operators or []:
        name = f.op_names[op.opcodeIndex]
        if name == "WHILE":
            out |= {op.builtinOptions.condSubgraphIndex, op.builtinOptions.bodySubgraphIndex}
        elif name == "IF":
            out |= {op.builtinOptions.thenSubgraphIndex, op.builtinOptions.elseSubgraphIndex}
    return out


def peak_activation_bytes(f: TFLiteFile) -> int:
    """Largest sum of live non-constant tensors at any op of the main subgraph (simple liveness), in one sweep."""
    sg = f.model.subgraphs[0]
    ops = list(sg.operators or [])
    first: dict[int, int] = {int(i): -1 for i in (sg.inputs if sg.inputs is not None else [])}
    last: dict[int, int] = {int(i): len(ops) for i in (sg.outputs if sg.outputs is not None else [])}
    for n, op in enumerate(ops):
        for t in _outs(op):
            first.setdefault(t, n)
        for t in _ins(op):
            if t >= 0:
                last[t] = max(last.get(t, n), n)
    # Tensor t is live at steps first..last (n from -1 to len(ops)); add its bytes at `first`, remove after `last`.
    delta = [0] * (len(ops) + 3)
    for t in set(first) | set(last):
        if _is_const(f, sg.tensors[t]):
            continue
        start = first.get(t, -1)
        end = last.get(t, start)
        if end < start:
            continue
        size = f.tensor_bytes(sg.tensors[t])
        delta[start + 1] += size
        delta[end + 2] -= size
    peak = live = 0
    for step in delta:
        live += step
        peak = max(peak, live)
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
            if dtype in (*FLOAT_DTYPES, *QUANTIZED_DTYPES, "int4") or (dtype == "int32" and (si, ti) in bias_tensors):
                params += _prod([max(int(d), 1) for d in (t.shape if t.shape is not None else [])])
    return {"bytes": int(sum(by_dtype.values())), "bytes_by_dtype": dict(by_dtype), "parameters": int(params)}


STATE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")


def state_inside(f: TFLiteFile) -> dict[str, Any] | None:
    """How a model keeps its state in resource variables (edgeseq's --state internal, kws_streaming's internal state,
    microWakeWord): the state ops found, each variable the main graph reads (named by its READ_VARIABLE output),
    frames per invoke from the input shape, and whether a `reset` signature exists; None for a model without them."""
    main = f.model.subgraphs[0]
    ops = [f.op_names[op.opcodeIndex] for op in main.operators or []]
    found = sorted({o for o in ops if o in STATE_OPS})
    if not found:
        return None
    seen, variables = set(), []
    for op, name in zip(main.operators or [], ops, strict=True):
        if name == "READ_VARIABLE" and _ins(op) and _outs(op) and _ins(op)[0] not in seen:
            seen.add(_ins(op)[0])
            t = main.tensors[_outs(op)[0]]
            variables.append({**describe_tensor(f, t), "bytes": f.tensor_bytes(t)})
    inputs = [main.tensors[i] for i in (main.inputs if main.inputs is not None else [])]
    shape = [int(d) for d in inputs[0].shape] if len(inputs) == 1 and inputs[0].shape is not None else []
    ids = bool(inputs) and f.tensor_dtype(inputs[0]).startswith("int") and _qparams(inputs[0])[0] is None
    frames = shape[1] if len(shape) == (2 if ids else 3) else 1
    sigs = [s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else str(s.signatureKey)
            for s in f.model.signatureDefs or []]
    return {"ops": found, "variables": variables, "state_bytes": int(sum(v["bytes"] for v in variables)),
            "frames_per_invoke": frames, "reset_signature": "reset" in sigs,
            "initialiser": "CALL_ONCE" in found}


def refuse_uninitialised_state(f: TFLiteFile, path: Any) -> None:
    """ModelError for a model that keeps state in resource variables and reads one before anything wrote it, with no
    CALL_ONCE initialiser: its first step reads memory no one set, so every figure measured from it is meaningless."""
    main = f.model.subgraphs[0]
    ops = [(f.op_names[op.opcodeIndex], op) for op in main.operators or []]
    if not any(name == "READ_VARIABLE" for name, _ in ops) or any(name == "CALL_ONCE" for name, _ in ops):
        return
    assigned, unset = set(), []
    for name, op in ops:
        if name == "ASSIGN_VARIABLE" and _ins(op):
            assigned.add(_ins(op)[0])
        elif name == "READ_VARIABLE" and _ins(op) and _ins(op)[0] not in assigned and _outs(op):
            unset.append(describe_tensor(f, main.tensors[_outs(op)[0]])["name"])
    if unset:
        from edgeseq.core.errors import ModelError

        raise ModelError(f"{path} keeps its state in {len(unset)} resource variable(s) ({', '.join(unset[:3])}) that "
                         "it reads before anything sets them: no CALL_ONCE initialiser, so the first step reads "
                         "undefined memory", "re-export it with the variables initialised (TF's converter emits "
                         "CALL_ONCE for a tf.Variable's initial value; edgeseq convert --stream --state internal does)")


def analyze(f: TFLiteFile, runtime: str = "ai_edge_litert") -> dict[str, Any]:
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
        "memory_estimate": estimate_memory(f, runtime),
        "flex_ops": f.is_flex(),
        "state_inside": state_inside(f),
    }


def inspect_tflite(path: str | os.PathLike, runtime: str = "ai_edge_litert") -> dict[str, Any]:
    """The `edgeseq inspect` report for a .tflite file (`memory_estimate` for `runtime`); ModelError for anything
    that is not a readable model."""
    return analyze(read_tflite(path), runtime)
