"""A full disk, a read-only file system, an I/O error, a quota, too many open files: every verb that writes says so in
one line naming the path and the errno's meaning, exits 9 (DiskError), and leaves nothing partial behind: no file, no
empty folder it created, no half-made store.

Full and read-only file systems are real: a tmpfs of 8 KiB (or mounted read-only) at a folder of the test (root
only: without it those cases skip, saying so). EIO, EDQUOT and EMFILE cannot be made that way; they are injected into
`os.fsync` / `tempfile.mkstemp` in a CLI run in this process.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from _harness import private_box, run

from edgeseq.core.errors import DiskError

DISK_EXIT = DiskError.exit_code


@pytest.fixture
def box(tmp_path):
    work, _, env = private_box(tmp_path)
    return work, env


def _mount(where: Path, options: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): {proc.stderr.strip()[:120]}")
    return where


@pytest.fixture
def full_disk(tmp_path):
    """An 8 KiB tmpfs: a converted model, a store or a plot does not fit."""
    where = _mount(tmp_path / "full", "size=8k,mode=0777")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def read_only(tmp_path):
    where = _mount(tmp_path / "ro", "size=1m,ro")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _contents(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def check(res, where: Path, meaning: str = "no space left on device (ENOSPC)", plan: bool = False) -> str:
    """Exit 9, one `error:` line naming the errno and a path under `where`, nothing left there. `plan`: the verb
    prints its plan on stderr first (sweep): the error line is then the last of them."""
    lines = res.stderr_lines[-1:] if plan else res.stderr_lines
    assert res.returncode == DISK_EXIT, f"exit {res.returncode}\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert sum(ln.startswith("error:") for ln in res.stderr_lines) == 1, res.stderr
    assert meaning in lines[0] and str(where) in lines[0], lines[0]
    assert _contents(where) == [], f"left behind: {_contents(where)}"
    return lines[0]


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 3))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GRU(24)(inp))
    path = tmp_path_factory.mktemp("model") / "gru.keras"
    keras.Model(inp, out).save(path)
    return path


@pytest.fixture(scope="module")
def tflite(tmp_path_factory) -> Path:
    from test_hostile_store_targets import tiny_tflite

    return tiny_tflite(tmp_path_factory.mktemp("tfl") / "tiny.tflite")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    from test_hostile_store_targets import good_store

    return good_store(tmp_path_factory.mktemp("store") / "store.db", n=6)


# ------------------------------------------------------------------------------------------------ each verb
def test_convert_on_a_full_disk(box, full_disk, keras_model):
    work, env = box
    out = full_disk / "models"
    res = run(["convert", str(keras_model), "--recipe", "fp32", "--dataset", "random", "--out", str(out)],
              cwd=work, env=env, timeout=300)
    check(res, full_disk)


def test_convert_several_recipes_on_a_full_disk_keeps_none(box, full_disk, keras_model):
    work, env = box
    res = run(["convert", str(keras_model), "--recipe", "fp32,dynamic", "--dataset", "random", "--out",
               str(full_disk / "m")], cwd=work, env=env, timeout=300)
    check(res, full_disk)


def test_convert_on_a_read_only_file_system(box, read_only, keras_model):
    work, env = box
    res = run(["convert", str(keras_model), "--recipe", "fp32", "--dataset", "random", "--out", str(read_only / "m")],
              cwd=work, env=env, timeout=300)
    # refused before any work (check_output_dir sees it cannot be created) or as a DiskError: one line either way
    assert res.returncode in (2, DISK_EXIT) and len(res.stderr_lines) == 1, res.stderr
    assert "read-only" in res.stderr_lines[0].lower() or "not writable" in res.stderr_lines[0], res.stderr


def test_report_on_a_read_only_file_system(box, read_only, store):
    work, env = box
    res = run(["report", "--db", str(store), "--format", "html", "--out", str(read_only / "rep")], cwd=work, env=env,
              timeout=300)
    check(res, read_only, "read-only file system (EROFS)")


@pytest.mark.slow
def test_convert_stream_on_a_full_disk(box, full_disk, keras_model):
    work, env = box
    res = run(["convert", str(keras_model), "--stream", "--recipe", "fp32", "--dataset", "random", "--out",
               str(full_disk / "s")], cwd=work, env=env, timeout=300)
    check(res, full_disk)


@pytest.mark.slow
def test_train_on_a_full_disk(box, full_disk):
    work, env = box
    res = run(["train", "--arch", "gru", "--preset", "tiny", "--dataset", "japanese_vowels", "--epochs", "1",
               "--out", str(full_disk / "runs" / "gru")], cwd=work, env=env, timeout=300)
    check(res, full_disk)


def test_profile_store_on_a_full_disk(box, full_disk, tflite):
    work, env = box
    res = run(["profile", str(tflite), "--target", "local", "--runs", "3", "--warmup", "1", "--db",
               str(full_disk / "db" / "results.db")], cwd=work, env=env, timeout=300)
    check(res, full_disk)


@pytest.mark.parametrize("schema", ["current", "v1"])
def test_profile_into_a_store_that_fills_up_keeps_it_whole(box, tmp_path, tflite, store, schema):
    """The store exists on a nearly full disk: the run is refused, the store keeps every earlier run, unchanged; an
    old (v1) store that would be migrated first is not left half-migrated."""
    work, env = box
    source = tmp_path / "source.db"
    source.write_bytes(store.read_bytes())
    if schema == "v1":  # as edgeseq wrote it before sweeps: no ledger table, user_version 1
        conn = sqlite3.connect(source)
        conn.execute("DROP TABLE sweep_cells")
        conn.execute("PRAGMA user_version = 1")
        conn.close()
    size = source.stat().st_size // 1024 + 128  # room for the WAL index when the test reads it back
    where = _mount(tmp_path / "near", f"size={size}k,mode=0777")
    try:
        db = where / "results.db"
        db.write_bytes(source.read_bytes())
        filler = where / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # fill the rest
            while True:
                os.write(fd, b"\0" * 1024)
        except OSError:
            pass
        finally:
            os.close(fd)
        res = run(["profile", str(tflite), "--target", "local", "--runs", "200", "--warmup", "1", "--db", str(db)],
                  cwd=work, env=env, timeout=300)
        filler.unlink()
        assert res.returncode == DISK_EXIT and len(res.stderr_lines) == 1, res.stderr
        assert str(db) in res.stderr_lines[0], res.stderr_lines[0]
        assert sorted(p.name for p in where.iterdir()) == ["results.db"], list(where.iterdir())
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 6
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        conn.close()
        assert (version, "sweep_cells" in tables) == ((1, False) if schema == "v1" else (version, True))
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("fmt", ["html", "csv"])
def test_report_on_a_full_disk(box, full_disk, store, fmt):
    work, env = box
    res = run(["report", "--db", str(store), "--format", fmt, "--out", str(full_disk / "rep")], cwd=work, env=env,
              timeout=300)
    check(res, full_disk)  # html: the plots do not fit; csv: the report is written with its plots


def test_deploy_local_side_on_a_full_disk(box, full_disk, tflite):
    """deploy's local side writes the agent's .pyz into the cache: a full cache disk is one line, nothing left."""
    work, env = box
    tmp = full_disk / "tmp"  # the agent falls back to the temp folder: that one is full too
    tmp.mkdir()
    env = dict(env, XDG_CACHE_HOME=str(full_disk / "cache"), EDGESEQ_CACHE_DIR=str(full_disk / "cache" / "edgeseq"),
               TMPDIR=str(tmp))
    res = run(["deploy", str(tflite), "--target", "local"], cwd=work, env=env, timeout=300)
    tmp.rmdir()  # empty: the test's own folder
    check(res, full_disk)


@pytest.mark.slow
def test_sweep_on_a_full_disk(box, full_disk, tmp_path):
    work, env = box
    res = run(["sweep", "--mode", "cost", "--arch", "gru", "--preset", "tiny", "--seq-len", "8", "--recipe", "fp32",
               "--target", "local", "--runs", "3", "--warmup", "1", "--out", str(full_disk / "sw"), "--db",
               str(tmp_path / "sw.db")], cwd=work, env=env, timeout=500)
    check(res, full_disk, plan=True)


# ------------------------------------------------------------------------------------- injected errnos
@pytest.mark.parametrize("code,name", [(errno.EIO, "EIO"), (errno.EDQUOT, "EDQUOT"), (errno.ENOSPC, "ENOSPC")])
def test_an_injected_write_error_is_one_line_with_its_meaning(code, name, tmp_path, store, capsys, monkeypatch):
    from _cli import run_cli

    def fail(_fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)
    out = tmp_path / "a" / "b"
    rc, _, err = run_cli(["report", "--db", str(store), "--format", "csv", "--out", str(out)], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == DISK_EXIT and len(lines) == 1, err
    assert f"{os.strerror(code).lower()} ({name}) writing {out}" in lines[0], lines[0]
    assert not (tmp_path / "a").exists()  # the folders it created are gone again


def test_too_many_open_files_is_one_line_with_its_fix(tmp_path, store, capsys, monkeypatch):
    import tempfile

    from _cli import run_cli

    def fail(*_a, **_k):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(tempfile, "mkstemp", fail)
    rc, _, err = run_cli(["report", "--db", str(store), "--format", "csv", "--out", str(tmp_path / "r")], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert rc == DISK_EXIT and line and "(EMFILE)" in line[0] and "ulimit -n" in line[0], err
    assert not (tmp_path / "r").exists()


def test_sqlite_disk_full_maps_to_enospc():
    from edgeseq.core.fsio.oserrors import disk_error

    exc = sqlite3.OperationalError("database or disk is full")
    err = disk_error(exc, "/x/results.db")
    assert err is not None and "(ENOSPC) writing /x/results.db" in err.one_line()
    assert disk_error(ValueError("no")) is None
