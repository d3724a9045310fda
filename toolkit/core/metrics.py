"""Task metrics shared by Keras training and `.tflite` evaluation, so both report in the same terms. NumPy only.

Per-time-step models (one output per step: taggers, voice activity, frame-level regression) are scored per frame:
accuracy over every (sequence, step) label of y [N, T], MSE/MAE over every target of y [N, T, H]; the result then
says `per_frame: true` and counts the `frames`.
"""

from __future__ import annotations

import numpy as np

from edgeseq.core.errors import InputError

_HINT = "evaluate on the data set the model was trained on (per-step labels for per-step models)"


def metrics_for(task: str, pred: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy for classifiers (argmax of the last axis), MSE and MAE for regression."""
    pred = np.asarray(pred, dtype=np.float32)
    y = np.asarray(y)
    if task == "classification":
        if pred.shape[:-1] != y.shape:
            raise InputError(f"the model gives outputs of shape {list(pred.shape[1:])} per sample but the labels "
                             f"have shape {list(y.shape[1:]) or 'one per sample'}", _HINT)
        out = {"accuracy": float(np.mean(np.argmax(pred, axis=-1) == y)), "n": int(len(y))}
        if y.ndim == 2:
            out.update(per_frame=True, frames=int(y.size))
        return out
    if pred.size != y.size:
        raise InputError(f"the model gives outputs of shape {list(pred.shape[1:])} per sample but the targets have "
                         f"shape {list(y.shape[1:])}", _HINT)
    y = y.astype(np.float32).reshape(pred.shape)
    out = {"mse": float(np.mean((pred - y) ** 2)), "mae": float(np.mean(np.abs(pred - y))), "n": int(len(y))}
    if y.ndim == 3:
        out.update(per_frame=True, frames=int(y.shape[0] * y.shape[1]))
    return out
