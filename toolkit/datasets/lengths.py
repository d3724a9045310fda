"""One data set at another sequence length, for scaling studies (`edgeseq sweep --seq-len`).

    ds_256 = at_length("fsdd", 256)

How (docs/sweeps.md says the same):
- a generated data set with a `length` parameter (the adding problem) is generated at that length: its task is
  defined by the length;
- any other data set is resampled along time to exactly `length` steps: float features by linear interpolation
  (the same recording, faster or slower: a crop would change what is in the window), token ids and per-step labels
  by nearest step. Labels of whole sequences do not change.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgeseq.core.errors import DatasetError
from edgeseq.datasets.base import Dataset


def resample_steps(X: np.ndarray, length: int, nearest: bool = False) -> np.ndarray:
    """[N, T, ...] -> [N, length, ...] along axis 1: linear interpolation, or nearest step (`nearest`)."""
    steps = X.shape[1]
    if steps == length:
        return X
    pos = np.linspace(0.0, steps - 1, length) if length > 1 else np.zeros(1)
    if nearest or steps == 1:
        return np.take(X, np.rint(pos).astype(np.int64), axis=1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, steps - 1)
    w = (pos - lo).astype(np.float32).reshape((1, length) + (1,) * (X.ndim - 2))
    return (np.take(X, lo, axis=1) * (1.0 - w) + np.take(X, hi, axis=1) * w).astype(X.dtype)


def resampled(ds: Dataset, length: int) -> Dataset:
    """`ds` with every sequence resampled to `length` steps (see the module docstring)."""
    if length < 1:
        raise DatasetError(f"cannot resample {ds.name} to {length} steps", "pass a positive --seq-len")
    if ds.seq_len == length:
        return ds
    per_step = ds.y_train.ndim >= 2 and ds.y_train.shape[1] == ds.seq_len and (
        ds.task == "classification" or ds.y_train.ndim == 3)
    X_train = resample_steps(ds.X_train, length, nearest=ds.token_ids)
    X_test = resample_steps(ds.X_test, length, nearest=ds.token_ids)
    y_train = resample_steps(ds.y_train, length, nearest=True) if per_step else ds.y_train
    y_test = resample_steps(ds.y_test, length, nearest=True) if per_step else ds.y_test
    meta = {**ds.meta, "resampled": {"from_steps": ds.seq_len, "to_steps": length,
                                     "method": "nearest" if ds.token_ids else "linear"}}
    return dataclasses.replace(ds, name=f"{ds.name}@{length}", X_train=X_train, y_train=y_train, X_test=X_test,
                               y_test=y_test, meta=meta)


def at_length(spec: str, length: int, *, data_dir: str | None = None) -> Dataset:
    """Load `spec` at `length` steps: generated at that length when the data set has a length parameter, else
    resampled."""
    from edgeseq.datasets import canonical_name, is_path, load_dataset, parse_spec

    if not is_path(spec):
        entry, params = parse_spec(spec)
        if "length" in entry.params:
            return load_dataset(canonical_name(entry, {**params, "length": length}), data_dir=data_dir)
    return resampled(load_dataset(spec, data_dir=data_dir), length)
