"""Windowed forecasting: the real half-hourly electricity demand series `taylor` (bundled from pmdarima 2.1.1, MIT)."""

from __future__ import annotations

import numpy as np

from edgeseq.core.errors import DatasetError
from edgeseq.datasets.base import Dataset, bundled, load_npz

TAYLOR_CITATION = ("J. W. Taylor. Short-term electricity demand forecasting using double seasonal exponential "
                   "smoothing. Journal of the Operational Research Society 54:799-805, 2003")


def window_series(series: np.ndarray, window: int, horizon: int, test_fraction: float) -> dict:
    """Chronological split, then sliding windows (stride 1).

    The last `test_fraction` of the points are test targets: a test window's inputs may reach back into the train part
    (as at deployment), but no train window's target enters the test part. Standardized with train-part statistics.
    """
    n = len(series)
    n_test_points = int(round(n * test_fraction))
    cut = n - n_test_points
    if window < 1 or horizon < 1:
        raise DatasetError(f"window and horizon must be >= 1 (got window={window}, horizon={horizon})",
                           "e.g. electricity:window=48,horizon=1")
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be between 0 and 1, got {test_fraction}", "e.g. test_fraction=0.2")
    n_train = cut - window - horizon + 1
    n_test = n_test_points - horizon + 1
    if n_train < 1 or n_test < 1:
        raise DatasetError(f"window={window} and horizon={horizon} leave no train or test windows in {n} points",
                           "use a shorter window or horizon")
    mean = float(series[:cut].mean(dtype=np.float64))
    std = float(series[:cut].std(dtype=np.float64)) or 1.0
    z = ((series.astype(np.float64) - mean) / std).astype(np.float32)
    span = window + horizon
    frames = np.lib.stride_tricks.sliding_window_view(z, span)  # [n - span + 1, span]
    train = frames[:n_train]
    test = frames[cut - window : cut - window + n_test]
    return {
        "X_train": np.ascontiguousarray(train[:, :window, None]),
        "y_train": np.ascontiguousarray(train[:, window:]),
        "X_test": np.ascontiguousarray(test[:, :window, None]),
        "y_test": np.ascontiguousarray(test[:, window:]),
        "stats": {"mean": mean, "std": std},
        "cut": cut,
    }


def load_electricity(*, window: int = 48, horizon: int = 1, test_fraction: float = 0.2) -> Dataset:
    series = load_npz(bundled("electricity.npz"))["series"]
    w = window_series(series, window, horizon, test_fraction)
    meta = {
        "source": "pmdarima 2.1.1 `taylor` (also R forecast::taylor)",
        "license": "MIT (pmdarima packaging); cite Taylor (2003)",
        "citation": TAYLOR_CITATION,
        "notice": "NOTICE-pmdarima.txt",
        "description": "Half-hourly electricity demand in England and Wales (MW), 5 June - 27 August 2000, 4032 points.",
        "preprocessing": {
            "window": window, "horizon": horizon, "stride": 1, "sampling": "30 min", "units": "MW",
            "split": f"chronological: first {w['cut']} points train, last {len(series) - w['cut']} points are test "
                     "targets (test inputs may start in the train part)",
            "normalization": {"kind": "z-score with train-part statistics; applies to X and y",
                              "mean": w["stats"]["mean"], "std": w["stats"]["std"],
                              "denormalize": "y_MW = y * std + mean"},
        },
    }
    return Dataset("electricity", "regression", w["X_train"], w["y_train"], w["X_test"], w["y_test"], None, None, meta)
