"""Where training runs on TensorFlow (JAX and PyTorch: models/backend.py). The GPU path is the same code as the
CPU path, so tests on CPU keep it from rotting.

TensorFlow decides: several visible GPUs -> MirroredStrategy, one -> that GPU, none -> the CPU through a one-device
strategy. Mixed precision is opt-in: it helps on GPUs with tensor cores and only costs accuracy headroom elsewhere.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    strategy: Any  # tf.distribute.Strategy on TensorFlow; None on JAX and PyTorch (see models/backend.py)
    kind: str  # "cpu" | "gpu" | "multi-gpu" (| "multi-cpu": JAX with several host devices)
    devices: tuple[str, ...]
    mixed_precision: bool
    backend: str = "tensorflow"
    strategy_name: str | None = None  # defaults to the TF strategy's class name
    note: str | None = None

    def __post_init__(self) -> None:
        if self.strategy_name is None:
            object.__setattr__(self, "strategy_name", type(self.strategy).__name__)

    @property
    def batch_multiple(self) -> int:
        """Batches must split evenly over the devices of JAX's DataParallel (TF's MirroredStrategy pads itself)."""
        return len(self.devices) if self.strategy_name == "DataParallel" else 1

    def scope(self) -> Any:
        """Where the model and optimizer are built: the TF strategy's scope; JAX's distribution is global."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "devices": list(self.devices),
            "strategy": self.strategy_name,
            "mixed_precision": self.mixed_precision,
        }


def select_placement(*, mixed_precision: bool = False, gpus: list[str] | None = None) -> Placement:
    """Pick a distribution strategy for what TensorFlow sees. `gpus` overrides discovery (tests pass [])."""
    import tensorflow as tf

    if gpus is None:
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(gpus) > 1:
        strategy, kind, devices = tf.distribute.MirroredStrategy(devices=gpus), "multi-gpu", tuple(gpus)
    elif len(gpus) == 1:
        strategy, kind, devices = tf.distribute.OneDeviceStrategy(gpus[0]), "gpu", (gpus[0],)
    else:
        strategy, kind, devices = tf.distribute.OneDeviceStrategy("/cpu:0"), "cpu", ("/cpu:0",)
    return Placement(strategy=strategy, kind=kind, devices=devices, mixed_precision=mixed_precision)


class precision_policy:
    """Context manager that sets Keras's global dtype policy for model construction and restores it after."""

    def __init__(self, mixed: bool):
        self.mixed = mixed
        self._previous = None

    def __enter__(self) -> None:
        import keras

        self._previous = keras.config.dtype_policy().name
        if self.mixed:
            keras.config.set_dtype_policy("mixed_float16")

    def __exit__(self, *exc: object) -> None:
        import keras

        keras.config.set_dtype_policy(self._previous)
