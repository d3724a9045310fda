"""Progress of long work, one way for every verb: a live line on a terminal, one flushed line per finished step when
piped (logs, CI, `| tee`), each `[n/N] what: outcome  ETA 1m05s` and never wider than 80 columns."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 80
NOTE = "… "  # a phase of work that is not a counted step ("… converting gru with int8")
_STEP = re.compile(r"\[\d+/\d+\] ")


def is_progress_line(line: str) -> bool:
    """True for the lines this module writes (so a script, or a test, can tell them from results and errors)."""
    return line.startswith(NOTE) or bool(_STEP.match(line))


def eta_text(done: int, total: int, elapsed_s: float) -> str:
    """'ETA 1m05s' from the mean time per finished step; 'ETA -' before the first one; '' when finished."""
    if done >= total:
        return f"in {_clock(elapsed_s)}"
    if done <= 0:
        return "ETA -"
    return f"ETA {_clock(elapsed_s / done * (total - done))}"


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def fit(line: str, tail: str = "", width: int = WIDTH) -> str:
    """`line` cut (with an ellipsis) so that `line  tail` fits `width` columns; the tail (ETA) is never cut."""
    room = width - (len(tail) + 2 if tail else 0)
    if len(line) > room:
        line = line[: max(0, room - 1)] + "…"
    return f"{line}  {tail}" if tail else line


class Progress:
    """Steps of one piece of work. `step(what, outcome)` when a step finishes; thread-safe."""

    def __init__(self, total: int, *, stream: TextIO | None = None, tty: bool | None = None,
                 say: Callable[[str], None] | None = None):
        self.total = max(1, int(total))
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.say = say
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def line(self, what: str, outcome: str = "") -> str:
        text = f"[{self.done}/{self.total}] {what}" + (f": {outcome}" if outcome else "")
        return fit(text, eta_text(self.done, self.total, time.monotonic() - self.started))

    def step(self, what: str, outcome: str = "") -> str:
        with self._lock:
            self.done = min(self.total, self.done + 1)
            text = self.line(what, outcome)
            if self.say is not None and not self.tty:
                self.say(text)
            elif self.tty:
                self.stream.write(f"\r\033[K{text}" + ("\n" if self.done == self.total else ""))
                self.stream.flush()
            else:
                self.stream.write(text + "\n")
                self.stream.flush()
            return text

    def note(self, text: str) -> None:
        """A line that is not a step (a warning, a phase): on its own line, the live line redrawn after it."""
        with self._lock:
            if self.say is not None and not self.tty:
                self.say(fit(NOTE + text))
                return
            if self.tty and 0 < self.done < self.total:
                self.stream.write("\r\033[K")
            self.stream.write(fit(NOTE + text) + "\n")
            self.stream.flush()
