"""Typed errors. Library code raises these; only the CLI turns them into a one-line message and an exit code.

Every error carries the problem (`message`) and, where one exists, the fix (`hint`), so a user never has to read a
traceback to know what to do next.
"""

from __future__ import annotations

import difflib
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
