"""The conversion child: `python -m edgeseq.quantize._child JOBDIR`.

The TF converter can kill its process (the int8 calibrator SIGSEGVs on a WHILE loop unless the workaround in
quantize/while_calibration.py is active), so every conversion runs here, in a fresh interpreter. Input:
JOBDIR/job.json (model path, recipe, fixed length, RNN route, trust flag) and JOBDIR/calibration.npy; `per_channel`
in the job, when present, overrides the recipe's weight-scale choice (the parent converts both ways for
`--granularity auto`). RNN routes (quantize/rnn_routes.py): "none"/"loop" convert the batch-1 model with its own
loops, "unroll" unrolls every RNN, "fused" swaps each fusable LSTM for the fused op (quantize/fused_lstm.py).
Output: JOBDIR/model.tflite and JOBDIR/report.json; on a clean refusal report.json carries the error and the exit
code is 3. Whatever happens, the parent decides what reaches the user's disk.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Test hook only: makes this child die the way the calibrator does, so tests can prove the parent survives it.
# "1" kills every child; "per-tensor" only those asked for per-tensor weight scales; "route:NAME" only those
# converting RNN route NAME (fused, loop, unroll).
CRASH_HOOK_ENV = "EDGESEQ_TEST_CHILD_CRASH"


def _converter(model: Any, recipe: Any, calibration: Any, per_channel: bool = True) -> Any:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    ops = {
        "int8": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
        "int16x8": [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8],
    }.get(recipe.mode, [tf.lite.OpsSet.TFLITE_BUILTINS])
    if recipe.allow_flex:
        ops = [*ops, tf.lite.OpsSet.SELECT_TF_OPS]
    conv.target_spec.supported_ops = ops
    from edgeseq.quantize.loading import is_saved_model_wrapper

    if is_saved_model_wrapper(model):
        # A SavedModel's loops were traced with a free batch: their tensor lists have no static element shape, which
        # the builtin lowering needs. The input is batch 1 here, so the converter may assume it inside them too.
        conv._experimental_default_to_single_batch_in_tensor_list_ops = True
    if recipe.mode not in ("fp32", "int4w"):  # int4w: an fp32 graph, its weights rewritten after (quantize/int4.py)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        # The converter's only switch for per-tensor weight scales (private, but stable since TF 2.4).
        conv._experimental_disable_per_channel = not per_channel
    if recipe.mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if recipe.calibrated:
        if calibration is None:
            raise RuntimeError("calibrated recipe without calibration data")

        def representative():
            if isinstance(calibration, list):  # several inputs, in Keras's order
                for i in range(len(calibration[0])):
                    yield [c[i : i + 1] for c in calibration]
                return
            for i in range(len(calibration)):
                yield [calibration[i : i + 1]]

        conv.representative_dataset = representative
    if recipe.io == "int8":
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def _rebuild(model: Any, seq_len: int | None, strategy: str, report: dict) -> Any:
    from edgeseq.quantize.rebuild import fixed_shape_model

    if strategy == "plain":  # the fallback: the model as saved, as TF's plain converter takes it (free batch)
        return model
    if strategy == "fused":
        from edgeseq.quantize.fused_lstm import fused_model

        fixed, report["fused_layers"] = fused_model(model, seq_len)
        return fixed
    return fixed_shape_model(model, seq_len, unroll=strategy == "unroll")


def _convert(fixed: Any, recipe: Any, calibration: Any, per_channel: bool, strategy: str, report: dict,
             float_ops: tuple = ()) -> bytes:
    """Convert; on the loop and fused routes a calibrated recipe goes through the WHILE calibration workaround;
    `float_ops` (resolved --float-ops) stay float (quantize/float_ops.py)."""
    from edgeseq.quantize.float_ops import denylisted

    conv = _converter(fixed, recipe, calibration, per_channel)
    if not (recipe.calibrated and strategy in ("loop", "fused")):
        with denylisted(float_ops):
            return conv.convert()
    from edgeseq.quantize.while_calibration import patched_calibration

    record: dict = {}
    with denylisted(float_ops), patched_calibration(record):
        data = conv.convert()
    if record.get("dropped"):
        report["while_calibration"] = record
    return data


def _post_process(data: bytes, strategy: str, report: dict) -> bytes:
    """Route checks and math-preserving edits: every fusable LSTM became one fused op; the loop's zero buffers
    become FILL ops (quantize/tflite/edit.py splats_to_fill); an int8 loop's input is quantized once, outside the loop
    (quantize/loop_hoist.py)."""
    from edgeseq.core.errors import ConversionError
    from edgeseq.quantize.tflite import edit as tflite_edit

    if strategy == "plain":  # the free batch (and a free time axis) fixed in the file's signature where it runs
        data, report["fixed_signature"] = tflite_edit.fix_input_shapes(data, report.pop("fixed_shapes"))
        return data
    if strategy == "fused":
        from edgeseq.quantize.fused_lstm import OP, count_fused_ops

        found = count_fused_ops(data)
        if found != report["fused_layers"]:
            raise ConversionError(f"the converter fused {found} of {report['fused_layers']} LSTM layers into {OP}",
                                  "use --rnn-strategy loop")
        report["fused_ops"] = found
    if strategy in ("loop", "fused"):
        data, report["splat_bytes_to_fill"] = tflite_edit.splats_to_fill(data)
    if strategy == "loop":
        from edgeseq.quantize.loop_hoist import hoist_quantize

        data, report["loop_quantize_hoisted"] = hoist_quantize(data)  # int8: the input quantized once, not per step
    return data


def _refusal(exc: BaseException, model: Any, job: dict) -> str:
    """The converter's refusal in words (quantize/converter_log.py), its whole text in the job's log file."""
    from edgeseq.quantize.converter_log import layer_names, refusal_line, write_log

    log = write_log(job.get("log_path"), str(exc), job)
    return refusal_line(str(exc), layer_names(model), log)


def run(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text())
    hook = os.environ.get(CRASH_HOOK_ENV)
    if hook == f"refuse:{job['strategy']}":  # test hook: a converter refusal of this route, as TF words one
        return _refuse_for_test(job_dir, job)
    if hook == "1" or (hook == "per-tensor" and job.get("per_channel") is False) or hook == f"route:{job['strategy']}":
        os.abort()

    import numpy as np

    from edgeseq.core.errors import ConversionError, EdgeseqError
    from edgeseq.core.fsio import childproc
    from edgeseq.quantize.keras_fixes import install
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.recipes import Recipe

    install()  # Keras's batch-1 `add` trap (quantize/keras_fixes.py), for every graph this process traces
    recipe = Recipe.from_dict(job["recipe"])
    report: dict[str, Any] = {"ok": False}
    try:
        model = load_keras_model(job["model_path"], trust_model=job["trust_model"])
        from edgeseq.quantize.simplify import simplify_degenerate_norms

        report["norms_as_beta"] = simplify_degenerate_norms(model)  # exact: LayerNorm over one element is beta
        if job["strategy"] == "plain":
            from edgeseq.quantize.multi_input import input_specs

            report["fixed_shapes"] = [(s["name"], s["shape"]) for s in input_specs(model, job["seq_len"])]
        calib_path = job_dir / "calibration.npy"
        calibration = np.load(calib_path) if calib_path.exists() else None
        if (job_dir / "calibration.npz").exists():  # several inputs: one array per input, fed in Keras's order
            with np.load(job_dir / "calibration.npz") as cal:
                calibration = [cal[str(t.name)] for t in model.inputs]
        strategy = job["strategy"]
        per_channel = job["per_channel"] if job.get("per_channel") is not None else recipe.per_channel_for(strategy)
        report["weight_scales"] = "per-channel" if per_channel else "per-tensor"
        started = time.perf_counter()
        fixed = _rebuild(model, job["seq_len"], strategy, report)
        report["rebuild_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        try:
            data = _convert(fixed, recipe, calibration, per_channel, strategy, report,
                            tuple(job.get("float_ops") or ()))
        except EdgeseqError:
            raise
        except Exception as exc:  # noqa: BLE001 - the converter raises many types; its reason is the message
            hint = ("retry with --rnn-strategy unroll" if strategy in ("loop", "fused")
                    else "try another recipe (edgeseq models --capabilities lists what each supports)")
            err = ConversionError(f"the converter refused {_refusal(exc, model, job)}", hint)
            report["error"] = childproc.error_record(err)
            (job_dir / "report.json").write_text(json.dumps(report))
            return 3
        data = _post_process(data, strategy, report)
        if recipe.mode == "int4w":  # the fp32 graph's weights to 4 bits (quantize/int4.py)
            from edgeseq.quantize.int4 import int4_weights

            data = int4_weights(data, report)
        report["convert_s"] = round(time.perf_counter() - started, 3)
        if job.get("measure_looped_fp32"):
            from edgeseq.quantize.recipes import get_recipe
            from edgeseq.quantize.slim import compact

            started = time.perf_counter()
            try:  # what the unrolled route costs: the same network as a looped fp32 graph
                looped = _rebuild(model, job["seq_len"], "loop", {})
                looped_fp32 = _post_process(_converter(looped, get_recipe("fp32"), None).convert(), "loop", {})
                report["looped_fp32_bytes"] = len(compact(looped_fp32))  # as the parent writes an fp32 file
            except Exception:  # noqa: BLE001 - only the size comparison is lost; the conversion itself stands
                report["looped_fp32_bytes"] = None
            report["reference_s"] = round(time.perf_counter() - started, 3)
    except EdgeseqError as exc:
        report["error"] = childproc.error_record(exc)
        (job_dir / "report.json").write_text(json.dumps(report))
        return 3
    (job_dir / "model.tflite").write_bytes(data)
    report["ok"] = True
    (job_dir / "report.json").write_text(json.dumps(report))
    return 0


def _refuse_for_test(job_dir: Path, job: dict) -> int:
    from edgeseq.core.errors import ConversionError
    from edgeseq.core.fsio import childproc
    from edgeseq.quantize.converter_log import refusal_line, write_log

    text = ('loc(callsite(fused["BiasAdd:", "functional_1/dense_1/BiasAdd@__inference_function_1"] at '
            'fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"])): error: \'tf.Transpose\' op x should '
            'be of the same rank with y, got x of rank 3, and y of rank 4\n<unknown>:0: note: called from')
    line = refusal_line(text, ["dense_1"], write_log(job.get("log_path"), text, job))
    err = ConversionError(f"the converter refused {line}", "try another recipe")
    (job_dir / "report.json").write_text(json.dumps({"ok": False, "error": childproc.error_record(err)}))
    return 3


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m edgeseq.quantize._child JOBDIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(Path(sys.argv[1])))


def convert_in_process(model: Any, recipe: Any, calibration: Any, seq_len: int | None, strategy: str = "loop") -> bytes:
    """The conversion this child makes (rebuild at batch 1, convert, route edits), in the calling process, for
    callers that already run in a child of their own and convert many small models (edgeseq calibrate)."""
    from edgeseq.quantize.keras_fixes import install

    install()
    report: dict[str, Any] = {}
    fixed = _rebuild(model, seq_len, strategy, report)
    data = _convert(fixed, recipe, calibration, recipe.per_channel_for(strategy), strategy, report)
    return _post_process(data, strategy, report)
