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
    meaning = "edgeseq error"  # what its exit code tells a script

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
    meaning = "bad input (file, option, data set, model; also usage errors)"


class DatasetError(InputError):
    """A data set is missing, malformed or inconsistent."""


class ModelError(InputError):
    """A model file is missing, unsafe, corrupt, or not what the command needs."""


class ConversionError(EdgeseqError):
    """The converter refused or crashed on a model/recipe pair."""

    exit_code = 3
    meaning = "conversion refused or failed"


class ValidationError(EdgeseqError):
    """A converted model disagrees with its source beyond the recipe's tolerance."""

    exit_code = 4
    meaning = "a converted model disagrees with its source"


class TargetError(EdgeseqError):
    """A device is unreachable, untrusted, or lacks what the runner needs."""

    exit_code = 5
    meaning = "target problem (unreachable, untrusted, lacking what the runner needs)"


class RuntimeMissing(EdgeseqError):
    """No TFLite runtime (ai-edge-litert or tflite-runtime) could be imported where one is needed."""

    exit_code = 6
    meaning = "no TFLite runtime"


class StoreError(EdgeseqError):
    """The results store cannot be opened or written."""

    exit_code = 7
    meaning = "results store problem"


# ---------------------------------------------------------------- exit codes
# The statuses `edgeseq.cli.main` gives besides the typed errors' own. `exit_codes()` is the one list: `edgeseq --help`
# prints it and the README's exit-code table is generated from it (scripts/readme_tables.py).
EXIT_INTERNAL = 1  # anything unforeseen: a bug (EDGESEQ_DEBUG=1 shows the traceback)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM
_CLI_EXITS = {
    EXIT_INTERNAL: "internal error (a bug in edgeseq; EDGESEQ_DEBUG=1 shows the traceback)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; child processes stopped, nothing half-written kept)",
    EXIT_TERMINATED: "terminated (SIGTERM; child processes stopped, nothing half-written kept)",
}


def exit_codes() -> list[tuple[int, str, tuple[str, ...]]]:
    """(code, meaning, error classes) for every non-zero status of the CLI, by code. A code's meaning is its first
    class's (`meaning`); subclasses that keep their parent's code are listed with it."""
    classes: dict[int, list[type[EdgeseqError]]] = {}
    stack: list[type[EdgeseqError]] = [EdgeseqError]
    while stack:
        cls = stack.pop(0)
        classes.setdefault(cls.exit_code, []).append(cls)
        stack.extend(cls.__subclasses__())
    out = []
    for code in sorted({*classes, *_CLI_EXITS}):
        found = classes.get(code, [])
        meaning = _CLI_EXITS.get(code) or found[0].meaning
        out.append((code, meaning, tuple(c.__name__ for c in found)))
    return out


def exit_code_summary() -> str:
    """One line for `edgeseq --help`: 'Exit codes: 0 ok, 1 internal error, 2 bad input, ...'."""
    short = [f"{code} {meaning.split(' (')[0]}" for code, meaning, _ in exit_codes()]
    return "Exit codes: " + ", ".join(["0 ok", *short]) + "."


class DiskError(EdgeseqError):
    """The file system refused a write: out of space, over quota, read-only, an I/O error, too many open files
    (edgeseq.core.fsio.oserrors). The message names the path and the errno's meaning; nothing partial is kept."""

    exit_code = 9
    meaning = "the file system refused a write (no space, quota, read-only, I/O error, too many open files); nothing partial kept"


class NothingFound(EdgeseqError):
    """The command ran and found nothing that answers it (recommend: no model meets every budget). Its output is
    complete; the exit code says "no" to a script."""

    exit_code = 8
    meaning = "nothing found (recommend: no model meets every budget); the output is complete"


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
