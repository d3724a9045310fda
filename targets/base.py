"""The Target protocol: where a model runs, separate from what runs there (the runner) and how it gets there.

A target moves files and runs argv lists. It never builds a shell string from user input; transports that need a
remote shell (ssh, adb) quote every argument themselves with `shlex.quote` in exactly one method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RunResult:
    """What one remote (or local) command gave back."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float = 0.0


@dataclass(frozen=True)
class TargetSpec:
    """A named target as written in targets.toml, or parsed from a URL given to --target."""

    name: str
    url: str  # local | ssh://user@host[:port] | adb://SERIAL | adb://host:port
    key_file: str | None = None
    known_hosts: str | None = None
    runner: str = "agent"  # agent | benchmark_model
    benchmark_binary: str | None = None
    python: str = "python3"
    workdir: str | None = None
    options: dict = field(default_factory=dict)


@runtime_checkable
class Target(Protocol):
    """What every transport offers. Paths on the device are strings (POSIX), paths on the host are `Path`s."""

    spec: TargetSpec

    def push(self, local: Path, remote: str) -> None: ...

    def pull(self, remote: str, local: Path) -> None: ...

    def run(self, argv: list[str], timeout: float) -> RunResult: ...

    def info(self) -> dict: ...

    def workdir(self) -> str:
        """A fresh per-run directory on the device (created), where models and the agent go."""
        ...

    def cleanup(self, remote_dir: str) -> None: ...
