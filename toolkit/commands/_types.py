"""Click parameter types shared by every verb, so a bad number is refused the same way everywhere.

    @click.option("--lr", type=FiniteFloat(min=0, min_open=True, example="0.002"), default=2e-3)

A value that is not a finite number in range (NaN, inf, 1e999, a bound crossed) raises `InputError`, which the CLI
prints as one `error:` line with exit code 2, before any work (and before TensorFlow is imported).
"""

from __future__ import annotations

import math

import click

from edgeseq.errors import InputError


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
        lo = "" if self.min is None else f"{'>' if self.min_open else '>='} {self.min:g}"
        hi = "" if self.max is None else f"{'<' if self.max_open else '<='} {self.max:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return f"a finite number{' ' + bounds if bounds else ''}"

    def _refuse(self, value: object, name: str) -> InputError:
        hint = f"pass e.g. {name} {self.example}" if self.example else f"pass {self.describe()}"
        shown = value if isinstance(value, str) else repr(value)
        return InputError(f"{name} must be {self.describe()}, got {shown}", hint)

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        return self.check(value, _option_name(param))

    def check(self, value: object, name: str) -> float:
        """`value` as a float, or InputError naming `name` (an option like "--lr", or a config field)."""
        if isinstance(value, bool):
            raise self._refuse(value, name)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise self._refuse(value, name) from None
        if not math.isfinite(number):
            raise self._refuse(value, name)
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            raise self._refuse(value, name)
        if self.max is not None and (number > self.max or (self.max_open and number == self.max)):
            raise self._refuse(value, name)
        return number

    def __repr__(self) -> str:
        return f"FiniteFloat({self.describe()})"


def check_finite(name: str, value: object, *, min: float | None = None, min_open: bool = False,
                 max: float | None = None, max_open: bool = False, example: str | None = None) -> float:
    """The same check for a number that did not come through click (library entry points, config values)."""
    return FiniteFloat(min, max, min_open=min_open, max_open=max_open, example=example).check(value, name)
