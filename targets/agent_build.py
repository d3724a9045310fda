"""Host side: the agent package (targets/agent/) built into the one file pushed to devices, a zipapp.

`edgeseq_agent.pyz` is what `python -m zipapp` would make of the package (PEP 441: a `#!/usr/bin/env python3` line,
then a zip whose `__main__.py` runs the agent), written with zipfile so that its bytes depend on the sources alone:
every entry has the same timestamp (1980-01-01 00:00), permissions (0644) and system, the entries go in sorted order,
and nothing is compressed (stored: the agent never imports zlib on the device, and no compressor version can change
the bytes). So two builds of the same sources give the same file and the same sha256 on every host: that sha256 is
the agent's identity, recorded with each run next to its version (runner.run_agent) and checked on the device before
it runs (deploy). The package goes in as `edgeseq_agent/` (its modules import each other relatively) and the zip's
`__main__.py` calls `edgeseq_agent.cli.main`; sources only, no .pyc, so one file runs on every Python >= 3.9.

Run from a zip, each module is compiled by zipimport, which frees the syntax tree right after compiling: the agent
needs no re-exec to keep its memory baseline down (agent.py, a plain script, did; see the agent's cli module).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

from edgeseq.core.fsio import atomic_write_bytes

AGENT_DIR = Path(__file__).with_name("agent")  # the package's sources
PACKAGE = "edgeseq_agent"  # its name inside the zipapp (never `edgeseq`: the device has no edgeseq)
PYZ_NAME = "edgeseq_agent.pyz"
SHEBANG = b"#!/usr/bin/env python3\n"
ENTRY = (
    b"# The edgeseq device agent, one file: the package is edgeseq_agent/ (edgeseq.targets.agent_build wrote this).\n"
    b"import sys\n"
    b"\n"
    b"from edgeseq_agent.cli import main\n"
    b"\n"
    b"sys.exit(main())\n"
)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the zip format's first representable time
_MODE = 0o100644  # a regular file, rw-r--r--


def agent_sources() -> list[tuple[str, bytes]]:
    """(name in the zip, bytes) of every file the zipapp holds, in the order it holds them."""
    files = [("__main__.py", ENTRY)]
    files += [(f"{PACKAGE}/{p.name}", p.read_bytes()) for p in AGENT_DIR.glob("*.py")]
    return sorted(files)


def pyz_bytes() -> bytes:
    """The zipapp's bytes: the same sources give the same bytes."""
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in agent_sources():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the host (ZipInfo says 0 on Windows)
            info.external_attr = _MODE << 16
            zf.writestr(info, data)
    return buf.getvalue()


def build_agent_pyz(dest: str | os.PathLike) -> tuple[Path, str]:
    """Write the zipapp as `dest`/edgeseq_agent.pyz (atomically; left alone when it already holds these bytes);
    returns (its path, its sha256)."""
    return _write(Path(dest), pyz_bytes())


def _write(dest: Path, data: bytes) -> tuple[Path, str]:
    path = dest / PYZ_NAME
    try:
        same = path.read_bytes() == data
    except OSError:
        same = False
    if not same:
        atomic_write_bytes(path, data)
        os.chmod(path, 0o755)  # runnable as ./edgeseq_agent.pyz too
    return path, hashlib.sha256(data).hexdigest()


def agent_pyz() -> tuple[Path, str]:
    """The zipapp of the current sources, built into a cache folder keyed by its sha256 (edgeseq's user cache, else
    the temp folder) unless it is there already: (path, sha256)."""
    from edgeseq.datasets.base import cache_dir

    data = pyz_bytes()
    key = hashlib.sha256(data).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    error = None
    for base in (cache_dir() / "agent", Path(tempfile.gettempdir()) / f"edgeseq-agent-{uid}"):
        try:
            return _write(base / key, data)
        except OSError as exc:
            error = exc
    # the errno stays (a full disk is a DiskError with its path at the CLI), the message says both places were tried
    raise OSError(getattr(error, "errno", None), f"cannot write {PYZ_NAME} to the edgeseq cache or the temp folder: "
                  f"{getattr(error, 'strerror', None) or error}", getattr(error, "filename", None))
