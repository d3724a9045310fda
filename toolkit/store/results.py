"""The results store: one SQLite row per profile run, with everything needed to trust or redo the figure.

Why SQLite: one file, no server, transactions. WAL mode plus a busy timeout lets two `edgeseq profile` processes
write at once; every run is committed on its own (`BEGIN IMMEDIATE ... COMMIT`), so Ctrl-C or a crash loses at most
the run in flight. The schema, its migrations and how a new store is created are in `store_schema`; the samples
codec and the checked decoding of each row in `store_rows`.

Damage is expected, not fatal. A store is opened for reading (`create=False`: report, compare) with `query_only`,
so a read never changes it, and never migrates it. Opening one for writing checks it first, read-only (another
application's database, a newer schema, a damaged b-tree: refused before anything is written to it), and a new
store appears atomically, so a failed run leaves nothing. A damaged row is skipped and counted (`damage_note()`);
when nothing usable remains, the read is a StoreError. Any `sqlite3` error becomes a StoreError that names the
file and the fix.
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from edgeseq.core.errors import EdgeseqError, StoreError
from edgeseq.store.rows import (
    MAX_SAMPLES_BYTES,
    SAMPLES_CODEC,
    decode_checked,
    encode_record,
    pack_samples,
    text_factory,
    unpack_samples,
)
from edgeseq.store.schema import (
    BUSY_TIMEOUT_S,
    MIGRATIONS,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    create_atomically,
    enable_wal,
    inspect_schema,
    integrity_problem,
    migrate,
    reason,
    store_error,
    table_names,
)

READ_HINT = "restore it from a backup, or point --db at a new file; the store is never modified by a read"
WRITE_HINT = "restore it from a backup, or point --db at a new file; nothing was written to it"

__all__ = [
    "BUSY_TIMEOUT_S",
    "MAX_SAMPLES_BYTES",
    "MIGRATIONS",
    "REQUIRED_COLUMNS",
    "SAMPLES_CODEC",
    "SCHEMA_VERSION",
    "ResultsStore",
    "default_db_path",
    "pack_samples",
    "preflight",
    "unpack_samples",
]


def default_db_path() -> Path:
    return Path.cwd() / ".edgeseq" / "results.db"


class ResultsStore:
    """Open a results database; use as a context manager.

    `create=True` (profile): open for writing, creating the store (atomically) when absent; a foreign, newer or
    damaged database is refused before anything is written to it. `create=False` (report, compare): read only;
    the file is never created, migrated or changed, and damaged rows are skipped and counted (`damage_note()`).
    """

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        self.path = Path(path) if path is not None else default_db_path()
        self.writable = create
        self.damaged: dict[object, str] = {}  # row id -> why it was skipped
        fresh = [p for p in (Path(f"{self.path}-wal"), Path(f"{self.path}-shm")) if not p.exists()]
        try:
            self._open(create)
        except EdgeseqError:
            # a refused open (a full disk) leaves the store as it was: an empty WAL and its index made just now go
            try:
                if all(not p.exists() or p.stat().st_size == 0 or p.name.endswith("-shm") for p in fresh):
                    for p in fresh:
                        p.unlink(missing_ok=True)
            except OSError:  # a path under a file, a folder gone: nothing of ours to take away there
                pass
            raise

    def _open(self, create: bool) -> None:
        if not create:
            if not self.path.exists():
                raise StoreError(f"no results store at {self.path}", "run `edgeseq profile` first, or pass --db")
            if not self.path.is_file():
                raise StoreError(f"the results store {self.path} is not a file", "point --db at a results file")
            self.conn = self._connect(READ_HINT)
            self._guard(self._inspect, "read", READ_HINT)
            return
        if not self.path.exists():
            create_atomically(self.path, MIGRATIONS)
        elif not self.path.is_file():
            raise StoreError(f"the results store {self.path} is not a file", "choose a file path with --db")
        self.conn = self._connect("choose a writable path with --db")
        self._guard(self._open_for_writing, "use", "choose a writable path with --db, or move the damaged file away")

    # ------------------------------------------------------------------ opening
    def _connect(self, hint: str) -> sqlite3.Connection:
        """An existing file, never created here, opened with query_only on: nothing is written until it is lifted."""
        uri = f"file:{quote(str(self.path.absolute()))}?mode=rw"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.text_factory = text_factory
            conn.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error) as exc:
            raise store_error(f"cannot open the results store {self.path}: {reason(exc)}", hint, exc,
                              self.path) from None
        return conn

    def _guard(self, step: Callable[[], None], verb: str, hint: str) -> None:
        try:
            step()
        except StoreError:
            self.conn.close()
            raise
        except sqlite3.Error as exc:
            self.conn.close()
            raise store_error(f"cannot {verb} the results store {self.path}: {reason(exc)}", hint, exc,
                              self.path) from None

    def _inspect(self) -> None:
        """Refuse what is not an edgeseq store this version can read; reads only."""
        inspect_schema(self.conn, self.path, MIGRATIONS)

    def check_integrity(self) -> None:
        """PRAGMA quick_check (reads only): a damaged b-tree is refused before a write could make it worse."""
        problem = integrity_problem(self.conn)
        if problem is not None:
            raise StoreError(f"the results store {self.path} is damaged ({problem})", WRITE_HINT)

    def _open_for_writing(self) -> None:
        self._inspect()
        self.check_integrity()
        self.conn.execute("PRAGMA query_only = OFF")
        enable_wal(self.conn)
        self._migrate()

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        migrate(self.conn, MIGRATIONS)

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # ------------------------------------------------------------------ writing
    def add_run(self, record: dict) -> int:
        """Insert one run in its own transaction; returns its id. `record` keys are column names;
        `samples`/`warmup` are lists of ns; *_json values may be dicts."""
        if not self.writable:
            raise StoreError(f"the results store {self.path} was opened for reading", "open it with create=True")
        row = encode_record(record)
        cols = list(row)
        sql = f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self.conn.execute(sql, [row[c] for c in cols])
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise store_error(f"cannot write to the results store {self.path}: {reason(exc)}",
                              "choose a writable path with --db", exc, self.path) from None
        return int(cur.lastrowid)

    # ------------------------------------------------------------------ reading
    def runs(self, target: str | None = None, with_samples: bool = False) -> list[dict]:
        """Every usable run (oldest first), decoded; damaged rows are skipped and counted in `damaged`.

        Every column of every row is decoded and checked whether or not `with_samples` is asked, so a row is damaged
        or not the same way for every caller. When rows exist but none is usable, StoreError."""
        sql = "SELECT * FROM runs"
        args: list = []
        if target:
            sql += " WHERE target = ?"
            args.append(target)
        sql += " ORDER BY id"
        out: list[dict] = []
        total = 0
        skipped: list[str] = []
        cur = None
        try:
            if "runs" not in self._tables():
                return []
            cur = self.conn.execute(sql, args)
            names = [d[0] for d in cur.description]
            for values in cur:
                total += 1
                row, why = decode_checked(dict(zip(names, values, strict=True)))
                if row is None:
                    skipped.append(why)
                    self.damaged[values[names.index("id")] if "id" in names else f"row {total}"] = why
                    continue
                if not with_samples:
                    row.pop("samples", None)
                    row.pop("warmup", None)
                out.append(row)
        except sqlite3.Error as exc:
            raise self._read_error(exc) from None
        finally:
            _close(cur)
        if total and not out:
            where = f" on target {target!r}" if target else ""
            raise StoreError(
                f"every stored run{where} in {self.path} is damaged ({total} rows; {skipped[0]})", READ_HINT
            )
        return out

    def get_run(self, run_id: int) -> dict | None:
        """One run by id (None when there is none); a damaged row is a StoreError naming it."""
        if isinstance(run_id, bool) or not isinstance(run_id, int) or not 0 <= run_id < 2**63:
            return None
        cur = None
        try:
            if "runs" not in self._tables():
                return None
            cur = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
            values = cur.fetchone()
            names = [d[0] for d in cur.description]
        except sqlite3.Error as exc:
            raise self._read_error(exc) from None
        finally:
            _close(cur)
        if values is None:
            return None
        row, why = decode_checked(dict(zip(names, values, strict=True)))
        if row is None:
            self.damaged[run_id] = why
            raise StoreError(f"run #{run_id} in {self.path} is damaged ({why})", READ_HINT)
        return row

    def count(self) -> int:
        try:
            if "runs" not in self._tables():
                return 0
            return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._read_error(exc) from None

    # ------------------------------------------------------------------ the sweep's ledger
    def put_cell(self, key: str, sweep: str, status: str, config: dict, *, run_id: int | None = None,
                 why: str | None = None, result: dict | None = None) -> None:
        """Record one sweep cell (replacing an earlier record of the same key) in its own transaction."""
        if not self.writable:
            raise StoreError(f"the results store {self.path} was opened for reading", "open it with create=True")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        values = (key, sweep, now, status, why, run_id, json.dumps(config, sort_keys=True),
                  json.dumps(result, sort_keys=True, default=str) if result is not None else None)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.execute("INSERT OR REPLACE INTO sweep_cells (key, sweep, created_at, status, reason, run_id, "
                                  "config_json, result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise store_error(f"cannot write to the results store {self.path}: {reason(exc)}",
                              "choose a writable path with --db", exc, self.path) from None

    def cells(self) -> dict[str, dict]:
        """Every readable sweep cell by key (none in a store from before sweeps); a damaged row is skipped and
        counted like a damaged run."""
        out: dict[str, dict] = {}
        cur = None
        try:
            if "sweep_cells" not in self._tables():
                return out
            cur = self.conn.execute("SELECT key, sweep, created_at, status, reason, run_id, config_json, result_json "
                                    "FROM sweep_cells")
            for key, sweep, created, status, why, run_id, config, result in cur:
                try:
                    cell = {"key": str(key), "sweep": sweep, "created_at": created, "status": status, "reason": why,
                            "run_id": run_id, "config": json.loads(config),
                            "result": json.loads(result) if result else {}}
                    if status not in ("ok", "failed") or not isinstance(cell["config"], dict):
                        raise ValueError(f"cell status {status!r}")
                except (TypeError, ValueError) as exc:
                    self.damaged[f"cell {key}"] = f"sweep cell {key}: {exc}"
                    continue
                out[cell["key"]] = cell
        except sqlite3.Error as exc:
            raise self._read_error(exc) from None
        finally:
            _close(cur)
        return out

    def damage_note(self) -> str | None:
        """One line for the user when reads skipped damaged rows, else None."""
        if not self.damaged:
            return None
        n = len(self.damaged)
        first = next(iter(self.damaged.values()))
        return (
            f"{n} damaged row{'s' if n != 1 else ''} skipped in {self.path} ({first}); "
            "restore the store from a backup to see them"
        )

    def _tables(self) -> set[str]:
        return table_names(self.conn)

    def _read_error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot read the results store {self.path}: {reason(exc)}", READ_HINT)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def preflight(path: str | os.PathLike | None = None) -> Path:
    """Before any measuring: will a result be storable at `path`? Reads only and creates nothing (the store is
    created when the first result is written). Returns the path; StoreError names the problem and the fix."""
    path = Path(path) if path is not None else default_db_path()
    if path.exists():
        with ResultsStore(path, create=False) as store:
            store._guard(store.check_integrity, "read", WRITE_HINT)
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"the results store {path} is not writable", "choose a writable path with --db")
        return path
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(
            f"cannot create the results store {path}: {folder} is not a folder", "choose a writable path with --db"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot create the results store {path}: {folder} is not writable", "choose a writable path with --db"
        )
    return path


def _close(cursor: sqlite3.Cursor | None) -> None:
    """Finalize a cursor's statement now. Python 3.11 closes a connection with sqlite3_close_v2, which waits for every
    live statement; a cursor kept alive by a traceback would leave the connection open at exit, and with it a WAL
    store's -wal/-shm files beside a store that was only read."""
    if cursor is not None:
        try:
            cursor.close()
        except sqlite3.Error:
            pass
