"""The CLI shell: help and version, lazy imports (no TensorFlow for help/inspect/profile/report), error contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeseq import __version__
from edgeseq.cli import COMMANDS
from edgeseq.core.progress import is_progress_line

PROBE = """
import sys
from edgeseq.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          timeout=120)


def test_help_lists_every_command_without_importing_tensorflow():
    proc = _run(["--help"])
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout
    assert "HEAVY=\n" in proc.stderr + "\n", proc.stderr


@pytest.mark.parametrize("command", ["inspect", "profile", "report", "compare", "datasets", "targets", "deploy"])
def test_light_commands_do_not_import_tensorflow(command):
    proc = _run([command, "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert "HEAVY=\n" in proc.stderr + "\n", f"{command} imported {proc.stderr}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", command, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: edgeseq " + command)


def test_version():
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_unknown_command_is_a_usage_error_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "trian"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "No such command" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [["convert", "--foo"], ["inspect"], ["profile", "--runs", "abc", "x.tflite"]])
def test_usage_errors_are_one_line_naming_the_help(args):
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", *args], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert proc.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"edgeseq {args[0]} --help" in lines[0], lines


def test_an_unforeseen_exception_is_one_line_exit_1_not_a_traceback(monkeypatch, capsys):
    import edgeseq.cli as cli_module

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli_module.cli, "main", boom)
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli_module.main(["models"])
    err = capsys.readouterr().err
    assert exc.value.code == 1
    assert err.count("\n") == 1 and err.startswith("error: internal error: ZeroDivisionError") and "EDGESEQ_DEBUG" in err
    monkeypatch.setenv("EDGESEQ_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli_module.main(["models"])
