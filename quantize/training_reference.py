"""The reference batch a training run stored, checked against every converted file.

`edgeseq train` writes reference.npz into the run directory: the first test samples and the outputs the model gave
on them **on the backend that trained it** (TensorFlow, JAX or PyTorch), and records it in training.json with the
model file's sha256. `convert` loads the `.keras` in its TensorFlow process and compares the `.tflite` against that
Keras model, as for any model; when the file is a training run's own, the `.tflite` is also run on the stored inputs
and compared with the stored outputs, with the same recipe tolerance. A difference between the training backend and
TensorFlow's reading of the same file (an op that computes differently, a layer that saved differently) is then a
failed parity check, not a silent one. The figures go into the manifest under `validation.training_reference`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import ModelError


def load_reference(model_path: Path, steps: int | None, features: int | None, model: Any) -> dict | None:
    """The training run's reference for `model_path`, `{"skipped": why}` when there is one but it cannot be used,
    None when the file is no training run's model (no training.json naming a reference next to it)."""
    record_path = model_path.parent / "training.json"
    if not model_path.is_file() or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        ref = record.get("reference")
        mixed = bool((record.get("options") or {}).get("mixed_precision"))
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        return None
    from edgeseq.core.fsio import sha256_file

    backend = str(ref.get("backend", "unknown"))
    base = {"backend": backend, "file": str(model_path.parent / Path(ref["file"]).name), "mixed_precision": mixed}
    if sha256_file(model_path) != ref.get("model_sha256"):
        return base | {"skipped": f"{model_path.name} is not the file training wrote (sha256 differs)"}
    try:
        with np.load(base["file"], allow_pickle=False) as npz:
            inputs, outputs = np.asarray(npz["inputs"]), np.asarray(npz["outputs"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        return base | {"skipped": f"cannot read {Path(base['file']).name}: {type(exc).__name__}"}
    if inputs.ndim != 3 or (steps, features) != tuple(inputs.shape[1:]) or len(outputs) != len(inputs):
        return base | {"skipped": f"stored inputs {list(inputs.shape[1:])} do not match the converted input "
                                  f"[{steps}, {features}] (another --seq-len)"}
    # What TensorFlow's Keras makes of the same file on the same inputs, held to the fp32 tolerance whatever the
    # recipe (both are float32 Keras; fp16's for a mixed-precision model, whose float16 rounding differs between
    # backends): separates a backend difference in Keras itself from one the conversion made.
    from edgeseq.quantize.recipes import get_recipe
    from edgeseq.quantize.validate import parity

    tf_keras = np.asarray(model.predict(inputs, batch_size=64, verbose=0), dtype=np.float32)
    keras_level = parity(outputs, tf_keras, None, get_recipe("fp16" if mixed else "fp32").tolerance)
    return base | {"inputs": inputs, "outputs": outputs, "samples": int(len(inputs)),
                   "keras_tensorflow_vs_training": {k: keras_level[k] for k in
                                                    ("max_abs_diff", "mean_abs_diff", "passed", "failures")}
                   | {"tolerance": "fp16 (mixed precision)" if mixed else "fp32"}}


def _keras_failures(ref: dict) -> list[str]:
    return [f"TensorFlow's Keras against the {ref['backend']}-trained reference: {f}"
            for f in ref["keras_tensorflow_vs_training"]["failures"]]


def _tolerance(recipe: Any, ref: dict) -> Any:
    """The recipe's tolerance; against outputs a mixed-precision model computed in float16, at least fp16's (the
    converted file computes in float32: `loading.float32_compute`)."""
    from edgeseq.quantize.recipes import Tolerance, get_recipe

    if not ref["mixed_precision"]:
        return recipe.tolerance
    mine, half = recipe.tolerance, get_recipe("fp16").tolerance
    return Tolerance(max_abs=None if mine.max_abs is None else max(mine.max_abs, half.max_abs),
                     mean_abs=max(mine.mean_abs, half.mean_abs), top1=min(mine.top1, half.top1))


def check_reference(validation: dict, data: bytes, recipe: Any, task: str | None, ref: dict | None) -> None:
    """Adds `training_reference` to `validation`; a failed comparison fails the validation, naming the backend."""
    if ref is None:
        return
    public = {k: v for k, v in ref.items() if k not in ("inputs", "outputs")}
    if "skipped" in ref:
        validation["training_reference"] = public
        return
    from edgeseq.quantize.isolated import run_tflite_isolated
    from edgeseq.quantize.validate import parity

    try:
        got = run_tflite_isolated(data, ref["inputs"], f"the {recipe.slug} model on the training reference")
    except ModelError as exc:
        validation["training_reference"] = public | {"passed": False, "failures": [exc.message]}
    else:
        result = parity(ref["outputs"], got, task, _tolerance(recipe, ref))
        validation["training_reference"] = public | {k: v for k, v in result.items() if k != "tolerance"}
    failures = [*validation["training_reference"]["failures"], *_keras_failures(ref)]
    if failures:
        validation["passed"] = False
        validation["failures"] = [*validation.get("failures", []),
                                  *(f if f.startswith("TensorFlow's") else
                                    f"against the {ref['backend']}-trained reference: {f}" for f in failures)]


def check_keras_reference(validation: dict, ref: dict | None) -> None:
    """Streaming exports (`convert --stream`): their parity steps the .tflite against TensorFlow's Keras, so here
    TensorFlow's Keras is checked against the training backend's stored outputs (fp32 tolerance); the two checks
    chain the .tflite to the backend that trained the model."""
    if ref is None:
        return
    public = {k: v for k, v in ref.items() if k not in ("inputs", "outputs")}
    if "skipped" not in ref:
        public["how"] = ("TensorFlow's Keras (which streaming parity compares the .tflite with) against the stored "
                         f"outputs of the {ref['backend']}-trained model")
        public["passed"] = ref["keras_tensorflow_vs_training"]["passed"]
    validation["training_reference"] = public
    failures = _keras_failures(ref) if "skipped" not in ref else []
    if failures:
        validation["passed"] = False
        validation["failures"] = [*validation.get("failures", []), *failures]
