"""A venv with tflite-runtime 2.14 (the last release for Python <= 3.11, still on many devices) and numpy<2, built
once and cached across runs; the `tflite_runtime_python` session fixture in conftest.py makes it for any test that
needs it, so no test depends on another having run first.

It skips only for what the machine lacks: no Python 3.8-3.11 interpreter (tflite-runtime 2.14 has no wheel for newer
ones), or no reachable package index; every other failure is a test failure.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("EDGESEQ_TEST_CACHE", Path.home() / ".cache" / "edgeseq-tests"))
NETWORK_HINTS = ("Could not find a version", "No matching distribution", "Network is unreachable",
                 "Temporary failure in name resolution", "Connection", "ProxyError", "Max retries")
SUPPORTED = ((3, 8), (3, 9), (3, 10), (3, 11))


def _base_python() -> tuple[str, str] | None:
    """(interpreter, 'pyXY') with a tflite-runtime 2.14 wheel: this one when it fits, else python3.11 ... on PATH."""
    if sys.version_info[:2] in SUPPORTED:
        return getattr(sys, "_base_executable", None) or sys.executable, f"py{sys.version_info[0]}{sys.version_info[1]}"
    for major, minor in reversed(SUPPORTED):
        found = shutil.which(f"python{major}.{minor}")
        if found and subprocess.run([found, "-c", "import venv"], capture_output=True).returncode == 0:
            return found, f"py{major}{minor}"
    return None


def tflite_runtime_214() -> str:
    """The venv's python (made now when missing or broken); pytest.skip when the machine cannot have one."""
    base = _base_python()
    if base is None:
        pytest.skip("tflite-runtime 2.14 needs Python 3.8-3.11 and none is installed here")
    interpreter, tag = base
    venv = CACHE / f"tflite-runtime-2.14-{tag}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "a+") as lock:  # two test workers may both need it: one builds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _venv_python(interpreter, venv)


def _venv_python(interpreter: str, venv: Path) -> str:
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import tflite_runtime.interpreter, numpy; assert numpy.__version__ < '2'"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(py)
    subprocess.run([interpreter, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True, timeout=120)
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "tflite-runtime==2.14.0", "numpy<2"],
                         capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        out = pip.stdout + pip.stderr
        if any(h in out for h in NETWORK_HINTS):
            pytest.skip(f"pip could not install tflite-runtime 2.14 (index unreachable): {out.strip()[-200:]}")
        pytest.fail(f"pip install tflite-runtime failed: {out[-1000:]}")
    return str(py)
