"""The targets file: named devices in `targets.toml`, read with tomllib and written by hand (the format is flat).

Lookup order: `$EDGESEQ_TARGETS_FILE` when set, else `targets.toml` in the working directory when one exists, else
the user's config directory (`$XDG_CONFIG_HOME/edgeseq/targets.toml`, default `~/.config/edgeseq/targets.toml`).

    [targets.pi4]
    url = "ssh://pi@raspberrypi.local"
    key_file = "~/.ssh/id_ed25519"
    known_hosts = "~/.ssh/known_hosts"
    runner = "agent"
    python = "/usr/bin/python3"
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, fields
from pathlib import Path

from edgeseq.errors import InputError
from edgeseq.fsio import atomic_write_text
from edgeseq.targets.base import TargetSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 has no tomllib; keep reading possible with the backport when present
    import tomli as tomllib

FILE_NAME = "targets.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = {"local", "all"}
RUNNERS = ("agent", "benchmark_model")
SCHEMES = ("ssh://", "adb://")
_SPEC_FIELDS = {f.name for f in fields(TargetSpec)}


def default_path() -> Path:
    """The file `targets list/add/remove` use: see the module docstring for the order."""
    env = os.environ.get("EDGESEQ_TARGETS_FILE")
    if env:
        return Path(env).expanduser()
    local = Path.cwd() / FILE_NAME
    if local.is_file():
        return local
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "edgeseq" / FILE_NAME


def validate_name(name: str) -> str:
    if not NAME_RE.match(name) or name in RESERVED:
        raise InputError(
            f"invalid target name {name!r}",
            "use letters, digits, '.', '_' or '-' (not 'local' or 'all'), starting with a letter or digit",
        )
    return name


def validate_spec(spec: TargetSpec) -> TargetSpec:
    validate_name(spec.name)
    if spec.url != "local" and not spec.url.startswith(SCHEMES):
        raise InputError(
            f"target {spec.name!r}: unsupported URL {spec.url!r}",
            "use ssh://user@host[:port] or adb://SERIAL",
        )
    if spec.runner not in RUNNERS:
        raise InputError(
            f"target {spec.name!r}: unknown runner {spec.runner!r}", f"use one of {', '.join(RUNNERS)}"
        )
    if spec.runner == "benchmark_model" and not spec.benchmark_binary:
        raise InputError(
            f"target {spec.name!r}: runner benchmark_model needs a binary",
            "pass --benchmark-binary PATH to LiteRT's benchmark_model built for the device",
        )
    return spec


def load(path: Path | None = None) -> dict[str, TargetSpec]:
    """All named targets, in file order. A missing file is an empty set; a malformed one is an InputError."""
    path = path or default_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse {path}: {exc}", "fix the file or remove it") from exc
    table = data.get("targets", {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [targets] must be a table", "see `edgeseq targets add --help`")
    specs: dict[str, TargetSpec] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or "url" not in entry:
            raise InputError(
                f"{path}: target {name!r} has no url", 'every target needs url = "ssh://..." or "adb://..."'
            )
        unknown = set(entry) - _SPEC_FIELDS
        if unknown:
            raise InputError(
                f"{path}: target {name!r} has unknown keys {sorted(unknown)}",
                f"known keys: {sorted(_SPEC_FIELDS - {'name'})}",
            )
        specs[name] = validate_spec(TargetSpec(name=name, **{k: v for k, v in entry.items() if k != "name"}))
    return specs


def get(name: str, path: Path | None = None) -> TargetSpec:
    path = path or default_path()
    specs = load(path)
    if name not in specs:
        known = ", ".join(specs) or "none"
        raise InputError(
            f"no target named {name!r} in {path} (known: {known})",
            "add one with `edgeseq targets add NAME URL`",
        )
    return specs[name]


def save(specs: dict[str, TargetSpec], path: Path | None = None) -> Path:
    """Write every target back, atomically; the file is regenerated, so comments are not kept."""
    path = path or default_path()
    return atomic_write_text(path, dumps(specs))


def add(spec: TargetSpec, path: Path | None = None, replace: bool = False) -> Path:
    path = path or default_path()
    specs = load(path)
    validate_spec(spec)
    if spec.name in specs and not replace:
        raise InputError(
            f"target {spec.name!r} already exists in {path}", "pass --replace, or remove it first"
        )
    specs[spec.name] = spec
    return save(specs, path)


def remove(name: str, path: Path | None = None) -> Path:
    path = path or default_path()
    specs = load(path)
    if name not in specs:
        raise InputError(f"no target named {name!r} in {path}", "see `edgeseq targets list`")
    del specs[name]
    return save(specs, path)


def dumps(specs: dict[str, TargetSpec]) -> str:
    """TOML for the targets table. Strings are TOML basic strings (JSON escapes are a subset), keys always quoted."""
    lines = ["# edgeseq targets: written by `edgeseq targets add`; see `edgeseq targets --help`", ""]
    for name, spec in specs.items():
        entry = asdict(spec)
        entry.pop("name")
        options = entry.pop("options") or {}
        lines.append(f"[targets.{_key(name)}]")
        for key, value in entry.items():
            if (
                value is None
                or (key == "runner" and value == "agent")
                or (key == "python" and value == "python3")
            ):
                continue
            lines.append(f"{key} = {_value(value)}")
        if options:
            lines.append(f"[targets.{_key(name)}.options]")
            for key, value in options.items():
                lines.append(f"{_key(key)} = {_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _key(key: str) -> str:
    return _string(str(key))


def _string(text: str) -> str:
    # JSON escapes are valid in TOML basic strings; DEL is the one control character JSON leaves raw.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise InputError(
        f"cannot store {type(value).__name__} in targets.toml", "use strings, numbers, booleans or lists"
    )
