"""The results store: one SQLite row per profile run, with everything needed to trust or redo the figure.

Why SQLite: one file, no server, transactions. The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]`
moves a database from version i to i+1, each in its own transaction, so an older store is upgraded in place and a
newer one is refused instead of misread. WAL mode plus a busy timeout lets two `edgeseq profile` processes write at
once; every run is committed on its own (`BEGIN IMMEDIATE ... COMMIT`), so Ctrl-C or a crash loses at most the run
in flight. Raw samples are kept (int64 little-endian, zlib) so any statistic can be recomputed later.

Damage is expected, not fatal. A store is opened for reading (`create=False`: report, compare) with `query_only`,
so a read never changes it, and never migrates it. Opening one for writing checks it first, read-only (another
application's database, a newer schema, a damaged b-tree: refused before anything is written to it), and a new
store appears atomically (built beside its path, then linked into place), so a failed run leaves nothing. Every row
is decoded defensively: a row whose JSON does not parse, whose samples do not decompress or whose fields have the
wrong type is skipped and counted (`damage_note()`); when nothing usable remains, the read is a StoreError. Any
`sqlite3` error becomes a StoreError that names the file and the fix.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from edgeseq.errors import StoreError

SCHEMA_VERSION = 1
SAMPLES_CODEC = "i8le+zlib"
BUSY_TIMEOUT_S = 30.0
MAX_SAMPLES_BYTES = 1 << 27  # 16 M samples per run: more is a damaged (or hostile) blob, not a measurement

READ_HINT = "restore it from a backup, or point --db at a new file; the store is never modified by a read"
WRITE_HINT = "restore it from a backup, or point --db at a new file; nothing was written to it"


def default_db_path() -> Path:
    return Path.cwd() / ".edgeseq" / "results.db"


def _v0_to_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS runs (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at       TEXT NOT NULL,          -- ISO 8601, UTC
            session          TEXT,                   -- one `profile` invocation
            repeat_index     INTEGER NOT NULL DEFAULT 0,
            edgeseq_version  TEXT,
            target           TEXT NOT NULL,          -- the name given to --target
            target_url       TEXT,
            device_key       TEXT,                   -- hostname/machine/cpu: groups reports
            device_json      TEXT,                   -- agent device facts
            constraints_json TEXT,                   -- emulated cpus/memory/quota
            model_path       TEXT NOT NULL,
            model_name       TEXT NOT NULL,          -- file stem, e.g. gru-int8
            model_sha256     TEXT NOT NULL,
            model_size_bytes INTEGER,
            recipe           TEXT,
            params           INTEGER,
            accuracy         REAL,
            manifest_json    TEXT,
            runtime_name     TEXT,
            runtime_version  TEXT,
            agent_version    TEXT,
            agent_schema     TEXT,
            options_json     TEXT,
            stats_json       TEXT NOT NULL,          -- derived on the host from the samples
            p50_us           REAL,
            mean_us          REAL,
            peak_rss_kb      INTEGER,
            samples_codec    TEXT NOT NULL,
            samples          BLOB NOT NULL,          -- timed invokes, ns
            warmup           BLOB,                   -- warm-up invokes, ns
            agent_json       TEXT                    -- the rest of the agent's answer, samples removed
        )
        """
    )
    conn.execute("CREATE INDEX IF NOT EXISTS runs_model ON runs(model_sha256)")
    conn.execute("CREATE INDEX IF NOT EXISTS runs_target ON runs(target, device_key)")


# MIGRATIONS[i] upgrades a store at user_version i to i+1. Append; never edit a released step.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v0_to_v1]

# What a reader needs: the columns of schema 1 (later schemas only add).
REQUIRED_COLUMNS = frozenset(
    {
        "id", "created_at", "session", "repeat_index", "edgeseq_version", "target", "target_url", "device_key",
        "device_json", "constraints_json", "model_path", "model_name", "model_sha256", "model_size_bytes",
        "recipe", "params", "accuracy", "manifest_json", "runtime_name", "runtime_version", "agent_version",
        "agent_schema", "options_json", "stats_json", "p50_us", "mean_us", "peak_rss_kb", "samples_codec",
        "samples", "warmup", "agent_json",
    }
)  # fmt: skip

_JSON_COLUMNS = (
    "device_json",
    "constraints_json",
    "manifest_json",
    "options_json",
    "stats_json",
    "agent_json",
)


def pack_samples(samples: Iterable[int]) -> bytes:
    return zlib.compress(np.asarray(list(samples), dtype="<i8").tobytes(), 6)


def unpack_samples(blob: bytes | None, codec: str = SAMPLES_CODEC) -> np.ndarray:
    """Samples back as int64 ns. A blob that is not what `pack_samples` writes is a StoreError (bounded in size)."""
    if not blob:
        return np.zeros(0, dtype=np.int64)
    if codec != SAMPLES_CODEC:
        raise StoreError(f"unknown samples codec {codec!r}", "upgrade edgeseq")
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise StoreError(f"samples stored as {type(blob).__name__}, not a blob")
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(blob, MAX_SAMPLES_BYTES + 1)
    except zlib.error as exc:
        raise StoreError(f"samples do not decompress ({exc})") from None
    if len(raw) > MAX_SAMPLES_BYTES:
        raise StoreError(f"samples decompress to more than {MAX_SAMPLES_BYTES >> 20} MiB")
    if not inflate.eof or inflate.unused_data or len(raw) % 8:
        raise StoreError("samples are truncated or padded")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


class _BadText(str):
    """A TEXT value that is not UTF-8 (damaged bytes): kept as text so rows still build, flagged as damage."""


def _text_factory(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _BadText(data.decode("utf-8", "replace"))


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
        if not create:
            if not self.path.exists():
                raise StoreError(f"no results store at {self.path}", "run `edgeseq profile` first, or pass --db")
            if not self.path.is_file():
                raise StoreError(f"the results store {self.path} is not a file", "point --db at a results file")
            self.conn = self._connect(READ_HINT)
            self._guard(self._inspect, "read", READ_HINT)
            return
        if not self.path.exists():
            _create_atomically(self.path)
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
            conn.text_factory = _text_factory
            conn.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the results store {self.path}: {_reason(exc)}", hint) from None
        return conn

    def _guard(self, step: Callable[[], None], verb: str, hint: str) -> None:
        try:
            step()
        except StoreError:
            self.conn.close()
            raise
        except sqlite3.Error as exc:
            self.conn.close()
            raise StoreError(f"cannot {verb} the results store {self.path}: {_reason(exc)}", hint) from None

    def _inspect(self) -> None:
        """Refuse what is not an edgeseq store this version can read; reads only."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} was written by a newer edgeseq (schema {version}, this one reads "
                f"{len(MIGRATIONS)})",
                "upgrade edgeseq, or point --db at another file",
            )
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "runs" not in tables:
            if version == 0 and not tables - {"sqlite_sequence"}:
                return  # an empty database: a store with no runs yet
            raise StoreError(
                f"{self.path} is not an edgeseq results store (an SQLite database without a runs table)",
                "point --db at the store `edgeseq profile` wrote (default .edgeseq/results.db), or at a new file",
            )
        missing = REQUIRED_COLUMNS - set(_columns(self.conn))
        if version == 0 or missing:
            raise StoreError(
                f"{self.path} is not an edgeseq results store (its runs table "
                + (f"lacks {', '.join(sorted(missing)[:4])})" if missing else "has no edgeseq schema version)"),
                "point --db at the store `edgeseq profile` wrote (default .edgeseq/results.db), or at a new file",
            )

    def check_integrity(self) -> None:
        """PRAGMA quick_check (reads only): a damaged b-tree is refused before a write could make it worse."""
        try:
            found = [str(r[0]) for r in self.conn.execute("PRAGMA quick_check(3)").fetchall()]
        except sqlite3.Error as exc:
            found = [_reason(exc)]
        lines = "\n".join(found).splitlines()
        problem = next((ln for ln in lines if not ln.startswith("***")), lines[0] if lines else "no answer")
        if found != ["ok"]:
            raise StoreError(f"the results store {self.path} is damaged ({_first_line(problem)})", WRITE_HINT)

    def _open_for_writing(self) -> None:
        self._inspect()
        self.check_integrity()
        self.conn.execute("PRAGMA query_only = OFF")
        _enable_wal(self.conn)
        self._migrate()

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        _migrate(self.conn)

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # ------------------------------------------------------------------ writing
    def add_run(self, record: dict) -> int:
        """Insert one run in its own transaction; returns its id. `record` keys are column names;
        `samples`/`warmup` are lists of ns; *_json values may be dicts."""
        if not self.writable:
            raise StoreError(f"the results store {self.path} was opened for reading", "open it with create=True")
        row = dict(record)
        row.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        row["samples_codec"] = SAMPLES_CODEC
        row["samples"] = pack_samples(row.get("samples") or [])
        row["warmup"] = pack_samples(row.get("warmup") or [])
        for col in _JSON_COLUMNS:
            if col in row and row[col] is not None and not isinstance(row[col], str):
                row[col] = json.dumps(row[col], separators=(",", ":"), default=_json_default)
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
            raise StoreError(
                f"cannot write to the results store {self.path}: {_reason(exc)}",
                "choose a writable path with --db",
            ) from None
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
                row, why = _decode_checked(dict(zip(names, values, strict=True)))
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
        row, why = _decode_checked(dict(zip(names, values, strict=True)))
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
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _read_error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"cannot read the results store {self.path}: {_reason(exc)}", READ_HINT)

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


def _create_atomically(path: Path) -> None:
    """Build a new, empty, migrated WAL store beside `path` and link it into place: the store appears whole or not
    at all. When another process (or fleet thread) got there first, its store is kept and this one dropped."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(tmp), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            _migrate(conn)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a plain rename, unless someone got there first
            if not path.exists():
                os.replace(tmp, path)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(
            f"cannot open the results store {path}: {_reason(exc)}", "choose a writable path with --db"
        ) from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
            except OSError:
                pass


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    while version < len(MIGRATIONS):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated while we waited for the lock
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < len(MIGRATIONS):
                MIGRATIONS[version](conn)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, waiting out other connections doing the same. SQLite does not call the busy handler for a
    journal-mode change, so two processes (or fleet threads) opening a new store at once get "database is locked"
    at once; retry until the busy timeout instead."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            contended = "locked" in str(exc) or "busy" in str(exc)
            if not contended or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _close(cursor: sqlite3.Cursor | None) -> None:
    """Finalize a cursor's statement now. Python 3.11 closes a connection with sqlite3_close_v2, which waits for every
    live statement; a cursor kept alive by a traceback would leave the connection open at exit, and with it a WAL
    store's -wal/-shm files beside a store that was only read."""
    if cursor is not None:
        try:
            cursor.close()
        except sqlite3.Error:
            pass


def _columns(conn: sqlite3.Connection) -> list[str]:
    return [r[1] for r in conn.execute("PRAGMA table_info(runs)").fetchall()]


# ---------------------------------------------------------------------------------------------- row checks
class _Damage(Exception):
    pass


_TEXT = (str,)
_INT = (int,)
_NUM = (int, float)
# column -> (allowed types, may be NULL)
_COLUMN_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": (_INT, False),
    "created_at": (_TEXT, False),
    "session": (_TEXT, True),
    "repeat_index": (_INT, True),
    "edgeseq_version": (_TEXT, True),
    "target": (_TEXT, False),
    "target_url": (_TEXT, True),
    "device_key": (_TEXT, True),
    "model_path": (_TEXT, False),
    "model_name": (_TEXT, False),
    "model_sha256": (_TEXT, False),
    "model_size_bytes": (_INT, True),
    "recipe": (_TEXT, True),
    "params": (_INT, True),
    "accuracy": (_NUM, True),
    "runtime_name": (_TEXT, True),
    "runtime_version": (_TEXT, True),
    "agent_version": (_TEXT, True),
    "agent_schema": (_TEXT, True),
    "p50_us": (_NUM, True),
    "mean_us": (_NUM, True),
    "peak_rss_kb": (_NUM, True),
    "samples_codec": (_TEXT, False),
}
# decoded JSON column (always an object) -> may be NULL; then the typed keys reports read from each
_JSON_TYPES = {
    "device": True,
    "constraints": True,
    "manifest": True,
    "options": True,
    "stats": False,
    "agent": True,
}
_NUMERIC_STATS = (
    "count", "mean_us", "std_us", "min_us", "max_us", "cv", "throughput_per_s", "p5_us", "p50_us", "p90_us",
    "p95_us", "p99_us", "init_ms", "load_ms", "allocate_ms", "first_inference_ms", "warmup_mean_us",
    "peak_rss_kb", "model_size_bytes",
)  # fmt: skip
_KEY_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "stats": {k: _NUM for k in _NUMERIC_STATS},
    "options": {"threads": _INT, "xnnpack": (bool,), "input": _TEXT, "steps": _INT, "stream": (bool,),
                "runs": _INT, "warmup": _INT, "max_secs": _NUM, "hop_ms": _NUM},
    "constraints": {"cpus": _INT, "memory_limit_bytes": _INT, "cpu_quota": _NUM, "cpu_list": (list,)},
    "device": {"hostname": _TEXT, "mem_total_kb": _NUM},
}  # fmt: skip


def _is(value, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # True is an int to Python, not a count to a report
    if isinstance(value, _BadText):
        return False
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return False  # JSON integers are unbounded; a report turns figures into floats
    return isinstance(value, types)


def _decode_checked(row: dict) -> tuple[dict | None, str]:
    """(decoded row, "") or (None, why it is damaged)."""
    label = f"run #{row['id']}" if isinstance(row.get("id"), int) else "a row"
    try:
        return _decode(row), ""
    except _Damage as exc:
        return None, f"{label}: {exc}"
    except StoreError as exc:
        return None, f"{label}: {exc.message}"
    except (ValueError, TypeError, KeyError, RecursionError, MemoryError, zlib.error) as exc:
        return None, f"{label}: {type(exc).__name__}"


def _decode(row: dict) -> dict:
    for col, (types, nullable) in _COLUMN_TYPES.items():
        if col not in row:
            continue
        value = row[col]
        if value is None:
            if not nullable:
                raise _Damage(f"{col} is empty")
        elif not _is(value, types):
            raise _Damage(f"{col} is not {'text' if types is _TEXT else 'a number'}")
    for col in _JSON_COLUMNS:
        key = col[:-5]
        text = row.pop(col, None)
        if text is None or text == "":
            if not _JSON_TYPES[key]:
                raise _Damage(f"{col} is empty")
            row[key] = None
            continue
        if not isinstance(text, str) or isinstance(text, _BadText):
            raise _Damage(f"{col} is not text")
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise _Damage(f"{col} is not valid JSON") from None
        if not isinstance(value, dict):
            raise _Damage(f"{col} is not a JSON object")
        for name, types in _KEY_TYPES.get(key, {}).items():
            if value.get(name) is not None and not _is(value[name], types):
                raise _Damage(f"{col}.{name} has the wrong type")
        row[key] = value
    codec = row.get("samples_codec", SAMPLES_CODEC)
    for col in ("samples", "warmup"):
        if col in row:
            row[col] = unpack_samples(row[col], codec)
    return row


def _first_line(text: str) -> str:
    return str(text).splitlines()[0] if str(text) else ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return _first_line(str(exc)) or type(exc).__name__


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
