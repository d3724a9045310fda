"""Typed errors. Library code raises these; only the CLI turns them into a one-line message and an exit code.

Every error carries the problem (`message`) and, where one exists, the fix (`hint`), so a user never has to read a
traceback to know what to do next.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


def did_you_mean(value: object, options: Iterable[object], noun: str = "choose from") -> str:
    """A hint naming the closest option, or listing them all when nothing is close."""
    options = [str(o) for o in options]
    listed = f"{noun}: {', '.join(options)}"
    close = difflib.get_close_matches(str(value).lower(), options, n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? {listed}" if close else listed


class EdgeseqError(Exception):
    """Base class. `exit_code` groups failures so scripts can tell bad input from a failed check."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class InputError(EdgeseqError):
    """The user gave something unusable: a bad path, option, file or array."""

    exit_code = 2


class DatasetError(InputError):
    """A data set is missing, malformed or inconsistent."""


class ModelError(InputError):
    """A model file is missing, unsafe, corrupt, or not what the command needs."""


class ConversionError(EdgeseqError):
    """The converter refused or crashed on a model/recipe pair."""

    exit_code = 3


class ValidationError(EdgeseqError):
    """A converted model disagrees with its source beyond the recipe's tolerance."""

    exit_code = 4


class TargetError(EdgeseqError):
    """A device is unreachable, untrusted, or lacks what the runner needs."""

    exit_code = 5


class RuntimeMissing(EdgeseqError):
    """No TFLite runtime (ai-edge-litert or tflite-runtime) could be imported where one is needed."""

    exit_code = 6


class StoreError(EdgeseqError):
    """The results store cannot be opened or written."""

    exit_code = 7


class NothingFound(EdgeseqError):
    """The command ran and found nothing that answers it (recommend: no model meets every budget). Its output is
    complete; the exit code says "no" to a script."""

    exit_code = 8


# ---------------------------------------------------------------- number checks shared by every layer
# check_finite refuses NaN, inf and a crossed bound; check_int an integer out of its range. Both raise InputError
# naming the option and the range (the click type edgeseq.commands._types.FiniteFloat calls check_finite).
def describe_range(min: float | None = None, max: float | None = None, *, min_open: bool = False,
                   max_open: bool = False) -> str:
    """'a finite number > 0 and <= 600': what `check_finite` with these bounds accepts."""
    lo = "" if min is None else f"{'>' if min_open else '>='} {min:g}"
    hi = "" if max is None else f"{'<' if max_open else '<='} {max:g}"
    bounds = " and ".join(b for b in (lo, hi) if b)
    return f"a finite number{' ' + bounds if bounds else ''}"


def check_finite(name: str, value: object, *, min: float | None = None, min_open: bool = False,
                 max: float | None = None, max_open: bool = False, example: str | None = None) -> float:
    """`value` as a float, finite and within [min, max] (`min_open` / `max_open` exclude the bound itself), or an
    InputError naming `name` (an option like "--lr", or a config field). `example` goes into the hint.

    Unlike a plain range check, NaN is refused (it compares False with every bound)."""

    def refuse() -> InputError:
        wanted = describe_range(min, max, min_open=min_open, max_open=max_open)
        hint = f"pass e.g. {name} {example}" if example else f"pass {wanted}"
        shown = value if isinstance(value, str) else repr(value)
        return InputError(f"{name} must be {wanted}, got {shown}", hint)

    if isinstance(value, bool):
        raise refuse()
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise refuse() from None
    if not math.isfinite(number):
        raise refuse()
    if min is not None and (number < min or (min_open and number == min)):
        raise refuse()
    if max is not None and (number > max or (max_open and number == max)):
        raise refuse()
    return number


def check_int(option: str, value: object, low: int, high: int, example: int | None = None) -> int:
    """An integer in [low, high], or an InputError that names the option and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = value if isinstance(value, int) and abs(value) < 10**30 else repr(value)[:40]
        raise InputError(
            f"{option} must be at least {low} and at most {high:,}, got {shown}",
            f"pass e.g. {option} {example if example is not None else low}",
        )
    return value
