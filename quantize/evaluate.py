"""Accuracy (or MSE) of any .tflite on a data set, on the LiteRT runtime. No TensorFlow.

The file is read and its signature checked against the data before anything runs, so a wrong data set is a clear
error; the run itself happens in a throwaway process (see `isolated`), so a runtime abort is one too.
"""

from __future__ import annotations

import os
import time
from typing import Any

from edgeseq.errors import InputError
from edgeseq.quantize.tflite_file import read_tflite


def evaluate_tflite(path: str | os.PathLike, dataset: Any, *, data_dir: str | None = None) -> dict[str, Any]:
    """{'model', 'dataset', 'task', metrics..., 'n', 'runtime', 'wall_s'} for `path` on the test split of `dataset`."""
    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.isolated import run_tflite_isolated
    from edgeseq.quantize.runtime import interpreter_class
    from edgeseq.quantize.validate import task_metric

    f = read_tflite(path)
    info = analyze(f)
    if isinstance(dataset, str):
        from edgeseq.datasets import load_dataset

        dataset = load_dataset(dataset, data_dir=data_dir)
    if len(info["inputs"]) != 1 or len(info["outputs"]) < 1:
        raise InputError(f"{path} has {len(info['inputs'])} inputs; evaluate runs single-input sequence models")
    shape = info["inputs"][0]["shape"]
    data_shape = list(dataset.X_test.shape[1:])
    if len(shape) != 3 or shape[1:] != data_shape:
        raise InputError(
            f"{path} takes input {shape[1:] if len(shape) == 3 else shape} per sample but data set {dataset.name} "
            f"has {data_shape}",
            "evaluate on the data set the model was converted for (same sequence length and features)",
        )
    out_dim = info["outputs"][0]["shape"][-1] if info["outputs"][0]["shape"] else 1
    if dataset.task == "classification" and out_dim < dataset.num_classes:
        raise InputError(f"{path} outputs {out_dim} values but {dataset.name} has {dataset.num_classes} classes",
                         "evaluate on the data set the model was trained on")
    _, runtime, version = interpreter_class()
    started = time.perf_counter()
    outputs = run_tflite_isolated(f.data, dataset.X_test, str(path))
    wall_s = time.perf_counter() - started
    return {
        "model": str(path),
        "sha256": info["sha256"],
        "dataset": dataset.name,
        "task": dataset.task,
        **task_metric(outputs, dataset.y_test, dataset.task),
        "runtime": runtime,
        "runtime_version": version,
        "wall_s": round(wall_s, 3),
    }
