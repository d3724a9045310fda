"""Shared pytest fixtures. Others may append fixtures here; keep each one cheap and documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared sits next to the repository checkout (whatever the checkout folder is called).
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """The offline FSDD copy (shared/datasets/fsdd, holding recordings/*.wav); skips the test when it is absent."""
    path = SHARED / "datasets" / "fsdd"
    if not (path / "recordings").is_dir():
        pytest.skip(f"FSDD recordings not found at {path}")
    return path


@pytest.fixture(scope="session")
def edgeseq_cache(tmp_path_factory) -> Path:
    """A session-wide private edgeseq cache folder (set EDGESEQ_CACHE_DIR to it with monkeypatch where needed)."""
    return tmp_path_factory.mktemp("edgeseq-cache")


def _conversions_root(basetemp: Path, worker: bool) -> Path:
    """The session's one cache folder: a pytest-xdist worker's basetemp lies in the session's (the controller's), so
    every worker finds the same folder there."""
    return (basetemp.parent if worker else basetemp) / "conversions"


@pytest.fixture(scope="session")
def conversions(tmp_path_factory):
    """The session's cache of built and converted models (tests/_zoo_cache.py): each distinct conversion is made once
    per session (in whichever worker asks first) and shared read-only; copy a file before changing it."""
    from _zoo_cache import ConversionCache

    worker = os.environ.get("PYTEST_XDIST_WORKER") is not None
    return ConversionCache(_conversions_root(tmp_path_factory.getbasetemp(), worker))


def pytest_terminal_summary(terminalreporter, config):
    """What the shared conversions cost: where the suite's time goes, in every CI log (read from the cache folder,
    so under pytest-xdist the controller prints what all workers made)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or os.environ.get("PYTEST_XDIST_WORKER") is not None:
        return
    from _zoo_cache import summary

    for line in summary(_conversions_root(factory.getbasetemp(), worker=False)):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tflite_runtime_python() -> str:
    """A venv's python with tflite-runtime 2.14 and numpy<2, built here when it is not cached (tests/_runtime214.py);
    skips only when the machine has no Python 3.8-3.11 or no package index."""
    from _runtime214 import tflite_runtime_214

    return tflite_runtime_214()
