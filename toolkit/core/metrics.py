"""Task metrics shared by Keras training and `.tflite` evaluation, so both report in the same terms. NumPy only.

Per-time-step models (one output per step: taggers, voice activity, frame-level regression) are scored per frame:
accuracy over every (sequence, step) label of y [N, T], MSE/MAE over every target of y [N, T, H]; the result then
says `per_frame: true` and counts the `frames`.

Sigmoid heads are thresholded, never argmaxed (the argmax of one output is always 0):
- one output against 0/1 labels [N]: binary accuracy at the head's threshold (0.5 for a sigmoid, 0 for logits);
- K outputs against 0/1 labels [N, K]: multi-label, each label thresholded, accuracy averaged over the N x K labels;
- one output per step ([N, T, 1]) against 0/1 labels [N, T] (int or float): per-frame binary accuracy.
Where the labels alone are ambiguous (float [N, T]: T regression horizons, or one 0/1 label per frame), the model's
output shape and head decide, and the result says which reading was taken (`reading`).
"""

from __future__ import annotations

import numpy as np

from edgeseq.core.errors import InputError

_HINT = "evaluate on the data set the model was trained on (per-step labels for per-step models)"


def is_binary_labels(y: np.ndarray) -> bool:
    """Every label is 0 or 1 (ints or floats)."""
    y = np.asarray(y)
    return bool(y.size) and bool(np.all((y == 0) | (y == 1)))


def head_threshold(head: dict | None, pred: np.ndarray) -> tuple[float, str]:
    """The decision threshold of a one-unit-per-label head and why: 0.5 for a sigmoid, 0 for logits (a linear head);
    with no head known, 0.5 when every output lies in [0, 1], else 0."""
    activation = (head or {}).get("activation")
    if activation == "sigmoid":
        return 0.5, "sigmoid"
    if activation == "linear":
        return 0.0, "logits"
    if pred.size and float(pred.min()) >= 0.0 and float(pred.max()) <= 1.0:
        return 0.5, "outputs in [0, 1]"
    return 0.0, "logits"


def thresholded_kind(pred_shape: tuple, y: np.ndarray, task: str, head: dict | None) -> str | None:
    """'binary', 'per-frame binary' or 'multi-label' when `pred` ([N, ...]) is a sigmoid/logit head scored against 0/1
    labels `y`, else None. Float labels count only with a sigmoid head (otherwise they are regression targets)."""
    if not is_binary_labels(y):
        return None
    activation = (head or {}).get("activation")
    if task != "classification" and activation != "sigmoid":
        return None
    if activation == "softmax":
        return None
    if tuple(pred_shape[:-1]) == y.shape and pred_shape[-1] == 1:
        return "per-frame binary" if y.ndim == 2 else "binary"
    if tuple(pred_shape) == y.shape and y.ndim == 2:
        return "binary" if y.shape[1] == 1 else "multi-label"
    return None


def _thresholded(kind: str, pred: np.ndarray, y: np.ndarray, head: dict | None) -> dict:
    threshold, why = head_threshold(head, pred)
    p = pred.reshape(y.shape) > threshold
    out = {"accuracy": float(np.mean(p == (y > 0.5))), "n": int(len(y)), "threshold": threshold}
    if kind == "multi-label":
        out["labels"] = int(y.shape[1])
        out["reading"] = (f"multi-label: {y.shape[1]} outputs against 0/1 labels [N, {y.shape[1]}], each thresholded "
                          f"at {threshold:g} ({why}); accuracy averaged over every label")
    elif kind == "per-frame binary":
        out.update(per_frame=True, frames=int(y.size))
        out["reading"] = (f"per-frame binary: one output per step against 0/1 labels [N, {y.shape[1]}], thresholded "
                          f"at {threshold:g} ({why})")
    else:
        out["reading"] = f"binary: one output against 0/1 labels, thresholded at {threshold:g} ({why})"
    return out


def metrics_for(task: str, pred: np.ndarray, y: np.ndarray, head: dict | None = None) -> dict:
    """Accuracy for classifiers (argmax of the last axis, or thresholded for sigmoid heads: module docstring), MSE and
    MAE for regression. `head`: the model's output layer, {"activation": "softmax"|"sigmoid"|"linear", ...}, when
    known (convert records it in the manifest's source.head)."""
    pred = np.asarray(pred, dtype=np.float32)
    y = np.asarray(y)
    kind = thresholded_kind(pred.shape, y, task, head)
    if kind is not None:
        out = _thresholded(kind, pred, y, head)
        return out if task == "classification" else {"task": "classification", **out}
    if task == "classification":
        if pred.shape[:-1] != y.shape:
            raise InputError(f"the model gives outputs of shape {list(pred.shape[1:])} per sample but the labels "
                             f"have shape {list(y.shape[1:]) or 'one per sample'}", _HINT)
        if pred.shape[-1] == 1:
            raise InputError("the model gives one output per sample but the labels are not all 0/1, so they cannot be "
                             "scored as binary classification", "give 0/1 labels for a one-output (sigmoid) model")
        out = {"accuracy": float(np.mean(np.argmax(pred, axis=-1) == y)), "n": int(len(y))}
        if y.ndim == 2:
            out.update(per_frame=True, frames=int(y.size))
        return out
    if pred.size != y.size:
        raise InputError(f"the model gives outputs of shape {list(pred.shape[1:])} per sample but the targets have "
                         f"shape {list(y.shape[1:])}", _HINT)
    per_frame_targets = pred.ndim == 3 and y.ndim == 2  # float [N, T] against a per-step model: one per frame
    y = y.astype(np.float32).reshape(pred.shape)
    out = {"mse": float(np.mean((pred - y) ** 2)), "mae": float(np.mean(np.abs(pred - y))), "n": int(len(y))}
    if y.ndim == 3:
        out.update(per_frame=True, frames=int(y.shape[0] * y.shape[1]))
    if per_frame_targets:
        out["reading"] = (f"per-frame regression: float labels [N, {pred.shape[1]}] read as one target per step (the "
                          f"model gives {pred.shape[1]} x {pred.shape[2]} outputs)")
    return out


def label_reading(task: str, y: np.ndarray, steps: int | None) -> str:
    """How a data set's labels can be read before a model is known (for `datasets show`)."""
    y = np.asarray(y)
    binary = is_binary_labels(y)
    if task == "classification":
        if y.ndim == 1:
            return ("0/1 labels: binary classification (a one-output sigmoid model is thresholded, a two-output "
                    "softmax argmaxed)") if binary else "one class label per sequence"
        if steps is not None and y.shape[1] == steps:
            return ("0/1 labels [N, T]: one per time step (per-frame; a per-step sigmoid model is thresholded), or "
                    f"{steps} labels of a multi-label model: the model's output shape decides") if binary else \
                "one label per time step"
        return f"multi-label: {y.shape[1]} 0/1 labels per sequence (each thresholded, accuracy averaged)"
    if y.ndim == 2 and steps is not None and y.shape[1] == steps:
        extra = (" or one 0/1 label per frame (per-step sigmoid model)" if binary else "") + \
            " or one target per frame (per-step model)"
        return f"float [N, {steps}]: {steps} regression horizons{extra}: the model's output shape decides"
    if y.ndim == 2 and binary and y.shape[1] > 1:
        return f"{y.shape[1]} float 0/1 targets per sequence: regression, or multi-label for a sigmoid model"
    return "one target vector per time step" if y.ndim == 3 else "one target vector per sequence"
