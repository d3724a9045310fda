"""Bring your own data: an .npz with X_train, y_train, X_test, y_test, checked key by key (never unpickled).

X: numbers of shape [N, T, F], or integer token ids [N, T] (for models whose first layer is an Embedding; kept as
int32). y: integers [N] (or [N, 1]) -> classification with num_classes = max(y_train) + 1, or [N, T] -> one label per
time step, or 0/1 [N, K] -> multi-label (K sigmoid outputs); floats [N] or [N, H] -> regression ([N] becomes [N, 1]),
or [N, T, H] -> one target vector per time step. 0/1 labels for sigmoid heads and float [N, T] labels (T horizons or
one per frame) are read by the model's output shape when it is scored (edgeseq.core.metrics).
Optional key `class_names`: strings, one per class.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import DatasetError
from edgeseq.core.fsio import sha256_file
from edgeseq.datasets.base import LIMIT_ENV, Dataset, format_bytes, max_data_bytes

REQUIRED = ("X_train", "y_train", "X_test", "y_test")
FORMAT_HINT = ("see README 'Your own data': X_* float [N, T, F] or int token ids [N, T], y_* int [N] / [N, T] or "
               "float [N, H] / [N, T, H]")
MAX_TOKEN_ID = 2**31 - 1  # token ids are fed to the model as int32
MAX_CLASSES = 100_000  # num_classes = max(y_train) + 1; a stray huge label would otherwise size the model's head
MAX_HEADER_BYTES = 65_536  # magic + length + header dict; numpy itself refuses headers over 10,000 characters
CHUNK_BYTES = 1 << 22  # inflate 4 MiB at a time
MAX_COMPRESSION_RATIO = 200  # deflate tops out near 1032x on zeros; real float data compresses 1-3x
RATIO_FLOOR_BYTES = 64 << 20  # small members may compress as much as they like (a labels array of zeros does)


def _err(path: Path, message: str, hint: str) -> DatasetError:
    return DatasetError(f"{path.name}: {message}", hint)


class _Capped:
    """A read-only view of a stream that yields at most `cap` more bytes: the .npy header parser reads through it,
    so a header that claims a 4 GB length costs at most `cap` bytes of memory."""

    def __init__(self, fp: Any, cap: int):
        self.fp, self.left = fp, cap

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.fp.read(n) if n else b""
        self.left -= len(data)
        return data


class _CorruptMember(Exception):
    """The zip layer failed under the header parser: bad CRC, broken deflate stream, early end of the member."""


def _parse_header(fp: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream at `fp`; ValueError (any cause) when it is not one,
    _CorruptMember when the member itself cannot be inflated."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            return fmt.read_array_header_1_0(fp)
        if version == (2, 0):
            return fmt.read_array_header_2_0(fp)
        if version == (3, 0):  # utf-8 field names; numpy has no public reader for it
            from numpy.lib import _format_impl

            return _format_impl._read_array_header(fp, version)
        raise ValueError(f"unknown .npy format version {version[0]}.{version[1]}")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise _CorruptMember(_why(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - ValueError, SyntaxError, TokenError, MemoryError, UnicodeError, ...
        raise ValueError(_why(exc)) from exc


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str, budget: int,
                 limit: int) -> np.ndarray:
    """One array, read without trusting anything the file says: header parsed under a cap, declared shape x dtype
    checked against the member's size and `budget` before one byte of data is allocated, data read in bounded
    chunks into exactly that many bytes."""
    if info.flag_bits & 0x1:
        raise _err(path, f"key '{key}' is encrypted", "save the arrays with numpy.savez (no encryption)")
    try:
        fp = zf.open(info)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, NotImplementedError (method), OSError, ...
        raise _err(path, f"key '{key}' cannot be opened ({_why(exc)})", "re-save the file with numpy.savez") from None
    with fp:
        capped = _Capped(fp, MAX_HEADER_BYTES)
        try:
            shape, fortran, dtype = _parse_header(capped)
        except _CorruptMember as exc:
            raise _err(path, f"key '{key}' is corrupt ({exc})", "re-save the file with numpy.savez") from None
        except ValueError as exc:
            raise _err(path, f"key '{key}' has a malformed .npy header ({exc})",
                       "the file is corrupt or not written by numpy: re-save it with numpy.savez") from None
        if dtype.hasobject:
            raise _err(path, f"key '{key}' is an object (pickled) array, which edgeseq never loads",
                       f"convert '{key}' to a numeric array, e.g. np.asarray(x, dtype=np.float32)")
        if dtype.fields is not None or dtype.subdtype is not None:
            raise _err(path, f"key '{key}' has a structured dtype ({dtype}), expected plain numbers or strings",
                       f"save '{key}' as a plain array, e.g. np.asarray(x, dtype=np.float32)")
        header_bytes = MAX_HEADER_BYTES - capped.left
        count = math.prod(shape)  # Python ints: a claimed 10**30 elements does not overflow
        nbytes = count * dtype.itemsize
        shown = f"shape {list(shape)} of {dtype} ({format_bytes(nbytes)})"
        if nbytes > budget:
            raise _err(path, f"key '{key}' declares {shown}, over the data limit of {format_bytes(limit)} "
                             f"({LIMIT_ENV})", f"use a smaller file, or raise {LIMIT_ENV} (bytes, e.g. 8G)")
        if header_bytes + nbytes != info.file_size:
            raise _err(path, f"key '{key}' declares {shown} but its .npy member holds "
                             f"{format_bytes(max(0, info.file_size - header_bytes))} of data: the file is corrupt or "
                             "truncated", "re-save it with numpy.savez")
        buf = bytearray(nbytes)
        view, got = memoryview(buf), 0
        try:
            while got < nbytes:
                chunk = fp.read(min(CHUNK_BYTES, nbytes - got))
                if not chunk:
                    break
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
            extra = fp.read(1)  # also makes zipfile check the CRC at the end of the member
        except Exception as exc:  # noqa: BLE001 - BadZipFile (CRC), zlib.error, EOFError, OSError
            raise _err(path, f"key '{key}' is corrupt ({_why(exc)})", "re-save the file with numpy.savez") from None
        if got != nbytes or extra:
            raise _err(path, f"key '{key}' holds {'less' if got != nbytes else 'more'} data than its header declares "
                             f"({shown})", "the file is corrupt or truncated: re-save it with numpy.savez")
    arr = np.frombuffer(buf, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def _why(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def read_npz(path: Path, keys: tuple[str, ...] | None, optional: tuple[str, ...] = (), *,
             limit: int | None = None) -> dict[str, np.ndarray]:
    """The arrays `keys` (all required; None: every member) and `optional` (if present) of an .npz, read safely and
    within `limit` bytes.

    Never unpickles, never trusts a size: the zip's declared sizes and compression ratios are checked before anything
    is inflated (a zip bomb is refused from its directory), every member's .npy header is parsed under a cap and its
    shape x dtype checked against the member's real size and the limit before memory is allocated, and data is read
    in bounded chunks, so a member that lies about its size cannot inflate past what was checked.
    Raises DatasetError (one line, with the fix) for anything else.
    """
    limit = max_data_bytes() if limit is None else limit
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001 - BadZipFile, OSError, ValueError, EOFError, NotImplementedError, ...
        raise _err(path, f"cannot read as .npz ({_why(exc)})", "re-save it with numpy.savez") from None
    with zf:
        members: dict[str, zipfile.ZipInfo] = {}
        duplicates = set()
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in members:
                duplicates.add(key)
            members[key] = info
        keys = tuple(members) if keys is None else keys
        missing = [k for k in keys if k not in members]
        if missing:
            raise _err(path, f"missing key(s) {', '.join(missing)} (found: {', '.join(k[:40] for k in list(members)[:20]) or 'none'})",
                       FORMAT_HINT)
        wanted = [*keys, *(k for k in optional if k in members)]
        clash = [k for k in wanted if k in duplicates]
        if clash:
            raise _err(path, f"key '{clash[0]}' is stored more than once", "re-save the file with numpy.savez")
        total = sum(members[k].file_size for k in wanted)
        if total > limit:
            raise _err(path, f"the arrays inflate to {format_bytes(total)}, over the data limit of "
                             f"{format_bytes(limit)} ({LIMIT_ENV})",
                       f"use a smaller file, or raise {LIMIT_ENV} (bytes, e.g. 8G) if you have the memory")
        for k in wanted:
            info = members[k]
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > RATIO_FLOOR_BYTES:
                ratio = info.file_size / max(1, info.compress_size)
                if ratio > MAX_COMPRESSION_RATIO:
                    raise _err(path, f"key '{k}' inflates {ratio:,.0f}x ({format_bytes(info.compress_size)} -> "
                                     f"{format_bytes(info.file_size)}), over the {MAX_COMPRESSION_RATIO}x limit for "
                                     "compressed members above "
                                     f"{format_bytes(RATIO_FLOOR_BYTES)}: a zip bomb, or data that is mostly zeros",
                               "if the data is real, save it uncompressed with numpy.savez (not savez_compressed)")
        out, budget = {}, limit
        for k in wanted:
            out[k] = _read_member(zf, members[k], path, k, budget, limit)
            budget -= out[k].nbytes
    return out


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise DatasetError(f"data set file not found: {path}",
                           "check the path, or run `edgeseq datasets` to list the registered names")
    if not path.is_file():
        raise DatasetError(f"data set path is not a file: {path}", "pass the path of an .npz file")
    try:
        is_zip = zipfile.is_zipfile(path)
        if not is_zip:
            with open(path, "rb") as fh:
                magic = fh.read(6)
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from None
    if not is_zip:
        if magic.startswith(b"PK\x03\x04"):
            raise _err(path, "a truncated or corrupt zip archive (its central directory is missing)",
                       "copy the file again, or re-save it with numpy.savez")
        what = "a single .npy array" if magic == b"\x93NUMPY" else "not an .npz (zip) archive"
        raise _err(path, what, "save with numpy.savez(path, X_train=..., y_train=..., X_test=..., y_test=...)")
    with zipfile.ZipFile(path) as zf:
        names = {n[:-4] if n.endswith(".npy") else n for n in zf.namelist()}
    if "X_train" not in names and any(n.startswith("X_train_") for n in names):  # several inputs, one key each
        keys = tuple(n for n in sorted(names) if n.startswith(("X_train_", "X_test_")))
        return read_npz(path, (*keys, "y_train", "y_test"), ("class_names",))
    return read_npz(path, REQUIRED, ("class_names",))


def _check_x(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """float32 [N, T, F], or int32 [N, T] token ids (an integer X of rank 2)."""
    if x.dtype.kind not in "biuf":
        raise _err(path, f"key '{key}' has dtype {x.dtype}, expected numbers", f"cast '{key}' to float32")
    tokens = x.ndim == 2 and x.dtype.kind in "iu"
    if x.ndim != 3 and not tokens:
        hint = f"reshape '{key}' to [N, T, F]" + (f", e.g. {key}[..., None] for one feature; token ids [N, T] must be "
                                                 "integers" if x.ndim == 2 else "")
        raise _err(path, f"key '{key}' has rank {x.ndim} (shape {list(x.shape)}), expected 3: [N, T, F] "
                         "(or integer token ids [N, T])", hint)
    if 0 in x.shape:
        raise _err(path, f"key '{key}' is empty (shape {list(x.shape)})", "every axis of X needs at least one entry")
    if tokens:
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > MAX_TOKEN_ID:
            bad = low if low < 0 else high
            raise _err(path, f"key '{key}' holds token id {bad:,}; ids must be 0..{MAX_TOKEN_ID:,} (int32)",
                       "map the tokens to ids 0..vocabulary-1, e.g. np.unique(X, return_inverse=True)[1]")
        return x.astype(np.int32, copy=False)
    x = x.astype(np.float32, copy=False)  # the reader's buffer is private: no second copy of float32 data
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        raise _err(path, f"key '{key}' has {bad} NaN/inf value(s) (after conversion to float32)",
                   f"impute or drop them, e.g. np.nan_to_num({key}), and keep values within float32 range")
    return x


def _check_y(path: Path, key: str, y: np.ndarray, n: int, steps: int) -> tuple[np.ndarray, bool]:
    """(array, is_classification). `steps`: X's T, the length of per-step labels ([N, T] ints, [N, T, H] floats)."""
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
        # [N, K] 0/1: one label per sigmoid output; not one-hot rows (exactly one 1 each: argmax them)
        multi_label = (y.ndim == 2 and bool(np.all((y == 0) | (y == 1))) and not bool(np.all(y.sum(axis=1) == 1)))
        if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == steps) or multi_label):
            raise _err(path, f"key '{key}' has integer shape {list(y.shape)}, expected labels [N], one label per "
                             f"time step [N, {steps}] or 0/1 multi-label labels [N, K]",
                       f"for one-hot labels use {key}.argmax(-1); for regression targets cast to float32")
        return y.astype(np.int64), True
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim == 3 and y.shape[1] != steps:
        raise _err(path, f"key '{key}' has per-step targets for {y.shape[1]} steps but X has {steps}",
                   f"give one target vector per time step: [N, {steps}, H]")
    if y.ndim not in (2, 3):
        raise _err(path, f"key '{key}' has rank {y.ndim}, expected [N] or [N, H] float targets (or [N, T, H] per "
                         "time step)", f"reshape '{key}'")
    y = y.astype(np.float32)
    bad = int(np.count_nonzero(~np.isfinite(y)))
    if bad:
        raise _err(path, f"key '{key}' has {bad} NaN/inf value(s)", "drop those samples or fill the targets")
    return y, False


def load_user_npz(spec: str) -> Dataset:
    path = Path(spec).expanduser()
    raw = _read(path)
    inputs = None
    if "X_train" not in raw:  # several inputs (edgeseq.datasets.multi): X_* is the first one with a time axis
        from edgeseq.datasets.multi import split_inputs

        inputs, raw["X_train"], raw["X_test"] = split_inputs(path, raw)
    X_train, X_test = _check_x(path, "X_train", raw["X_train"]), _check_x(path, "X_test", raw["X_test"])
    if X_train.ndim != X_test.ndim:
        raise _err(path, f"'X_train' has shape {list(X_train.shape)} but 'X_test' has {list(X_test.shape)}: one holds "
                         "token ids [N, T], the other features [N, T, F]", "give both the same kind of input")
    if X_train.ndim == 3 and X_train.shape[2] != X_test.shape[2]:
        raise _err(path, f"'X_train' has {X_train.shape[2]} features but 'X_test' has {X_test.shape[2]}",
                   "train and test need the same features, in the same order")
    if X_train.shape[1] != X_test.shape[1]:
        raise _err(path, f"'X_train' has length {X_train.shape[1]} but 'X_test' has {X_test.shape[1]}",
                   "pad or crop both to one length T (models take a fixed-length window)")
    steps = X_train.shape[1]
    y_train, cls_train = _check_y(path, "y_train", raw["y_train"], X_train.shape[0], steps)
    y_test, cls_test = _check_y(path, "y_test", raw["y_test"], X_test.shape[0], steps)
    if cls_train != cls_test:
        raise _err(path, "'y_train' and 'y_test' disagree: one holds integer labels, the other float targets",
                   "use integers in both (classification) or floats in both (regression)")
    if y_train.ndim != y_test.ndim:
        raise _err(path, f"'y_train' has shape {list(y_train.shape)} but 'y_test' has {list(y_test.shape)}: one "
                         "labels each sequence, the other each time step", "label both the same way")
    num_classes = class_names = None
    if cls_train:
        for key, y in (("y_train", y_train), ("y_test", y_test)):
            if y.min() < 0:
                raise _err(path, f"key '{key}' has {int((y < 0).sum())} negative label(s)",
                           "labels must be 0..C-1; remap them, e.g. np.unique(y, return_inverse=True)[1]")
        num_classes = int(y_train.max()) + 1
        if num_classes > MAX_CLASSES:
            raise _err(path, f"key 'y_train' has label {num_classes - 1:,}, so num_classes = max(y_train) + 1 = "
                             f"{num_classes:,}, over edgeseq's limit of {MAX_CLASSES:,} classes",
                       "labels must be 0..C-1: remap them, e.g. np.unique(y, return_inverse=True)[1]")
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
    elif y_train.shape[-1] != y_test.shape[-1]:
        raise _err(path, f"'y_train' has horizon {y_train.shape[-1]} but 'y_test' has {y_test.shape[-1]}",
                   "give train and test targets the same width H")
    sha = sha256_file(path)
    meta = {"source": str(path.resolve()), "license": "user-supplied", "citation": None, "sha256": sha,
            "description": "user .npz", "preprocessing": {"normalization": None}}
    task = "classification" if cls_train else "regression"
    if inputs is not None:
        meta["inputs"] = {k: list(v.shape[1:]) for k, v in inputs["train"].items()}
    return Dataset(path.name, task, X_train, y_train, X_test, y_test, num_classes, class_names, meta, inputs)
