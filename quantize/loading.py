"""Load a user's .keras file safely: safe_mode=True unless the user vouches for it with --trust-model.

Checks what can be checked without TensorFlow first (exists, is a Keras zip, holds a Lambda layer), so the common
mistakes fail fast with a one-line error.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from edgeseq.errors import ModelError

TRUST_HINT = "if you wrote or trust this file, pass --trust-model (it lets the file run Python code)"


def _walk_classes(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            found.add(node["class_name"])
        for value in node.values():
            found |= _walk_classes(value)
    elif isinstance(node, list):
        for value in node:
            found |= _walk_classes(value)
    return found


def check_keras_file(path: str | os.PathLike) -> dict:
    """The file's config.json as a dict; ModelError for a missing file or a file that is not a .keras archive."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist", "check the path (train one with: edgeseq train)")
    if p.is_dir():
        raise ModelError(f"{p} is a directory", "pass the model.keras file inside it")
    if p.suffix == ".h5":
        raise ModelError(f"{p} is a legacy HDF5 file", "re-save it as .keras with Keras 3: model.save('model.keras')")
    if not zipfile.is_zipfile(p):
        raise ModelError(f"{p} is not a Keras model file (.keras zip archive)", "save the model with model.save('x.keras')")
    try:
        with zipfile.ZipFile(p) as zf:
            config = json.loads(zf.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{p} is not a Keras model file (no readable config.json)", "save it with model.save()") from exc
    return config


def holds_lambda(config: dict) -> bool:
    return "Lambda" in _walk_classes(config)


def register_edgeseq_layers() -> None:
    """Import the zoo's custom layers so their registered names resolve in safe mode."""
    try:
        import edgeseq.models.layers  # noqa: F401
    except ImportError:  # pragma: no cover - a trimmed install without the zoo
        pass


def load_keras_model(path: str | os.PathLike, *, trust_model: bool = False) -> Any:
    """A keras.Model from `path`; a Lambda-holding file is refused unless `trust_model`."""
    config = check_keras_file(path)
    if holds_lambda(config) and not trust_model:
        raise ModelError(f"{path} holds a Python lambda layer, which safe mode refuses to load", TRUST_HINT)
    import keras

    register_edgeseq_layers()
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust_model)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "lambda" in text.lower():
            raise ModelError(f"{path} holds code that safe mode refuses to load", TRUST_HINT) from exc
        raise ModelError(f"cannot load {path}: {text[:200]}", "is it a Keras 3 model saved with model.save()?") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} does not hold a keras.Model")
    return model
