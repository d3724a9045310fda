"""What a training run is asked to do and where it writes, with no TensorFlow import: the CLI validates all of it
before paying for TensorFlow, and the demo reads earlier runs back without loading a model."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseq.errors import InputError


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
        if not 0.0 <= self.validation_split < 0.9:
            raise InputError(
                f"--validation-split must be in [0, 0.9), got {self.validation_split}", "use e.g. 0.15"
            )
        if self.learning_rate <= 0:
            raise InputError(f"--lr must be positive, got {self.learning_rate}", "use e.g. 0.002")


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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory", "choose a directory path for --out")
    if (out / "model.keras").exists() and not overwrite:
        raise InputError(
            f"{out} already holds a trained model", "choose another --out, or pass --overwrite to replace it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create run directory {out}: {exc.strerror}", "choose a writable --out") from None
    return out


def read_training_record(run_dir: str | os.PathLike) -> dict | None:
    path = Path(run_dir) / "training.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


