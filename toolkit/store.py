"""The results store: one SQLite row per profile run, with everything needed to trust or redo the figure.

Why SQLite: one file, no server, transactions. The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]`
moves a database from version i to i+1, each in its own transaction, so an older store is upgraded in place and a
newer one is refused instead of misread. WAL mode plus a busy timeout lets two `edgeseq profile` processes write at
once; every run is committed on its own (`BEGIN IMMEDIATE ... COMMIT`), so Ctrl-C or a crash loses at most the run
in flight. Raw samples are kept (int64 little-endian, zlib) so any statistic can be recomputed later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgeseq.errors import StoreError

SCHEMA_VERSION = 1
SAMPLES_CODEC = "i8le+zlib"
BUSY_TIMEOUT_S = 30.0


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
    if not blob:
        return np.zeros(0, dtype=np.int64)
    if codec != SAMPLES_CODEC:
        raise StoreError(f"unknown samples codec {codec!r}", "upgrade edgeseq")
    return np.frombuffer(zlib.decompress(blob), dtype="<i8").astype(np.int64)


class ResultsStore:
    """Open (and create or upgrade) a results database. Use as a context manager."""

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        self.path = Path(path) if path is not None else default_db_path()
        if not create and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}", "run `edgeseq profile` first, or pass --db")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the results store {self.path}: {_reason(exc)}",
                "choose a writable path with --db",
            ) from None
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if create:
                _enable_wal(self.conn)
            self._migrate()
        except sqlite3.Error as exc:
            self.conn.close()
            raise StoreError(
                f"cannot use the results store {self.path}: {_reason(exc)}",
                "choose a writable path with --db, or move the damaged file away",
            ) from None

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} was written by a newer edgeseq (schema {version}, this one reads "
                f"{len(MIGRATIONS)})",
                "upgrade edgeseq",
            )
        while version < len(MIGRATIONS):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                # another process may have migrated while we waited for the lock
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version < len(MIGRATIONS):
                    MIGRATIONS[version](self.conn)
                    version += 1
                    self.conn.execute(f"PRAGMA user_version = {version}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # ------------------------------------------------------------------ writing
    def add_run(self, record: dict) -> int:
        """Insert one run in its own transaction; returns its id. `record` keys are column names;
        `samples`/`warmup` are lists of ns; *_json values may be dicts."""
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
        cols = (
            "*"
            if with_samples
            else "id, " + ", ".join(c for c in _columns(self.conn) if c not in ("id", "samples", "warmup"))
        )
        sql = f"SELECT {cols} FROM runs"
        args: list = []
        if target:
            sql += " WHERE target = ?"
            args.append(target)
        sql += " ORDER BY id"
        try:
            cur = self.conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the results store {self.path}: {_reason(exc)}") from None
        names = [d[0] for d in cur.description]
        return [_decode(dict(zip(names, r, strict=True))) for r in cur.fetchall()]

    def get_run(self, run_id: int) -> dict | None:
        cur = self.conn.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        row = cur.fetchone()
        if row is None:
            return None
        return _decode(dict(zip([d[0] for d in cur.description], row, strict=True)))

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def _columns(conn: sqlite3.Connection) -> list[str]:
    return [r[1] for r in conn.execute("PRAGMA table_info(runs)").fetchall()]


def _decode(row: dict) -> dict:
    for col in _JSON_COLUMNS:
        if row.get(col):
            row[col[:-5] if col.endswith("_json") else col] = json.loads(row.pop(col))
        elif col in row:
            row[col[:-5]] = None
            row.pop(col)
    codec = row.get("samples_codec", SAMPLES_CODEC)
    if "samples" in row:
        row["samples"] = unpack_samples(row["samples"], codec)
    if "warmup" in row:
        row["warmup"] = unpack_samples(row["warmup"], codec)
    return row


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
