"""What a training run is asked to do and where it writes, with no TensorFlow import: the CLI validates all of it
before paying for TensorFlow, and the demo reads earlier runs back without loading a model."""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import InputError
from edgeseq.core.fsio import check_output_dir


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 60  # upper bound; early stopping usually ends sooner
    batch_size: int = 32  # small data sets (JapaneseVowels has 270 samples) need many updates per epoch
    learning_rate: float = 2e-3  # Adam; halved on plateaus
    validation_split: float = 0.15  # carved from the training set, stratified for classifiers
    patience: int = 12  # epochs without val_loss improvement before stopping (best weights restored)
    seed: int = 0  # seeds Python, NumPy, TF and the validation split
    mixed_precision: bool = False  # opt-in float16 compute; the head stays float32
    clipnorm: float = 1.0  # guards RNNs against exploding gradients on long sequences

    def check(self) -> None:
        if self.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}", "pass --epochs 1 or more")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}", "pass --batch-size 1 or more")
        if not 0.0 <= self.validation_split < 0.9:  # also refuses NaN
            raise InputError(
                f"--validation-split must be in [0, 0.9), got {self.validation_split}", "use e.g. 0.15"
            )
        if not 0 < self.learning_rate < float("inf"):  # also refuses NaN
            raise InputError(f"--lr must be a finite number > 0, got {self.learning_rate}", "use e.g. 0.002")
        if not 0 < self.clipnorm < float("inf"):
            raise InputError(f"clipnorm must be a finite number > 0, got {self.clipnorm}", "use e.g. 1.0")
        if self.patience < 0:
            raise InputError(f"--patience must be 0 or more, got {self.patience}", "use e.g. --patience 12")
        if not 0 <= self.seed < 2**32:
            raise InputError(f"--seed must be in [0, 2**32), got {self.seed}", "use e.g. --seed 0")


@dataclass(frozen=True)
class TrainResult:
    """A finished run: where it was written and its training.json record (train.py in-process, or a backend child)."""

    out_dir: Path
    model_path: Path
    record: dict

    @property
    def test_metrics(self) -> dict:
        return self.record["test_metrics"]


def split_validation(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation indices; stratified for classifiers so every class is seen in both."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if fraction <= 0 or n < 4:
        return np.arange(n), np.arange(0)
    if not stratify:
        order = rng.permutation(n)
        n_val = max(1, int(round(n * fraction)))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    train_idx, val_idx = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(len(members) * fraction))
        if len(members) - n_val < 1:
            n_val = len(members) - 1
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return np.sort(np.array(train_idx, dtype=np.int64)), np.sort(np.array(val_idx, dtype=np.int64))


def prepare_run_dir(out_dir: str | os.PathLike, overwrite: bool) -> Path:
    """Check that `out_dir` can receive a run; creates nothing (`publish_run_dir` does, once there is a model)."""
    out = check_output_dir(out_dir)
    if (out / "model.keras").exists() and not overwrite:
        raise InputError(
            f"{out} already holds a trained model", "choose another --out, or pass --overwrite to replace it"
        )
    return out


@contextmanager
def publish_run_dir(out_dir: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """A fresh hidden sibling of `out_dir` to write the run into; on a clean exit its files become `out_dir`.

    A new run directory appears in one rename, complete. Into an existing one (--overwrite, or a folder the user made)
    each file is replaced atomically and nothing else there is touched. On any failure the sibling is removed, and so
    are parent folders made for it: a failed run leaves no trace and loses nothing already stored.
    """
    out = prepare_run_dir(out_dir, overwrite)
    missing = []
    probe = out.parent
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    stage: Path | None = None
    try:
        try:
            from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
            make_dirs(out.parent)
            stage = _fresh_sibling(out)
        except OSError as exc:
            raise InputError(f"cannot create run directory {out}: {exc.strerror}", "choose a writable --out") from None
        try:
            yield stage
        except Exception as exc:  # noqa: BLE001 - a full disk while saving: named by the run folder (Keras names none)
            from edgeseq.core.fsio.oserrors import disk_error

            typed = disk_error(exc, out)
            if typed is None:
                raise
            raise typed from exc
        try:
            os.rename(stage, out)  # fails if out exists (and is not empty): then move file by file
            stage = None
        except OSError:
            prepare_run_dir(out, overwrite)  # a model may have appeared meanwhile
            for item in sorted(stage.iterdir(), key=lambda p: p.name == "training.json"):  # the record goes last
                os.replace(item, out / item.name)
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for folder in missing:  # innermost first; rmdir only removes it if it stayed empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    if stage is not None:
        shutil.rmtree(stage, ignore_errors=True)


def _fresh_sibling(out: Path) -> Path:
    """A new hidden folder next to `out`, made with plain mkdir so it gets the usual permissions (umask applies)."""
    for _ in range(100):
        stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
        try:
            stage.mkdir()
            return stage
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name", str(out.parent))


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get: /proc/meminfo MemAvailable, capped by a cgroup v2 limit; None if unknown."""
    found = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            room = max(0, int(limit) - used)
            found = room if found is None else min(found, room)
    except (OSError, ValueError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
    return found


def check_zoo_data(data: Any) -> None:
    """The zoo's models take float features [N, T, F] and give one output per sequence: refuse token ids and
    per-time-step labels in one line (such data is for users' own Keras models, converted with edgeseq convert)."""
    if getattr(data, "token_ids", False):
        raise InputError(f"data set {data.name} holds token ids [N, T]; the zoo's models take float features "
                         "[N, T, F]", "build your own Embedding model in Keras and convert it: README 'Your own model'")
    if getattr(data, "per_step", False):
        raise InputError(f"data set {data.name} has one label per time step; the zoo's models give one output per "
                         "sequence", "build your own return_sequences=True model in Keras and convert it: "
                         "README 'Your own model'")
    if getattr(data, "multi_label", False):
        raise InputError(f"data set {data.name} has multi-label 0/1 labels [N, K]; the zoo's models give one softmax "
                         "over classes", "build your own model with K sigmoid outputs in Keras and convert it: README "
                         "'Your own model'")


# float32 weights + gradients + Adam's two slots: four copies of every parameter while training.
TRAIN_BYTES_PER_PARAM = 16


def check_model_fits(cfg: Any, *, seq_len: int | None, num_features: int, num_outputs: int,
                     available: int | None = None) -> int:
    """Refuse, before anything is built, a model whose weights, gradients and Adam slots cannot fit in memory.

    Returns the estimated parameter count. `available` defaults to `available_memory_bytes()`.
    """
    from edgeseq.datasets.base import format_bytes
    from edgeseq.models.config import estimate_buffer_bytes, estimate_params

    params = estimate_params(cfg, seq_len=seq_len, num_features=num_features, num_outputs=num_outputs)
    need = TRAIN_BYTES_PER_PARAM * params + estimate_buffer_bytes(cfg, seq_len=seq_len)
    available = available_memory_bytes() if available is None else available
    if available is not None and need > available:
        raise InputError(
            f"{cfg.arch} with {params:,} parameters needs about {format_bytes(need)} to train (weights, gradients "
            f"and Adam's two slots, float32) but only {format_bytes(available)} of memory is available",
            "choose a smaller preset or smaller --set values (units, d_model, ff_dim, num_layers, max_len), "
            "or fewer classes/outputs",
        )
    return params


def read_training_record(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / "training.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


