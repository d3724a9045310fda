"""Plain number checks shared by every layer, so a bad number is refused the same way everywhere.

`check_finite` refuses NaN, inf, 1e999 and a crossed bound; `check_int` an integer out of its range. Both raise
`InputError` naming the option (or config field) and the range, which the CLI prints as one `error:` line with exit
code 2, before any work. The click parameter type (`edgeseq.commands._types.FiniteFloat`) calls `check_finite`.
"""

from __future__ import annotations

import math

from edgeseq.errors import InputError


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
