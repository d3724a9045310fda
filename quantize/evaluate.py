"""Accuracy (or MSE) of any .tflite on a data set, on the LiteRT runtime. No TensorFlow.

Per-time-step models (output [1, T, C] or [1, T, H]) are scored per frame against labels [N, T] / [N, T, H]; sigmoid
heads (the manifest's source.head, else the file's LOGISTIC output op) are thresholded against 0/1 labels, and float
[N, T] labels are read as frames or horizons by the model's output shape (the result's `reading`). Token-id
models (input int32 [1, T]) are checked against the vocabulary (manifest, else the file's GATHER table) first: an
out-of-vocabulary id is a one-line error naming the largest id.

The file is read and its signature checked against the data before anything runs, so a wrong data set is a clear
error; the run itself happens in a throwaway process (see `isolated`), so a runtime abort is one too.
"""

from __future__ import annotations

import os
import time
from typing import Any

from edgeseq.core.errors import InputError
from edgeseq.quantize.tflite.reader import read_tflite


def evaluate_tflite(path: str | os.PathLike, dataset: Any, *, data_dir: str | None = None) -> dict[str, Any]:
    """{'model', 'dataset', 'task', metrics..., 'n', 'runtime', 'wall_s'} for `path` on the test split of `dataset`."""
    from edgeseq.quantize.calibration import check_ids
    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.isolated import run_tflite_isolated
    from edgeseq.quantize.runtime import interpreter_class
    from edgeseq.quantize.tokens import is_id_input, vocab_of
    from edgeseq.quantize.validate import task_metric

    f = read_tflite(path)
    info = analyze(f)
    if isinstance(dataset, str):
        from edgeseq.datasets import load_dataset

        dataset = load_dataset(dataset, data_dir=data_dir)
    several = len(info["inputs"]) > 1
    if len(info["outputs"]) < 1:
        raise InputError(f"{path} has no outputs")
    if several:  # one array per input name (X_test_<name>), matched to the file's inputs by name at run time
        if getattr(dataset, "inputs", None) is None:
            raise InputError(f"{path} has {len(info['inputs'])} inputs but data set {dataset.name} holds one X",
                             "give an .npz with X_train_<input> and X_test_<input> for each of the model's inputs")
        tokens = False
    else:
        shape = info["inputs"][0]["shape"]
        data_shape = list(dataset.X_test.shape[1:])
        tokens = is_id_input(info["inputs"][0]) and len(shape) == 2
        if len(shape) != (2 if tokens else 3) or shape[1:] != data_shape:
            what = "token ids" if getattr(dataset, "token_ids", False) else "features"
            raise InputError(
                f"{path} takes {'token ids' if tokens else 'input'} {shape[1:]} per sample but data set "
                f"{dataset.name} has {what} {data_shape}",
                "evaluate on the data set the model was converted for (same sequence length and features)",
            )
    vocab = vocab_from = None
    if tokens:
        vocab, vocab_from = vocab_of(path, f)
        check_ids(dataset.X_test, vocab, f"data set {dataset.name} (X_test)")
    out_shape = info["outputs"][0]["shape"]
    out_dim = out_shape[-1] if out_shape else 1
    model_per_step = len(out_shape) == 3
    data_per_step = bool(getattr(dataset, "per_step", False))
    head, head_from = head_of(path, f)
    # float [N, T] labels are T horizons or one per frame: a per-step model's output shape says which (core/metrics)
    frames = (model_per_step and dataset.y_test.ndim == 2 and dataset.y_test.shape[1] == out_shape[1]
              and out_shape[2] == 1)
    if model_per_step != data_per_step and not frames:
        raise InputError(
            f"{path} gives {'one output per time step' if model_per_step else 'one output per sequence'} but data "
            f"set {dataset.name} has {'one label per time step' if data_per_step else 'one label per sequence'}",
            "evaluate on the data set the model was trained on (per-step labels: y [N, T] ints or [N, T, H] floats)")
    from edgeseq.core.metrics import thresholded_kind

    thresholded = thresholded_kind((len(dataset.y_test), *out_shape[1:]), dataset.y_test, dataset.task, head)
    if dataset.task == "classification" and out_dim < dataset.num_classes and thresholded is None:
        raise InputError(f"{path} outputs {out_dim} values but {dataset.name} has {dataset.num_classes} classes",
                         "evaluate on the data set the model was trained on")
    _, runtime, version = interpreter_class()
    started = time.perf_counter()
    outputs = run_tflite_isolated(f.data, dataset.inputs["test"] if several else dataset.X_test, str(path))
    wall_s = time.perf_counter() - started
    return {
        "model": str(path),
        "sha256": info["sha256"],
        "dataset": dataset.name,
        "task": dataset.task,
        **task_metric(outputs, dataset.y_test, dataset.task, head),
        **({"head": head, "head_from": head_from} if head else {}),
        **({"vocab_size": vocab, "vocab_from": vocab_from} if tokens else {}),
        "runtime": runtime,
        "runtime_version": version,
        "wall_s": round(wall_s, 3),
    }


def head_of(path: str | os.PathLike, f: Any) -> tuple[dict | None, str | None]:
    """The output layer's activation: the manifest's `source.head`, else the op that produces the file's output
    (LOGISTIC: sigmoid, SOFTMAX: softmax; through DEQUANTIZE/QUANTIZE/RESHAPE); (None, None) when neither says."""
    from edgeseq.quantize.manifest import read_manifest

    manifest = read_manifest(path, strict=False) or {}
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    if isinstance(source.get("head"), dict) and source["head"].get("activation"):
        return source["head"], "manifest"
    sg = f.model.subgraphs[0]
    producers = {int(o): op for op in (sg.operators or []) for o in (op.outputs if op.outputs is not None else [])}
    tensor = int(sg.outputs[0]) if sg.outputs is not None and len(sg.outputs) else -1
    for _ in range(4):
        op = producers.get(tensor)
        if op is None:
            return None, None
        name = f.op_names[op.opcodeIndex]
        if name in ("LOGISTIC", "SOFTMAX"):
            return {"activation": "sigmoid" if name == "LOGISTIC" else "softmax"}, f"the file's {name} op"
        if name not in ("DEQUANTIZE", "QUANTIZE", "RESHAPE", "SQUEEZE"):
            return None, None
        tensor = int(op.inputs[0])
    return None, None
