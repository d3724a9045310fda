"""The zoo: which architectures and presets exist, and one `build_model` that returns a plain keras.Model.

    model = build_model("lstm", "small", seq_len=64, num_features=16, num_outputs=10)

Keras is imported when a model is built or counted, not when this module is imported, so listing architectures,
presets and configs stays cheap.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import TYPE_CHECKING, Any

from edgeseq.core.errors import InputError, did_you_mean
from edgeseq.models.config import (
    PRESET_CONFIGS,
    RECURRENT_ARCHS,
    REFERENCE_SHAPE,
    ModelConfig,
    RNNConfig,
    TransformerConfig,
    config_from_dict,
    config_to_dict,
    estimate_params,
)

if TYPE_CHECKING:
    import keras

__all__ = [
    "ARCHITECTURES",
    "ARCH_NAMES",
    "VARIANTS",
    "PRESETS",
    "TASKS",
    "REFERENCE_SHAPE",
    "RNNConfig",
    "TransformerConfig",
    "get_config",
    "build_model",
    "build_from_config",
    "count_params",
    "zoo_table",
    "config_to_dict",
    "config_from_dict",
]

ARCHITECTURES: tuple[str, ...] = ("rnn", "lstm", "gru", "transformer")  # the families, one builder each
# Named variants of a family, accepted wherever an architecture is named (train, sweep, demo, the zoo table): the
# causal Transformer (masked attention, last-token pooling; its stream form is a KV cache).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {"transformer-causal": ("transformer", {"causal": True})}
ARCH_NAMES: tuple[str, ...] = ARCHITECTURES + tuple(VARIANTS)
PRESETS: tuple[str, ...] = ("tiny", "small", "base")
# classification: softmax probabilities over num_outputs classes; regression: linear Dense(num_outputs = horizon).
TASKS: tuple[str, ...] = ("classification", "regression")


def _check_arch(arch: str) -> None:
    if arch not in ARCH_NAMES:
        raise InputError(f"unknown architecture {arch!r}", did_you_mean(arch, ARCH_NAMES))


def get_config(arch: str, preset: str = "small", **overrides: Any) -> ModelConfig:
    """The preset's frozen config, with `overrides` applied through dataclasses.replace (and validated)."""
    _check_arch(arch)
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r} for {arch}", did_you_mean(preset, PRESETS))
    family, fixed = VARIANTS.get(arch, (arch, {}))
    cfg = dataclasses.replace(PRESET_CONFIGS[family][preset], **fixed)
    names = {f.name for f in dataclasses.fields(cfg)} - {"arch"}
    for key in overrides:
        if key not in names:
            raise InputError(f"{arch} has no hyperparameter {key!r}", did_you_mean(key, sorted(names)))
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def build_from_config(
    cfg: ModelConfig,
    *,
    seq_len: int | None,
    num_features: int,
    task: str = "classification",
    num_outputs: int,
    name: str | None = None,
) -> keras.Model:
    """Build a model from a config (e.g. one read back from training.json with config_from_dict)."""
    import keras

    from edgeseq.models.recurrent import build_recurrent_body
    from edgeseq.models.transformer import build_transformer_body

    if task not in TASKS:
        raise InputError(f"unknown task {task!r}", did_you_mean(task, TASKS))
    for field, value in (("num_features", num_features), ("num_outputs", num_outputs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{field} must be a positive integer, got {value!r}")
    if seq_len is not None and (not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1):
        raise InputError(f"seq_len must be a positive integer or None, got {seq_len!r}")
    if task == "classification" and num_outputs < 2:
        raise InputError(
            "classification needs num_outputs >= 2 classes", "use task='regression' for one output"
        )

    inputs = keras.Input(shape=(seq_len, num_features), name="inputs")
    if isinstance(cfg, RNNConfig):
        x = build_recurrent_body(cfg, inputs)
    elif isinstance(cfg, TransformerConfig):
        x = build_transformer_body(cfg, inputs)
    else:
        raise InputError(f"not a model config: {type(cfg).__name__}")
    # The head stays float32 under a mixed-precision policy: float16 logits and probabilities lose too much.
    x = keras.layers.Dense(num_outputs, name="head", dtype="float32")(x)
    if task == "classification":
        x = keras.layers.Softmax(name="probs", dtype="float32")(x)
    return keras.Model(inputs, x, name=name or cfg.arch)


def build_model(
    arch: str,
    preset: str = "small",
    *,
    seq_len: int | None,
    num_features: int,
    task: str = "classification",
    num_outputs: int,
    name: str | None = None,
    **overrides: Any,
) -> keras.Model:
    """A fresh, uncompiled keras.Model named f"{arch}-{preset}" unless `name` is given.

    seq_len=None gives a variable time axis (recurrent archs only). Weights depend only on
    keras.utils.set_random_seed, so the same seed builds the same model.
    """
    cfg = get_config(arch, preset, **overrides)
    return build_from_config(
        cfg,
        seq_len=seq_len,
        num_features=num_features,
        task=task,
        num_outputs=num_outputs,
        name=name or f"{arch}-{preset}",
    )


def count_params(
    arch: str,
    preset: str,
    *,
    seq_len: int = REFERENCE_SHAPE[0],
    num_features: int = REFERENCE_SHAPE[1],
    num_outputs: int = REFERENCE_SHAPE[2],
    task: str = "classification",
    **overrides: Any,
) -> int:
    """Trainable + non-trainable parameters of the built model (defaults: the reference shape).

    Counted on a real build (no formula to drift from the builders) and memoized: counts depend only on the arguments.
    """
    get_config(arch, preset, **overrides)  # unknown names fail here with a hint, before any Keras work
    return _count_params(
        arch, preset, seq_len, num_features, num_outputs, task, tuple(sorted(overrides.items()))
    )


@functools.lru_cache(maxsize=256)
def _count_params(
    arch: str,
    preset: str,
    seq_len: int,
    num_features: int,
    num_outputs: int,
    task: str,
    overrides: tuple[tuple[str, Any], ...],
) -> int:
    # Keras draws unseeded initializer seeds from Python's `random`: put its state back, so that counting between
    # keras.utils.set_random_seed and build_model does not change the weights that build gets.
    state = random.getstate()
    try:
        model = build_model(
            arch,
            preset,
            seq_len=seq_len,
            num_features=num_features,
            task=task,
            num_outputs=num_outputs,
            **dict(overrides),
        )
        return int(model.count_params())
    finally:
        random.setstate(state)


def _key_hyperparameters(cfg: ModelConfig) -> str:
    if isinstance(cfg, RNNConfig):
        text = f"units={cfg.units} layers={cfg.num_layers}"
    else:
        text = f"d_model={cfg.d_model} heads={cfg.num_heads} layers={cfg.num_layers} ff={cfg.ff_dim}"
        text += " causal" if cfg.causal else ""
    return text + (f" dropout={cfg.dropout:g}" if cfg.dropout else "")


def zoo_table() -> list[dict[str, Any]]:
    """One row per arch x preset: arch, preset, family, key hyperparameters, config, params at REFERENCE_SHAPE."""
    rows = []
    seq_len, num_features, num_classes = REFERENCE_SHAPE
    for preset in PRESETS:
        for arch in ARCH_NAMES:
            cfg = get_config(arch, preset)
            rows.append(
                {
                    "arch": arch,
                    "preset": preset,
                    "family": "recurrent" if arch in RECURRENT_ARCHS else "attention",
                    "hyperparameters": _key_hyperparameters(cfg),
                    "params": estimate_params(cfg, seq_len=seq_len, num_features=num_features, num_outputs=num_classes),
                    "reference_shape": {
                        "seq_len": seq_len,
                        "num_features": num_features,
                        "num_classes": num_classes,
                    },
                    "config": config_to_dict(cfg),
                }
            )
    return rows
