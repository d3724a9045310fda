"""Recipes, conversion, calibration, validation and .tflite inspection.

Importing this package (or any name below) does not import TensorFlow: the converter runs in a child process and
Keras is loaded only inside `convert_model`. The names below are loaded on first use, so importing a light module
(`edgeseq.quantize.recipes`, `rnn_routes`, `granularity`, `capabilities`: what `edgeseq convert --help` reads its
rules from) does not pull in the converter and numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MODES": "recipes",
    "ConversionResult": "convert",
    "Recipe": "recipes",
    "convert_model": "convert",
    "evaluate_tflite": "evaluate",
    "get_recipe": "recipes",
    "inspect_tflite": "inspect",
    "parse_recipes": "recipes",
    "read_manifest": "manifest",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # also how `from edgeseq.quantize import convert` falls through to the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
