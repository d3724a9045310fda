"""The manifest written next to every .tflite: what made it, what it is, and how well it agrees with its source.

Reading needs only the standard library, so `profile` and `report` can use manifests without TensorFlow.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeseq.core.errors import ModelError

SCHEMA = "edgeseq.manifest/1"


def tool_versions() -> dict[str, str | None]:
    """Installed versions from package metadata (no imports): tensorflow, keras, ai-edge-litert, edgeseq."""

    def ver(*names: str) -> str | None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    return {
        "tensorflow": ver("tensorflow-cpu", "tensorflow"),
        "keras": ver("keras"),
        "ai-edge-litert": ver("ai-edge-litert"),
        "edgeseq": ver("edgeseq"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }


def build_manifest(
    *,
    name: str,
    tflite_path: Path,
    report: dict[str, Any],
    recipe: dict[str, Any],
    source: dict[str, Any],
    route: dict[str, Any],
    calibration: dict[str, Any] | None,
    validation: dict[str, Any],
    timing: dict[str, float],
) -> dict[str, Any]:
    """Assemble the manifest from the inspect report of the converted bytes and the conversion's own records."""
    return {
        "schema": SCHEMA,
        "name": name,
        "artifact": {"file": tflite_path.name, "bytes": report["bytes"], "sha256": report["sha256"]},
        "recipe": recipe,
        "source": source,
        "route": route,
        "signature": {"inputs": report["inputs"], "outputs": report["outputs"]},
        "ops": report["ops"],
        "dtype_coverage": report["dtype_coverage"],
        "weights": report["weights"],
        "macs": report["macs"],
        "peak_activation_bytes": report["peak_activation_bytes"],
        "flex_ops": report["flex_ops"],
        "calibration": calibration,
        "validation": validation,
        "timing": timing,
        "versions": tool_versions(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def manifest_path_for(tflite_path: str | os.PathLike) -> Path:
    return Path(tflite_path).with_suffix(".json")


def read_manifest(path: str | os.PathLike, *, strict: bool = True) -> dict[str, Any] | None:
    """A manifest by its own path or its .tflite's (the same stem, .json).

    strict (inspect, evaluate, the library): ModelError when it is missing, unreadable or not an edgeseq manifest.
    strict=False (profile: a model profiles without a manifest): None when it is missing, unreadable or not a JSON
    object, and any JSON object is taken, hand-written ones too (their reader checks what it uses)."""
    p = Path(path)
    if p.suffix == ".tflite":
        p = manifest_path_for(p)
    if not p.exists():
        if not strict:
            return None
        raise ModelError(f"no manifest at {p}", "convert the model with edgeseq convert to get one")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        if not strict:
            return None
        raise ModelError(f"{p} is not a readable manifest ({type(exc).__name__})") from exc
    if not strict:
        return data if isinstance(data, dict) else None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("edgeseq.manifest/"):
        raise ModelError(f"{p} is not an edgeseq manifest")
    return data
