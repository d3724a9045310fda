"""The session's conversion cache (tests/_zoo_cache.py) shared between processes, as `make test`'s two pytest-xdist
workers share it: an entry is made once, by whoever takes its file lock first; the others read its result, its error
too; a prefetching process skips what another one is making. No TensorFlow: the entries here are tiny functions."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _zoo_cache import ConversionCache, summary

TESTS = Path(__file__).resolve().parent

# A second process asking for the same entry (`make` notes each call in calls.txt, then sleeps so they overlap).
_OTHER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from _zoo_cache import ConversionCache

root, key = Path(sys.argv[2]), ("shared", 1)

def make(folder):
    with open(root.parent / "calls.txt", "a") as f:
        f.write(f"{folder.name}\\n")
    time.sleep(1.5)
    (folder / "model.tflite").write_bytes(b"tfl3")
    return {"path": folder / "model.tflite", "n": 7}

try:
    print(ConversionCache(root).get(key, make)["n"])
except ValueError as exc:
    print("error:", exc)
"""


def _others(tmp_path: Path, script: str, n: int) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-c", script, str(TESTS), str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return [out.strip() for out, _ in outs]


def test_processes_make_an_entry_once_and_all_read_its_result(tmp_path):
    assert _others(tmp_path, _OTHER, 3) == ["7", "7", "7"]
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1
    here = ConversionCache(tmp_path / "cache").get(("shared", 1), lambda _: pytest.fail("made twice"))
    assert here["path"].read_bytes() == b"tfl3" and ("shared", 1) in ConversionCache(tmp_path / "cache")
    assert summary(tmp_path / "cache")[0].startswith("conversion cache: 1 entries")


def test_an_entrys_error_reaches_every_process(tmp_path):
    failing = _OTHER.replace('return {"path"', 'raise ValueError("no such op")\n    return {"path"')
    assert _others(tmp_path, failing, 2) == ["error: no such op"] * 2
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1
    with pytest.raises(ValueError, match="no such op"):
        ConversionCache(tmp_path / "cache").get(("shared", 1), lambda _: pytest.fail("made twice"))


def test_prefetch_skips_an_entry_another_process_is_making_and_get_waits_for_it(tmp_path):
    maker, reader = ConversionCache(tmp_path / "c"), ConversionCache(tmp_path / "c")
    busy = maker._paths(("busy",))[2]
    made: list[str] = []
    with open(busy, "a+") as lock:  # as another process would hold it while it converts
        fcntl.flock(lock, fcntl.LOCK_EX)
        reader.prefetch({("busy",): lambda _: made.append("busy"), ("free",): lambda _: made.append("free") or 2})
        assert made == ["free"]  # returned without waiting for the busy one
        got: list = []
        waiter = threading.Thread(target=lambda: got.append(reader.get(("busy",), lambda _: "made by the reader")))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and not got  # a test that needs it waits on the lock
        maker._store(maker._paths(("busy",))[1], ("busy",), "ok", "made by the maker", 1.0)
    waiter.join(30)
    assert got == ["made by the maker"] and reader.get(("free",), lambda _: 3) == 2
