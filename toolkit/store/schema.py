"""The results store's schema and how a database file becomes one: versions, migrations, checks, creation.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[i]` moves a database from version i to i+1, each
in its own transaction, so an older store is upgraded in place and a newer one is refused instead of misread. A
new store appears atomically (built beside its path, then linked into place), so a failed run leaves nothing. WAL
mode plus a busy timeout lets two writers share one store.

The functions that apply migrations take the list to apply (`migrations`): `edgeseq.store.results` passes its own
`MIGRATIONS`, the one hook a test or a later schema extends.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeseq.core.errors import StoreError

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0

Migration = Callable[[sqlite3.Connection], None]


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


def _v1_to_v2(conn: sqlite3.Connection) -> None:
    """The sweep's ledger: one row per grid cell (`edgeseq sweep`), keyed by the hash of its whole configuration.
    A finished cell names its run; a failed one its one-line reason. Runs themselves stay in `runs`."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS sweep_cells (
            key          TEXT PRIMARY KEY,           -- sha256 of the cell's configuration and tool versions
            sweep        TEXT NOT NULL,              -- the sweep's folder (its artifacts)
            created_at   TEXT NOT NULL,              -- ISO 8601, UTC
            status       TEXT NOT NULL,              -- ok | failed
            reason       TEXT,                       -- one line, for a failed cell
            run_id       INTEGER,                    -- runs.id of its measurement (ok cells)
            config_json  TEXT NOT NULL,              -- the cell's configuration
            result_json  TEXT                        -- what the build said (accuracy, metric, artifact, times)
        )
        """
    )


# MIGRATIONS[i] upgrades a store at user_version i to i+1. Append; never edit a released step.
MIGRATIONS: list[Migration] = [_v0_to_v1, _v1_to_v2]

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

NOT_A_STORE_HINT = (
    "point --db at the store `edgeseq profile` wrote (default .edgeseq/results.db), or at a new file"
)


# ---------------------------------------------------------------------------------------------- checks
def inspect_schema(conn: sqlite3.Connection, path: Path, migrations: Sequence[Migration]) -> None:
    """Refuse what is not an edgeseq store this version can read (StoreError); reads only."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise StoreError(
            f"{path} was written by a newer edgeseq (schema {version}, this one reads {len(migrations)})",
            "upgrade edgeseq, or point --db at another file",
        )
    tables = table_names(conn)
    if "runs" not in tables:
        if version == 0 and not tables - {"sqlite_sequence"}:
            return  # an empty database: a store with no runs yet
        raise StoreError(
            f"{path} is not an edgeseq results store (an SQLite database without a runs table)", NOT_A_STORE_HINT
        )
    missing = REQUIRED_COLUMNS - set(columns(conn))
    if version == 0 or missing:
        raise StoreError(
            f"{path} is not an edgeseq results store (its runs table "
            + (f"lacks {', '.join(sorted(missing)[:4])})" if missing else "has no edgeseq schema version)"),
            NOT_A_STORE_HINT,
        )


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """PRAGMA quick_check (reads only): None for a sound b-tree, else the first problem it names."""
    try:
        found = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
    except sqlite3.Error as exc:
        found = [reason(exc)]
    if found == ["ok"]:
        return None
    lines = "\n".join(found).splitlines()
    problem = next((ln for ln in lines if not ln.startswith("***")), lines[0] if lines else "no answer")
    return first_line(problem)


def table_names(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(conn: sqlite3.Connection) -> list[str]:
    return [r[1] for r in conn.execute("PRAGMA table_info(runs)").fetchall()]


# ---------------------------------------------------------------------------------------------- changes
def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Apply the migrations a store lacks, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    while version < len(migrations):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated while we waited for the lock
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < len(migrations):
                migrations[version](conn)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def enable_wal(conn: sqlite3.Connection) -> None:
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


def create_atomically(path: Path, migrations: Sequence[Migration]) -> None:
    """Build a new, empty, migrated WAL store beside `path` and link it into place: the store appears whole or not
    at all. When another process (or fleet thread) got there first, its store is kept and this one dropped."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    try:
        from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
        make_dirs(path.parent)
        conn = sqlite3.connect(str(tmp), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn, migrations)
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
        raise store_error(f"cannot open the results store {path}: {reason(exc)}", "choose a writable path with --db",
                          exc, path) from None
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------- messages
def first_line(text: str) -> str:
    return str(text).splitlines()[0] if str(text) else ""


def store_error(message: str, hint: str, exc: BaseException, path: Path) -> Exception:
    """The file system refusing (disk full, read-only, I/O error: a DiskError naming `path`), else a StoreError."""
    from edgeseq.core.fsio.oserrors import disk_error

    return disk_error(exc, path) or StoreError(message, hint)


def reason(exc: BaseException) -> str:
    """An OSError's or sqlite3 error's reason, one line, for a StoreError's message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return first_line(str(exc)) or type(exc).__name__
