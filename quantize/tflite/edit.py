"""Small, math-preserving edits of a converted .tflite through TF's schema object API (conversion child only).

Used by the RNN routes (quantize/while_calibration.py, quantize/fused_lstm.py, and the looped route's
`splats_to_fill`). Every edit keeps the values every kernel sees: it only changes where a tensor comes from (a
constant buffer or a FILL op) or which of a WHILE op's outputs are materialised. Imports TensorFlow's generated
schema module, so only the conversion child (which has TF loaded anyway) uses this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# FILL's op version by value type (TFLite op_version.cc): 1 float32/int32/int64, 3 int8/int16.
_FILL_VERSION = {"INT8": 3, "INT16": 3}
_NP = {"FLOAT32": np.float32, "INT32": np.int32, "INT64": np.int64, "INT8": np.int8, "INT16": np.int16}
SPLAT_MIN_BYTES = 1024  # smaller constant splats cost less than the FILL op that would replace them


def _fb() -> Any:
    from tensorflow.lite.python import schema_py_generated as fb

    return fb


def load(data: bytes) -> Any:
    fb = _fb()
    return fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytearray(data), 0))


def dump(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_code(model: Any, op: Any) -> int:
    c = model.operatorCodes[op.opcodeIndex]
    return max(int(c.builtinCode), int(c.deprecatedBuiltinCode))


def type_name(ttype: int) -> str:
    fb = _fb()
    return next(k for k, v in vars(fb.TensorType).items() if v == ttype and not k.startswith("_"))


def _opcode_index(model: Any, code: int, version: int) -> int:
    fb = _fb()
    for i, c in enumerate(model.operatorCodes):
        if max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) == code and int(c.version) == version:
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _const(model: Any, sg: Any, arr: np.ndarray, ttype: int, quantization: Any, name: str) -> int:
    fb = _fb()
    buf = fb.BufferT()
    buf.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8).copy()
    model.buffers.append(buf)
    t = fb.TensorT()
    t.shape, t.type, t.buffer, t.quantization = np.asarray(arr.shape, np.int32), ttype, len(model.buffers) - 1, quantization
    t.name = name.encode()
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def fill_op(model: Any, sg: Any, target: int, value: float | int) -> Any:
    """A FILL operator that writes `value` (in the target tensor's own type and quantization) into tensor `target`;
    the caller places it in the subgraph's operator list."""
    fb = _fb()
    t = sg.tensors[target]
    tname = type_name(t.type)
    dims = _const(model, sg, np.asarray(t.shape, np.int32), fb.TensorType.INT32, None, f"fill_dims_{target}")
    val = _const(model, sg, np.asarray(value, _NP[tname]), t.type, t.quantization, f"fill_value_{target}")
    op = fb.OperatorT()
    op.opcodeIndex = _opcode_index(model, fb.BuiltinOperator.FILL, _FILL_VERSION.get(tname, 1))
    op.inputs, op.outputs = np.asarray([dims, val], np.int32), np.asarray([target], np.int32)
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.FillOptions, fb.FillOptionsT()
    return op


def splats_to_fill(data: bytes, min_bytes: int = SPLAT_MIN_BYTES) -> tuple[bytes, int]:
    """Replace every constant that holds one value repeated (at least `min_bytes`) by a FILL op at the start of its
    subgraph; returns (file, bytes of constant data removed).

    Why: a looped RNN that returns sequences keeps its output buffer as a [T, batch, units] tensor of zeros (the
    lowered TensorList reserve), written into the file as T*units values: the only part of a looped graph that grows
    with T. FILL writes the same zeros into the arena at run time.
    """
    model = load(data)
    saved = 0
    for sg in model.subgraphs:
        consumed = {int(i) for op in sg.operators for i in (op.inputs if op.inputs is not None else [])}
        boundary = {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs}
        fills = []
        for idx, t in enumerate(sg.tensors):
            buf = model.buffers[t.buffer] if t.buffer else None
            if (buf is None or buf.data is None or len(buf.data) < min_bytes or t.isVariable or idx in boundary
                    or idx not in consumed or type_name(t.type) not in _NP or t.shape is None or len(t.shape) == 0):
                continue
            arr = np.frombuffer(np.asarray(buf.data, np.uint8).tobytes(), _NP[type_name(t.type)])
            if arr.size != int(np.prod(t.shape)) or not np.all(arr == arr[0]):
                continue
            shared = sum(1 for s in model.subgraphs for u in s.tensors if u.buffer == t.buffer)
            if shared != 1:
                continue
            saved += len(buf.data)
            value = arr[0].item()
            buf.data = None
            t.buffer = 0
            fills.append(fill_op(model, sg, idx, value))
        if fills:
            sg.operators = fills + list(sg.operators)
    return (dump(model), saved) if saved else (data, 0)


def fix_input_shapes(data: bytes, shapes: list[tuple[str, list[int]]]) -> tuple[bytes, dict | None]:
    """The plain route's free axes (batch, and a free time axis) fixed in the file: each main-subgraph input whose
    signature has -1 where `shapes` has a size takes that shape (what the runtime would be resized to anyway), and an
    output's free batch becomes 1. Only where every fixed axis was free or already that size; the kernels recompute
    every other shape when tensors are allocated, and validation then runs the edited file. Returns (bytes, what
    changed), or the input unchanged and None where an axis cannot be fixed."""
    model = load(data)
    sg = model.subgraphs[0]
    inputs = [int(i) for i in sg.inputs]
    if len(inputs) != len(shapes):
        return data, None
    if len(shapes) > 1:  # several inputs: matched by name (TFLite's order is not Keras's)
        by_name = {}
        for idx in inputs:
            tname = sg.tensors[idx].name.decode() if isinstance(sg.tensors[idx].name, bytes) else str(sg.tensors[idx].name)
            found = [w for n, w in shapes if tname == n or tname.startswith(f"serving_default_{n}:")]
            if len(found) != 1:
                return data, None
            by_name[idx] = found[0]
        pairs = list(by_name.items())
    else:
        pairs = [(inputs[0], shapes[0][1])]
    changed: dict[str, list] = {"inputs": [], "outputs": []}
    for idx, want in pairs:
        t = sg.tensors[idx]
        sig = [int(d) for d in (t.shapeSignature if t.shapeSignature is not None else t.shape)]
        if len(sig) != len(want) or any(s not in (-1, w) for s, w in zip(sig, want, strict=True)):
            return data, None
        if sig != list(want):
            changed["inputs"].append({"from": sig, "to": list(want)})
        t.shape, t.shapeSignature = np.array(want, np.int32), np.array(want, np.int32)
    for idx in (int(i) for i in sg.outputs):
        t = sg.tensors[idx]
        if t.shapeSignature is not None and len(t.shapeSignature) and int(t.shapeSignature[0]) == -1:
            sig = [int(d) for d in t.shapeSignature]
            t.shapeSignature = np.array([1, *sig[1:]], np.int32)
            changed["outputs"].append({"from": sig, "to": [1, *sig[1:]]})
    if not changed["inputs"] and not changed["outputs"]:
        return data, changed  # already fixed: nothing to edit
    return dump(model), changed
