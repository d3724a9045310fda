"""Free Spoken Digit Dataset (FSDD): find the recordings, cache log-mel features, download on request only.

The WAVs are never bundled (CC BY-SA 4.0). Lookup order for the `recordings` folder: the `data_dir` argument, then
$EDGESEQ_DATA_DIR, then the user cache (<cache>/fsdd, see `cache_dir`). Each may be a folder holding `fsdd/recordings`,
`recordings`, or the WAVs themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import numpy as np

from edgeseq.core.errors import DatasetError
from edgeseq.core.fsio import atomic_write_bytes
from edgeseq.datasets.audio import FEATURE_PARAMS, clip_features
from edgeseq.datasets.base import Dataset, cache_dir, load_npz, standardize

DEFAULT_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
FEATURE_VERSION = 1  # bump when the feature code changes, so stale caches are not reused
FILE_RE = re.compile(r"^([0-9])_([A-Za-z]+)_([0-9]+)\.wav$")
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPES = {"train": (2700, 49, 32), "test": (300, 49, 32)}
LICENSE = "CC BY-SA 4.0"
SOURCE = "github.com/Jakobovski/free-spoken-digit-dataset v1.0.10 (download)"
CITATION = ("Z. Jackson et al. Free Spoken Digit Dataset (FSDD), https://github.com/Jakobovski/free-spoken-digit-dataset, "
            "doi:10.5281/zenodo.1342401")
MISSING_HINT = "run `edgeseq datasets download fsdd`, or pass --data-dir / set EDGESEQ_DATA_DIR to a folder with recordings/"


def _recordings_in(root: Path) -> Path | None:
    for cand in (root / "fsdd" / "recordings", root / "recordings", root):
        if cand.is_dir() and any(cand.glob("*.wav")):
            return cand
    return None


def default_dest() -> Path:
    return cache_dir() / "fsdd"


def find_recordings(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The recordings folder, or None. An explicit `data_dir` that lacks them is an error, not a fall-through."""
    if data_dir is not None:
        found = _recordings_in(Path(data_dir).expanduser())
        if found is None:
            raise DatasetError(f"fsdd: no recordings/*.wav under --data-dir {data_dir}", MISSING_HINT)
        return found
    env = os.environ.get("EDGESEQ_DATA_DIR")
    if env:
        found = _recordings_in(Path(env).expanduser())
        if found is not None:
            return found
    return _recordings_in(default_dest())


def _file_list(rec: Path) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, take) for every well-named WAV, sorted by name."""
    out = []
    for p in sorted(rec.glob("*.wav")):
        m = FILE_RE.match(p.name)
        if m:
            out.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not out:
        raise DatasetError(f"fsdd: no files named digit_speaker_take.wav in {rec}", MISSING_HINT)
    return out


def _cache_key(files: list[tuple[Path, int, str, int]]) -> str:
    h = hashlib.sha256(json.dumps({"v": FEATURE_VERSION, **FEATURE_PARAMS}, sort_keys=True).encode())
    for p, *_ in files:
        h.update(f"{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:20]


def features(data_dir: str | os.PathLike | None = None) -> tuple[dict[str, np.ndarray], Path, bool]:
    """Raw (unstandardized) log-mel features for every recording, computed once and cached by content key.

    Returns (arrays, cache file, whether it came from the cache).
    """
    rec = find_recordings(data_dir)
    if rec is None:
        raise DatasetError("fsdd: recordings not found (not downloaded)", MISSING_HINT)
    files = _file_list(rec)
    path = cache_dir() / "features" / f"fsdd-{_cache_key(files)}.npz"
    if path.is_file():
        try:
            return load_npz(path), path, True
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is recomputed below
    arrays = {
        "features": clip_features([f[0] for f in files]),
        "digit": np.array([f[1] for f in files], dtype=np.int64),
        "speaker": np.array([f[2] for f in files]),
        "take": np.array([f[3] for f in files], dtype=np.int64),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # a read-only cache only costs speed
    return arrays, path, False


def load_fsdd(*, normalize: bool = True, data_dir: str | os.PathLike | None = None) -> Dataset:
    arrays, cache_file, _ = features(data_dir)
    test = arrays["take"] < 5  # the official split: takes 0-4 test, 5-49 train
    X_train, X_test = arrays["features"][~test], arrays["features"][test]
    pre: dict = {"features": "log-mel", **FEATURE_PARAMS, "frames": int(X_train.shape[1]),
                 "split": "official: take index 0-4 test, 5-49 train", "feature_cache": str(cache_file)}
    if normalize:
        X_train, X_test, stats = standardize(X_train, X_test)
        pre["normalization"] = {"kind": "per mel band z-score with train-set statistics (over clips and frames)",
                                **stats}
    else:
        pre["normalization"] = None
    meta = {"source": SOURCE, "license": LICENSE, "citation": CITATION, "notice": "NOTICE-FSDD.txt",
            "description": "Spoken digits 0-9, 6 speakers x 50 takes, 8 kHz mono (a keyword-spotting workload).",
            "speakers": sorted({str(s) for s in arrays["speaker"]}), "preprocessing": pre}
    return Dataset("fsdd", "classification", X_train, arrays["digit"][~test], X_test, arrays["digit"][test], 10,
                   CLASS_NAMES, meta)


def _safe_wav_name(member: tarfile.TarInfo) -> str | None:
    """The file name to extract for a `<top>/recordings/<name>.wav` member, None to skip; unsafe members raise."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise DatasetError(f"fsdd archive: unsafe member path {member.name!r}", "the archive may be tampered with; "
                           "use the official URL or a trusted copy")
    if len(name.parts) < 2 or name.parts[-2] != "recordings" or name.suffix.lower() != ".wav":
        return None
    if not member.isfile():  # links, devices, folders named *.wav
        raise DatasetError(f"fsdd archive: {member.name!r} is not a regular file", "use the official archive")
    return name.name if FILE_RE.match(name.name) else None


def download_fsdd(dest: str | os.PathLike | None = None, url: str = DEFAULT_URL, *, force: bool = False,
                  timeout: float = 60.0) -> Path:
    """Fetch the FSDD release tarball and install its WAVs as `<dest>/recordings` (default dest: <cache>/fsdd).

    Only `*/recordings/*.wav` regular files are extracted, by base name, so no member can land outside `dest`. The
    archive is downloaded to a temp file and extracted into a temp folder next to `dest`, then moved into place.
    """
    dest = Path(dest).expanduser() if dest is not None else default_dest()
    target = dest / "recordings"
    if target.is_dir() and any(target.glob("*.wav")) and not force:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fsdd-download-", dir=dest))
    try:
        archive = work / "archive.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as fh:
                shutil.copyfileobj(resp, fh, 1 << 20)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DatasetError(f"fsdd: download from {url} failed: {exc}",
                               "check the network, pass --url file:///path/to/fsdd.tar.gz, or use --data-dir "
                               "with an existing copy") from exc
        staged = work / "recordings"
        staged.mkdir()
        count = 0
        try:
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    fname = _safe_wav_name(member)
                    if fname is None:
                        continue
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    with src, open(staged / fname, "wb") as out:
                        shutil.copyfileobj(src, out)
                    count += 1
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DatasetError(f"fsdd: {url} is not a readable tar archive ({exc})",
                               "pass --url to the release tarball (.tar.gz)") from exc
        if count == 0:
            raise DatasetError(f"fsdd: the archive from {url} holds no recordings/*.wav",
                               f"use the release tarball, e.g. {DEFAULT_URL}")
        old = None
        if target.exists():
            old = work / "old-recordings"
            os.replace(target, old)
        os.replace(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
