"""Conversion recipes: frozen, JSON-serializable data that say exactly what the converter is asked to do.

A recipe is the only thing that reaches the converter (no free-form kwargs), and its slug names the output file, so
`gru-jv-int8-io8.tflite` can only have come from the int8 recipe with int8 input/output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgeseq.core.errors import InputError, did_you_mean
from edgeseq.quantize.rnn_routes import ROUTES

MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8", "int4w")
IO_DTYPES = ("float", "int8")
RNN_STRATEGIES = ("auto", *ROUTES)  # routes and auto's order: quantize/rnn_routes.py
GRANULARITIES = ("auto", "channel", "tensor")
DEFAULT_CALIBRATION_SAMPLES = 200

_DESCRIPTIONS = {
    "fp32": "float32 weights and activations; the reference",
    "fp16": "float16 weights, float32 compute",
    "dynamic": "int8 weights, float activations (dynamic range)",
    "int8": "full integer: int8 weights and activations (calibrated)",
    "int16x8": "int16 activations, int8 weights (calibrated)",
    "int4w": "4-bit weights (per channel) in FULLY_CONNECTED/BATCH_MATMUL/EMBEDDING_LOOKUP, float activations "
             "(dynamic); ai-edge-litert only",
}


@dataclass(frozen=True)
class Tolerance:
    """Parity floor of one recipe against the Keras model. Diffs are scaled by max(1, max|keras output|)."""

    max_abs: float | None  # largest allowed |tflite - keras| over every output value; None: not gated
    mean_abs: float  # allowed mean |tflite - keras|
    top1: float  # minimum top-1 agreement (classifiers) on samples where Keras is decisive


_TOLERANCES = {
    "fp32": Tolerance(max_abs=1e-4, mean_abs=1e-5, top1=1.0),
    "fp16": Tolerance(max_abs=2e-2, mean_abs=2e-3, top1=0.98),
    "dynamic": Tolerance(max_abs=None, mean_abs=5e-2, top1=0.9),
    "int8": Tolerance(max_abs=None, mean_abs=8e-2, top1=0.9),
    "int16x8": Tolerance(max_abs=None, mean_abs=2e-2, top1=0.95),
    "int4w": Tolerance(max_abs=None, mean_abs=8e-2, top1=0.9),
}


@dataclass(frozen=True)
class Recipe:
    """One conversion. `mode` picks the numeric format; the rest are the only knobs the converter sees."""

    mode: str
    io: str = "float"  # int8 mode only: "int8" quantizes the model's input and output tensors too
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES  # representative samples for int8 / int16x8
    rnn_strategy: str = "auto"  # auto: the best route that validates (quantize/rnn_routes.py)
    allow_flex: bool = False  # permit Select-TF (Flex) ops; stock device runtimes cannot run them
    granularity: str = "auto"  # weight scales per channel or per tensor; auto: see compares_granularity
    float_ops: tuple[str, ...] = ()  # int8 only: op types kept float, or ("auto",) (quantize/float_ops.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "float_ops", tuple(self.float_ops or ()))  # from JSON: a list
        if self.float_ops:
            from edgeseq.quantize.float_ops import canonical

            object.__setattr__(self, "float_ops", canonical(self.float_ops))
            if self.mode != "int8":
                raise InputError(f"--float-ops needs the int8 recipe, not {self.mode}",
                                 "use --recipe int8 --float-ops OPS|auto")
        if self.mode not in MODES:
            raise InputError(f"unknown recipe mode {self.mode!r}", did_you_mean(self.mode, MODES, "recipes"))
        if self.io not in IO_DTYPES:
            raise InputError(f"unknown io dtype {self.io!r}", f"choose one of {', '.join(IO_DTYPES)}")
        if self.io != "float" and self.mode != "int8":
            raise InputError(f"--io {self.io} needs the int8 recipe, not {self.mode}", "use --recipe int8 --io int8")
        if self.rnn_strategy not in RNN_STRATEGIES:
            raise InputError(
                f"unknown rnn strategy {self.rnn_strategy!r}", f"choose one of {', '.join(RNN_STRATEGIES)}"
            )
        if self.granularity not in GRANULARITIES:
            raise InputError(f"unknown granularity {self.granularity!r}", f"choose one of {', '.join(GRANULARITIES)}")
        if not isinstance(self.calibration_samples, int) or self.calibration_samples < 1:
            raise InputError(f"calibration samples must be a positive integer, got {self.calibration_samples!r}")

    @property
    def slug(self) -> str:
        """File-name part: mode, then every setting that changes the bytes away from the default."""
        parts = [self.mode]
        if self.io == "int8":
            parts.append("io8")
        if self.rnn_strategy != "auto":
            parts.append(self.rnn_strategy)
        if self.granularity != "auto":
            parts.append({"channel": "pc", "tensor": "pt"}[self.granularity])
        if self.allow_flex:
            parts.append("flex")
        if self.float_ops:
            parts.append("+".join(("float", *(op.lower() for op in self.float_ops))))
        return "-".join(parts)

    @property
    def calibrated(self) -> bool:
        return self.mode in ("int8", "int16x8")

    @property
    def description(self) -> str:
        kept = ("" if not self.float_ops else ", ops slower in int8 on the target kept float"
                if self.float_ops == ("auto",) else f", {'/'.join(self.float_ops)} kept float")
        return _DESCRIPTIONS[self.mode] + (", int8 input/output" if self.io == "int8" else "") + kept

    @property
    def capability(self) -> str:
        """The recipe's name in the capability table: the mode, or int8-float for selective int8."""
        return "int8-float" if self.float_ops else self.mode

    @property
    def tolerance(self) -> Tolerance:
        return _TOLERANCES[self.mode]

    def per_channel_for(self, strategy: str) -> bool:
        """The first (or only) conversion's weight scales for RNN route `strategy` (quantize/rnn_routes.py).
        auto: per-channel, except on an unrolled graph, where
        every time step carries its own int32 bias with one scale per channel; per-tensor scales there halve the file
        (GRU small on JapaneseVowels: 428 -> 218 KB) at no measured accuracy cost. Validation checks the result
        either way; see `compares_granularity` for when auto also tries per-tensor."""
        if self.granularity != "auto":
            return self.granularity == "channel"
        return strategy != "unroll"

    def compares_granularity(self, strategy: str) -> bool:
        """auto on a calibrated recipe and a graph that is not unrolled: convert per-channel and per-tensor, validate
        both, keep the smaller per-tensor file only when it loses nothing (rule: quantize/granularity.py GRANULARITY_RULE)."""
        return self.granularity == "auto" and self.calibrated and strategy != "unroll"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"slug": self.slug}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def get_recipe(name: str | Recipe, **overrides: Any) -> Recipe:
    """A recipe by name ('int8') or slug ('int8-io8'); keyword overrides set io, calibration size, strategy, flex."""
    if isinstance(name, Recipe):
        return dataclasses.replace(name, **{k: v for k, v in overrides.items() if v is not None})
    text = str(name).strip().lower()
    parts = text.split("-")
    mode, extra = parts[0], parts[1:]
    if mode not in MODES:
        raise InputError(f"unknown recipe {name!r}", did_you_mean(text, MODES, "recipes"))
    fields: dict[str, Any] = {"mode": mode}
    for part in extra:
        if part == "io8":
            fields["io"] = "int8"
        elif part in ROUTES:
            fields["rnn_strategy"] = part
        elif part in ("pc", "pt"):
            fields["granularity"] = "channel" if part == "pc" else "tensor"
        elif part == "flex":
            fields["allow_flex"] = True
        elif part.startswith("float+"):
            fields["float_ops"] = tuple(part.split("+")[1:])
        else:
            raise InputError(f"unknown recipe {name!r}", did_you_mean(text, MODES, "recipes"))
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Recipe(**fields)


def recipe_help() -> str:
    """`--recipe` help: the modes, and a slug that names more than the mode."""
    return f"Comma-separated: {', '.join(MODES)} (slugs like {Recipe('int8', io='int8').slug} work too)."


def parse_recipes(text: str | list[str], **overrides: Any) -> list[Recipe]:
    """'fp32,int8' -> recipes. --io int8 and --float-ops overrides apply to the int8 recipe only (they mean nothing
    elsewhere)."""
    names = [n for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    if not names:
        raise InputError("no recipe given", f"pass --recipe, e.g. {','.join(MODES)}")
    io = overrides.pop("io", None)
    float_ops = overrides.pop("float_ops", None)
    recipes = []
    for name in names:
        recipe = get_recipe(name, **overrides)
        if io is not None and recipe.mode == "int8":
            recipe = dataclasses.replace(recipe, io=io)
        if float_ops and recipe.mode == "int8":
            recipe = dataclasses.replace(recipe, float_ops=tuple(str(float_ops).split(",")))
        recipes.append(recipe)
    for flag, value in (("--io int8", io == "int8"), (f"--float-ops {float_ops}", float_ops)):
        if value and not any(r.mode == "int8" for r in recipes):
            raise InputError(f"{flag} needs the int8 recipe", "add int8 to --recipe")
    return list(dict.fromkeys(recipes))
