"""An .npz for a model with several inputs: `X_train_<name>` and `X_test_<name>` for each keras.Input(name=...),
beside `y_train` / `y_test` as usual. Each array is checked like X (finite float32, or int ids), every input has the
same samples per split, and at least one input has a time axis ([N, T, F], or int [N, T]); the others are static
feature vectors ([N, F]). The Dataset's X_* is the first input with a time axis (seq_len, features); all of them are
in `Dataset.inputs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseq.core.errors import DatasetError


def _err(path: Path, what: str, hint: str) -> DatasetError:
    return DatasetError(f"{path.name}: {what}", hint)


def _check(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise _err(path, f"key '{key}' has dtype {x.dtype}, expected numbers", f"cast '{key}' to float32")
    if x.ndim not in (2, 3) or 0 in x.shape:
        raise _err(path, f"key '{key}' has shape {list(x.shape)}, expected [N, T, F], int ids [N, T] or static "
                         "features [N, F]", f"reshape '{key}'")
    if x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
        bad = x.size - int(np.count_nonzero(np.isfinite(x)))
        if bad:
            raise _err(path, f"key '{key}' has {bad} NaN/inf value(s)", f"impute or drop them, e.g. np.nan_to_num({key})")
        return x
    return x.astype(np.int32, copy=False)


def split_inputs(path: Path, raw: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """({"train": {name: X}, "test": {...}}, the first time-axis input's train and test arrays)."""
    out: dict = {"train": {}, "test": {}}
    for split in ("train", "test"):
        prefix = f"X_{split}_"
        for key in sorted(k for k in raw if k.startswith(prefix)):
            out[split][key[len(prefix):]] = _check(path, key, raw[key])
    if set(out["train"]) != set(out["test"]):
        raise _err(path, f"the inputs of X_train_* ({', '.join(out['train'])}) and X_test_* "
                         f"({', '.join(out['test'])}) differ", "give every input a train and a test array")
    for split, arrays in out.items():
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise _err(path, f"the X_{split}_* arrays have different sample counts {sorted(sizes)}",
                       "give every input one row per sample")
        for name, a in arrays.items():
            b = out["train" if split == "test" else "test"][name]
            if a.shape[1:] != b.shape[1:]:
                raise _err(path, f"input {name!r} has shape {list(a.shape[1:])} in X_{split}_{name} but "
                                 f"{list(b.shape[1:])} in the other split", "train and test need the same shapes")
    timed = [n for n, a in out["train"].items() if a.ndim == 3 or a.dtype.kind in "iu"]
    if not timed:
        raise _err(path, "no input has a time axis ([N, T, F] or int ids [N, T])", "edgeseq converts sequence models")
    first = timed[0]
    return out, out["train"][first], out["test"][first]
