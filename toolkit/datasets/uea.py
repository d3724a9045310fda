"""BasicMotions and JapaneseVowels from the UEA multivariate archive, bundled as npz (see data/NOTICE-UEA.txt)."""

from __future__ import annotations

import numpy as np

from edgeseq.core.errors import DatasetError
from edgeseq.datasets.base import Dataset, bundled, load_npz, standardize

UEA_CITATION = (
    "A. Bagnall, H. A. Dau, J. Lines, M. Flynn, J. Large, A. Bostrom, P. Southam, E. Keogh. "
    "The UEA multivariate time series classification archive, 2018. arXiv:1811.00075"
)
UEA_LICENSE = "BSD-3-Clause (aeon 1.6.0 packaging); cite the UEA archive"
UEA_SOURCE = "UEA archive via aeon 1.6.0 (timeseriesclassification.com)"


def _meta(notes: str, extra_citation: str | None = None) -> dict:
    citation = UEA_CITATION if extra_citation is None else f"{UEA_CITATION}; {extra_citation}"
    return {"source": UEA_SOURCE, "license": UEA_LICENSE, "citation": citation, "notice": "NOTICE-UEA.txt",
            "description": notes}


def load_basic_motions(*, normalize: bool = True) -> Dataset:
    d = load_npz(bundled("basic_motions.npz"))
    X_train, X_test = d["X_train"], d["X_test"]
    pre: dict = {"series_length": 100, "sampling_hz": 10, "channels": ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]}
    if normalize:
        X_train, X_test, stats = standardize(X_train, X_test)
        pre["normalization"] = {"kind": "per-channel z-score with train-set statistics", **stats}
    else:
        pre["normalization"] = None
    meta = _meta("Smart-watch accelerometer + gyroscope, 10 s at 10 Hz; 4 activities.")
    meta["preprocessing"] = pre
    return Dataset("basic_motions", "classification", X_train, d["y_train"], X_test, d["y_test"], 4,
                   tuple(str(c) for c in d["class_names"]), meta)


def _repad_post(X: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.zeros_like(X)
    T = X.shape[1]
    for i, n in enumerate(lengths):
        out[i, :n] = X[i, T - n :]
    return out


def load_japanese_vowels(*, normalize: bool = True, padding: str = "pre") -> Dataset:
    if padding not in ("pre", "post"):
        raise DatasetError(f"japanese_vowels: parameter 'padding' must be 'pre' or 'post', got {padding!r}",
                           "use japanese_vowels:padding=pre (zeros before the utterance, the default)")
    d = load_npz(bundled("japanese_vowels.npz"))  # stored pre-padded to 29 frames
    X_train, X_test = d["X_train"], d["X_test"]
    len_train, len_test = d["lengths_train"], d["lengths_test"]
    if padding == "post":
        X_train, X_test = _repad_post(X_train, len_train), _repad_post(X_test, len_test)
    T = X_train.shape[1]
    steps = np.arange(T)

    def mask(lengths: np.ndarray) -> np.ndarray:
        if padding == "pre":
            return steps[None, :] >= (T - lengths)[:, None]
        return steps[None, :] < lengths[:, None]

    pre: dict = {
        "padding": {"to_length": int(T), "side": padding, "value": 0.0,
                    "why": "pre-padding puts the real last frame at the final step, where an RNN's state is read"},
        "lengths_train": len_train.tolist(),
        "lengths_test": len_test.tolist(),
        "length_range": [int(min(len_train.min(), len_test.min())), int(max(len_train.max(), len_test.max()))],
    }
    if normalize:
        X_train, X_test, stats = standardize(X_train, X_test, mask(len_train), mask(len_test))
        pre["normalization"] = {"kind": "per-feature z-score with train-set statistics over real frames; "
                                        "padding stays 0", **stats}
    else:
        pre["normalization"] = None
    meta = _meta("9 male speakers saying /ae/; 12 LPC cepstrum coefficients per frame, 7-29 frames. Task: speaker.",
                 "M. Kudo, J. Toyama, M. Shimbo. Multidimensional curve classification using passing-through "
                 "regions. Pattern Recognition Letters 20(11-13):1103-1111, 1999")
    meta["preprocessing"] = pre
    return Dataset("japanese_vowels", "classification", X_train, d["y_train"], X_test, d["y_test"], 9,
                   tuple(str(c) for c in d["class_names"]), meta)
