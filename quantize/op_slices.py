"""Cut a .tflite into one-op models, so the device agent can time each op in place (`edgeseq profile --ops`).

The route: every op of the main graph (and of a WHILE loop's cond and body) becomes two small models, the op once
and the op REPLICAS times side by side (the same input tensors, each copy with its own outputs). The agent feeds both
the tensors a full invoke of the real model produced, times them alternately, and takes (T_R - T_1) / (R - 1) as
the op's time per call: what one more such op costs inside a runtime, with the invoke's fixed cost (the Python call,
the interpreter, a delegate's entry) cancelled out. Only the Python agent and the device's own runtime are needed,
so it works the same on ai-edge-litert and tflite-runtime. LiteRT's profiler C API was tried first (see
docs/profiling.md, "Per-op time"): its events carry whole microseconds and XNNPACK's own op names, so the sub-µs
XNNPACK ops of these models read 0.

A WHILE loop in the main graph is cut too: its cond and body subgraphs are also written whole as capture models (the
agent runs them from the loop's first state, counting the trips, then again to the middle trip, whose tensors it
reads: at trip 0 a sequence sliced around step i has an empty prefix), and
their ops are cut like the main graph's, called once per trip (the cond once more). What cannot be cut, with the
reason `cut_ops` returns: custom ops, other control flow (IF, StableHLO regions, a loop inside a loop), resource
variables inside a loop, variable tensors (state the one-op models would not carry), and weights outside the
flatbuffer (>2 GiB models).

A model that keeps its state in resource variables (edgeseq's --state internal, kws_streaming, microWakeWord) is cut
too: CALL_ONCE's initialiser subgraph is written whole and timed once (it runs on the first invoke only, so it adds
nothing per invoke: calls 0, `once_ns`); a READ_VARIABLE or ASSIGN_VARIABLE slice takes its VAR_HANDLE with it (a
resource cannot be fed from outside), and a READ first assigns the variable the value the real invoke read (fed
like any input), so the replicas read what the model reads; VAR_HANDLE is timed like any op.

The pack handed to the agent is one uncompressed zip: `slices.json` (schema PACK_SCHEMA, the model's sha256, per op
its index, subgraph, type, dtypes, output shape, the tensors to feed and its two files) and the .tflite files.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq.quantize.slim import pack_model
from edgeseq.quantize.tflite.reader import TFLiteFile, read_tflite

PACK_SCHEMA = "edgeseq.op_slices/1"
REPLICAS = 9
_CONTROL_FLOW = ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex", "elseSubgraphIndex",
                 "initSubgraphIndex", "subgraph", "comparatorSubgraphIndex", "updateComputationSubgraphIndex",
                 "decompositionSubgraphIndex")
_STATE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


@dataclass
class OpSlices:
    """What `cut_ops` made: the ops (metadata the agent echoes back), the pack's files, or why nothing was cut."""

    ops: list[dict] = field(default_factory=list)
    loops: list[dict] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    reason: str | None = None

    def manifest(self, sha256: str) -> dict:
        return {"schema": PACK_SCHEMA, "model_sha256": sha256, "replicas": REPLICAS, "loops": self.loops,
                "ops": self.ops}


def _ints(vec: Any) -> list[int]:
    return [int(i) for i in vec] if vec is not None else []


def _subgraph_refs(op: Any) -> list[int]:
    out = []
    for opts in (op.builtinOptions, getattr(op, "builtinOptions2", None)):
        for name in _CONTROL_FLOW:
            v = getattr(opts, name, None) if opts is not None else None
            if isinstance(v, int) and not isinstance(v, bool):
                out.append(v)
    return out


def why_not(f: TFLiteFile) -> str | None:
    """Why the route cannot cut this model, or None."""
    if any((b.offset or 0) > 1 for b in f.model.buffers or []):
        return "its weights lie outside the flatbuffer (>2 GiB layout), which the one-op models cannot reference"
    subgraphs = f.model.subgraphs or []
    run = [0]
    for k, op in enumerate(subgraphs[0].operators or []):
        name = f.op_names[op.opcodeIndex]
        if name == "WHILE":
            run += [op.builtinOptions.condSubgraphIndex, op.builtinOptions.bodySubgraphIndex]
        elif name == "CALL_ONCE":
            init = subgraphs[op.builtinOptions.initSubgraphIndex]
            if any(_subgraph_refs(o) for o in init.operators or []):
                return f"op {k} is CALL_ONCE, whose initialiser runs other subgraphs itself"
        elif _subgraph_refs(op):
            return (f"op {k} is {name}, which runs other subgraphs inside it; the sub-model route cuts the main "
                    "graph and WHILE loops only")
    for s in run:
        sg = subgraphs[s]
        where = "" if s == 0 else f" of subgraph {s}"
        for k, op in enumerate(sg.operators or []):
            name = f.op_names[op.opcodeIndex]
            code = f.model.operatorCodes[op.opcodeIndex]
            if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == 32:  # BuiltinOperator.CUSTOM
                return f"op {k}{where} is the custom op {name!r}: a one-op model of it needs that op's kernel"
            if s and _subgraph_refs(op):
                return f"op {k}{where} is {name}, a loop or branch inside a loop, which the route does not cut"
            if s and name in _STATE_OPS:
                return (f"op {k}{where} is {name}: resource variables inside a loop, which the route does not "
                        "cut")
        if any(t.isVariable for t in sg.tensors or []):
            return f"subgraph {s} has variable tensors (state carried between invokes)"
    return None


class _Builder:
    """One small model from some tensors, ops and opcodes of `f`: constants keep their data, the rest are empty."""

    def __init__(self, f: TFLiteFile, sg: Any):
        from ai_edge_litert import schema_py_generated as schema

        self.f, self.sg, self.schema = f, sg, schema
        self.tensors: list = []
        self.buffers = [schema.BufferT()]
        self.codes: list = []
        self._code_of: dict[int, int] = {}
        self._buf_of: dict[int, int] = {}

    def tensor(self, old: int, name: str | None = None, fresh_output: bool = False) -> int:
        t = copy.copy(self.sg.tensors[old])
        if self.f.is_constant(t) and not fresh_output:
            if t.buffer not in self._buf_of:
                self._buf_of[t.buffer] = len(self.buffers)
                self.buffers.append(self.f.model.buffers[t.buffer])
            t.buffer = self._buf_of[t.buffer]
        else:
            t.buffer = 0
        t.name = (name or f"t{old}").encode()
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, op: Any, inputs: list[int], outputs: list[int], intermediates: list[int] | None = None) -> Any:
        if op.opcodeIndex not in self._code_of:
            self._code_of[op.opcodeIndex] = len(self.codes)
            self.codes.append(self.f.model.operatorCodes[op.opcodeIndex])
        o = copy.copy(op)
        o.opcodeIndex = self._code_of[op.opcodeIndex]
        o.inputs, o.outputs = inputs, outputs
        if intermediates is not None:
            o.intermediates = intermediates
        return o

    def model(self, ops: list, inputs: list[int], outputs: list[int]) -> bytes:
        s = self.schema
        g = s.SubGraphT()
        g.tensors, g.operators, g.inputs, g.outputs, g.name = self.tensors, ops, inputs, outputs, b"main"
        m = s.ModelT()
        m.version, m.description = 3, b"edgeseq op slice"
        m.operatorCodes, m.subgraphs, m.buffers = self.codes, [g], self.buffers
        return pack_model(m, 4096 + sum(len(b.data) for b in self.buffers if b.data is not None))


def _producer(sg: Any, tensor: int) -> Any:
    return next(o for o in sg.operators or [] if tensor in _ints(o.outputs))


def _assign_code(f: TFLiteFile) -> int:
    """The model's own ASSIGN_VARIABLE opcode (a READ slice assigns the value first); ValueError without one."""
    return next(i for i, name in enumerate(f.op_names) if name == "ASSIGN_VARIABLE")


def slice_op(f: TFLiteFile, sg: Any, op: Any, replicas: int) -> tuple[bytes, list[int]]:
    """The op `replicas` times, reading the same inputs; returns (model bytes, the original tensors fed, in order).
    A resource input comes with its VAR_HANDLE; a READ_VARIABLE's variable is first assigned the value it read."""
    b = _Builder(f, sg)
    ins, outs, mids = _ints(op.inputs), _ints(op.outputs), _ints(op.intermediates)
    local: dict[int, int] = {}
    feeds: list[int] = []
    inputs: list[int] = []  # the slice's own tensor for each feed
    new_ops, graph_outs = [], []
    for i in ins:
        if i >= 0 and i not in local:
            local[i] = b.tensor(i)
            if f.tensor_dtype(sg.tensors[i]) == "resource":
                new_ops.append(b.op(_producer(sg, i), [], [local[i]]))
                if f.op_names[op.opcodeIndex] == "READ_VARIABLE":
                    value = b.tensor(outs[0])  # named t<output>: fed the value the real invoke read
                    feeds.append(outs[0])
                    inputs.append(value)
                    assign = copy.copy(op)
                    assign.opcodeIndex = _assign_code(f)
                    assign.builtinOptionsType, assign.builtinOptions = 0, None
                    new_ops.append(b.op(assign, [local[i], value], []))
            elif not f.is_constant(sg.tensors[i]):
                feeds.append(i)
                inputs.append(local[i])
    for r in range(replicas):
        o_new = [b.tensor(i, f"r{r}_t{i}", fresh_output=True) for i in outs]
        m_new = [b.tensor(i, f"r{r}_m{i}", fresh_output=True) for i in mids] if mids else None
        new_ops.append(b.op(op, [local[i] if i >= 0 else -1 for i in ins], o_new, m_new))
        graph_outs += o_new
    return b.model(new_ops, inputs, graph_outs), feeds


def _whole(f: TFLiteFile, s: int) -> bytes:
    """Subgraph `s` as a model of its own, tensor indices unchanged (the agent reads them by index)."""
    sg = f.model.subgraphs[s]
    b = _Builder(f, sg)
    for i in range(len(sg.tensors or [])):
        b.tensor(i)
    ops = [b.op(op, _ints(op.inputs), _ints(op.outputs), _ints(op.intermediates) or None) for op in sg.operators]
    return b.model(ops, _ints(sg.inputs), _ints(sg.outputs))


def _dtypes(f: TFLiteFile, sg: Any, op: Any) -> str:
    def kinds(idx: list[int]) -> str:
        seen: list[str] = []
        for i in idx:
            if i >= 0 and not f.is_constant(sg.tensors[i]):
                d = f.tensor_dtype(sg.tensors[i])
                if d not in seen:
                    seen.append(d)
        return ",".join(seen) or "const"

    return f"{kinds(_ints(op.inputs))}->{kinds(_ints(op.outputs))}"


def cut_ops(path: str | os.PathLike | TFLiteFile, replicas: int = REPLICAS) -> OpSlices:
    """The one-op models of every op the model runs; `reason` set (and nothing cut) when the route cannot."""
    f = path if isinstance(path, TFLiteFile) else read_tflite(path)
    reason = why_not(f)
    if reason:
        return OpSlices(reason=reason)
    out = OpSlices()
    subgraphs = f.model.subgraphs
    todo: list[tuple[int, dict | None]] = [(0, None)]
    for k, op in enumerate(subgraphs[0].operators or []):
        if f.op_names[op.opcodeIndex] == "WHILE":
            cond, body = op.builtinOptions.condSubgraphIndex, op.builtinOptions.bodySubgraphIndex
            loop = {"op": k, "inputs": _ints(op.inputs), "cond": cond, "body": body,
                    "cond_inputs": _ints(subgraphs[cond].inputs), "cond_output": _ints(subgraphs[cond].outputs)[0],
                    "body_inputs": _ints(subgraphs[body].inputs), "body_outputs": _ints(subgraphs[body].outputs),
                    "cond_file": f"sg{cond}.tflite", "body_file": f"sg{body}.tflite"}
            out.files[loop["cond_file"]], out.files[loop["body_file"]] = _whole(f, cond), _whole(f, body)
            out.loops.append(loop)
            todo += [(cond, {"while": k, "role": "cond"}), (body, {"while": k, "role": "body"})]
    for s, loop in todo:
        sg = subgraphs[s]
        for k, op in enumerate(sg.operators or []):
            name = f.op_names[op.opcodeIndex]
            if name == "WHILE":
                continue  # its cond and body ops are cut instead; the loop's own bookkeeping is not timed
            if name == "CALL_ONCE":  # the initialiser, whole: timed once, on a fresh interpreter's first invoke
                init = op.builtinOptions.initSubgraphIndex
                entry = {"index": k, "subgraph": s, "type": name, "dtypes": "", "output_shape": [], "feeds": [],
                         "init": f"sg{init}.tflite", "loop": loop}
                out.files[entry["init"]] = _whole(f, init)
                out.ops.append(entry)
                continue
            one, feeds = slice_op(f, sg, op, 1)
            many, _ = slice_op(f, sg, op, replicas)
            outs = _ints(op.outputs)
            entry = {"index": k, "subgraph": s, "type": name, "dtypes": _dtypes(f, sg, op),
                     "output_shape": [int(d) for d in sg.tensors[outs[0]].shape] if outs else [],
                     "feeds": feeds, "one": f"op{s}_{k}_1.tflite", "many": f"op{s}_{k}_{replicas}.tflite",
                     "loop": loop}
            out.files[entry["one"]], out.files[entry["many"]] = one, many
            out.ops.append(entry)
    return out


def write_pack(slices: OpSlices, sha256: str, dest: str | os.PathLike) -> Path:
    """The pack the agent reads with --ops: an uncompressed zip of slices.json and the one-op models."""
    dest = Path(dest)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("slices.json", json.dumps(slices.manifest(sha256), separators=(",", ":")))
        for name, data in slices.files.items():
            z.writestr(name, data)
    return dest
