"""Parity and accuracy of a .tflite on the deploy runtime (LiteRT), against the Keras model's own outputs.

Imports only numpy and the runtime: evaluation of any .tflite shares this code and stays TensorFlow-free.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.core.errors import InputError
from edgeseq.core.finite import at_least, kinds, nonfinite_rows, within
from edgeseq.quantize.recipes import Tolerance


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype, copy=False)
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zero) * np.float32(scale)
    return y.astype(np.float32)


def input_details_by_name(interp: Any, names: list[str]) -> dict[str, dict]:
    """Each of `names` (Keras input names) to its interpreter input detail: through the serving signature, else by
    tensor name (`serving_default_<name>:0`, or the name itself). InputError naming what is missing."""
    details = interp.get_input_details()
    by_index = {d["index"]: d for d in details}
    found: dict[str, dict] = {}
    try:
        runner = interp.get_signature_runner()
        for name, d in runner.get_input_details().items():
            if name in names and d["index"] in by_index:
                found[name] = by_index[d["index"]]
    except (ValueError, RuntimeError, KeyError):  # no signature: tensor names below
        pass
    for d in details:
        for name in names:
            if name not in found and (d["name"] == name or d["name"].startswith(f"serving_default_{name}:")):
                found[name] = d
    missing = [n for n in names if n not in found]
    if missing or len(details) != len(names):
        raise InputError(f"the model's inputs ({', '.join(d['name'] for d in details)}) do not match the data's "
                         f"({', '.join(names)})", "give one array per model input, named like its keras.Input")
    return found


def run_tflite(interp: Any, X: np.ndarray | dict) -> np.ndarray:
    """Outputs (dequantized float32) of the first output for every sample; batch-1 models run one sample at a time.
    Several inputs: `X` is {input name: array}, each fed to the input of that name."""
    if isinstance(X, dict):
        return _run_several(interp, X)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    ids = np.issubdtype(inp["dtype"], np.integer) and not inp["quantization"][0]
    X = np.asarray(X, dtype=np.int32 if ids else np.float32)  # token ids stay integers
    if X.ndim != len(shape) or tuple(X.shape[1:]) != shape[1:]:
        raise InputError(
            f"data shape {list(X.shape[1:])} does not match the model's input {list(shape[1:])} (per sample)",
            "use data with the model's sequence length and features, or convert with a matching --seq-len",
        )
    batch = shape[0] if shape[0] > 0 else 1
    results = []
    for start in range(0, len(X), batch):
        chunk = X[start : start + batch]
        n = len(chunk)
        if n < batch:  # pad the last chunk of a fixed-batch model
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        interp.set_tensor(inp["index"], _quantize(chunk, inp))
        interp.invoke()
        results.append(_dequantize(interp.get_tensor(out["index"]), out)[:n])
    return np.concatenate(results) if results else np.zeros((0,), np.float32)


def _run_several(interp: Any, X: dict) -> np.ndarray:
    details = input_details_by_name(interp, list(X))
    out = interp.get_output_details()[0]
    arrays = {}
    for name, d in details.items():
        ids = np.issubdtype(d["dtype"], np.integer) and not d["quantization"][0]
        arrays[name] = np.asarray(X[name], dtype=np.int32 if ids else np.float32)
        shape = [int(s) for s in d["shape"]]
        if list(arrays[name].shape[1:]) != shape[1:]:
            raise InputError(f"input {name!r}: data shape {list(arrays[name].shape[1:])} does not match the model's "
                             f"{shape[1:]} (per sample)", "use data with the model's shapes")
    results = []
    for i in range(len(next(iter(arrays.values())))):
        for name, d in details.items():
            interp.set_tensor(d["index"], _quantize(arrays[name][i : i + 1], d))
        interp.invoke()
        results.append(_dequantize(interp.get_tensor(out["index"]), out)[:1])
    return np.concatenate(results) if results else np.zeros((0,), np.float32)


def task_metric(outputs: np.ndarray, labels: np.ndarray, task: str, head: dict | None = None) -> dict[str, float]:
    """Accuracy for classifiers, MSE and MAE for regression: the same terms training reports. Per-time-step outputs
    ([N, T, C] / [N, T, H] against labels [N, T] / [N, T, H]) are scored per frame (`per_frame`, `frames`); sigmoid
    heads against 0/1 labels are thresholded (edgeseq.core.metrics; `head` is the manifest's source.head)."""
    from edgeseq.core.metrics import metrics_for

    return metrics_for(task, outputs, labels, head)


def parity(reference: np.ndarray, outputs: np.ndarray, task: str | None, tol: Tolerance,
           head: dict | None = None) -> dict[str, Any]:
    """Diffs against Keras; `passed` with the reasons it did not. Diffs are scaled by max(1, max|reference|).

    Top-1 agreement is gated on decisive samples only (Keras's top-two margin above twice the mean-abs tolerance),
    because on a near-tie any rounding flips the argmax and says nothing about the conversion. A per-time-step
    classifier ([N, T, C]) is compared frame by frame (`frames`: every step of every sample).
    """
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    got = outputs.reshape(len(outputs), -1).astype(np.float64)
    finite_ref = np.abs(ref[np.isfinite(ref)])
    scale = max(1.0, float(finite_ref.max()) if finite_ref.size else 1.0)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, reported and failed below
        diff = np.abs(ref - got)
    result: dict[str, Any] = {
        "samples": len(ref),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "scale": scale,
        "tolerance": {"max_abs": tol.max_abs, "mean_abs": tol.mean_abs, "top1": tol.top1},
    }
    failures = []
    # NaN/inf anywhere fail: a bare `diff > tol` is False for NaN, so a NaN diff would pass (edgeseq.core.finite).
    for side, arr in (("reference (source model)", ref), ("converted", got)):
        rows = nonfinite_rows(arr)
        if rows:
            failures.append(f"{side} outputs non-finite ({kinds(arr)}) on {rows} of {len(arr)} inputs")
    if tol.max_abs is not None and not within(result["max_abs_diff"], tol.max_abs * scale):
        failures.append(f"max |diff| {result['max_abs_diff']:.3g} > {tol.max_abs * scale:.3g}")
    if not within(result["mean_abs_diff"], tol.mean_abs * scale):
        failures.append(f"mean |diff| {result['mean_abs_diff']:.3g} > {tol.mean_abs * scale:.3g}")
    if (head or {}).get("activation") == "sigmoid":
        from edgeseq.core.metrics import head_threshold

        threshold = head_threshold(head, reference)[0]
        agree = (ref > threshold) == (got > threshold)
        decisive = np.abs(ref - threshold) > 2 * tol.mean_abs * scale  # finite-ok: a mask; NaN failed above
        result["agreement"] = f"thresholded at {threshold:g}, output by output"
        result["top1_agreement"] = float(agree.mean())
        result["decisive_samples"] = int(decisive.sum())
        result["top1_agreement_decisive"] = float(agree[decisive].mean()) if decisive.any() else 1.0
        if not at_least(result["top1_agreement_decisive"], tol.top1):
            failures.append(f"thresholded agreement {result['top1_agreement_decisive']:.3f} < {tol.top1}")
        task = None  # no argmax below
    if task == "classification" and reference.ndim == 3:  # one class vector per time step: compare frames
        ref = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
        got = outputs.reshape(ref.shape).astype(np.float64)
        result["frames"] = len(ref)
    if task == "classification" and ref.shape[1] > 1:
        agree = ref.argmax(1) == got.argmax(1)
        top2 = np.sort(ref, axis=1)[:, -2:]
        decisive = (top2[:, 1] - top2[:, 0]) > 2 * tol.mean_abs * scale  # finite-ok: a mask; NaN failed above
        result["top1_agreement"] = float(agree.mean())
        result["decisive_samples"] = int(decisive.sum())
        result["top1_agreement_decisive"] = float(agree[decisive].mean()) if decisive.any() else 1.0
        if not at_least(result["top1_agreement_decisive"], tol.top1):
            failures.append(f"top-1 agreement {result['top1_agreement_decisive']:.3f} < {tol.top1}")
    result["passed"] = not failures
    result["failures"] = failures
    return result
