"""Turn what the user typed after --target (a name from targets.toml, or a URL) into a Target."""

from __future__ import annotations

from edgeseq.errors import InputError
from edgeseq.targets.base import Target


def open_target(name_or_url: str) -> Target:
    """`local` runs on this machine; ssh:// and adb:// URLs and named targets are added by the remote-targets work."""
    if name_or_url in ("local", "local://"):
        from edgeseq.targets.local import LocalTarget

        return LocalTarget()
    raise InputError(f"unknown target {name_or_url!r}", "use --target local, or an ssh:// or adb:// URL")
