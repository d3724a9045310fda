"""Is a device ready for the agent runner, and make it so: the library behind `edgeseq targets check` and `setup`.

`check_target` gathers the target's facts (reachable? CPU, RAM, free disk, Python, numpy, the runtime) and says
whether the agent can run there. `setup_target` is the one place anything is installed on a device, and only when
asked: a venv made with the device's Python, numpy and ai-edge-litert installed into it by pip (from PyPI, or from
wheels pushed from the host with `find_links`), and the target's python pointed at it in the targets file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgeseq.core.errors import InputError, TargetError
from edgeseq.targets import config
from edgeseq.targets.device_shell import last_line
from edgeseq.targets.resolve import open_spec, open_target

DEFAULT_VENV = "~/.cache/edgeseq/venv"
PACKAGES = ("numpy", "ai-edge-litert")


@dataclass
class TargetCheck:
    target: object  # the opened Target
    facts: dict  # its info(): transport, CPU, RAM, disk, Python, numpy, runtime
    problem: TargetError | None  # why the agent cannot run there (it is the target's runner), or None


def check_target(name_or_url: str) -> TargetCheck:
    """Reach the target, gather its facts, and (agent runner) check its Python, numpy and runtime."""
    target = open_target(name_or_url)
    facts = target.info()
    problem = None
    if target.spec.runner == "agent" and hasattr(target, "require_runtime"):
        try:
            target.require_runtime(facts)
        except TargetError as exc:
            problem = exc
    return TargetCheck(target, facts, problem)


def setup_target(
    name: str,
    find_links: Path | None = None,
    venv_dir: str = DEFAULT_VENV,
    path: Path | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[str, Path]:
    """Install numpy and ai-edge-litert in a venv on the device and record its python for the target.

    Returns (the venv's python on the device, the targets file it was recorded in). The runtime is checked there
    afterwards, so a venv that cannot run the agent is an error, not a recorded success."""
    spec = config.get(name, path)
    if spec.runner != "agent":
        raise InputError(f"{name} uses the {spec.runner} runner, which needs no Python packages", None)
    target = open_spec(spec)
    log(f"{name}: creating {venv_dir} with {spec.python}")
    venv = _remote_path(target, venv_dir)
    r = target.run([spec.python, "-m", "venv", venv], timeout=300)
    if r.returncode != 0:
        raise TargetError(
            f"{name}: cannot create a venv on the device ({_tail(r)})",
            "install python3-venv there (Debian/Raspberry Pi OS: sudo apt install python3-venv)",
        )
    pip = [f"{venv}/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--upgrade"]
    wd = None
    if find_links:
        wd = target.workdir()
        for wheel in sorted(Path(find_links).glob("*.whl")):
            target.push(wheel, f"{wd}/{wheel.name}")
        pip += ["--no-index", "--find-links", wd]
    log(f"{name}: pip install {' '.join(PACKAGES)} (this can take minutes on a Pi)")
    try:
        r = target.run([*pip, *PACKAGES], timeout=1800)
    finally:
        if wd:
            target.cleanup(wd)
    if r.returncode != 0:
        raise TargetError(
            f"{name}: pip install failed on the device ({_tail(r)})",
            "check the device's internet access, or pass --find-links",
        )
    python = f"{venv}/bin/python"
    new = replace(spec, python=python)
    written = config.add(new, path, replace=True)
    open_spec(new).require_runtime()
    return python, written


def _remote_path(target, path: str) -> str:
    if path.startswith("~/"):
        home = target.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30).stdout.strip()
        return f"{home}/{path[2:]}"
    return path


def _tail(result) -> str:
    return last_line(result.stderr) or last_line(result.stdout) or f"exit {result.returncode}"
