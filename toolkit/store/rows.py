"""A results-store row in and out: the samples codec, the record written, and the defensive decoding of a row read.

Raw samples are kept (int64 little-endian, zlib) so any statistic can be recomputed later. Every row read is
decoded defensively: a row whose JSON does not parse, whose samples do not decompress or whose fields have the wrong
type is damaged (`decode_checked` says why) instead of a traceback in a report.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgeseq.core.errors import StoreError

SAMPLES_CODEC = "i8le+zlib"
MAX_SAMPLES_BYTES = 1 << 27  # 16 M samples per run: more is a damaged (or hostile) blob, not a measurement

JSON_COLUMNS = (
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


def encode_record(record: dict) -> dict:
    """The column values of one run to insert: samples packed, *_json values as JSON text, created_at set."""
    row = dict(record)
    row.setdefault("created_at", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
    row["samples_codec"] = SAMPLES_CODEC
    row["samples"] = pack_samples(row.get("samples") or [])
    row["warmup"] = pack_samples(row.get("warmup") or [])
    for col in JSON_COLUMNS:
        if col in row and row[col] is not None and not isinstance(row[col], str):
            row[col] = json.dumps(row[col], separators=(",", ":"), default=_json_default)
    return row


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


class BadText(str):
    """A TEXT value that is not UTF-8 (damaged bytes): kept as text so rows still build, flagged as damage."""


def text_factory(data: bytes) -> str:
    """sqlite3's text factory for a store: UTF-8, or BadText for bytes that are not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return BadText(data.decode("utf-8", "replace"))


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
    "peak_rss_kb", "model_peak_kb", "baseline_kb", "model_size_bytes",
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
    if isinstance(value, BadText):
        return False
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return False  # JSON integers are unbounded; a report turns figures into floats
    return isinstance(value, types)


def decode_checked(row: dict) -> tuple[dict | None, str]:
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
    for col in JSON_COLUMNS:
        key = col[:-5]
        text = row.pop(col, None)
        if text is None or text == "":
            if not _JSON_TYPES[key]:
                raise _Damage(f"{col} is empty")
            row[key] = None
            continue
        if not isinstance(text, str) or isinstance(text, BadText):
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
