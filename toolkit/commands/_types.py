"""Click parameter types shared by every verb, so a bad number is refused the same way everywhere.

    @click.option("--lr", type=FiniteFloat(min=0, min_open=True, example="0.002"), default=2e-3)

A value that is not a finite number in range (NaN, inf, 1e999, a bound crossed) raises `InputError`, which the CLI
prints as one `error:` line with exit code 2, before any work (and before TensorFlow is imported). The check itself
is `edgeseq.core.errors.check_finite`, which library code calls for numbers that did not come through click.
"""

from __future__ import annotations

import click

from edgeseq.core.errors import check_finite, describe_range

__all__ = ["FiniteFloat", "check_finite"]


def _option_name(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return opts[0] if opts else (param.human_readable_name or "value")


class FiniteFloat(click.ParamType):
    """A finite float, optionally bounded: [min, max], with `min_open` / `max_open` excluding the bound itself.

    `example` goes into the hint ("pass e.g. --lr 0.002"). Unlike click.FloatRange, NaN and inf are refused (a NaN
    compares False with every bound, so a plain range check lets it through), and the error is one line.
    """

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False, example: str | None = None):
        self.min, self.max, self.min_open, self.max_open, self.example = min, max, min_open, max_open, example

    def describe(self) -> str:
        return describe_range(self.min, self.max, min_open=self.min_open, max_open=self.max_open)

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        return self.check(value, _option_name(param))

    def check(self, value: object, name: str) -> float:
        """`value` as a float, or InputError naming `name` (an option like "--lr", or a config field)."""
        return check_finite(name, value, min=self.min, min_open=self.min_open, max=self.max,
                            max_open=self.max_open, example=self.example)

    def __repr__(self) -> str:
        return f"FiniteFloat({self.describe()})"


CUSTOM_OBJECTS_HELP = ("PATH.py or module name (repeatable) defining your own Keras layers "
                       "(@keras.saving.register_keras_serializable); imported before the model loads, here and in "
                       "every child process. It runs that code: an explicit opt-in, like --trust-model.")
