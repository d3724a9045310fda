"""SIGTERM (what `timeout`, CI cancellation and `docker stop` send) is handled like Ctrl-C: children stopped,
temporary folders removed, nothing half-written, one line, exit 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tiny_tflite import build_tiny_models

from edgeseq.core.progress import is_progress_line


def _start(args: list[str], cwd: Path) -> tuple[subprocess.Popen, Path, Path]:
    """The CLI with a private TMPDIR; stderr goes to a file (training progress lines go there) read as it grows."""
    tmpdir = cwd / ".tmp"
    tmpdir.mkdir()
    err = cwd / ".stderr"
    with open(err, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "edgeseq.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=sink, stdin=subprocess.DEVNULL, env=dict(os.environ, TMPDIR=str(tmpdir)))
    return proc, tmpdir, err


def _error_lines(proc: subprocess.Popen, err: Path) -> list[str]:
    """After exit: the lines that are not training progress."""
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("still running 60 s after SIGTERM; its stderr: " + err.read_text(errors="replace")[-3000:])
    text = err.read_text(errors="replace")
    assert "Traceback" not in text, text
    return [ln for ln in text.splitlines() if ln.strip() and not is_progress_line(ln)]


def _processes_mentioning(needle: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            pids.append(int(entry))
    return pids


def _wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _terminate_and_check(proc: subprocess.Popen, tmpdir: Path, err: Path, child_marker: str) -> None:
    proc.send_signal(signal.SIGTERM)
    lines = _error_lines(proc, err)
    assert proc.returncode == 143, lines
    assert len(lines) == 1 and lines[0].startswith("error: terminated"), lines
    # Children are gone at once (not measuring on for their remaining seconds) and left nothing in TMPDIR.
    assert _processes_mentioning(child_marker) == []
    assert sorted(os.listdir(tmpdir)) == []


def test_sigterm_during_profile_stops_the_agent_and_removes_its_folder(tmp_path):
    tiny = build_tiny_models(tmp_path / "models")
    db = tmp_path / "r.db"
    proc, tmpdir, err = _start(["profile", str(tiny["gru-fp32"]), "--runs", "100000000", "--max-secs", "60",
                              "--db", str(db)], tmp_path)
    # The local target's work folder lives in TMPDIR; the agent runs from it.
    _wait_for(lambda: _processes_mentioning(str(tmpdir / "edgeseq-run-")), "the agent to start")
    time.sleep(0.5)
    _terminate_and_check(proc, tmpdir, err, str(tmpdir))
    assert not db.exists() or db.stat().st_size > 0


@pytest.mark.slow
def test_sigterm_during_convert_kills_the_converter_and_writes_nothing(tmp_path):
    from test_convert import zoo_model

    model = zoo_model("gru", tmp_path)
    out = tmp_path / "art"
    proc, tmpdir, err = _start(["convert", str(model), "--recipe", "int8", "--calibration", "random", "--out", str(out)], tmp_path)
    _wait_for(lambda: _processes_mentioning("edgeseq.quantize._child " + str(tmpdir)), "the conversion child")
    time.sleep(1.0)  # let it get into TensorFlow
    _terminate_and_check(proc, tmpdir, err, "edgeseq.quantize._child " + str(tmpdir))
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_training_leaves_no_run_directory(tmp_path):
    run_dir = tmp_path / "runs" / "gru"
    proc, tmpdir, err = _start(["train", "--model", "gru", "--preset", "tiny", "--dataset", "japanese_vowels",
                                   "--epochs", "500", "--patience", "500", "--out", str(run_dir)], tmp_path)
    _wait_for(lambda: b" epoch" in err.read_bytes(), "the first epoch")
    proc.send_signal(signal.SIGTERM)
    lines = _error_lines(proc, err)
    assert proc.returncode == 143, lines
    assert len(lines) == 1 and lines[0].startswith("error: terminated"), lines
    assert not run_dir.exists()
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
    assert sorted(os.listdir(tmpdir)) == []


# A Terminated that Python loses: raised inside a finalizer (printed as "Exception ignored" and dropped) or swallowed
# by a library's bare `except:`. Without sticky termination both scripts below run on to "ran on" (the CI run in
# which a SIGTERMed 500-epoch training did not stop within 60 s).
_LOST_IN_FINALIZER = """
class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(50):
            time.sleep(0.002)  # the handler runs here, inside __del__: its Terminated is dropped
obj = Finalized()
del obj
"""
_LOST_IN_BARE_EXCEPT = """
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)
except:  # noqa: E722 - what Keras's compile_utils does
    pass
"""
_CLEANUP_FINISHES = """
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)
finally:
    for _ in range(300):
        time.sleep(0.01)  # 3 s of cleanup, past several redeliveries: never interrupted
    print("cleanup done", flush=True)
"""


def _run_script(body: str) -> subprocess.CompletedProcess:
    script = ("import os, signal, sys, time\n"
              "from edgeseq.core.fsio import childproc\n"
              "childproc.install_signal_handlers()\n"
              "try:\n"
              + "".join("    " + line + "\n" for line in body.strip().splitlines())
              + "    for _ in range(1000):\n        time.sleep(0.01)\n"
              "    print('ran on', flush=True)\n"
              "except childproc.Terminated:\n"
              "    print('terminated', flush=True)\n"
              "    sys.exit(143)\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("body", [_LOST_IN_FINALIZER, _LOST_IN_BARE_EXCEPT], ids=["finalizer", "bare-except"])
def test_a_lost_terminated_is_raised_again(body):
    done = _run_script(body)
    assert done.stdout.split() == ["terminated"], (done.stdout, done.stderr)
    assert done.returncode == 143
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_cleanup_after_sigterm_is_not_interrupted_by_the_redelivery():
    done = _run_script(_CLEANUP_FINISHES)
    assert done.stdout.splitlines() == ["cleanup done", "terminated"], (done.stdout, done.stderr)
    assert done.returncode == 143
