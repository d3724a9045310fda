"""Structural checks of a .tflite, so nothing downstream (inspect, MACs, memory, manifest, LiteRT) meets a bad index.

The rules follow LiteRT's own verifier (tensorflow/lite/core/tools/verifier.cc) and the checks its interpreter builder
and control-flow kernels make: every buffer, tensor, opcode and subgraph index in range (-1 only as an optional op
input), builtin codes inside the schema's enum, custom codes named, names UTF-8, shapes non-negative, a constant's
bytes equal to shape x dtype, quantization parameters consistent, WHILE/IF wired to existing subgraphs of the right
arity, no control-flow cycle, and every op input produced before it is read. Plus sanity caps: no tensor claims more
than 2**40 bytes, and index lists no longer than the file has room for.

The flatbuffer itself (offsets, alignment, bounds) is checked before unpacking, by `tflite_flatbuffer`; these checks
run on the unpacked object tree. Each raises ModelError naming the first inconsistency, e.g. "x.tflite: subgraph 0 operator 3 (WHILE) names body subgraph 7, but
the file has 2 subgraphs".
"""

from __future__ import annotations

from typing import Any

from edgeseq.core.errors import ModelError

HINT = "re-convert or re-copy the model"
SCHEMA_VERSION = 3
MAX_TENSOR_BYTES = 2**40  # a sanity bound for activations; constants must also fit in the file
ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2, "COMPLEX64": 8,
            "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4, "UINT16": 2, "BFLOAT16": 2,
            "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1}
_PACKED = {"INT4": 2, "UINT4": 2, "INT2": 4}  # values per byte when packed (LiteRT also accepts one per byte)
_NO_DATA = ("RESOURCE", "VARIANT")
# Option fields that name subgraphs (control flow and StableHLO regions), on builtinOptions or builtinOptions2.
_SUBGRAPH_FIELDS = ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex", "elseSubgraphIndex",
                    "initSubgraphIndex", "subgraph", "comparatorSubgraphIndex", "updateComputationSubgraphIndex",
                    "decompositionSubgraphIndex")
# Ops that cannot run without their options (LiteRT would default the subgraph indices to 0: the main graph).
_NEEDS_OPTIONS = {"WHILE": "WhileOptionsT", "IF": "IfOptionsT", "CALL_ONCE": "CallOnceOptionsT",
                  "STABLEHLO_WHILE": "StablehloWhileOptionsT", "STABLEHLO_CASE": "StablehloCaseOptionsT",
                  "STABLEHLO_COMPOSITE": "StableHLOCompositeOptionsT"}
# (min, max) inputs of the ops whose inputs the analysis reads, and which of them must be present (not -1).
_ARITY = {"FULLY_CONNECTED": (2, 3, 2), "CONV_2D": (2, 3, 2), "DEPTHWISE_CONV_2D": (2, 3, 2), "CONV_3D": (2, 3, 2),
          "TRANSPOSE_CONV": (3, 4, 3), "BATCH_MATMUL": (2, 2, 2), "LESS": (2, 2, 2), "LESS_EQUAL": (2, 2, 2)}


# Builtin ops whose every input is required: LiteRT's kernels read them unchecked, so an absent (-1) one crashes the
# process (found by fuzzing: TANH, RESHAPE). Ops with optional inputs (FULLY_CONNECTED's bias, LSTM's peepholes, PADV2's
# constant, ...) and custom ops are not listed.
_NO_OPTIONAL = frozenset("""ABS ADD ADD_N ARG_MAX ARG_MIN AVERAGE_POOL_2D BATCH_MATMUL BROADCAST_TO CAST CEIL
    CONCATENATION COS CUMSUM DEQUANTIZE DIV ELU EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD GATHER GATHER_ND
    GELU GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT
    LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL NEG NOT_EQUAL PACK POW PRELU QUANTIZE RANGE
    REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE RSQRT SELECT SELECT_V2 SHAPE SIN SLICE SOFTMAX
    SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE UNPACK WHILE ZEROS_LIKE
    """.split())


def _fail(path: str, what: str) -> ModelError:
    return ModelError(f"{path}: {what}", HINT)


def _n(vec: Any) -> int:
    return 0 if vec is None or isinstance(vec, int) else len(vec)


def _text(value: Any, path: str, what: str) -> str:
    if value is None:
        return ""
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise _fail(path, f"{what} is not valid UTF-8") from None


def verify_model(schema: Any, model: Any, data: bytes, path: str, op_names: list[str]) -> None:
    """Raise ModelError for the first structural inconsistency of an unpacked ModelT (see the module docstring)."""
    if model.version != SCHEMA_VERSION:
        raise _fail(path, f"schema version {model.version}, but LiteRT reads version {SCHEMA_VERSION}")
    subgraphs, buffers = model.subgraphs or [], model.buffers
    if not subgraphs:
        raise _fail(path, "the file has no subgraphs")
    if buffers is None:
        raise _fail(path, "the file has no buffer list")
    ints = sum(_n(sg.inputs) + _n(sg.outputs) + sum(_n(op.inputs) + _n(op.outputs) + _n(op.intermediates)
                                                  for op in sg.operators or [])
               + sum(_n(t.shape) + _n(t.shapeSignature) for t in sg.tensors or []) for sg in subgraphs)
    if ints > len(data) // 4:
        raise _fail(path, f"its index lists add up to more entries ({ints:,}) than a {len(data):,}-byte file can hold")
    for b, buf in enumerate(buffers):
        if buf.offset > 1 and buf.offset + buf.size > len(data):
            raise _fail(path, f"buffer {b} runs past the end of the file (offset {buf.offset:,} + {buf.size:,} bytes "
                              f"> {len(data):,}); truncated?")
    dtypes = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_") and isinstance(v, int)}
    calls: dict[int, set[int]] = {}
    for si, sg in enumerate(subgraphs):
        _text(sg.name, path, f"subgraph {si}'s name")
        if sg.tensors is None or sg.operators is None:
            raise _fail(path, f"subgraph {si} has no {'tensor' if sg.tensors is None else 'operator'} list")
        for ti, t in enumerate(sg.tensors):
            _check_tensor(t, f"subgraph {si} tensor {ti}", buffers, dtypes, path)
        n = len(sg.tensors)
        for kind, vec in (("input", sg.inputs), ("output", sg.outputs)):
            for i in vec if vec is not None else []:
                if not 0 <= int(i) < n:
                    raise _fail(path, f"subgraph {si} {kind} names tensor {int(i)}, but subgraph {si} has {n} tensors")
        calls[si] = _check_operators(model, si, sg, op_names, dtypes, path)
    _check_acyclic(calls, path)
    for k, sig in enumerate(model.signatureDefs or []):
        _text(sig.signatureKey, path, f"signature {k}'s key")
        if not 0 <= sig.subgraphIndex < len(subgraphs):
            raise _fail(path, f"signature {k} names subgraph {sig.subgraphIndex}, but the file has "
                              f"{len(subgraphs)} subgraphs")
        n = len(subgraphs[sig.subgraphIndex].tensors)
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            _text(tm.name, path, f"a tensor name in signature {k}")
            if not 0 <= tm.tensorIndex < n:
                raise _fail(path, f"signature {k} names tensor {tm.tensorIndex}, but its subgraph has {n} tensors")
    for k, meta in enumerate(model.metadata or []):
        _text(meta.name, path, f"metadata {k}'s name")
        if not 0 <= meta.buffer < len(buffers):
            raise _fail(path, f"metadata {k} names buffer {meta.buffer}, but the file has {len(buffers)} buffers")
    for b in model.metadataBuffer if model.metadataBuffer is not None else []:
        if not 0 <= int(b) < len(buffers):
            raise _fail(path, f"the metadata buffer list names buffer {int(b)}, but the file has {len(buffers)} buffers")


def opcode_names(schema: Any, model: Any, path: str) -> list[str]:
    """Per operator_codes index: the builtin's name, or a CUSTOM op's code (e.g. 'FlexTensorListReserve'); checked."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    top = max(names)
    out = []
    for k, code in enumerate(model.operatorCodes or []):
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if not 0 <= builtin <= top:
            raise _fail(path, f"operator code {k} is builtin {builtin}, outside the schema's 0..{top} (an unknown op)")
        custom = _text(code.customCode, path, f"operator code {k}'s custom name")
        if builtin == schema.BuiltinOperator.CUSTOM and not custom:
            raise _fail(path, f"operator code {k} is a custom op without a name")
        out.append(custom if builtin == schema.BuiltinOperator.CUSTOM else names[builtin])  # as LiteRT resolves it
    return out


def _elements(shape: Any, cap: int) -> int | None:
    """Product of max(d, 1) over `shape`, or None once it passes `cap` (so a 10**6-dim shape costs nothing)."""
    total = 1
    for d in shape:
        total *= max(int(d), 1)
        if total > cap:
            return None
    return total


def _check_tensor(t: Any, where: str, buffers: list, dtypes: dict[int, str], path: str) -> None:
    name = _text(t.name, path, f"{where}'s name")
    where = f"{where} ({name})" if name else where
    dtype = dtypes.get(t.type)
    if dtype is None:
        raise _fail(path, f"{where} has type {t.type}, outside the schema's tensor types")
    if not 0 <= t.buffer < len(buffers):
        raise _fail(path, f"{where} names buffer {t.buffer}, but the file has {len(buffers)} buffers")
    shape = [int(d) for d in t.shape] if t.shape is not None else None
    if shape is not None and any(d < 0 for d in shape):
        raise _fail(path, f"{where} has a negative dimension in shape {shape}")
    if t.shapeSignature is not None and any(int(d) < -1 for d in t.shapeSignature):
        raise _fail(path, f"{where} has a dimension below -1 in its shape signature")
    itemsize = ITEMSIZE.get(dtype, 1)
    if shape is not None and _elements(shape, MAX_TENSOR_BYTES // itemsize) is None:
        raise _fail(path, f"{where} claims shape {shape[:8]}{'...' if len(shape) > 8 else ''} "
                          f"({dtype.lower()}), more than 2**40 bytes")
    buf = buffers[t.buffer] if t.buffer > 0 else None
    # A data vector, even an empty one, makes a constant for LiteRT: its size must match (found by fuzzing).
    size = None if buf is None else (buf.size if buf.offset > 1 else (None if buf.data is None else len(buf.data)))
    if size is not None and shape is not None and t.sparsity is None:
        _check_constant_size(t, where, dtype, shape, size, buf, path)
    if t.quantization is not None:
        _check_quantization(t.quantization, where, shape, path)


def _check_constant_size(t: Any, where: str, dtype: str, shape: list[int], size: int, buf: Any, path: str) -> None:
    elements = 1
    for d in shape:
        elements *= d
    if dtype == "STRING":
        if buf.offset <= 1:
            _check_string_buffer(bytes(buf.data), where, path)
        return
    if dtype in _NO_DATA:
        raise _fail(path, f"{where} is a {dtype.lower()} tensor with constant data")
    if dtype in _PACKED:
        allowed = {elements, -(-elements // _PACKED[dtype])}
    else:
        allowed = {elements * ITEMSIZE[dtype]}
    if size not in allowed:
        raise _fail(path, f"{where} is a {dtype.lower()}{shape} constant, which needs {min(allowed):,} bytes, but its "
                          f"buffer holds {size:,}")


def _check_string_buffer(raw: bytes, where: str, path: str) -> None:
    """LiteRT's string layout: count, count + 1 offsets (first = header size, last = buffer size), then the bytes."""
    import numpy as np

    if len(raw) < 4:
        raise _fail(path, f"{where} is a string constant with a {len(raw)}-byte buffer")
    count = int(np.frombuffer(raw[:4], "<u4")[0])
    header = (count + 2) * 4
    if header > len(raw):
        raise _fail(path, f"{where} is a string constant claiming {count:,} strings in {len(raw):,} bytes")
    offsets = np.frombuffer(raw[4:header], "<u4").astype(np.int64)
    if offsets[0] != header or offsets[-1] != len(raw) or bool(np.any(np.diff(offsets) < 0)):
        raise _fail(path, f"{where} is a string constant with inconsistent string offsets")


def _check_quantization(q: Any, where: str, shape: list[int] | None, path: str) -> None:
    """LiteRT's interpreter builder: quantized_dimension in range, 1 or dims[qd] scales, as many zero points."""
    scales = _n(q.scale)
    if scales == 0:
        return
    rank = len(shape) if shape is not None else 0
    qd = int(q.quantizedDimension)
    if qd < 0 or (rank and qd >= rank):
        raise _fail(path, f"{where} is quantized along dimension {qd}, but has rank {rank}")
    if scales != 1 and rank and scales != shape[qd]:
        raise _fail(path, f"{where} has {scales} quantization scales, but dimension {qd} has size {shape[qd]}")
    if _n(q.zeroPoint) != scales:
        raise _fail(path, f"{where} has {scales} quantization scales but {_n(q.zeroPoint)} zero points")


def _check_operators(model: Any, si: int, sg: Any, op_names: list[str], dtypes: dict[int, str],
                     path: str) -> set[int]:
    """Index, arity and dataflow checks of subgraph `si`'s operators; returns the subgraphs its ops call."""
    subgraphs, buffers = model.subgraphs, model.buffers
    n = len(sg.tensors)
    available = {int(i) for i in sg.inputs} if sg.inputs is not None else set()
    for ti, t in enumerate(sg.tensors):
        buf = buffers[t.buffer] if t.buffer > 0 else None
        if t.isVariable or (buf is not None and (buf.data is not None or buf.offset > 1)):
            available.add(ti)
    fixed = set(available)
    calls: set[int] = set()
    for oi, op in enumerate(sg.operators):
        if not 0 <= op.opcodeIndex < len(op_names):
            raise _fail(path, f"subgraph {si} operator {oi} uses operator code {op.opcodeIndex}, but the file has "
                              f"{len(op_names)}")
        name = op_names[op.opcodeIndex]
        where = f"subgraph {si} operator {oi} ({name})"
        if op.inputs is None or op.outputs is None:
            raise _fail(path, f"{where} has no {'input' if op.inputs is None else 'output'} list")
        ins, outs = [int(i) for i in op.inputs], [int(i) for i in op.outputs]
        # a WHILE result nothing reads may be absent (-1): LiteRT 2.3 and tflite-runtime 2.14 run such loops (what
        # edgeseq.quantize.slim.compact writes for unread pass-through results)
        for kind, vec, optional in (("input", ins, True), ("output", outs, name == "WHILE"),
                                    ("intermediate", op.intermediates if op.intermediates is not None else [], False)):
            for i in vec:
                if not (0 <= int(i) < n or (optional and int(i) == -1)):
                    raise _fail(path, f"{where} names {kind} tensor {int(i)}, but subgraph {si} has {n} tensors")
        if -1 in ins and name in _NO_OPTIONAL:
            raise _fail(path, f"{where} has an absent (-1) input {ins.index(-1)}, but {name} has no optional inputs")
        for i in ins:
            if i != -1 and i not in available:
                raise _fail(path, f"{where} reads tensor {i}, which no earlier operator produces (and it is neither "
                                  f"a constant nor a subgraph input)")
        for i in outs:
            if i == -1:
                continue  # an absent WHILE result (checked above)
            if i in available:
                what = "a constant, a variable or a subgraph input" if i in fixed else "written by an earlier operator"
                raise _fail(path, f"{where} writes tensor {i}, which is {what}")
            available.add(i)
        if name in _ARITY:
            lo, hi, required = _ARITY[name]
            if not lo <= len(ins) <= hi or not outs or -1 in ins[:required]:
                raise _fail(path, f"{where} has inputs {ins} and {len(outs)} output(s); it needs {lo}"
                                  f"{'' if lo == hi else f' to {hi}'} inputs (the first {required} present) and an output")
        dims = getattr(op.builtinOptions, "newShape" if name == "RESHAPE" else "squeezeDims", None)
        if name in ("RESHAPE", "SQUEEZE") and dims is not None and len(dims) > 8:
            raise _fail(path, f"{where} lists {len(dims)} dimensions in its options; LiteRT allows at most 8")
        if name in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS") and ins and outs and ins[0] >= 0 \
                and sg.tensors[ins[0]].type != sg.tensors[outs[0]].type:  # LiteRT copies the bytes as they are
            raise _fail(path, f"{where} turns {dtypes[sg.tensors[ins[0]].type].lower()} tensor {ins[0]} into "
                              f"{dtypes[sg.tensors[outs[0]].type].lower()} tensor {outs[0]}; it can only reshape")
        if name in _NEEDS_OPTIONS:
            opts = op.builtinOptions2 if name.startswith("STABLEHLO") else op.builtinOptions
            if type(opts).__name__ != _NEEDS_OPTIONS[name]:
                raise _fail(path, f"{where} has no {_NEEDS_OPTIONS[name][:-1]}")
        for opts in (op.builtinOptions, op.builtinOptions2):
            if opts is None:
                continue
            refs = [(f, getattr(opts, f)) for f in _SUBGRAPH_FIELDS if isinstance(getattr(opts, f, None), int)]
            refs += [("branch", int(b)) for b in getattr(opts, "branchSubgraphIndices", None) or []]
            for field, target in refs:
                if not 0 <= target < len(subgraphs):
                    label = field.replace("SubgraphIndex", "").replace("updateComputation", "update")
                    raise _fail(path, f"{where} names {label} subgraph {target}, but the file has "
                                      f"{len(subgraphs)} subgraphs")
                calls.add(target)
        if name == "WHILE":
            _check_while(subgraphs, op, where, path)
        elif name == "IF":
            _check_if(subgraphs, op, where, path)
    for i in sg.outputs if sg.outputs is not None else []:
        if int(i) not in available:  # LiteRT would hand back (or loop on) memory nothing ever wrote
            raise _fail(path, f"subgraph {si} output tensor {int(i)} is never written: no operator produces it and "
                              "it is neither a constant nor a subgraph input")
    return calls


def _check_while(subgraphs: list, op: Any, where: str, path: str) -> None:
    """LiteRT's WHILE kernel: cond != body, cond takes the n loop values and returns 1, body takes and returns n."""
    cond, body, n = op.builtinOptions.condSubgraphIndex, op.builtinOptions.bodySubgraphIndex, len(op.inputs)
    if cond == body:
        raise _fail(path, f"{where} uses subgraph {cond} as both its condition and its body")
    if len(op.outputs) != n:
        raise _fail(path, f"{where} has {n} inputs but {len(op.outputs)} outputs")
    for label, idx, want_in, want_out in (("cond", cond, n, 1), ("body", body, n, n)):
        sg = subgraphs[idx]
        got_in, got_out = _n(sg.inputs), _n(sg.outputs)
        if (got_in, got_out) != (want_in, want_out):
            raise _fail(path, f"{where} passes {n} values to its {label} subgraph {idx}, which takes {got_in} and "
                              f"returns {got_out} (needs {want_in} and {want_out})")


def _check_if(subgraphs: list, op: Any, where: str, path: str) -> None:
    """LiteRT's IF kernel: a condition input plus the branch inputs; each branch takes n - 1 and returns the outputs."""
    n = len(op.inputs)
    if n < 1:
        raise _fail(path, f"{where} has no condition input")
    for label, idx in (("then", op.builtinOptions.thenSubgraphIndex), ("else", op.builtinOptions.elseSubgraphIndex)):
        sg = subgraphs[idx]
        if _n(sg.inputs) != n - 1 or _n(sg.outputs) != len(op.outputs):
            raise _fail(path, f"{where} passes {n - 1} values to its {label} subgraph {idx}, which takes "
                              f"{_n(sg.inputs)} and returns {_n(sg.outputs)} (needs {n - 1} and {len(op.outputs)})")


def _check_acyclic(calls: dict[int, set[int]], path: str) -> None:
    """Control flow must form a DAG: a subgraph that reaches itself would make LiteRT recurse without end."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done
    for root in calls:
        if root in state:
            continue
        stack = [(root, iter(sorted(calls[root])))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise _fail(path, f"subgraph {nxt} calls itself through control flow (via subgraph {node}), "
                                  "a cycle LiteRT cannot run")
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(calls.get(nxt, ())))))
