"""Calibration and validation inputs: a registered data set, an .npz, a loaded Dataset, or (said so) random inputs.

Selection is deterministic (seeded indices into the training split) and recorded, so a quantized model can be
reproduced from its manifest: data set name, split, seed, the indices and their sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.errors import DatasetError, InputError

CALIBRATION_SEED = 0
VALIDATION_SAMPLES = 1000  # cap on held-out samples used for parity and accuracy
RANDOM_VALIDATION_SAMPLES = 64


@dataclass(frozen=True)
class Inputs:
    """What conversion and validation need from a data set; `dataset` is None for random inputs."""

    dataset: Any
    name: str
    task: str | None
    X_val: np.ndarray
    y_val: np.ndarray | None
    validation_record: dict

    def calibration(self, samples: int, seed: int = CALIBRATION_SEED) -> tuple[np.ndarray, dict]:
        """`samples` seeded calibration inputs from the training split, and the record that reproduces them."""
        if self.dataset is None:
            rng = np.random.default_rng(seed)
            X = rng.standard_normal((samples, *self.X_val.shape[1:])).astype(np.float32)
            return X, {"source": "random-normal", "note": "no calibration data given: N(0,1) inputs; pass "
                       "--calibration DATASET for a faithful int8 model", "samples": samples, "seed": seed}
        X_train = self.dataset.X_train
        idx = select_indices(len(X_train), samples, seed)
        X, guard = guard_constant_steps(np.ascontiguousarray(X_train[idx], dtype=np.float32), seed)
        return X, {
            "source": "dataset",
            "dataset": self.name,
            "split": "train",
            "samples": int(len(idx)),
            "seed": seed,
            "indices": idx.tolist(),
            "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest(),
            "constant_step_guard": guard,
        }


def guard_constant_steps(X: np.ndarray, seed: int) -> tuple[np.ndarray, dict | None]:
    """Append one jittered sample when some time steps are identical in every calibration sample.

    Why: pre-padded data (JapaneseVowels) leaves the first steps, and the recurrent state through them, at exactly
    one value in every sample; the calibrator then records zero-width ranges, and LiteRT's XNNPACK delegate aborts
    (double free) while preparing such an int8 graph. A copy of one sample with N(0, 1% of the data's std) added on
    those steps gives them a tiny, valid range and leaves every real range as it was.
    """
    constant = np.all(X == X[:1], axis=(0, 2))
    if len(X) < 2 or not constant.any():
        return X, None
    rng = np.random.default_rng(seed + 7)
    extra = X[:1].copy()
    sigma = 0.01 * float(X.std() or 1.0)
    extra[:, constant] += rng.normal(0.0, sigma, extra[:, constant].shape).astype(np.float32)
    return np.concatenate([X, extra]), {"constant_steps": int(constant.sum()), "extra_samples": 1, "sigma": sigma}


def select_indices(total: int, samples: int, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Sorted, seeded sample without replacement; all rows when fewer exist than asked for."""
    if total <= 0:
        raise DatasetError("the calibration data set has no training samples")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=min(samples, total), replace=False)).astype(np.int64)


def _load(spec: Any) -> Any:
    if isinstance(spec, str):
        from edgeseq.datasets import load_dataset

        return load_dataset(spec)
    if all(hasattr(spec, a) for a in ("X_train", "X_test", "y_test", "task")):
        return spec
    raise InputError(f"cannot use {type(spec).__name__} as calibration data", "pass a data set name or an .npz path")


def prepare_inputs(source: Any, *, seq_len: int, num_features: int, seed: int = CALIBRATION_SEED) -> Inputs:
    """Load `source` (None: random) and check it fits a model with input [1, seq_len, num_features]."""
    if source is None:
        rng = np.random.default_rng(seed + 1)
        X = rng.standard_normal((RANDOM_VALIDATION_SAMPLES, seq_len, num_features)).astype(np.float32)
        record = {"source": "random-normal", "samples": len(X), "seed": seed + 1,
                  "note": "no data set given: parity checked on N(0,1) inputs, no accuracy"}
        return Inputs(None, "random", None, X, None, record)
    ds = _load(source)
    name = getattr(ds, "name", str(source))
    _, t, f = ds.X_test.shape
    if (t, f) != (seq_len, num_features):
        hint = (f"convert with --seq-len {t}" if f == num_features else "use the data set the model was trained on")
        raise InputError(
            f"data set {name} has sequences of shape [{t}, {f}] but the model takes [{seq_len}, {num_features}]", hint
        )
    n = len(ds.X_test)
    idx = np.arange(n) if n <= VALIDATION_SAMPLES else select_indices(n, VALIDATION_SAMPLES, seed)
    record = {"source": "dataset", "dataset": name, "split": "test", "samples": int(len(idx)),
              "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest()}
    return Inputs(ds, name, ds.task, np.ascontiguousarray(ds.X_test[idx], np.float32), ds.y_test[idx], record)
