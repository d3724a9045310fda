"""`edgeseq.api`: one function per verb, the README's "From Python" example run as written, the CLI's errors."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgeseq.api as es
from edgeseq.cli import main
from edgeseq.core.errors import EdgeseqError

REPO = Path(__file__).resolve().parents[1]
VERBS = ("train", "convert", "evaluate", "profile", "stream", "sweep", "recommend", "report", "runs")


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- example:from-python -->\n```python\n(.*?)```\n<!-- /example:from-python -->", text, re.S)
    assert block, "README.md lost its From Python example (between the example:from-python markers)"
    return block.group(1)


def test_every_verb_is_a_documented_function():
    for verb in VERBS:
        fn = getattr(es, verb)
        assert callable(fn) and inspect.getdoc(fn), verb
    assert "es." in readme_example() and all(f"es.{v}(" in readme_example() for v in
                                             ("train", "convert", "evaluate", "profile", "recommend", "report"))


def test_commands_call_the_api():
    """The thin CLI: each verb's command calls its edgeseq.api function (so both run the same code)."""
    for verb, module in (("convert", "convert"), ("evaluate", "evaluate"), ("train", "train"),
                         ("recommend", "recommend"), ("sweep", "sweep"), ("stream", "profile")):
        src = (REPO / "toolkit" / "commands" / f"{module}.py").read_text()
        assert f"from edgeseq.api import {verb} as run_{verb}" in src, module


@pytest.mark.parametrize("call, argv", [
    (lambda: es.evaluate("missing.tflite", "japanese_vowels"), ["evaluate", "missing.tflite", "--dataset",
                                                                 "japanese_vowels"]),
    (lambda: es.recommend("local", latency_budget_ms=5, db="none.db"),
     ["recommend", "--target", "local", "--latency-budget-ms", "5", "--db", "none.db"]),
])
def test_errors_are_the_clis(tmp_path, monkeypatch, capsys, call, argv):
    """The API raises the typed error whose one line and exit code the CLI prints for the same input."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeseqError) as err:
        call()
    with pytest.raises(SystemExit) as code:
        main(argv)
    assert code.value.code != 0
    line = capsys.readouterr().err.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert code.value.code == err.value.exit_code and " ".join(err.value.one_line().split()) in line


def test_runs_without_a_store_is_an_error_not_an_empty_table(tmp_path):
    with pytest.raises(EdgeseqError):
        es.runs(tmp_path / "absent.db")


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path):
    """Train, convert, evaluate, profile, recommend, report and the runs table, verbatim from the README."""
    code = readme_example() + (
        "\nimport json\n"
        "rows = table.to_dict('records') if hasattr(table, 'to_dict') else table\n"
        "print('RESULT', json.dumps({'files': [str(f.tflite_path) for f in files], 'ok': [f.ok for f in files],"
        " 'runs': len(rows), 'frame': type(table).__name__, 'models': sorted({r['model'] for r in rows})}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.rsplit("RESULT ", 1)[1])
    assert result["ok"] == [True, True] and all((tmp_path / f).is_file() for f in result["files"])
    assert result["runs"] == 2 and len(result["models"]) == 2
    try:
        import pandas  # noqa: F401
        assert result["frame"] == "DataFrame"
    except ImportError:
        assert result["frame"] == "list"
    assert (tmp_path / "report" / "report.html").is_file()
