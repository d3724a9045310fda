"""The adding problem (Hochreiter & Schmidhuber 1997): a long-range-dependency probe with a known trivial baseline."""

from __future__ import annotations

import numpy as np

from edgeseq.core.errors import DatasetError
from edgeseq.datasets.base import Dataset


def _adding(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = np.zeros((n, length, 2), dtype=np.float32)
    X[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    rows = np.arange(n)
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    y = (X[rows, first, 0] + X[rows, second, 0])[:, None].astype(np.float32)
    return X, y


def load_adding(*, length: int = 100, n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> Dataset:
    if length < 2:
        raise DatasetError(f"adding: length must be >= 2, got {length}", "e.g. adding:length=100")
    if n_train < 1 or n_test < 1:
        raise DatasetError(f"adding: n_train and n_test must be >= 1 (got {n_train}, {n_test})", "e.g. n_train=5000")
    # Independent streams for train and test: changing n_train does not change the test set.
    X_train, y_train = _adding(n_train, length, np.random.default_rng([seed, 0]))
    X_test, y_test = _adding(n_test, length, np.random.default_rng([seed, 1]))
    meta = {
        "source": "generated (edgeseq)",
        "license": "n/a (synthetic)",
        "citation": "S. Hochreiter, J. Schmidhuber. Long short-term memory. Neural Computation 9(8):1735-1780, 1997",
        "description": ("Channel 0: uniform [0, 1) values; channel 1: two markers, one in each half of the sequence. "
                        "Target: the sum of the two marked values."),
        "baseline": {"predict_mean": 1.0, "mse": 1.0 / 6.0,
                     "note": "always predicting 1.0 scores MSE ~0.167 (variance of a sum of two U(0,1)); "
                             "a model must beat this to show it learned the dependency"},
        "preprocessing": {"length": length, "seed": seed, "normalization": None},
    }
    return Dataset("adding", "regression", X_train, y_train, X_test, y_test, None, None, meta)
