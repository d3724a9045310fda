"""The `Dataset` record every loader returns, plus the small helpers loaders share (numpy only, no TensorFlow)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseq.core.errors import DatasetError

DATA_DIR = Path(__file__).resolve().parent / "data"
# How many bytes of array data edgeseq reads or generates for one data set before refusing (a zip bomb, a header
# claiming a terabyte, adding:n_train=10**9). Override with the environment variable, e.g. EDGESEQ_MAX_DATA_BYTES=8G.
LIMIT_ENV = "EDGESEQ_MAX_DATA_BYTES"
DEFAULT_MAX_DATA_BYTES = 4 << 30
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


@dataclass(frozen=True, eq=False)
class Dataset:
    """One train/test split of sequences, ready for a model: X is float32 [N, T, F], or int32 token ids [N, T] (a
    user .npz for models whose first layer is an Embedding).

    Classification: y is int64 [N] in [0, num_classes), or [N, T] (one label per time step). Regression: y is float32
    [N, H] (H = horizon, >= 1), or [N, T, H] (one target vector per time step).
    `meta` is JSON-serializable: source, license, citation, preprocessing (and normalization statistics), params.
    """

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict)
    # several inputs (edgeseq.datasets.multi): {"train": {name: array}, "test": {...}}; X_* is then the first input
    # with a time axis, which decides seq_len and features
    inputs: dict | None = None

    @property
    def seq_len(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def token_ids(self) -> bool:
        """X holds integer token ids [N, T] (no feature axis)."""
        return self.X_train.ndim == 2

    @property
    def num_features(self) -> int:
        """F; 1 for token ids (one id per step)."""
        return 1 if self.token_ids else int(self.X_train.shape[2])

    @property
    def max_token_id(self) -> int | None:
        """The largest id in train and test (token data), else None."""
        if not self.token_ids:
            return None
        return int(max(self.X_train.max(), self.X_test.max()))

    @property
    def per_step(self) -> bool:
        """y has a time axis: one label ([N, T]) or target vector ([N, T, H]) per time step. (Float [N, T] labels may
        also be read per frame: the model's output shape decides, edgeseq.core.metrics.)"""
        if self.task == "classification":
            return self.y_train.ndim == 2 and self.y_train.shape[1] == self.seq_len
        return self.y_train.ndim == 3

    @property
    def multi_label(self) -> bool:
        """0/1 integer labels [N, K] (K != T): one per sigmoid output."""
        return self.task == "classification" and self.y_train.ndim == 2 and not self.per_step

    @property
    def output_dim(self) -> int:
        if self.multi_label:
            return int(self.y_train.shape[1])
        if self.task == "classification":
            return int(self.num_classes)
        return int(self.y_train.shape[-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.seq_len,) if self.token_ids else (self.seq_len, self.num_features)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, task={self.task!r}, train={list(self.X_train.shape)}, "
                f"test={list(self.X_test.shape)}, output_dim={self.output_dim})")


def bundled(filename: str) -> Path:
    """Path of a file shipped in edgeseq's package data."""
    return DATA_DIR / filename


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a bundled or cached .npz, through the same safe reader as user files (ValueError if damaged)."""
    from edgeseq.datasets.npz import read_npz

    try:
        return read_npz(Path(path), None)
    except DatasetError as exc:
        raise ValueError(exc.one_line()) from None


def max_data_bytes() -> int:
    """The data limit in bytes: $EDGESEQ_MAX_DATA_BYTES (e.g. 8G, 512M, 1000000) or 4 GiB."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_DATA_BYTES
    number = raw.rstrip("bBiIkKmMgGtT ")
    unit = raw[len(number):].strip().upper()
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise DatasetError(f"{LIMIT_ENV}={raw!r} is not a size", "set it to bytes or e.g. 8G, 512M (default 4G)")
    return int(value)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; the unit names match what EDGESEQ_MAX_DATA_BYTES accepts."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{int(n)} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def cache_dir() -> Path:
    """edgeseq's user cache: $EDGESEQ_CACHE_DIR, else $XDG_CACHE_HOME/edgeseq, else ~/.cache/edgeseq."""
    explicit = os.environ.get("EDGESEQ_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "edgeseq"


def standardize(train: np.ndarray, test: np.ndarray, mask_train: np.ndarray | None = None,
                mask_test: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Z-score the last axis with train-set statistics. Masked-out (padding) steps stay exactly zero.

    Returns the new arrays and {"mean": [...], "std": [...]} (std of a constant feature is taken as 1).
    """
    flat = train.reshape(-1, train.shape[-1]) if mask_train is None else train[mask_train]
    mean = flat.mean(axis=0, dtype=np.float64)
    std = flat.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    out = []
    for x, m in ((train, mask_train), (test, mask_test)):
        z = ((x - mean) / std).astype(np.float32)
        if m is not None:
            z[~m] = 0.0
        out.append(z)
    return out[0], out[1], {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def parse_bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise DatasetError(f"parameter '{key}' must be true or false, got {value!r}", f"write {key}=true or {key}=false")
