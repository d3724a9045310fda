"""The targets file: named devices in `targets.toml`, read with tomllib and written by hand (the format is flat).

Lookup order: `$EDGESEQ_TARGETS_FILE` when set, else `targets.toml` in the working directory when one exists, else
the user's config directory (`$XDG_CONFIG_HOME/edgeseq/targets.toml`, default `~/.config/edgeseq/targets.toml`).

Every field is checked when the file is read (type, range, absolute program paths): a wrongly typed file is refused
whole, with one line naming the file, the target, the field and what it should be. A file picked up from the working
directory (not named by `$EDGESEQ_TARGETS_FILE` or `--file`, not the user's own config) may not name a program to run
on this machine (`options.ssh`, `options.adb`, `benchmark_binary`, a local target's `python`): running edgeseq in
an untrusted folder must not run that folder's programs.

    [targets.pi4]
    url = "ssh://pi@raspberrypi.local"
    key_file = "~/.ssh/id_ed25519"
    known_hosts = "~/.ssh/known_hosts"
    runner = "agent"
    python = "/usr/bin/python3"
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import asdict, fields
from pathlib import Path

from edgeseq.core.errors import InputError
from edgeseq.core.fsio import atomic_write_text
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
MAX_FILE_BYTES = 1 << 20
# The optional string fields, and the options each transport reads: option -> what it must be.
_PATH_FIELDS = ("key_file", "known_hosts", "benchmark_binary", "workdir")
OPTIONS = {
    "connect_timeout": "a number of seconds above 0 and at most 600 (SSH)",
    "ssh": "an absolute path to the OpenSSH client (SSH)",
    "adb": "an absolute path to the adb client (adb)",
    "adb_server_port": "a port number from 1 to 65535 (adb)",
}
# Fields that name a program this machine runs (or pushes and runs): never taken from a file found implicitly.
PROGRAM_OPTIONS = ("ssh", "adb")


def find() -> tuple[Path, bool]:
    """(the targets file, True when it is the working directory's, picked up without being named)."""
    env = os.environ.get("EDGESEQ_TARGETS_FILE")
    if env:
        return Path(env).expanduser(), False
    local = Path.cwd() / FILE_NAME
    if local.is_file():
        return local, True
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "edgeseq" / FILE_NAME, False


def default_path() -> Path:
    """The file `targets list/add/remove` use: see the module docstring for the order."""
    return find()[0]


def validate_name(name: str) -> str:
    if not NAME_RE.match(name) or name in RESERVED:
        raise InputError(
            f"invalid target name {_shown(name)}",
            "use letters, digits, '.', '_' or '-' (not 'local' or 'all'), starting with a letter or digit",
        )
    return name


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_FILE_HINT = "edit that entry of the file: targets commands refuse the file until it is fixed"
_SPEC_HINT = "see `edgeseq targets add --help`"


def _field_error(where: str, field: str, what: str, value: object, hint: str = _FILE_HINT) -> InputError:
    return InputError(f"{where}: {field} must be {what}, got {_shown(value)}", hint)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and "\x00" not in value and 0 < len(value) <= 4096


def _absolute(value: object) -> bool:
    try:
        return _is_text(value) and Path(str(value)).expanduser().is_absolute()
    except RuntimeError:  # ~user that does not exist
        return False


def check_fields(spec: TargetSpec, where: str | None = None) -> TargetSpec:
    """Every field of `spec` of the right type and in range, program paths absolute; InputError names the field.

    `where` prefixes the message (the file and target); a spec built from a URL is checked the same way."""
    hint = _FILE_HINT if where else _SPEC_HINT
    where = where or f"target {spec.name!r}"

    def refuse(field: str, what: str, value: object) -> InputError:
        return _field_error(where, field, what, value, hint)

    if not _is_text(spec.url):
        raise refuse("url", 'a string such as "ssh://user@host" or "adb://SERIAL"', spec.url)
    for field in _PATH_FIELDS:
        value = getattr(spec, field)
        if value is not None and not _is_text(value):
            raise refuse(field, "a path (a non-empty string)", value)
    if spec.benchmark_binary is not None and not _absolute(spec.benchmark_binary):
        raise refuse("benchmark_binary", "an absolute path on this machine", spec.benchmark_binary)
    if not _is_text(spec.runner):
        raise refuse("runner", f"one of {', '.join(RUNNERS)}", spec.runner)
    if not _is_text(spec.python):
        raise refuse("python", 'a command or path such as "/usr/bin/python3"', spec.python)
    if spec.url in ("local", "local://") and spec.python != "python3" and not _absolute(spec.python):
        raise refuse("python", "an absolute path for a local target (it runs on this machine)", spec.python)
    if not isinstance(spec.options, dict):
        raise refuse("options", "a table, e.g. options = { connect_timeout = 10 }", spec.options)
    for key, value in spec.options.items():
        if key not in OPTIONS:
            raise InputError(f"{where}: unknown option {_shown(key)}", f"known options: {', '.join(sorted(OPTIONS))}")
        if not _OPTION_OK[key](value):
            raise refuse(f"options.{key}", OPTIONS[key], value)
    return spec


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_OPTION_OK = {
    "connect_timeout": lambda v: _number(v) and math.isfinite(v) and 0 < v <= 600,
    "ssh": _absolute,
    "adb": _absolute,
    "adb_server_port": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535,
}


def refuse_programs(spec: TargetSpec, path: Path) -> None:
    """A targets file found in the working directory may describe devices, not name programs for this machine."""
    named = [f"options.{k}" for k in PROGRAM_OPTIONS if k in spec.options]
    if spec.benchmark_binary is not None:
        named.append("benchmark_binary")
    if spec.url in ("local", "local://") and spec.python != "python3":
        named.append("python")
    if named:
        raise InputError(
            f"{path} was found in the working directory and names a program to run for target {spec.name!r} "
            f"({', '.join(named)}); edgeseq runs only programs named in a targets file you chose",
            "move the target to ~/.config/edgeseq/targets.toml, or name this file with EDGESEQ_TARGETS_FILE "
            "(targets commands: --file) if you trust it",
        )


def validate_spec(spec: TargetSpec, where: str | None = None) -> TargetSpec:
    """Name, fields, URL scheme and runner; `where` (the file and target) prefixes every message."""
    try:
        validate_name(spec.name)
    except InputError as exc:
        if where is None:
            raise
        raise InputError(f"{where.rsplit(': target ', 1)[0]}: {exc.message}", exc.hint) from None
    check_fields(spec, where)
    where = where or f"target {spec.name!r}"
    if spec.url != "local" and not spec.url.startswith(SCHEMES):
        raise InputError(f"{where}: unsupported URL {spec.url!r}", "use ssh://user@host[:port] or adb://SERIAL")
    if spec.runner not in RUNNERS:
        raise InputError(f"{where}: unknown runner {spec.runner!r}", f"use one of {', '.join(RUNNERS)}")
    if spec.runner == "benchmark_model" and not spec.benchmark_binary:
        raise InputError(
            f"{where}: runner benchmark_model needs a binary",
            "pass --benchmark-binary PATH to LiteRT's benchmark_model built for the device",
        )
    return spec


def load(path: Path | None = None) -> dict[str, TargetSpec]:
    """All named targets, in file order. A missing file is an empty set; a malformed one is an InputError."""
    path = path or default_path()
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: not a targets file",
                             "point EDGESEQ_TARGETS_FILE (or --file) at the right file")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse {path}: {exc}", "fix the file or remove it") from None
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
        spec = TargetSpec(name=name, **{k: v for k, v in entry.items() if k != "name"})
        specs[name] = validate_spec(spec, where=f"{path}: target {name!r}")
    return specs


def get(name: str, path: Path | None = None) -> TargetSpec:
    """The target `name`. From a file found implicitly in the working directory, one that names a program to run
    on this machine is refused (see the module docstring)."""
    implicit = False
    if path is None:
        path, implicit = find()
    specs = load(path)
    if name not in specs:
        known = ", ".join(specs) or "none"
        raise InputError(
            f"no target named {name!r} in {path} (known: {known})",
            "add one with `edgeseq targets add NAME URL`",
        )
    if implicit:
        refuse_programs(specs[name], path)
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


def add_target(
    name: str,
    url: str,
    *,
    key_file: str | None = None,
    known_hosts: str | None = None,
    python: str = "python3",
    workdir: str | None = None,
    runner: str | None = None,
    benchmark_binary: str | None = None,
    adb_server_port: int | None = None,
    replace: bool = False,
    path: Path | None = None,
) -> Path:
    """`edgeseq targets add`: a target from its options, its URL parsed, written to the targets file (returned).

    The runner defaults to benchmark_model when a binary is given, else the agent; the binary's path is stored
    absolute. Never contacts the device and never trusts a host key."""
    if runner is None:
        runner = "benchmark_model" if benchmark_binary else "agent"
    if url.startswith("ssh://"):
        from edgeseq.targets.ssh import parse_url

        parse_url(url)
    elif url.startswith("adb://"):
        from edgeseq.targets.adb import parse_url as parse_adb

        parse_adb(url)
        if key_file or known_hosts:
            raise InputError("--key and --known-hosts are for ssh:// targets", "adb uses its own keys (~/.android)")
    options = {"adb_server_port": adb_server_port} if adb_server_port is not None else {}  # range: check_fields
    spec = TargetSpec(
        name=name,
        url=url,
        key_file=key_file,
        known_hosts=known_hosts,
        runner=runner,
        benchmark_binary=str(Path(benchmark_binary).expanduser().resolve()) if benchmark_binary else None,
        python=python,
        workdir=workdir,
        options=options,
    )
    return add(spec, path, replace=replace)


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
