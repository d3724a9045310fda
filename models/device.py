"""Where training runs. The GPU path is the same code as the CPU path, so tests on CPU keep it from rotting.

TensorFlow decides: several visible GPUs -> MirroredStrategy, one -> that GPU, none -> the CPU through a one-device
strategy. Mixed precision is opt-in: it helps on GPUs with tensor cores and only costs accuracy headroom elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    strategy: Any  # tf.distribute.Strategy
    kind: str  # "cpu" | "gpu" | "multi-gpu"
    devices: tuple[str, ...]
    mixed_precision: bool

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "devices": list(self.devices),
            "strategy": type(self.strategy).__name__,
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
