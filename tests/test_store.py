"""The SQLite results store: round trips, schema versioning and migration, transactions, two writers at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeseq.core.errors import StoreError
from edgeseq.store import results as store_mod
from edgeseq.store.results import SCHEMA_VERSION, ResultsStore, pack_samples, unpack_samples


def record(i: int = 0, target: str = "local") -> dict:
    samples = [1000 + i + k for k in range(50)]
    return {
        "target": target,
        "device_key": "host/x86_64/cpu",
        "device_json": {"hostname": "host", "machine": "x86_64"},
        "model_path": f"/m/model{i}.tflite",
        "model_name": f"model{i}",
        "model_sha256": f"{i:064x}",
        "model_size_bytes": 1234,
        "manifest_json": {"recipe": "int8"},
        "recipe": "int8",
        "options_json": {"runs": 50, "threads": 1},
        "stats_json": {"p50_us": float(np.median(samples)) / 1e3},
        "p50_us": float(np.median(samples)) / 1e3,
        "samples": samples,
        "warmup": [5000, 4000],
    }


def test_run_round_trips_with_samples_and_json(tmp_path):
    with ResultsStore(tmp_path / "r.db") as s:
        rid = s.add_run(record(3))
        run = s.get_run(rid)
    assert run["model_name"] == "model3" and run["manifest"] == {"recipe": "int8"}
    assert run["options"]["threads"] == 1 and run["device"]["machine"] == "x86_64"
    assert run["samples"].tolist() == record(3)["samples"] and run["warmup"].tolist() == [5000, 4000]
    assert run["created_at"].endswith("+00:00")


def test_samples_are_stored_compactly():
    samples = np.random.default_rng(0).integers(30_000, 40_000, 10_000)
    blob = pack_samples(samples)
    assert len(blob) < samples.size * 8 * 0.5
    assert np.array_equal(unpack_samples(blob), samples)


def test_schema_is_versioned_and_wal(tmp_path):
    with ResultsStore(tmp_path / "r.db") as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_is_refused_not_misread(tmp_path):
    db = tmp_path / "r.db"
    ResultsStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer edgeseq"):
        ResultsStore(db)


def test_migration_hook_upgrades_an_old_store_in_place(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    with ResultsStore(db) as s:
        s.add_run(record(1))

    def v1_to_v2(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'migrated'")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, v1_to_v2])
    with ResultsStore(db) as s:
        assert s.schema_version == SCHEMA_VERSION + 1
        assert s.conn.execute("SELECT note, model_name FROM runs").fetchall() == [("migrated", "model1")]
    with ResultsStore(db) as s:  # applied once
        assert s.schema_version == SCHEMA_VERSION + 1


def test_interrupted_write_loses_only_that_run(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    with ResultsStore(db) as s:
        s.add_run(record(1))
        s.add_run(record(2))
    s = ResultsStore(db)
    real = s.conn

    class Interrupting:
        def execute(self, sql, *a):
            if sql.startswith("INSERT"):
                real.execute(sql, *a)  # the row is written inside the transaction, then Ctrl-C arrives
                raise KeyboardInterrupt
            return real.execute(sql, *a)

    s.conn = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        s.add_run(record(3))
    s.conn = real
    s.close()
    with ResultsStore(db) as s:
        assert [r["model_name"] for r in s.runs()] == ["model1", "model2"]
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_store import record
    from edgeseq.store.results import ResultsStore
    s = ResultsStore(sys.argv[1])
    for i in range(int(sys.argv[3])):
        s.add_run(record(i, target=sys.argv[2]))
    s.close()
    """
)


def test_two_processes_writing_at_once_do_not_corrupt_it(tmp_path):
    db = tmp_path / "shared.db"
    code = WRITER.format(tests=str(__import__("pathlib").Path(__file__).parent))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db), name, "60"]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with ResultsStore(db) as s:
        runs = s.runs()
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(runs) == 120
    assert sorted({r["target"] for r in runs}) == ["a", "b"]
    assert len({r["id"] for r in runs}) == 120


def test_many_writers_creating_a_new_store_at_once_all_succeed(tmp_path):
    # SQLite answers a concurrent journal-mode switch with "database is locked" at once, without its busy
    # handler; a fleet's threads open the same new store together (this failed ~1 time in 10 before).
    import threading

    errors: list[str] = []

    def writer(db, i):
        try:
            with ResultsStore(db) as s:
                s.add_run(record(i))
        except StoreError as exc:
            errors.append(exc.message)

    for trial in range(40):
        db = tmp_path / f"new{trial}.db"
        threads = [threading.Thread(target=writer, args=(db, i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        with ResultsStore(db) as s:
            assert s.count() == 4


def test_a_killed_writer_leaves_a_consistent_store(tmp_path):
    db = tmp_path / "r.db"
    code = WRITER.format(tests=str(__import__("pathlib").Path(__file__).parent))
    p = subprocess.Popen([sys.executable, "-c", code, str(db), "k", "100000"])
    import time

    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    if c.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 20:
                        break
            except sqlite3.OperationalError:
                continue
    p.kill()
    p.wait()
    with ResultsStore(db) as s:
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = s.count()
        assert n >= 20
        assert all(len(r["samples"]) == 50 for r in s.runs(with_samples=True))


def test_unwritable_path_is_a_one_line_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError) as exc:
        ResultsStore(blocker / "sub" / "results.db")
    assert "\n" not in exc.value.one_line() and "--db" in exc.value.one_line()


def test_corrupt_or_missing_store(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use"):
        ResultsStore(bad)
    assert bad.read_bytes().startswith(b"this is not sqlite")  # never overwritten
    with pytest.raises(StoreError, match="no results store"):
        ResultsStore(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


# ------------------------------------------------------------------------------------------ damage and refusal
def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _store_with(db, n: int = 3) -> None:
    with ResultsStore(db) as s:
        for i in range(n):
            s.add_run(record(i))


def _sql(db, *statements: str) -> None:
    conn = sqlite3.connect(db)
    for q in statements:
        conn.execute(q)
    conn.commit()
    conn.close()


def test_a_read_never_writes_the_store_or_beside_it(tmp_path):
    db = tmp_path / "r.db"
    _store_with(db)
    before = _files(tmp_path)
    with ResultsStore(db, create=False) as s:
        assert len(s.runs(with_samples=True)) == 3 and s.count() == 3
        with pytest.raises(sqlite3.OperationalError):  # query_only: a read connection cannot write by mistake
            s.conn.execute("DELETE FROM runs")
        with pytest.raises(StoreError, match="opened for reading"):
            s.add_run(record(9))
    assert _files(tmp_path) == before  # WAL store: no -wal/-shm left behind, not a byte changed


def test_damaged_rows_are_skipped_and_counted(tmp_path):
    db = tmp_path / "r.db"
    _store_with(db, 6)
    _sql(
        db,
        "UPDATE runs SET stats_json = '{nope' WHERE id = 2",
        "UPDATE runs SET samples = x'00112233' WHERE id = 3",
        "UPDATE runs SET model_name = CAST(x'fffe41' AS TEXT) WHERE id = 4",
        "UPDATE runs SET options_json = '{\"threads\": [1]}' WHERE id = 5",
        "UPDATE runs SET stats_json = '" + "[" * 100_000 + "' WHERE id = 6",
    )
    with ResultsStore(db, create=False) as s:
        assert [r["id"] for r in s.runs()] == [1]
        assert sorted(s.damaged) == [2, 3, 4, 5, 6]
        note = s.damage_note()
        assert note.startswith("5 damaged rows skipped in ") and "\n" not in note and "run #2" in note
        with pytest.raises(StoreError, match=r"run #3 .* is damaged"):
            s.get_run(3)
        assert s.get_run(2**70) is None and s.get_run(1)["id"] == 1


def test_nothing_usable_left_is_a_store_error(tmp_path):
    db = tmp_path / "r.db"
    _store_with(db, 2)
    _sql(db, "UPDATE runs SET stats_json = 'null'")
    with ResultsStore(db, create=False) as s, pytest.raises(StoreError, match="every stored run") as exc:
        s.runs()
    assert "backup" in exc.value.one_line() and str(db) in exc.value.one_line()


@pytest.mark.parametrize("kind", ["foreign", "newer", "runs-lookalike", "btree", "garbage"])
def test_a_refused_store_is_left_exactly_as_it_was(tmp_path, kind):
    db = tmp_path / "r.db"
    if kind == "garbage":
        db.write_bytes(b"not sqlite" * 500)
    elif kind == "foreign":
        _sql(db, "CREATE TABLE notes(x)", "INSERT INTO notes VALUES (1)")  # rollback-journal mode, like most apps
    elif kind == "runs-lookalike":
        _sql(db, "CREATE TABLE runs(x)", "PRAGMA user_version = 1")
    elif kind == "newer":
        _sql(db, "CREATE TABLE t(x)", f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    else:
        _store_with(db, 40)
        conn = sqlite3.connect(db)
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        data = bytearray(db.read_bytes())
        data[(root - 1) * page : (root - 1) * page + 12] = b"\xff" * 12
        db.write_bytes(bytes(data))
    before = _files(tmp_path)
    def read():
        with ResultsStore(db, create=False) as s:
            s.runs()

    for attempt in (lambda: ResultsStore(db), lambda: store_mod.preflight(db), read):
        with pytest.raises(StoreError) as exc:
            attempt()
        line = exc.value.one_line()
        assert str(db) in line and "\n" not in line
    assert _files(tmp_path) == before  # not switched to WAL, not migrated, nothing beside it


def test_a_new_store_appears_whole_and_preflight_creates_nothing(tmp_path):
    db = tmp_path / "sub" / "results.db"
    assert store_mod.preflight(db) == db and not (tmp_path / "sub").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        store_mod.preflight(tmp_path / "file" / "r.db")
    with ResultsStore(db) as s:
        assert s.schema_version == SCHEMA_VERSION and s.count() == 0
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.startswith("results.db-")) == ["results.db"]


def test_samples_bombs_and_garbage_are_refused_in_bounded_memory():
    import zlib

    bomb = zlib.compress(b"\0" * (store_mod.MAX_SAMPLES_BYTES + 8), 9)
    assert len(bomb) < 1 << 20
    with pytest.raises(StoreError, match="more than"):
        unpack_samples(bomb)
    with pytest.raises(StoreError, match="truncated"):
        unpack_samples(pack_samples([1, 2, 3])[:-4])
    with pytest.raises(StoreError, match="do not decompress"):
        unpack_samples(b"\x00\x01\x02")
