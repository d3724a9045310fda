"""The looped int8 route's input, quantized once instead of once per time step (conversion child only).

What the converter makes of an int8 RNN loop: the main graph quantizes the input sequence, dequantizes it again to
float, and passes the float [T, 1, F] sequence into the WHILE as a loop variable; the body quantizes the WHOLE
sequence on every trip before gathering the one step it needs. That is T x T x F quantizations per invoke (O(T^2):
most of an int8 GRU's time at T = 1024), and LiteRT's WHILE copies the float sequence into the body's inputs on every
trip (4 bytes per value where 1 would do).

`hoist_quantize` moves that QUANTIZE out of the loop: the WHILE carries the int8 sequence (the body's input takes
the QUANTIZE's output type and scale), the body's QUANTIZE is removed and its readers read the input directly. When
the value passed in is itself a DEQUANTIZE of an int8 tensor with the same scale and zero point (the usual case),
the loop takes that tensor and the DEQUANTIZE goes. The math is unchanged: the body quantized the same float
values on every trip, and quantize(dequantize(x)) = x with one scale. The host's parity check runs on the result.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgeseq.quantize.tflite import edit as tflite_edit


def _code(model: Any, op: Any) -> str:
    fb = tflite_edit._fb()
    code = tflite_edit.op_code(model, op)
    return next(k for k, v in vars(fb.BuiltinOperator).items() if v == code and not k.startswith("_"))


def _readers(sg: Any, tensor: int) -> list[Any]:
    return [op for op in sg.operators if op.inputs is not None and tensor in [int(i) for i in op.inputs]]


def _same_quantization(a: Any, b: Any) -> bool:
    if a is None or b is None or a.scale is None or b.scale is None:
        return False
    return (len(a.scale) == len(b.scale) == 1 and float(a.scale[0]) == float(b.scale[0])
            and int(np.asarray(a.zeroPoint)[0]) == int(np.asarray(b.zeroPoint)[0]))


def _hoistable(model: Any, sg: Any, op: Any, k: int) -> Any | None:
    """The body's QUANTIZE of loop variable k when it can move out of the loop, else None."""
    fb = tflite_edit._fb()
    opts = op.builtinOptions
    body, cond = model.subgraphs[opts.bodySubgraphIndex], model.subgraphs[opts.condSubgraphIndex]
    b_in = int(body.inputs[k])
    if int(body.outputs[k]) != b_in or body.tensors[b_in].type != fb.TensorType.FLOAT32:
        return None  # only a loop-invariant (pass-through) float value
    readers = _readers(body, b_in)
    if len(readers) != 1 or _code(model, readers[0]) != "QUANTIZE" or _readers(cond, int(cond.inputs[k])):
        return None
    q = readers[0]
    out = body.tensors[int(q.outputs[0])]
    if out.type != fb.TensorType.INT8 or int(q.outputs[0]) in [int(i) for i in body.outputs]:
        return None
    after = int(op.outputs[k]) if op.outputs is not None else -1
    if after >= 0 and (_readers(sg, after) or after in [int(i) for i in sg.outputs]):
        return None  # the value is read after the loop as float
    return q


def hoist_quantize(data: bytes) -> tuple[bytes, int]:
    """Move every hoistable per-trip QUANTIZE out of its WHILE; returns (file, QUANTIZE ops hoisted)."""
    fb = tflite_edit._fb()
    model = tflite_edit.load(data)
    hoisted = 0
    for sg in model.subgraphs:
        for op in list(sg.operators):
            if _code(model, op) != "WHILE":
                continue
            opts = op.builtinOptions
            body, cond = model.subgraphs[opts.bodySubgraphIndex], model.subgraphs[opts.condSubgraphIndex]
            for k in range(len(op.inputs)):
                q = _hoistable(model, sg, op, k)
                if q is None:
                    continue
                qt = body.tensors[int(q.outputs[0])]
                source = int(op.inputs[k])
                producer = next((p for p in sg.operators if p.outputs is not None
                                 and source in [int(o) for o in p.outputs]), None)
                if (producer is not None and _code(model, producer) == "DEQUANTIZE"
                        and _same_quantization(sg.tensors[int(producer.inputs[0])].quantization, qt.quantization)):
                    carried = int(producer.inputs[0])  # the int8 tensor that was dequantized: take it as it is
                    if len(_readers(sg, source)) == 1 and source not in [int(i) for i in sg.outputs]:
                        sg.operators.remove(producer)
                else:
                    t = copy.deepcopy(sg.tensors[source])
                    t.type, t.quantization, t.buffer = fb.TensorType.INT8, copy.deepcopy(qt.quantization), 0
                    t.name = (t.name or b"") + b"_int8"
                    sg.tensors.append(t)
                    carried = len(sg.tensors) - 1
                    moved = copy.deepcopy(q)
                    moved.inputs, moved.outputs = np.asarray([source], np.int32), np.asarray([carried], np.int32)
                    sg.operators.insert(sg.operators.index(op), moved)
                inputs = [int(i) for i in op.inputs]
                inputs[k] = carried
                op.inputs = np.asarray(inputs, np.int32)
                for g, idx in ((body, int(body.inputs[k])), (cond, int(cond.inputs[k])),
                               (sg, int(op.outputs[k]) if op.outputs is not None else -1)):
                    if idx >= 0:
                        g.tensors[idx].type = fb.TensorType.INT8
                        g.tensors[idx].quantization = copy.deepcopy(qt.quantization)
                b_in, q_out = int(body.inputs[k]), int(q.outputs[0])
                body.operators.remove(q)
                for reader in body.operators:
                    if reader.inputs is not None:
                        reader.inputs = np.asarray([b_in if int(i) == q_out else int(i) for i in reader.inputs],
                                                   np.int32)
                hoisted += 1
    return (tflite_edit.dump(model), hoisted) if hoisted else (data, 0)
