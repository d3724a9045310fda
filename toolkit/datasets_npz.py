"""Bring your own data: an .npz with X_train, y_train, X_test, y_test, checked key by key (never unpickled).

X: numbers of shape [N, T, F]. y: integers [N] (or [N, 1]) -> classification with num_classes = max(y_train) + 1;
floats [N] or [N, H] -> regression ([N] becomes [N, 1]). Optional key `class_names`: strings, one per class.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgeseq.datasets_base import Dataset
from edgeseq.errors import DatasetError
from edgeseq.fsio import sha256_file

REQUIRED = ("X_train", "y_train", "X_test", "y_test")
FORMAT_HINT = "see README 'Data sets': X_* float [N, T, F], y_* int [N] or float [N, H]"


def _err(path: Path, message: str, hint: str) -> DatasetError:
    return DatasetError(f"{path.name}: {message}", hint)


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise DatasetError(f"data set file not found: {path}",
                           "check the path, or run `edgeseq datasets` to list the registered names")
    if not path.is_file():
        raise DatasetError(f"data set path is not a file: {path}", "pass the path of an .npz file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            magic = fh.read(6)
        what = "a single .npy array" if magic == b"\x93NUMPY" else "not an .npz (zip) archive"
        raise _err(path, what, "save with numpy.savez(path, X_train=..., y_train=..., X_test=..., y_test=...)")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _err(path, f"cannot read as .npz ({exc})", "re-save it with numpy.savez") from exc
    with z:
        missing = [k for k in REQUIRED if k not in z.files]
        if missing:
            raise _err(path, f"missing key(s) {', '.join(missing)} (found: {', '.join(z.files) or 'none'})", FORMAT_HINT)
        out = {}
        for key in [*REQUIRED, *(["class_names"] if "class_names" in z.files else [])]:
            try:
                out[key] = z[key]
            except ValueError as exc:  # object arrays need pickle, which is never allowed
                raise _err(path, f"key '{key}' is an object (pickled) array, which edgeseq never loads",
                           f"convert '{key}' to a numeric array, e.g. np.asarray(x, dtype=np.float32)") from exc
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise _err(path, f"key '{key}' is corrupt ({exc})", "re-save the file with numpy.savez") from exc
    return out


def _check_x(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise _err(path, f"key '{key}' has dtype {x.dtype}, expected numbers", f"cast '{key}' to float32")
    if x.ndim != 3:
        hint = f"reshape '{key}' to [N, T, F]" + (f", e.g. {key}[..., None] for one feature" if x.ndim == 2 else "")
        raise _err(path, f"key '{key}' has rank {x.ndim} (shape {list(x.shape)}), expected 3: [N, T, F]", hint)
    if 0 in x.shape:
        raise _err(path, f"key '{key}' is empty (shape {list(x.shape)})", "every axis of X needs at least one entry")
    x = x.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise _err(path, f"key '{key}' has {bad} NaN/inf value(s) (after conversion to float32)",
                   f"impute or drop them, e.g. np.nan_to_num({key}), and keep values within float32 range")
    return x


def _check_y(path: Path, key: str, y: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """(array, is_classification)."""
    if y.dtype.kind not in "biuf":
        raise _err(path, f"key '{key}' has dtype {y.dtype}, expected integer labels or float targets",
                   f"encode '{key}' as integers 0..C-1 (classification) or floats (regression)")
    if y.size == 0:
        raise _err(path, f"key '{key}' is empty (shape {list(y.shape)})", "give one label or target per sample")
    if y.shape[0] != n:
        xkey = key.replace("y_", "X_")
        raise _err(path, f"key '{key}' has {y.shape[0]} samples but '{xkey}' has {n}",
                   f"give exactly one row of '{key}' per sample of '{xkey}'")
    if y.dtype.kind in "biu":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise _err(path, f"key '{key}' has integer shape {list(y.shape)}, expected labels [N]",
                       f"for one-hot labels use {key}.argmax(-1); for regression targets cast to float32")
        return y.astype(np.int64), True
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise _err(path, f"key '{key}' has rank {y.ndim}, expected [N] or [N, H] float targets", f"reshape '{key}'")
    y = y.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(y)))
    if bad:
        raise _err(path, f"key '{key}' has {bad} NaN/inf value(s)", "drop those samples or fill the targets")
    return y, False


def load_user_npz(spec: str) -> Dataset:
    path = Path(spec).expanduser()
    raw = _read(path)
    X_train, X_test = _check_x(path, "X_train", raw["X_train"]), _check_x(path, "X_test", raw["X_test"])
    if X_train.shape[2] != X_test.shape[2]:
        raise _err(path, f"'X_train' has {X_train.shape[2]} features but 'X_test' has {X_test.shape[2]}",
                   "train and test need the same features, in the same order")
    if X_train.shape[1] != X_test.shape[1]:
        raise _err(path, f"'X_train' has length {X_train.shape[1]} but 'X_test' has {X_test.shape[1]}",
                   "pad or crop both to one length T (models take a fixed-length window)")
    y_train, cls_train = _check_y(path, "y_train", raw["y_train"], X_train.shape[0])
    y_test, cls_test = _check_y(path, "y_test", raw["y_test"], X_test.shape[0])
    if cls_train != cls_test:
        raise _err(path, "'y_train' and 'y_test' disagree: one holds integer labels, the other float targets",
                   "use integers in both (classification) or floats in both (regression)")
    num_classes = class_names = None
    if cls_train:
        for key, y in (("y_train", y_train), ("y_test", y_test)):
            if y.min() < 0:
                raise _err(path, f"key '{key}' has {int((y < 0).sum())} negative label(s)",
                           "labels must be 0..C-1; remap them, e.g. np.unique(y, return_inverse=True)[1]")
        num_classes = int(y_train.max()) + 1
        unseen = sorted(set(np.unique(y_test).tolist()) - set(np.unique(y_train).tolist()))
        if unseen:
            raise _err(path, f"key 'y_test' has label(s) {unseen[:10]} that never occur in 'y_train' "
                             f"(num_classes = max(y_train) + 1 = {num_classes})",
                       "every test class needs training examples; relabel or resplit")
        if "class_names" in raw:
            names = raw["class_names"]
            if names.ndim != 1 or len(names) != num_classes:
                raise _err(path, f"key 'class_names' has shape {list(names.shape)}, expected [{num_classes}]",
                           "give one name per class, in label order")
            class_names = tuple(str(s) for s in names)
    elif y_train.shape[1] != y_test.shape[1]:
        raise _err(path, f"'y_train' has horizon {y_train.shape[1]} but 'y_test' has {y_test.shape[1]}",
                   "give train and test targets the same width H")
    sha = sha256_file(path)
    meta = {"source": str(path.resolve()), "license": "user-supplied", "citation": None, "sha256": sha,
            "description": "user .npz", "preprocessing": {"normalization": None}}
    task = "classification" if cls_train else "regression"
    return Dataset(path.name, task, X_train, y_train, X_test, y_test, num_classes, class_names, meta)
