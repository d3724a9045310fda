"""Atomic file writes: a reader (or a crash) never sees half a file, and an existing file survives a failed write."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def user_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status, 4.7+)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `path` whole or not at all, with the mode a plain open() would give (0644 under umask 0022): mkstemp's
    0600 would make converted files unreadable to a deploy script or web server running as another user."""
    from edgeseq.core.fsio.oserrors import make_dirs, note_new_file

    path = Path(path)
    existed = path.exists()
    try:
        make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _with_path(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~user_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        if not existed:
            note_new_file(path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # write() and fsync() name no file: name the one being written
            raise _with_path(exc, path) from exc
        raise
    return path


def _with_path(exc: OSError, path: Path) -> OSError:
    return exc if exc.filename is not None else type(exc)(exc.errno, exc.strerror, str(path))


def atomic_save_with(path: str | os.PathLike, writer: Any) -> Path:
    """`writer(file object)` (e.g. `lambda fh: fig.savefig(fh, format="png")`) into memory, then written atomically:
    a library that writes straight to a path would leave half a file behind on a full disk."""
    import io

    buf = io.BytesIO()
    writer(buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, before any work, an output directory that cannot be used: an existing file, a path under a file, or a
    place this user cannot create or write in. Creates nothing: writers create it when they have something to write.

    Raises edgeseq.core.errors.InputError (imported here lazily: fsio stays free of edgeseq imports at module level).
    """
    from edgeseq.core.errors import InputError

    out = Path(path).expanduser()
    if "\0" in str(out):
        raise InputError(f"{option} {str(out)!r} holds a NUL character", f"choose a plain directory path for {option}")
    try:
        if out.exists() and not out.is_dir():
            raise InputError(f"{option} {out} is a file, not a directory", f"choose a directory path for {option}")
        probe = out
        while not probe.exists():
            if probe.is_symlink():  # a dangling link: creating the directory would fail
                raise InputError(f"{option} {out}: {probe} is a broken symbolic link", f"choose another {option}")
            if probe.parent == probe:
                break
            probe = probe.parent
    except OSError as exc:  # ENAMETOOLONG, EACCES on a parent, ...
        raise InputError(f"{option} {out} cannot be used ({exc.strerror})", f"choose another {option}") from None
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{option} {out} cannot be created: {probe} is a file", f"choose another {option}")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        where = "is not writable" if probe == out else f"cannot be created: {probe} is not writable"
        raise InputError(f"{option} {out} {where}", f"choose a writable {option}")
    return out


def check_file_name(name: str, option: str = "--name") -> str:
    """A user-given name that becomes part of a file name: no path separators, no '..', nothing hidden or empty."""
    from edgeseq.core.errors import InputError

    bad = (not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name
           or (os.altsep is not None and os.altsep in name) or ".." in name or "\0" in name
           or name.startswith(".") or any(ord(c) < 32 for c in name) or len(name.encode("utf-8", "replace")) > 200)
    if bad:
        shown = repr(name if len(name) <= 80 else name[:80] + "...")
        raise InputError(f"{option} {shown} is not a plain file name (no path separators, '..', leading dot, "
                         "control characters, at most 200 bytes)", f"pass a bare name like {option} gru-jv; choose the folder with --out")
    return name


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models are hashed on the host and verified on the device)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; keep the dependency optional here.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")
