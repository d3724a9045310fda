"""Model configs: one frozen dataclass per family, and the size presets of the zoo.

Presets are matched on parameter count, not on width, so that "rnn vs transformer" compares models of the same
size. The reference shape for the match is REFERENCE_SHAPE: 64 time steps, 16 features, 10 classes. Within a preset,
every architecture lands within ~15% of the others there (tests/test_models.py holds it to that).

Configs hold only the architecture. The data-dependent numbers (seq_len, num_features, task, num_outputs) are
arguments of the builder, because the same "lstm/small" is trained on many data sets.

No TensorFlow here: importing a config must stay cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from edgeseq.core.errors import InputError, did_you_mean

RECURRENT_ARCHS: tuple[str, ...] = ("rnn", "lstm", "gru")
# (seq_len, num_features, num_classes) at which presets are matched and `edgeseq models` counts parameters.
REFERENCE_SHAPE: tuple[int, int, int] = (64, 16, 10)


def _choice(field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise InputError(
            f"{field}={value!r} is not one of {', '.join(map(repr, allowed))}", did_you_mean(value, allowed)
        )


def _positive(field: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{field} must be a positive integer, got {value!r}", f"e.g. --set {field}=64")


def _flag(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{field} must be true or false, got {value!r}")


def _rate(field: str, value: Any) -> None:
    # `not 0 <= v < 1` also refuses NaN, which compares False with everything
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise InputError(f"{field} must be a number in [0, 1), got {value!r}", f"e.g. --set {field}=0.1")


@dataclass(frozen=True)
class RNNConfig:
    arch: str = "lstm"  # which recurrent cell: "rnn" (SimpleRNN), "lstm" or "gru"
    units: int = 64  # state size per layer; the state is all an RNN carries between steps
    num_layers: int = 1  # stacked layers; every layer but the last returns sequences
    dropout: float = 0.0  # a Dropout layer after each recurrent layer; keeps the cells plain for step models
    bidirectional: bool = False  # off in the zoo: a backward pass needs the whole window and cannot stream
    unroll: bool = False  # the conversion step rebuilds unrolled when it needs a flat graph (int8)
    head: str = "last"  # "last": final state feeds the head (streamable); "mean": average over time

    def __post_init__(self) -> None:
        _choice("arch", self.arch, RECURRENT_ARCHS)
        _positive("units", self.units)
        _positive("num_layers", self.num_layers)
        _rate("dropout", self.dropout)
        _flag("bidirectional", self.bidirectional)
        _flag("unroll", self.unroll)
        _choice("head", self.head, ("last", "mean"))


@dataclass(frozen=True)
class TransformerConfig:
    arch: str = "transformer"  # always "transformer"; kept so a stored dict says what it builds
    d_model: int = 48  # width of the residual stream; the input is projected F -> d_model
    num_heads: int = 4  # attention heads; d_model must divide evenly among them
    num_layers: int = 2  # pre-norm blocks (attention + FFN)
    ff_dim: int = 96  # hidden width of each block's feed-forward network, 2x d_model by default
    dropout: float = 0.0  # on the attention and FFN outputs before each residual add
    attention_dropout: float = 0.0  # on the attention probabilities
    activation: str = "gelu"  # FFN nonlinearity: "gelu" (one TFLite GELU op) or "relu" (cheaper in int8)
    pos_encoding: str = "sinusoidal"  # "sinusoidal" (no weights) or "learned" (adds max_len x d_model)
    causal: bool = False  # mask attention to the past: needed for streaming with a KV cache
    pooling: str = "auto"  # "mean" over time or the "last" token; "auto" = last if causal else mean
    max_len: int = 256  # longest sequence the positional encoding covers
    norm_epsilon: float = 1e-5  # LayerNorm epsilon

    def __post_init__(self) -> None:
        _choice("arch", self.arch, ("transformer",))
        for name in ("d_model", "num_heads", "num_layers", "ff_dim", "max_len"):
            _positive(name, getattr(self, name))
        if self.d_model % self.num_heads:
            raise InputError(
                f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}",
                "pick num_heads among the divisors of d_model",
            )
        _rate("dropout", self.dropout)
        _rate("attention_dropout", self.attention_dropout)
        _choice("activation", self.activation, ("gelu", "relu"))
        _choice("pos_encoding", self.pos_encoding, ("sinusoidal", "learned"))
        _flag("causal", self.causal)
        _choice("pooling", self.pooling, ("auto", "mean", "last"))
        if not isinstance(self.norm_epsilon, float) or not 0 < self.norm_epsilon < float("inf"):
            raise InputError(f"norm_epsilon must be a positive finite float, got {self.norm_epsilon!r}", "e.g. 1e-5")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def resolved_pooling(self) -> str:
        if self.pooling != "auto":
            return self.pooling
        return "last" if self.causal else "mean"


ModelConfig = RNNConfig | TransformerConfig

# Widths chosen so every architecture of a preset has about the same parameter count at REFERENCE_SHAPE
# (see `edgeseq models` for the exact counts): tiny ~3K, small ~39K, base ~230K.
PRESET_CONFIGS: dict[str, dict[str, ModelConfig]] = {
    "rnn": {
        "tiny": RNNConfig(arch="rnn", units=42),
        "small": RNNConfig(arch="rnn", units=184),
        "base": RNNConfig(arch="rnn", units=272, num_layers=2, dropout=0.1),
    },
    "lstm": {
        "tiny": RNNConfig(arch="lstm", units=18),
        "small": RNNConfig(arch="lstm", units=90),
        "base": RNNConfig(arch="lstm", units=136, num_layers=2, dropout=0.1),
    },
    "gru": {
        "tiny": RNNConfig(arch="gru", units=22),
        "small": RNNConfig(arch="gru", units=104),
        "base": RNNConfig(arch="gru", units=156, num_layers=2, dropout=0.1),
    },
    "transformer": {
        "tiny": TransformerConfig(d_model=16, num_heads=2, num_layers=1, ff_dim=32),
        "small": TransformerConfig(d_model=48, num_heads=4, num_layers=2, ff_dim=96),
        "base": TransformerConfig(d_model=96, num_heads=4, num_layers=3, ff_dim=192, dropout=0.1),
    },
}


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """A JSON-ready dict (training.json stores it); `arch` says which dataclass to rebuild."""
    if not isinstance(cfg, (RNNConfig, TransformerConfig)):
        raise InputError(f"not a model config: {type(cfg).__name__}")
    return dataclasses.asdict(cfg)


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Inverse of config_to_dict. Unknown keys are an error, not silently dropped: they mean a newer or foreign file."""
    if not isinstance(d, dict) or "arch" not in d:
        raise InputError("model config must be a mapping with an 'arch' key")
    arch = d["arch"]
    cls = RNNConfig if arch in RECURRENT_ARCHS else TransformerConfig if arch == "transformer" else None
    if cls is None:
        raise InputError(
            f"unknown architecture {arch!r}", did_you_mean(arch, (*RECURRENT_ARCHS, "transformer"))
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(
            f"unknown {arch} config field(s): {', '.join(unknown)}", did_you_mean(unknown[0], sorted(names))
        )
    return cls(**d)


def estimate_params(cfg: ModelConfig, *, seq_len: int | None, num_features: int, num_outputs: int) -> int:
    """Parameters `build_from_config` will create, by formula (no Keras): what the trainer checks against memory
    before it builds anything. Exact for the zoo's layers (tests/test_train.py compares it with real builds)."""
    if isinstance(cfg, RNNConfig):
        d, u, total = num_features, cfg.units, 0
        per_gate = {"rnn": 1, "lstm": 4, "gru": 3}[cfg.arch]
        directions = 2 if cfg.bidirectional else 1
        for _ in range(cfg.num_layers):
            # Keras 3 GRU has reset_after=True: two bias vectors per gate
            bias = per_gate * u * (2 if cfg.arch == "gru" else 1)
            total += directions * (per_gate * u * (d + u) + bias)
            d = directions * u
        return total + (d + 1) * num_outputs
    if isinstance(cfg, TransformerConfig):
        dm, ff = cfg.d_model, cfg.ff_dim
        total = (num_features + 1) * dm  # input_proj
        if cfg.pos_encoding == "learned":
            total += cfg.max_len * dm
        block = 4 * dm + 4 * (dm * dm + dm) + (dm * ff + ff) + (ff * dm + dm)  # 2 LayerNorms, attention, FFN
        total += cfg.num_layers * block + 2 * dm  # + final_norm
        return total + (dm + 1) * num_outputs
    raise InputError(f"not a model config: {type(cfg).__name__}")


def estimate_buffer_bytes(cfg: ModelConfig, *, seq_len: int | None) -> int:
    """Bytes the builder allocates besides weights: the sinusoidal position table (float64 while it is computed)."""
    if isinstance(cfg, TransformerConfig) and cfg.pos_encoding == "sinusoidal":
        return 4 * 8 * max(cfg.max_len, seq_len or 0) * cfg.d_model
    return 0


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """`--set units=64 --set dropout=0.1` -> {"units": 64, "dropout": 0.1}; values are read as JSON when they parse."""
    out: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set {pair!r} is not KEY=VALUE", "write e.g. --set units=64")
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            value = raw
        if isinstance(value, float) and not math.isfinite(value):  # json reads NaN, Infinity, 1e999
            raise InputError(f"--set {key.strip()}={raw} is not a finite number", f"pass a finite value for {key}")
        out[key.strip()] = value
    return out
