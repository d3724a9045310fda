"""The file system refusing a write (out of space, over quota, read-only, an I/O error, too many open files) as one
typed error naming the path and what the errno means, and the folders a command created removed when it fails.

Every verb gets this without code of its own: `edgeseq.cli.main` turns any such OSError (or sqlite3 error, or an
error raised from one) into `DiskError`, and on every failure removes the empty folders that `make_dirs` created
during the command. Writers keep their own promise of nothing half-written (`atomic_write_bytes`, the store's
transactions); this module makes the failure readable and sweeps up what is left empty.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# errno -> (short name, what to do). os.strerror gives the meaning in the platform's words.
REFUSALS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("ENOSPC", "free space on that file system, or write elsewhere (--out / --db)"),
    errno.EDQUOT: ("EDQUOT", "your disk quota there is used up: free some, or write elsewhere (--out / --db)"),
    errno.EROFS: ("EROFS", "that file system is mounted read-only: write elsewhere (--out / --db)"),
    errno.EIO: ("EIO", "the device reported an I/O error: check the disk (dmesg), or write elsewhere"),
    errno.EMFILE: ("EMFILE", "this process has too many open files: raise the limit (ulimit -n 4096) and retry"),
    errno.ENFILE: ("ENFILE", "the system has too many open files: close some programs and retry"),
}
# sqlite3 result codes (primary, the low byte) that mean the same things
_SQLITE = {13: errno.ENOSPC, 8: errno.EROFS, 10: errno.EIO}  # SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR
_SQLITE_TEXT = {"database or disk is full": errno.ENOSPC, "disk i/o error": errno.EIO,
                "attempt to write a readonly database": errno.EROFS}

_created: list[Path] = []  # folders make_dirs created in this process, in creation order
_new_files: list[Path] = []  # files atomic_write_bytes brought into being (not ones it replaced)


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def refused_errno(exc: BaseException) -> tuple[int, str | None] | None:
    """(errno, path or None) when `exc`, or an error it was raised from, is one of REFUSALS; else None."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in REFUSALS:
            path = e.filename if e.filename is not None else e.filename2
            return e.errno, None if path is None else os.fsdecode(path)
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _SQLITE:
            return _SQLITE[code & 0xFF], None
        text = str(e).lower()
        if type(e).__module__ == "sqlite3" and text in _SQLITE_TEXT:
            return _SQLITE_TEXT[text], None
    return None


def disk_error(exc: BaseException, path: str | os.PathLike | None = None):
    """A `DiskError` for `exc` when the file system refused (path: the error's own, else `path`), else None."""
    from edgeseq.core.errors import DiskError

    if isinstance(exc, DiskError):
        return exc
    found = refused_errno(exc)
    if found is None:
        return None
    code, where = found
    where = where or (None if path is None else os.fspath(path))
    if code == errno.EIO and where and _full(where):  # SQLite says "disk I/O error" for a failed write of a full disk
        code = errno.ENOSPC
    name, hint = REFUSALS[code]
    at = f" writing {where}" if where else ""
    return DiskError(f"{os.strerror(code).lower()} ({name}){at}; nothing partial kept", hint)


def full_disk_error(path: str | os.PathLike):
    """A DiskError (ENOSPC) naming `path` when its file system has no space left, else None: for a child that died
    without a record because it could not write one."""
    if not _full(os.fspath(path)):
        return None
    return disk_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path)))


def _full(path: str) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) has no block left for this user."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return False
    return st.f_bavail == 0


def make_dirs(path: str | os.PathLike) -> Path:
    """`mkdir -p`, remembering each folder it created so a failed command can take the empty ones away again."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    _created.extend(reversed(missing))
    return path


def note_new_file(path: Path) -> None:
    """`path` did not exist before this command wrote it (atomic_write_bytes calls this)."""
    _new_files.append(Path(path))


def remove_created(files: bool = False) -> list[Path]:
    """After a failed command: with `files` (the file system refused a write, so what the command made is a part of
    a whole), the files it brought into being; then the folders make_dirs created that are empty now, deepest first.
    Returns what was removed. A file that was replaced, not created, cannot be given back and stays."""
    removed = []
    for path in reversed(_new_files if files else []):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    _new_files.clear()
    for folder in reversed(_created):
        try:
            folder.rmdir()  # only when empty: a file someone else put there keeps it
            removed.append(folder)
        except OSError:
            pass
    _created.clear()
    return removed


def forget_created() -> None:
    """A command finished: what it created stays."""
    _created.clear()
    _new_files.clear()
