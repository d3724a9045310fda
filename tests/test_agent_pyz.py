"""The agent as a package (targets/agent/) pushed as one file (edgeseq.targets.agent_build): deterministic bytes,
standalone imports, Python 3.9 syntax, small modules, and the zipapp measuring through the local target."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _tiny_tflite import dense_model

from edgeseq.targets import agent_build
from edgeseq.targets.agent_build import PYZ_NAME, agent_pyz, build_agent_pyz

AGENT_DIR = Path(__file__).resolve().parents[1] / "targets" / "agent"
SECTIONS = ("document", "facts", "memory", "runtime", "inputs", "measuring", "stepper", "streaming", "ops", "cli")
RUNTIMES = {"numpy", "ai_edge_litert", "tflite_runtime"}


def agent_files() -> list[Path]:
    return sorted(AGENT_DIR.glob("*.py"))


def test_one_module_per_section_none_over_450_lines():
    names = {p.stem for p in agent_files()}
    assert names == {"__init__", "__main__", *SECTIONS}
    long = {p.name: n for p in agent_files() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"agent modules over 450 lines: {long}"


def test_agent_imports_only_the_stdlib_numpy_and_a_tflite_runtime():
    bad = []
    for path in agent_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1:  # `..` would reach out of the package (edgeseq.targets)
                    bad.append(f"{path.name}:{node.lineno}: relative import above the package")
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root not in RUNTIMES and root != "__future__":
                    bad.append(f"{path.name}:{node.lineno}: imports {name}")
    assert not bad, "\n".join(bad)


def _parenthesized_withs(source: str, tree: ast.AST) -> list[int]:
    """Lines of `with (a as x, b as y):` (Python 3.10+), which ast's feature_version does not catch: several items
    after an opening parenthesis."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)) and len(node.items) > 1:
            first = node.items[0].context_expr
            if first.lineno == node.lineno:
                between = lines[node.lineno - 1][node.col_offset : first.col_offset]
            else:
                between = lines[node.lineno - 1][node.col_offset :]
            if "(" in between:
                out.append(node.lineno)
    return out


def test_agent_parses_as_python_3_9():
    # Python >= 3.9 on the device: no match, no parenthesized context managers, no 3.10+ grammar (annotations are
    # strings under `from __future__ import annotations`, so `X | None` in them is fine; ruff checks the rest with
    # per-file-target-version py39, and the test below runs the zipapp on a real 3.9 where one is installed)
    for path in agent_files():
        source = path.read_text()
        tree = ast.parse(source, str(path), feature_version=(3, 9))
        future = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
        assert any(a.name == "annotations" for n in future for a in n.names), f"{path.name}: no future annotations"
        assert not _parenthesized_withs(source, tree), f"{path.name}: a parenthesized with (Python 3.10+)"
    for source in ("match x:\n    case 1:\n        pass\n", "try:\n    pass\nexcept* E:\n    pass\n"):
        with pytest.raises(SyntaxError):
            ast.parse(source, feature_version=(3, 9))
    for source, lines in (("with (open('a') as a,\n      open('b') as b):\n    pass\n", [1]),
                          ("with (open('a')) as a, open('b') as b:\n    pass\n", [1]),  # flagged, though 3.9 ok
                          ("with open('a') as a, open('b') as b:\n    pass\n", []),
                          ("with (open('a')) as a:\n    pass\n", [])):
        assert _parenthesized_withs(source, ast.parse(source)) == lines, source


def test_two_builds_give_the_same_bytes(tmp_path):
    a, sha_a = build_agent_pyz(tmp_path / "a")
    b, sha_b = build_agent_pyz(tmp_path / "b")
    assert a.name == b.name == PYZ_NAME and a.read_bytes() == b.read_bytes()
    assert sha_a == sha_b == hashlib.sha256(a.read_bytes()).hexdigest()
    assert agent_pyz()[1] == sha_a and agent_pyz()[0].parent.name == sha_a[:16]  # the cache keyed by content
    data = a.read_bytes()
    assert data.startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
        assert [i.filename for i in infos] == sorted(i.filename for i in infos)
        assert {i.filename for i in infos} == {"__main__.py", *(f"edgeseq_agent/{p.name}" for p in agent_files())}
        assert {(i.date_time, i.external_attr >> 16, i.compress_type, i.create_system) for i in infos} == {
            ((1980, 1, 1, 0, 0, 0), 0o100644, zipfile.ZIP_STORED, 3)}
        assert zf.read("edgeseq_agent/streaming.py") == (AGENT_DIR / "streaming.py").read_bytes()


def test_a_changed_source_changes_the_sha(tmp_path, monkeypatch):
    copy = tmp_path / "agent"
    shutil.copytree(AGENT_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(agent_build, "AGENT_DIR", copy)
    _, before = build_agent_pyz(tmp_path / "before")
    (copy / "facts.py").write_text((copy / "facts.py").read_text() + "\n")
    _, after = build_agent_pyz(tmp_path / "after")
    assert before != after


@pytest.fixture(scope="module")
def pyz(tmp_path_factory) -> Path:
    return build_agent_pyz(tmp_path_factory.mktemp("pyz"))[0]


def test_the_pyz_runs_facts_and_version(pyz, tmp_path):
    proc = subprocess.run([sys.executable, str(pyz), "--facts"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-1000:]
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["runtime"]["name"] == "ai_edge_litert" and doc["device"]["cpu_count"] >= 1
    proc = subprocess.run([sys.executable, "-m", "edgeseq.targets.agent", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)  # the package's own __main__
    assert proc.returncode == 0 and json.loads(proc.stdout)["schema"] == "edgeseq.agent/3", proc.stderr[-500:]


def test_the_pyz_measures_a_tiny_model_on_the_local_target(tmp_path):
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.runner import AgentOptions, agent_facts, run_agent

    model = tmp_path / "dense.tflite"
    model.write_bytes(dense_model())
    data = run_agent(LocalTarget(), model, AgentOptions(runs=5, warmup=1))
    assert data["ok"] and data["runs_completed"] == 5 and data["model"]["sha256_verified"] is True
    assert data["agent_sha256"] == agent_pyz()[1]  # provenance: which agent file measured it
    assert data["memory"]["model_peak_kb"] is not None and data["memory"]["baseline_kb"] > 10_000
    assert agent_facts(LocalTarget())["agent_sha256"] == data["agent_sha256"]


def _python39() -> str | None:
    """A Python 3.9 that runs (a pyenv shim on PATH may not), else None."""
    found = [shutil.which("python3.9")]
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found += sorted(str(p) for p in root.glob("versions/3.9*/bin/python3.9"))  # pyenv's own, without its shim
    for exe in filter(None, found):
        probe = subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"], capture_output=True)
        if probe.returncode == 0:
            return exe
    return None


def test_the_pyz_starts_on_python_3_9(pyz):
    python = _python39()
    if python is None:
        pytest.skip("no working Python 3.9 (PATH or pyenv) on this machine; the 3.9 syntax is checked above")
    # --version imports every module of the agent; --facts also imports numpy and a runtime, where 3.9 has them
    proc = subprocess.run([python, str(pyz), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"], proc.stderr[-1000:]
    proc = subprocess.run([python, str(pyz), "--facts"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["device"]["python"].startswith("3.9"), proc.stderr
