"""Turn what the user typed after --target (a name from targets.toml, or a URL) into a Target."""

from __future__ import annotations

from dataclasses import replace

from edgeseq.core.errors import InputError
from edgeseq.targets.base import Target, TargetSpec


def spec_for(name_or_url: str) -> TargetSpec:
    """A URL becomes an unnamed spec (its name is the URL); anything else is looked up in the targets file."""
    if name_or_url in ("local", "local://"):
        return TargetSpec(name="local", url="local")
    if name_or_url.startswith(("ssh://", "adb://")):
        return TargetSpec(name=name_or_url, url=name_or_url)
    if "://" in name_or_url:
        raise InputError(
            f"unknown target {name_or_url!r}", "use local, ssh://user@host[:port], adb://SERIAL or a name"
        )
    from edgeseq.targets import config

    return config.get(name_or_url)


def open_spec(spec: TargetSpec) -> Target:
    if spec.url in ("local", "local://"):
        from edgeseq.targets.config import check_fields
        from edgeseq.targets.local import LocalTarget

        check_fields(spec)  # a local target's python runs here: an absolute path, or edgeseq's own interpreter

        target = LocalTarget(python=None if spec.python == "python3" else spec.python)
        if spec.name != "local":
            target.spec = replace(
                target.spec, name=spec.name
            )  # a named local target keeps its name in results
        return target
    if spec.url.startswith("ssh://"):
        from edgeseq.targets.ssh import SshTarget

        return SshTarget(spec)
    if spec.url.startswith("adb://"):
        from edgeseq.targets.adb import AdbTarget

        return AdbTarget(spec)
    raise InputError(f"target {spec.name!r} has an unsupported URL {spec.url!r}", "use ssh:// or adb://")


def open_target(name_or_url: str) -> Target:
    """`local` runs on this machine; ssh:// and adb:// URLs connect directly; other names come from targets.toml."""
    return open_spec(spec_for(name_or_url))
