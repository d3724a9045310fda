"""Recipes, conversion, calibration, validation and .tflite inspection.

Importing this package (or any name below) does not import TensorFlow: the converter runs in a child process and
Keras is loaded only inside `convert_model`.
"""

from edgeseq.quantize.convert import ConversionResult, convert_model
from edgeseq.quantize.evaluate import evaluate_tflite
from edgeseq.quantize.inspect import inspect_tflite
from edgeseq.quantize.manifest import read_manifest
from edgeseq.quantize.recipes import MODES, Recipe, get_recipe, parse_recipes

__all__ = [
    "MODES",
    "ConversionResult",
    "Recipe",
    "convert_model",
    "evaluate_tflite",
    "get_recipe",
    "inspect_tflite",
    "parse_recipes",
    "read_manifest",
]
