"""Comparisons against a tolerance or a budget where NaN and infinity fail.

`x <= limit` is False for NaN and `x > limit` is False too, so a check written as "fail when over" passes a NaN;
and inf - inf is NaN. Every tolerance, budget and agreement check goes through these functions instead of a bare
comparison (tests/test_finite.py walks the validation code for bare ones), so a number that is not a number can
never pass.
"""

from __future__ import annotations

import math
from typing import Any

# numpy is imported inside the array functions: `edgeseq CMD --help` imports this module (through the recipes'
# words) and must stay light.


def is_number(value: Any) -> bool:
    """A real, finite number (a bool or a string is not one)."""
    if isinstance(value, bool | str | bytes) or value is None:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return False


def within(value: Any, limit: float | None) -> bool:
    """`value <= limit`, False when either is NaN/inf or not a number; a None limit asks only for a finite value."""
    if not is_number(value):
        return False
    return limit is None or (is_number(limit) and float(value) <= float(limit))


def at_least(value: Any, floor: float | None) -> bool:
    """`value >= floor`, False when either is NaN/inf or not a number; a None floor asks only for a finite value."""
    if not is_number(value):
        return False
    return floor is None or (is_number(floor) and float(value) >= float(floor))


def nonfinite_count(array: Any) -> int:
    """How many elements of `array` are NaN or +-inf (0 for integer arrays)."""
    import numpy as np

    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.complexfloating):
        return 0
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def nonfinite_rows(array: Any) -> int:
    """How many samples (rows along the first axis) hold at least one NaN or inf."""
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 0 or not np.issubdtype(a.dtype, np.floating):
        return int(nonfinite_count(a) > 0)
    return int(np.count_nonzero(~np.isfinite(a.reshape(len(a), -1)).all(axis=1)))


def kinds(array: Any) -> str:
    """'NaN', 'inf' or 'NaN and inf': what non-finite values `array` holds (empty string when none)."""
    import numpy as np

    a = np.asarray(array, dtype=np.float64) if np.asarray(array).dtype != object else np.asarray([], np.float64)
    found = [name for name, hit in (("NaN", np.isnan(a).any()), ("inf", np.isinf(a).any())) if hit]
    return " and ".join(found)


def show(value: Any, spec: str = ".3g") -> str:
    """A figure for a table: 'NaN', '+inf', '-inf' spelled out, '-' for None, else formatted with `spec`."""
    if value is None:
        return "-"
    if isinstance(value, bool | str | bytes):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return str(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+inf" if number > 0 else "-inf"
    return format(number, spec)


def rank_key(value: Any, *, descending: bool = False) -> tuple[int, float]:
    """A sort key that puts non-finite and missing figures last, whichever way the finite ones are ordered."""
    if not is_number(value):
        return (1, 0.0)
    return (0, -float(value) if descending else float(value))
