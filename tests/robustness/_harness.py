"""The hostile-input promise, checked in one place.

`run_hostile(...)` runs `python -m edgeseq.cli ARGS` in a scratch working directory with a private TMPDIR and
asserts what the project's contract promises for bad input: exactly one line on stderr starting with ``error: ``
(or the documented ``interrupted``/``terminated`` line for signals), the documented non-zero exit code, no traceback,
bounded wall time and peak RSS, no new or changed files in the watched folders and nothing left in TMPDIR.

Corpus files are generated at test time by the test modules beside this one (no checked-in binaries).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeseq.core.progress import is_progress_line

# Bounds for one hostile case. A TensorFlow import alone costs ~0.5 GB of RSS and ~5 s on 2 shared cores.
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_RSS_MB = 1500.0


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    max_rss_mb: float

    @property
    def stderr_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip() and not is_progress_line(ln)]


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under `roots` (recursively) with its size and mtime: what 'nothing written' is checked against."""
    seen: dict[str, tuple[int, int]] = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                seen[str(p)] = (st.st_size, st.st_mtime_ns)
    return seen


# The peak RSS Linux reports for a child (wait4's ru_maxrss) includes the memory of the process it was forked from
# (a pytest process that imported TensorFlow: ~0.6 GB). So the command runs under this tiny launcher, forked from
# a fresh small interpreter, which reports its child's own peak (RUSAGE_CHILDREN) and exit status to a file.
_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(f'{rc} {kb}')\n"
)


def run(args: list[str], *, cwd: Path, env: dict | None = None, timeout: float = DEFAULT_TIMEOUT_S,
        stdin: str | None = None) -> Outcome:
    """Run the CLI; its own peak RSS comes from the launcher (so earlier processes' memory does not count)."""
    tmpdir = Path(cwd) / ".tmp"
    tmpdir.mkdir(exist_ok=True)
    full_env = {**os.environ, "TMPDIR": str(tmpdir), **(env or {})}  # env may set TMPDIR itself
    out_path, err_path, rep_path = Path(cwd) / ".stdout", Path(cwd) / ".stderr", Path(cwd) / ".rusage"
    started = time.monotonic()
    argv = [sys.executable, "-c", _LAUNCHER, str(rep_path), sys.executable, "-m", "edgeseq.cli", *args]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=out, stderr=err,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                start_new_session=True)
        if stdin is not None:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise AssertionError(f"edgeseq {' '.join(args)} still running after {timeout} s") from None
    wall = time.monotonic() - started
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    rc, kb = (int(v) for v in rep_path.read_text().split())
    for p in (out_path, err_path, rep_path):
        p.unlink()
    return Outcome(rc, stdout, stderr, wall, kb / 1024)


def private_box(tmp_path: Path, **extra: str) -> tuple[Path, Path, dict]:
    """(working directory, private HOME, env) for a case: the user's real config, caches and Keras home kept out."""
    work, home = tmp_path / "work", tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    work.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "EDGESEQ_TARGETS_FILE": str(home / "t.toml"),
           "PYTHONDONTWRITEBYTECODE": "1", "MPLCONFIGDIR": str(tmp_path / "mpl"),
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "EDGESEQ_CACHE_DIR": str(tmp_path / "cache" / "edgeseq"),
           "KERAS_HOME": str(tmp_path / "keras"), **extra}
    return work, home, env


def run_hostile(args: list[str], *, cwd: Path, code: int | tuple[int, ...], watch: tuple[Path, ...] = (),
                contains: str | tuple[str, ...] = (), env: dict | None = None,
                timeout: float = DEFAULT_TIMEOUT_S, max_rss_mb: float = DEFAULT_MAX_RSS_MB,
                stdin: str | None = None) -> Outcome:
    """Run a hostile case and assert the whole promise; returns the outcome for extra checks.

    `watch`: folders that must hold exactly the same files afterwards (cwd is always watched, minus its .tmp);
    `contains`: substrings the one error line must hold (case-insensitive), e.g. the problem's name.
    """
    cwd = Path(cwd)
    roots = (cwd, *watch)
    before = snapshot(*roots)
    res = run(args, cwd=cwd, env=env, timeout=timeout, stdin=stdin)
    label = f"edgeseq {' '.join(map(str, args))}"
    codes = (code,) if isinstance(code, int) else code
    assert res.returncode in codes, f"{label}: exit {res.returncode}, expected {codes}\n{res.stderr}"
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, f"{label}: traceback\n{res.stderr}"
    lines = res.stderr_lines
    assert len(lines) == 1, f"{label}: {len(lines)} stderr lines, expected 1\n{res.stderr}"
    assert lines[0].startswith("error: "), f"{label}: not an error line: {lines[0]!r}"
    for needle in (contains,) if isinstance(contains, str) else contains:
        assert needle.lower() in lines[0].lower(), f"{label}: {needle!r} not in {lines[0]!r}"
    assert res.max_rss_mb < max_rss_mb, f"{label}: peak RSS {res.max_rss_mb:.0f} MB >= {max_rss_mb} MB"
    after = snapshot(*roots)
    tmp_prefix = str(cwd / ".tmp")
    changed = sorted(p for p in set(before) ^ set(after) | {p for p in before if p in after and before[p] != after[p]}
                     if not p.startswith(tmp_prefix))
    assert not changed, f"{label}: files written or changed: {changed}"
    leftovers = sorted(os.listdir(cwd / ".tmp"))
    assert not leftovers, f"{label}: left in TMPDIR: {leftovers}"
    return res
