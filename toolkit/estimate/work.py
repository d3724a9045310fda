"""What each op of a `.tflite` has to do, read from the file alone: the features the latency predictors fit on.

Per op (keyed by subgraph and op index, as `profile --ops` reports them): its type, the dtype it computes in, its
multiply-accumulates, the bytes of its non-constant inputs and outputs, its output elements, and how many times one
invoke calls it (a WHILE body's ops once per trip, its cond's once more). Per WHILE loop of the main graph: its trips
and the bytes of the values it carries, which LiteRT copies into the body on every trip (its per-trip cost). Pure:
reads the file, runs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from edgeseq.quantize.inspect import _op_dtype, _op_macs, _trip_count
from edgeseq.quantize.tflite.reader import TFLiteFile, read_tflite

# Ops whose time is not work on data: the state plumbing a step model with its state inside runs per invoke is kept
# (VAR_HANDLE, READ/ASSIGN_VARIABLE are timed like any op); CALL_ONCE runs on the first invoke only.
ONCE_OPS = ("CALL_ONCE",)
LOOP_OPS = ("WHILE",)


@dataclass(frozen=True)
class OpWork:
    subgraph: int
    index: int
    type: str
    dtype: str
    macs: int
    bytes: int  # non-constant inputs + outputs
    elems: int  # output elements
    calls: int  # per invoke of the model
    const_bytes: int = 0  # constant inputs (weights): a batch-1 matmul streams them once per call
    delegated: bool | None = None  # taken by XNNPACK (edgeseq.estimate.delegation); None: not asked
    channels: int = 0  # the first output's last dimension (a convolution's output channels, a matmul's N)


@dataclass(frozen=True)
class LoopWork:
    index: int  # the WHILE op in the main graph
    trips: int
    carried_bytes: int  # loop values copied into the body each trip
    trips_known: bool
    values: int = 0  # loop values (each copied in and out every trip)
    body_ops: int = 0  # ops the cond and body run per trip (each an interpreter dispatch)
    quantized: bool = False  # the body computes in int8/int16 (its per-trip cost differs: measured, fitted apart)


@dataclass(frozen=True)
class ModelWork:
    ops: list[OpWork]
    loops: list[LoopWork]
    notes: list[str]
    partition_calls: float = 0.0  # calls into the XNNPACK delegate per invoke (its partitions x their calls)
    input_bytes: int = 0  # the model's non-constant inputs: set by the caller, read from memory on every invoke


def _ints(vec: Any) -> list[int]:
    return [int(i) for i in vec] if vec is not None else []


def _tensor_bytes(f: TFLiteFile, sg: Any, index: int) -> int:
    if index < 0:
        return 0
    t = sg.tensors[index]
    if f.is_constant(t):
        return 0
    try:
        return int(f.tensor_bytes(t))
    except (ValueError, TypeError, KeyError):
        return 0


def _const_bytes(f: TFLiteFile, sg: Any, index: int) -> int:
    if index < 0 or not f.is_constant(sg.tensors[index]):
        return 0
    try:
        return int(f.tensor_bytes(sg.tensors[index]))
    except (ValueError, TypeError, KeyError):
        return 0


def _elems(sg: Any, index: int) -> int:
    t = sg.tensors[index]
    out = 1
    for d in t.shape if t.shape is not None else []:
        out *= max(int(d), 1)
    return out


def _channels(sg: Any, outs: list[int]) -> int:
    shape = sg.tensors[outs[0]].shape if outs and outs[0] >= 0 else None
    return max(int(shape[-1]), 0) if shape is not None and len(shape) else 0


def _lstm_macs(sg: Any, op: Any) -> int:
    """UNIDIRECTIONAL_SEQUENCE_LSTM: per step, 4 gates over the input and the recurrent state."""
    ins = _ints(op.inputs)
    if len(ins) < 9 or ins[0] < 0 or ins[5] < 0:
        return 0
    x = [max(int(d), 1) for d in sg.tensors[ins[0]].shape]
    rw = [max(int(d), 1) for d in sg.tensors[ins[5]].shape]  # recurrent_to_forget [units, units]
    if len(x) < 2 or len(rw) < 2:
        return 0
    steps = x[-2] if len(x) == 3 else 1
    return steps * 4 * rw[0] * (x[-1] + rw[1])


def _subgraph_ops(f: TFLiteFile, s: int, calls: int, out: list[OpWork]) -> None:
    sg = f.model.subgraphs[s]
    for i, op in enumerate(sg.operators or []):
        name = f.op_names[op.opcodeIndex]
        ins, outs = _ints(op.inputs), _ints(op.outputs)
        macs = _lstm_macs(sg, op) if name == "UNIDIRECTIONAL_SEQUENCE_LSTM" else _op_macs(name, sg, op)
        out.append(OpWork(subgraph=s, index=i, type=name, dtype=_op_dtype(f, sg, op), macs=int(macs),
                          bytes=sum(_tensor_bytes(f, sg, t) for t in ins + outs),
                          elems=sum(_elems(sg, t) for t in outs if t >= 0),
                          calls=0 if name in ONCE_OPS else calls,
                          const_bytes=sum(_const_bytes(f, sg, t) for t in ins), channels=_channels(sg, outs)))


def model_work(f: TFLiteFile) -> ModelWork:
    """Every op of the main graph and of its WHILE loops' cond and body (a loop inside a loop counts its body once
    per outer trip only through its own trips: said in `notes`)."""
    ops: list[OpWork] = []
    loops: list[LoopWork] = []
    notes: list[str] = []
    subgraphs = f.model.subgraphs or []
    if not subgraphs:
        return ModelWork(ops, loops, ["the file has no subgraph"])
    main = subgraphs[0]
    _subgraph_ops(f, 0, 1, ops)
    for i, op in enumerate(main.operators or []):
        if f.op_names[op.opcodeIndex] not in LOOP_OPS:
            continue
        opts = op.builtinOptions
        cond, body = int(opts.condSubgraphIndex), int(opts.bodySubgraphIndex)
        trips = _trip_count(f, main, op, subgraphs[cond])
        known = trips is not None
        if not known:
            notes.append(f"WHILE op {i}: trip count not derivable from the file; counted as 1")
            trips = 1
        carried = sum(_tensor_bytes(f, main, t) for t in _ints(op.inputs))
        start = len(ops)
        _subgraph_ops(f, cond, trips + 1, ops)
        _subgraph_ops(f, body, trips, ops)
        loops.append(LoopWork(index=i, trips=int(trips), carried_bytes=carried, trips_known=known,
                              values=len(_ints(op.inputs)),
                              body_ops=len(subgraphs[cond].operators or []) + len(subgraphs[body].operators or []),
                              quantized=any(o.dtype in ("int8", "int16") for o in ops[start:])))
    return ModelWork(ops, loops, notes, input_bytes=sum(_tensor_bytes(f, main, t) for t in _ints(main.inputs)))


def file_work(path: str | os.PathLike) -> ModelWork:
    return model_work(read_tflite(path))
