"""Task metrics shared by Keras training and `.tflite` evaluation, so both report in the same terms. NumPy only."""

from __future__ import annotations

import numpy as np


def metrics_for(task: str, pred: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy for classifiers (argmax of the last axis), MSE and MAE for regression."""
    pred = np.asarray(pred, dtype=np.float32)
    if task == "classification":
        return {"accuracy": float(np.mean(np.argmax(pred, axis=-1) == y)), "n": int(len(y))}
    y = np.asarray(y, dtype=np.float32).reshape(pred.shape)
    return {"mse": float(np.mean((pred - y) ** 2)), "mae": float(np.mean(np.abs(pred - y))), "n": int(len(y))}
