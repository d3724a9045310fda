"""Calibrating a looped (WHILE) graph: why TF 2.21's int8 calibrator crashes on it, and the workaround.

The crash (SIGSEGV in `tflite::optimize::calibration::MinMax::Update`, called from the calibrator's `LoggingEval` on
the main graph): a WHILE op passes every value its body reads from outside the loop (the input sequence, weights
the converter could not fold) through as a loop variable whose body output is the body input unchanged. The TFLite
WHILE kernel never writes those pass-through outputs (their data pointer stays null), and the calibrator logs every
float output of every op after it runs, so it reads the null pointer. Seen with a Keras 3 RNN's own loop and with a
hand-written `tf.while_loop` that reads its input with `tf.gather` (a loop that reads nothing from outside does not
crash; gdb: MinMax::Update with a null values pointer and the pass-through tensor's element count).

The workaround, active only inside `patched_calibration()` in the conversion child:
1. before calibration, each such output (pass-through in the body and read by nothing after the loop) becomes -1,
   the "no tensor" marker the converter itself writes for unused WHILE results in float graphs: the calibrator then
   has nothing to log there;
2. before the MLIR quantizer reads the calibrated model back (its flatbuffer importer crashes on a -1 WHILE output),
   each -1 gets a fresh tensor again, with the input's type, shape and calibrated range.
The math is untouched: those outputs are never read. int16x8 goes through TF's older quantizer, which does not
quantize across a WHILE ("Max and min for dynamic tensors should be recorded during calibration: ...
while_cond_arg0"): the looped route is int8 only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from edgeseq.quantize.tflite import edit as tflite_edit


def _while_ops(model: Any) -> Iterator[tuple[Any, Any]]:
    fb = tflite_edit._fb()
    for sg in model.subgraphs:
        for op in sg.operators:
            if tflite_edit.op_code(model, op) == fb.BuiltinOperator.WHILE:
                yield sg, op


def drop_passthrough_outputs(data: bytes) -> tuple[bytes, int]:
    """Step 1: unread pass-through WHILE outputs become -1. Returns (file, outputs dropped)."""
    model = tflite_edit.load(data)
    dropped = 0
    for sg, op in _while_ops(model):
        read = {int(i) for o in sg.operators for i in (o.inputs if o.inputs is not None else [])}
        read |= {int(i) for i in sg.outputs}
        body = model.subgraphs[op.builtinOptions.bodySubgraphIndex]
        outs = [int(o) for o in op.outputs]
        for k, out in enumerate(outs):
            if out >= 0 and out not in read and int(body.outputs[k]) == int(body.inputs[k]):
                outs[k] = -1
                dropped += 1
        op.outputs = outs
    return (tflite_edit.dump(model), dropped) if dropped else (data, 0)


def restore_outputs(data: bytes) -> tuple[bytes, int]:
    """Step 2: every -1 WHILE output gets a tensor like its input (type, shape, calibrated range) again."""
    fb = tflite_edit._fb()
    model = tflite_edit.load(data)
    restored = 0
    for sg, op in _while_ops(model):
        outs = [int(o) for o in op.outputs]
        for k, out in enumerate(outs):
            if out != -1:
                continue
            src = sg.tensors[int(op.inputs[k])]
            t = fb.TensorT()
            t.shape, t.shapeSignature, t.type, t.buffer = src.shape, src.shapeSignature, src.type, 0
            t.quantization = src.quantization
            t.name = f"while_passthrough_{len(sg.tensors)}".encode()
            sg.tensors.append(t)
            outs[k] = len(sg.tensors) - 1
            restored += 1
        op.outputs = outs
    return (tflite_edit.dump(model), restored) if restored else (data, 0)


@contextlib.contextmanager
def patched_calibration(record: dict) -> Iterator[None]:
    """Within this block, TFLiteConverter.convert() calibrates WHILE graphs without the crash; `record` gets
    'dropped' and 'restored' counts (equal when the workaround was used). Private TF hooks: checked to exist."""
    from tensorflow.lite.python import lite

    calibrator = lite._calibrator
    if not hasattr(calibrator, "add_intermediate_tensors") or not hasattr(lite, "_mlir_quantize"):
        raise RuntimeError("this TensorFlow has no calibrator hooks for the WHILE workaround")
    add_intermediate, mlir_quantize = calibrator.add_intermediate_tensors, lite._mlir_quantize
    record.update(dropped=0, restored=0)

    def before_calibration(model: bytes) -> Any:
        model, n = drop_passthrough_outputs(model)
        record["dropped"] += n
        return add_intermediate(model)

    def before_quantizer(calibrated: bytes, *args: Any, **kwargs: Any) -> Any:
        calibrated, n = restore_outputs(calibrated)
        record["restored"] += n
        return mlir_quantize(calibrated, *args, **kwargs)

    calibrator.add_intermediate_tensors, lite._mlir_quantize = before_calibration, before_quantizer
    try:
        yield
    finally:
        calibrator.add_intermediate_tensors, lite._mlir_quantize = add_intermediate, mlir_quantize
