"""Training a zoo model on a data set: deterministic, early-stopped, and recorded well enough to reproduce.

Writes `model.keras` and `training.json` only after training succeeded, into a hidden sibling that then becomes the
run directory (see run_dir.publish_run_dir): a failed run leaves no directory behind, and a run directory that
already holds a model is never overwritten unless the caller says so.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from edgeseq.core.errors import InputError
from edgeseq.core.fsio import atomic_write_json, sha256_file
from edgeseq.core.metrics import metrics_for
from edgeseq.models.backend import backend_record, backend_version, placement_for
from edgeseq.models.device import precision_policy
from edgeseq.models.run_dir import (
    TrainOptions,
    TrainResult,
    check_model_fits,
    check_zoo_data,
    prepare_run_dir,
    publish_run_dir,
    split_validation,
)

TRAINING_SCHEMA = "edgeseq.training/1"
# Test samples whose inputs and outputs (computed on the backend that trained the model) are stored in the run
# directory as reference.npz: `convert` checks the .tflite against them (quantize/training_reference.py).
REFERENCE_SAMPLES = 64
REFERENCE_FILE = "reference.npz"


def train_model(
    arch: str,
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    preset: str = "small",
    options: TrainOptions | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
    progress: Callable[[dict], None] | None = None,
    gpus: list[str] | None = None,
) -> TrainResult:
    """Train `arch`/`preset` on a loaded `Dataset`; write model.keras + training.json into `out_dir`."""
    options = options or TrainOptions()
    options.check()
    out = prepare_run_dir(out_dir, overwrite)  # checks only: nothing is created until the model is written

    from edgeseq.models.zoo import build_model, config_to_dict, get_config

    overrides = dict(overrides or {})
    cfg = get_config(arch, preset, **overrides)  # validates arch, preset and overrides before any work
    check_zoo_data(dataset)
    check_model_fits(cfg, seq_len=dataset.seq_len, num_features=dataset.num_features, num_outputs=dataset.output_dim)
    keras.utils.set_random_seed(options.seed)
    classification = dataset.task == "classification"
    tr_idx, va_idx = split_validation(dataset.y_train, options.validation_split, options.seed, classification)
    backend = keras.backend.backend()
    placement = placement_for(backend, mixed_precision=options.mixed_precision, devices=gpus)
    split = placement.batch_multiple  # JAX's DataParallel splits every batch evenly over its devices
    if options.batch_size % split:
        raise InputError(f"--batch-size {options.batch_size} does not split over the {split} devices JAX trains on",
                         f"pass a multiple of {split}, e.g. --batch-size {split * max(1, options.batch_size // split)}")
    tr_idx, va_idx = tr_idx[: len(tr_idx) - len(tr_idx) % split], va_idx[: len(va_idx) - len(va_idx) % split]
    x_tr, y_tr = dataset.X_train[tr_idx], dataset.y_train[tr_idx]
    val = (dataset.X_train[va_idx], dataset.y_train[va_idx]) if len(va_idx) else None
    with placement.scope(), precision_policy(options.mixed_precision):
        model = build_model(
            arch,
            preset,
            seq_len=dataset.seq_len,
            num_features=dataset.num_features,
            task=dataset.task,
            num_outputs=dataset.output_dim,
            name=f"{arch}-{preset}",
            **overrides,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=options.learning_rate, clipnorm=options.clipnorm),
            loss="sparse_categorical_crossentropy" if classification else "mse",
            metrics=["accuracy"] if classification else ["mae"],
        )

    monitor = "val_loss" if val is not None else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=options.patience, restore_best_weights=True),
        # Halve the rate only after half the early-stopping patience, and never below 1/16: long-range tasks (the
        # adding problem) sit on a plateau for epochs before they learn, and a vanished rate would end them there.
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=max(3, options.patience // 2),
                                          min_lr=options.learning_rate / 16),
        keras.callbacks.TerminateOnNaN(),
    ]
    if progress is not None:
        callbacks.append(_EpochSink(progress, options.epochs))

    started = time.perf_counter()
    history = model.fit(
        x_tr,
        y_tr,
        validation_data=val,
        epochs=options.epochs,
        batch_size=options.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    wall_s = time.perf_counter() - started

    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if not np.all(np.isfinite(hist.get("loss", [0.0]))):
        raise InputError(
            "training diverged (loss became NaN or inf)", "lower --lr, or check the data set for extreme values"
        )
    test_metrics = evaluate_keras(model, dataset, multiple=split)
    ref_inputs = np.asarray(dataset.X_test[:REFERENCE_SAMPLES])
    ref_outputs = predict(model, ref_inputs, REFERENCE_SAMPLES, split)

    record = {
        "schema": TRAINING_SCHEMA,
        "model": {"arch": arch, "preset": preset, "config": config_to_dict(cfg), "overrides": overrides},
        "dataset": {
            "name": dataset.name,
            "task": dataset.task,
            "seq_len": dataset.seq_len,
            "num_features": dataset.num_features,
            "output_dim": dataset.output_dim,
            "class_names": list(dataset.class_names) if dataset.class_names else None,
            "n_train": int(len(tr_idx)),
            "n_val": int(len(va_idx)),
            "n_test": int(len(dataset.y_test)),
        },
        "options": dataclasses.asdict(options),
        "seed": options.seed,
        "epochs_run": len(hist.get("loss", [])),
        "best_epoch": _best_epoch(hist, monitor),
        "history": hist,
        "test_metrics": test_metrics,
        "parameters": int(model.count_params()),
        "wall_time_s": round(wall_s, 3),
        "device": placement.describe(),
        "backend": backend_record(backend, placement),
        "versions": _versions(backend),
        "host": {"machine": platform.machine(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
    }
    with publish_run_dir(out, overwrite) as stage:
        model.save(stage / "model.keras")
        np.savez(stage / REFERENCE_FILE, inputs=ref_inputs, outputs=ref_outputs)
        record["reference"] = {"file": REFERENCE_FILE, "samples": int(len(ref_inputs)), "backend": backend,
                               "from": f"the first {len(ref_inputs)} test samples, evaluated on {backend}",
                               "model_sha256": sha256_file(stage / "model.keras")}
        atomic_write_json(stage / "training.json", record)
    return TrainResult(out_dir=out, model_path=out / "model.keras", record=record)


def evaluate_keras(model: Any, dataset: Any, batch_size: int = 256, multiple: int = 1) -> dict:
    """Test-set metrics of a Keras model, in the same terms `edgeseq evaluate` reports for a .tflite."""
    return metrics_for(dataset.task, predict(model, dataset.X_test, batch_size, multiple), dataset.y_test)


def predict(model: Any, X: np.ndarray, batch_size: int, multiple: int = 1) -> np.ndarray:
    """float32 outputs for every row of X; rows padded (then dropped) to a multiple of `multiple`, the device count
    a data-parallel batch is split over."""
    pad = -len(X) % multiple
    padded = np.concatenate([X, np.repeat(X[-1:], pad, axis=0)]) if pad else X
    batch = max(multiple, batch_size - batch_size % multiple)
    out = np.asarray(model.predict(padded, batch_size=batch, verbose=0), dtype=np.float32)
    return out[: len(X)]


def _best_epoch(hist: dict, monitor: str) -> int | None:
    values = hist.get(monitor)
    return int(np.argmin(values)) + 1 if values else None


def _versions(backend: str) -> dict:
    """Versions of what trained the model; TensorFlow's only when it trained it (JAX/PyTorch runs never import it)."""
    from edgeseq import __version__

    return {"edgeseq": __version__, backend: backend_version(backend), "keras": keras.__version__,
            "numpy": np.__version__}


class _EpochSink(keras.callbacks.Callback):
    """Forwards one dict per finished epoch to the caller; the CLI decides how to show it."""

    def __init__(self, sink: Callable[[dict], None], epochs: int):
        super().__init__()
        self.sink, self.epochs = sink, epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.sink({"epoch": epoch + 1, "epochs": self.epochs, **{k: float(v) for k, v in (logs or {}).items()}})
