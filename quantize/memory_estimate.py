"""What a .tflite will cost in memory on LiteRT, predicted from the file alone (no TensorFlow, no runtime).

`estimate_memory(f)` predicts the agent's `memory.model_peak_kb`: the peak resident memory a model adds to a process
that has already imported the runtime. The parts, in kB:

- `weights_kb`  the constant tensors. LiteRT memory-maps the file and its verifier reads every page, so the whole
                file is resident (`file_kb`: the weights plus the graph description).
- `graph_kb`    the rest of the file plus the interpreter's own records: a TfLiteTensor per tensor, nodes,
                quantization parameters, each kernel's prepared data (calibrated per tensor), and what any first
                model adds (the interpreter, its op resolver).
- `arena_kb`    activations, placed the way LiteRT's ArenaPlanner and SimpleMemoryArena place them (see `plan_arena`),
                every subgraph control flow reaches in its own arena; plus the persistent arena (variables,
                constants dequantized once).
- `state_kb`    what a step model carries between steps (inputs that are also outputs, `<name>_at_pos` KV caches,
                variables). It lives in the arena (counted there) and once more in the runner's own copy (counted
                in the total).
- `xnnpack_kb`  the XNNPACK delegate (a default delegate of both runtimes) packs the weights of every node it takes
                into its own layout, one copy per node even when nodes share one buffer: an unrolled RNN holds one
                packed copy per time step, which is why it costs 6-16 MB more than its looped twin. Plus its
                records per node.
- `total_kb`    their sum: the prediction of `model_peak_kb`.
- `code_kb`     not in the total: the runtime's machine code a first model pages in (load, allocate, invoke), the
                prediction of the agent's `memory.code_kb`. File-backed and shared between processes; how much of
                it is already resident before a model loads depends on the page cache, so the agent measures it
                apart (agent schema edgeseq.agent/3) and the model's figure leaves it out. A memory limit on the
                whole process has to hold it (`edgeseq.profiling.memory_need`).

The per-record figures are calibrated against the agent's measurements (benchmarks/memory.py prints measured vs
predicted): x86_64, ai-edge-litert 2.3 and tflite-runtime 2.14. On another CPU or runtime build they may be off by a
few hundred kB; the arena, state and packed-weight parts come from the file alone.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from edgeseq.quantize.tflite.reader import TFLiteFile

ALIGNMENT = 64  # LiteRT's kDefaultTensorAlignment and kDefaultArenaAlignment
NEVER = 1 << 62  # "never deallocated" (kNodeNotAssigned as the last node)
# The planner is quadratic in the tensors of a subgraph (4,000 all alive at once: ~1.4 s); past this many (an unrolled
# RNN at T=64 has ~1,300) the arena is the peak of the live bytes instead, the least any planner needs
# (`arena_method`: "liveness"; for an unrolled graph's small short-lived tensors the two are close).
MAX_PLANNED = 4000

# Ops whose output may take its input's buffer (LiteRT's inplace_operator flags, XNNPACK's in-place elementwise
# nodes): when the input has no other reader, is not a graph input or output, and has the output's size.
_UNARY_IN_PLACE = frozenset("""ABS CEIL COS ELU EXP FLOOR GELU HARD_SWISH LEAKY_RELU LOG LOGISTIC LOG_SOFTMAX NEG
    RELU RELU6 RELU_N1_TO_1 ROUND RSQRT SIGN SIN SOFTMAX SQRT SQUARE TANH""".split())
_BINARY_IN_PLACE = frozenset("ADD SUB MUL DIV SQUARED_DIFFERENCE MAXIMUM MINIMUM POW FLOOR_DIV FLOOR_MOD".split())
_DATA_UNMODIFIED = frozenset("RESHAPE SQUEEZE EXPAND_DIMS BITCAST".split())  # may share even with other readers
_CALLS = {"WHILE": ("condSubgraphIndex", "bodySubgraphIndex"), "IF": ("thenSubgraphIndex", "elseSubgraphIndex"),
          "CALL_ONCE": ("initSubgraphIndex",)}

# Builtins the XNNPACK delegate takes (float32; int8/uint8 where the calibration says it does), and the ops whose
# weights it packs: (weights input, axis of the output channels).
_XNNPACK_OPS = frozenset("""ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CEIL CONCATENATION CONV_2D DEPTH_TO_SPACE
    DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EXP EXPAND_DIMS FLOOR FULLY_CONNECTED GELU HARD_SWISH LEAKY_RELU LOGISTIC
    MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL NEG PAD PRELU QUANTIZE RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR ROUND
    RSQRT SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM TANH
    TRANSPOSE TRANSPOSE_CONV""".split())
_PACKED = {"FULLY_CONNECTED": (1, 0), "CONV_2D": (1, 0), "DEPTHWISE_CONV_2D": (1, -1), "TRANSPOSE_CONV": (1, 0),
           "CONV_3D": (1, -1), "BATCH_MATMUL": (1, -1)}
_QUANTIZED = ("int8", "uint8", "int16")


@dataclass(frozen=True)
class Calibration:
    """What the file cannot tell about one runtime build: fitted to the agent's measurements of the model's memory
    without the runtime's code pages (least squares over 50 zoo, step, KV-cache and hand-built models, tiny to base
    presets, fp32 and int8, T=16..1024, XNNPACK on and off; benchmarks/memory.py)."""

    runtime: str
    fixed_kb: float  # what any first model adds: the interpreter, its resolver, first allocations
    tensor_bytes: float  # the interpreter's records per tensor (tensor, node, quantization, kernel data)
    xnnpack_node_bytes: float  # the delegate's records per node it takes
    xnnpack_pack: float  # packed bytes per byte of weights (0: the delegate keeps no copy)
    xnnpack_int8: bool  # whether the default delegate takes int8 nodes
    code_kb: float  # machine code a first model pages in (not in total_kb; the agent's memory.code_kb)
    int8_code_kb: float  # the difference when int8 kernels run


CALIBRATIONS = {
    # all 50 models within 20 % or 256 kB (the Transformer at T=1024, 18 MB, within 3 %; the GRU at T=1024 5 %).
    # fixed_kb lowered by 80 with agent 3.1, which stopped charging the model ~80-200 kB of its own input buffers
    # (benchmarks/memory.py, 17 models: median |error| 19 % -> 4 %, worst 41 % -> 13 %)
    "ai_edge_litert": Calibration("ai_edge_litert 2.3, x86_64", fixed_kb=48.0, tensor_bytes=1699.0,
                                  xnnpack_node_bytes=1531.0, xnnpack_pack=1.0, xnnpack_int8=True,
                                  code_kb=3260.0, int8_code_kb=224.0),
    # rougher (44 of 49 within 20 % or 256 kB): its XNNPACK takes float nodes only, packs less inside WHILE bodies
    # than counted here (base-preset loops ~1 MB high), and it plans attention differently (a T x T score tensor
    # costs it ~4 copies; the Transformer at T=1024, 54 MB measured, is left out of the fit and predicted far too low)
    # (fixed_kb lowered by 80 with agent 3.1: median |error| 27 % -> 12 % over benchmarks/memory.py's 17 models)
    "tflite_runtime": Calibration("tflite_runtime 2.14, x86_64", fixed_kb=112.0, tensor_bytes=1185.0,
                                  xnnpack_node_bytes=4958.0, xnnpack_pack=1.0, xnnpack_int8=False,
                                  code_kb=3086.0, int8_code_kb=-270.0),  # int8: its XNNPACK code stays out
}


def _ins(op: Any) -> list[int]:
    return [int(i) for i in op.inputs] if op.inputs is not None else []


def _outs(op: Any) -> list[int]:
    return [int(i) for i in op.outputs] if op.outputs is not None else []


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def reachable_subgraphs(f: TFLiteFile) -> list[int]:
    """Subgraph 0 and every subgraph its control flow calls, in order. Others never allocate."""
    order, stack = [0], [0]
    while stack:
        for op in f.model.subgraphs[stack.pop()].operators or []:
            for field in _CALLS.get(f.op_names[op.opcodeIndex], ()):
                j = getattr(op.builtinOptions, field, None)
                if isinstance(j, int) and 0 <= j < len(f.model.subgraphs) and j not in order:
                    order.append(j)
                    stack.append(j)
    return order


def while_conds(f: TFLiteFile) -> set[int]:
    """The subgraphs some WHILE op calls as its condition (see `plan_arena`'s `cond`)."""
    field = _CALLS["WHILE"][0]
    return {j for si in reachable_subgraphs(f) for op in f.model.subgraphs[si].operators or []
            if f.op_names[op.opcodeIndex] == "WHILE" and isinstance(j := getattr(op.builtinOptions, field, None), int)}


class _Arena:
    """LiteRT's SimpleMemoryArena::Allocate: the smallest gap, among allocations whose node interval overlaps,
    that fits (ties: the lowest offset), else the end; offsets aligned to ALIGNMENT."""

    def __init__(self) -> None:
        self.allocs: list[tuple[int, int, int, int]] = []  # (offset, size, first node, last node), by offset
        self.high_water = 0

    def allocate(self, size: int, first: int, last: int) -> int:
        if size == 0:
            return 0
        best, best_fit, current = None, None, 0
        for offset, asize, afirst, alast in self.allocs:
            if alast < first or afirst > last:
                continue
            aligned = _align(current)
            if aligned + size <= offset and (best_fit is None or offset - current < best_fit):
                best, best_fit = aligned, offset - current
            current = max(current, offset + asize)
            if best_fit == 0:
                break
        if best is None:
            best = _align(current)
        self.high_water = max(self.high_water, best + size)
        bisect.insort(self.allocs, (best, size, first, last))
        return best


def plan_arena(f: TFLiteFile, index: int, cond: bool = False) -> dict[str, int]:
    """One subgraph's arena as LiteRT plans it: {"arena_bytes", "persistent_bytes", "tensors", "method"}.

    Lifetimes over the execution order: graph inputs and variables from the first node, outputs never freed, every
    other tensor from the op that writes it to the last op that reads it (a tensor nobody reads is never freed);
    an in-place op's output shares its input's buffer. The tensors that live throughout go first, then the rest by
    size (largest first, ties by first use), each into the best-fitting gap among the allocations it overlaps
    (`_Arena`). Constants stay in the mapped file; variables and dequantized constants go to the persistent arena.
    A subgraph called by control flow is planned the same way: LiteRT's WHILE copies the loop's values into the
    cond's and the body's own input tensors and back from the body's outputs on every trip, so a sequence a loop
    passes through is held by the caller and once more by the body. A loop's cond (`cond`) gets only the values it
    reads: LiteRT's WHILE drops the others from it (Subgraph::RemoveUnusedInputs) and never copies them."""
    sg = f.model.subgraphs[index]
    tensors, ops = sg.tensors or [], list(sg.operators or [])
    g_in = {int(i) for i in (sg.inputs if sg.inputs is not None else []) if int(i) >= 0}
    g_out = {int(i) for i in (sg.outputs if sg.outputs is not None else []) if int(i) >= 0}
    const = {i for i, t in enumerate(tensors) if f.is_constant(t)}
    persistent = {i for i, t in enumerate(tensors) if t.isVariable and i not in const}
    readers: dict[int, int] = {}
    for op in ops:
        for t in _ins(op):
            if t >= 0:
                readers[t] = readers.get(t, 0) + 1
    if cond:
        g_in = {t for t in g_in if readers.get(t) or t in g_out}
    root: dict[int, int] = {}

    def find(t: int) -> int:
        while t in root:
            t = root[t]
        return t

    size = {i: f.tensor_bytes(t) for i, t in enumerate(tensors)}
    for op in ops:
        name, ins, outs = f.op_names[op.opcodeIndex], _ins(op), _outs(op)
        if name == "DEQUANTIZE" and ins and ins[0] in const and outs:
            persistent.add(outs[0])  # computed once from a constant and kept
            continue
        if not outs or outs[0] < 0 or not (name in _UNARY_IN_PLACE or name in _BINARY_IN_PLACE
                                           or name in _DATA_UNMODIFIED):
            continue
        out = outs[0]
        for t in ins[: 2 if name in _BINARY_IN_PLACE else 1]:
            if t < 0 or t in const or t in persistent or t in g_in or t in g_out or size[t] != size[out]:
                continue
            if readers.get(t, 0) != 1 and name not in _DATA_UNMODIFIED:
                continue
            root[out] = find(t)
            break
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in g_in | persistent:
        first[find(t)] = 0
    for n, op in enumerate(ops):
        for t in _outs(op):
            if t >= 0 and t not in const:
                first.setdefault(find(t), n)
        for t in _ins(op):
            if t >= 0 and t not in const:
                r = find(t)
                first.setdefault(r, n)
                last[r] = max(last.get(r, n), n)
    for t in g_out | persistent:
        last[find(t)] = NEVER
    arena, pers = _Arena(), 0
    todo = []
    for r, start in first.items():
        if find(r) != r:
            continue
        end = last.get(r, NEVER)  # written, never read: never freed
        if r in persistent:
            pers += _align(size[r])
            continue
        whole = start == 0 and end == NEVER
        todo.append((0 if whole else 1, r if whole else -size[r], start, r, end))
    if len(todo) > MAX_PLANNED:
        return {"arena_bytes": _live_peak(todo, size), "persistent_bytes": pers, "tensors": len(todo),
                "method": "liveness"}
    todo.sort()
    for _, _, start, r, end in todo:
        arena.allocate(size[r], start, end)
    return {"arena_bytes": _align(arena.high_water) if arena.high_water else 0, "persistent_bytes": pers,
            "tensors": len(todo), "method": "planner"}


def _live_peak(todo: list, size: dict[int, int]) -> int:
    """The largest sum of aligned sizes live at one node."""
    events: dict[int, int] = {}
    for _, _, start, r, end in todo:
        events[start] = events.get(start, 0) + _align(size[r])
        if end != NEVER:
            events[end + 1] = events.get(end + 1, 0) - _align(size[r])
    peak = live = 0
    for node in sorted(events):
        live += events[node]
        peak = max(peak, live)
    return peak


def _signature(f: TFLiteFile) -> tuple[dict[str, int], dict[str, int]]:
    """({input name: tensor}, {output name: tensor}) of the first signature, else tensor names (serving_default_
    and :0 stripped): how the runner addresses a step model's state."""
    sg = f.model.subgraphs[0]

    def text(v: Any) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

    n = len(sg.tensors or [])
    sigs = f.model.signatureDefs or []
    if sigs and sigs[0].subgraphIndex == 0:  # (indices checked here: the verifier does not read signatures)
        return ({text(m.name): int(m.tensorIndex) for m in sigs[0].inputs or [] if 0 <= m.tensorIndex < n},
                {text(m.name): int(m.tensorIndex) for m in sigs[0].outputs or [] if 0 <= m.tensorIndex < n})

    def short(i: int) -> str:
        name = text(sg.tensors[i].name).split(":")[0]
        return name.removeprefix("serving_default_")

    return ({short(int(i)): int(i) for i in sg.inputs if int(i) >= 0},
            {short(int(i)): int(i) for i in sg.outputs if int(i) >= 0})


def state_bytes(f: TFLiteFile) -> int:
    """Bytes a step model carries between steps: inputs named like an output, inputs with a `<name>_at_pos`
    output (KV caches, held whole), variable tensors and resource variables (ASSIGN_VARIABLE values)."""
    sg = f.model.subgraphs[0]
    ins, outs = _signature(f)
    total = sum(f.tensor_bytes(sg.tensors[i]) for n, i in ins.items() if n in outs or f"{n}_at_pos" in outs)
    for si in reachable_subgraphs(f):
        s = f.model.subgraphs[si]
        total += sum(f.tensor_bytes(t) for t in s.tensors or [] if t.isVariable and not f.is_constant(t))
        seen = set()
        for op in s.operators or []:
            ins_ = _ins(op)
            if (f.op_names[op.opcodeIndex] == "ASSIGN_VARIABLE" and len(ins_) == 2 and min(ins_) >= 0
                    and ins_[0] not in seen):
                seen.add(ins_[0])
                total += f.tensor_bytes(s.tensors[ins_[1]])
    return total


def _op_dtype(f: TFLiteFile, sg: Any, op: Any, const: set[int]) -> str:
    for i in _ins(op):
        if i >= 0 and i not in const:
            return f.tensor_dtype(sg.tensors[i])
    outs = _outs(op)
    return f.tensor_dtype(sg.tensors[outs[0]]) if outs and outs[0] >= 0 else "none"


def _xnnpack(f: TFLiteFile, subgraphs: list[int], cal: Calibration) -> dict[str, int]:
    """Nodes the delegate takes and the bytes of the weights it packs (per node: shared buffers count again)."""
    nodes = packed = int8_nodes = 0
    dtypes = ("float32", *(_QUANTIZED[:2] if cal.xnnpack_int8 else ()))
    for si in subgraphs:
        sg = f.model.subgraphs[si]
        tensors = sg.tensors or []
        const = {i for i, t in enumerate(tensors) if f.is_constant(t)}
        dequantized = {}  # fp16 / int8 weights dequantized once: XNNPACK packs them as float32
        for op in sg.operators or []:
            ins, outs = _ins(op), _outs(op)
            if f.op_names[op.opcodeIndex] == "DEQUANTIZE" and ins and ins[0] in const and outs:
                dequantized[outs[0]] = ins[0]
        for op in sg.operators or []:
            name = f.op_names[op.opcodeIndex]
            dtype = _op_dtype(f, sg, op, const | set(dequantized))
            if name not in _XNNPACK_OPS or dtype not in dtypes:
                continue
            nodes += 1
            int8_nodes += dtype in _QUANTIZED
            if name not in _PACKED:
                continue
            wi, axis = _PACKED[name]
            ins = _ins(op)
            w = ins[wi] if len(ins) > wi else -1
            if w < 0 or (w not in const and w not in dequantized):
                continue
            t = tensors[w]
            shape = [max(int(d), 1) for d in (t.shape if t.shape is not None else [])] or [1]
            elements = 1
            for d in shape:
                elements *= d
            itemsize = 4 if w in dequantized or f.tensor_dtype(t) not in _QUANTIZED else 1
            channels = shape[axis]
            extra = 8 if itemsize == 1 else 4  # bias, and a scale per channel when quantized
            packed += elements * itemsize + channels * extra
    return {"nodes": nodes, "packed_bytes": packed, "int8_nodes": int8_nodes}


def estimate_memory(f: TFLiteFile, runtime: str = "ai_edge_litert", xnnpack: bool = True) -> dict[str, Any]:
    """The `memory_estimate` of `edgeseq inspect --json`, in kB (see the module docstring for each part): the
    prediction of the agent's `memory.model_peak_kb` on `runtime` (a key of CALIBRATIONS), XNNPACK on or off."""
    cal = CALIBRATIONS[runtime]
    subgraphs = reachable_subgraphs(f)
    arena, method, conds = 0, "planner", while_conds(f)
    for si in subgraphs:
        plan = plan_arena(f, si, cond=si in conds)
        arena += plan["arena_bytes"] + plan["persistent_bytes"]
        if plan["method"] != "planner":
            method = plan["method"]
    weights = sum(len(f.buffer_data(b)) for b in sorted(f._const))
    n_tensors = sum(len(f.model.subgraphs[si].tensors or []) for si in subgraphs)
    xnn = _xnnpack(f, subgraphs, cal) if xnnpack else {"nodes": 0, "packed_bytes": 0, "int8_nodes": 0}
    delegate = (xnn["packed_bytes"] * cal.xnnpack_pack + xnn["nodes"] * cal.xnnpack_node_bytes) / 1024
    int8 = any(f.tensor_dtype(t) in _QUANTIZED for si in subgraphs for t in f.model.subgraphs[si].tensors or []
               if not f.is_constant(t))
    parts = {
        "weights_kb": weights / 1024,
        "graph_kb": cal.fixed_kb + (len(f.data) - weights + n_tensors * cal.tensor_bytes) / 1024,
        "arena_kb": arena / 1024,
        "state_kb": state_bytes(f) / 1024,
        "xnnpack_kb": delegate,
    }
    return {
        **{k: round(v, 1) for k, v in parts.items()},
        "total_kb": round(sum(parts.values()), 1),
        "code_kb": round(cal.code_kb + (cal.int8_code_kb if int8 else 0.0), 1),
        "file_kb": round(len(f.data) / 1024, 1),
        "xnnpack_nodes": xnn["nodes"],
        "xnnpack_packed_kb": round(xnn["packed_bytes"] / 1024, 1),
        "arena_method": method,
        "calibration": cal.runtime,
        "xnnpack": xnnpack,
    }
