"""Load a user's model safely: a .keras file, a legacy .h5 (Keras 3's legacy loader) or a TensorFlow SavedModel
directory (what `model.export(dir)` writes), the last through its serving signature.

.keras and .h5 load with safe_mode=True unless the user vouches for the file with --trust-model. A SavedModel holds
no Python code, but its graph could read or write files: a serving signature using file or Python ops is refused
unless --trust-model. A SavedModel becomes a keras.Model wrapping a `keras.layers.TFSMLayer` over its serving
signature, so conversion, validation and the reference outputs use the same code as a .keras file (the reference is
the SavedModel's own output); its loops cannot be unrolled or fused (no Keras layers), only converted as they are.

Checks what can be checked without TensorFlow first (exists, is a Keras zip / HDF5 file, holds a Lambda layer), so
the common mistakes fail fast with a one-line error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from edgeseq.core.errors import ModelError

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


SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
SERVING_SIGNATURE = "serving_default"
# Graph ops that reach outside the model (files, Python): refused in a SavedModel's serving signature unless
# --trust-model. A Python function cannot even be restored from a SavedModel; listed so a crafted file says so.
UNSAFE_GRAPH_OPS = {
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice", "MergeV2Checkpoints", "ShardedFilename",
    "ImmutableConst", "WholeFileReader", "WholeFileReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "TFRecordDataset", "FixedLengthRecordDataset", "TextLineDataset", "PrintV2", "Print",
}
LOOP_OPS = {"While", "StatelessWhile"}


def model_format(path: str | os.PathLike) -> str:
    """'keras', 'h5' or 'saved_model'; ModelError for a path that is none of them."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist", "check the path (train one with: edgeseq train)")
    if p.is_dir():
        if any((p / f).is_file() for f in SAVED_MODEL_FILES):
            return "saved_model"
        inside = sorted(x.name for x in p.glob("*.keras"))[:1]
        raise ModelError(f"{p} is a directory without saved_model.pb (not a TensorFlow SavedModel)",
                         f"pass the {inside[0]} file inside it" if inside else
                         "pass a .keras or .h5 file, or a SavedModel directory (model.export(dir))")
    if p.suffix.lower() in (".h5", ".hdf5"):
        return "h5"
    if p.suffix.lower() == ".tflite":
        raise ModelError(f"{p} is already a converted .tflite file",
                         "convert takes the Keras model it came from (.keras, .h5 or a SavedModel directory); "
                         "inspect, evaluate and profile take the .tflite")
    return "keras"


def check_keras_file(path: str | os.PathLike) -> dict:
    """The file's config.json as a dict; ModelError for a missing file or a file that is not a .keras archive."""
    p = Path(path)
    if model_format(p) != "keras":
        raise ModelError(f"{p} is not a .keras file", "pass a .keras file")
    if not zipfile.is_zipfile(p):
        raise ModelError(f"{p} is not a Keras model file (.keras zip archive)",
                         "pass a model saved with model.save('x.keras') or model.save('x.h5'), or a SavedModel "
                         "directory (model.export(dir))")
    try:
        with zipfile.ZipFile(p) as zf:
            config = json.loads(zf.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{p} is not a Keras model file (no readable config.json)", "save it with model.save()") from exc
    return config


def check_h5_file(path: str | os.PathLike) -> dict:
    """A legacy HDF5 model's config (its `model_config` attribute) as a dict; ModelError when there is none (a
    weights-only file, or not HDF5 at all)."""
    p = Path(path)
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic != b"\x89HDF\r\n\x1a\n":
        raise ModelError(f"{p} is not an HDF5 file", "pass a model saved with model.save('x.h5'), or a .keras file")
    import h5py

    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise ModelError(f"{p} is not a readable HDF5 file ({' '.join(str(exc).split())[:120]})") from exc
    if raw is None:
        raise ModelError(f"{p} holds weights only (no model_config): not a whole model",
                         "save the whole model with model.save('x.h5') or model.save('x.keras')")
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError as exc:
        raise ModelError(f"{p} has an unreadable model_config", "re-save the model") from exc


def source_fingerprint(path: str | os.PathLike) -> tuple[str, int]:
    """(sha256, bytes) of a model file, or of a SavedModel directory (its files' relative paths and contents, in
    sorted order)."""
    p = Path(path)
    if not p.is_dir():
        from edgeseq.core.fsio import sha256_file

        return sha256_file(p), p.stat().st_size
    digest, total = hashlib.sha256(), 0
    for f in sorted(x for x in p.rglob("*") if x.is_file() and not x.is_symlink()):
        digest.update(f.relative_to(p).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                total += len(chunk)
    return digest.hexdigest(), total


def is_saved_model_wrapper(model: Any) -> bool:
    """True for the keras.Model load_keras_model makes of a SavedModel (or a model built around one)."""
    import keras

    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.TFSMLayer):
            return True
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return False


def _graph_ops(fn: Any) -> list[str]:
    """Op types of a concrete function's graph and of every function in its library (loop bodies, calls)."""
    gd = fn.graph.as_graph_def()
    ops = [n.op for n in gd.node]
    for f in gd.library.function:
        ops.extend(n.op for n in f.node_def)
    return ops


def load_saved_model(path: str | os.PathLike, *, trust_model: bool = False) -> Any:
    """A keras.Model over the SavedModel's serving signature (one input, one output; the signature's own shapes)."""
    import keras
    import tensorflow as tf

    p = Path(path)
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a bad SavedModel; its text is the reason
        raise ModelError(f"cannot load the SavedModel {p}: {' '.join(str(exc).split())[:200]}",
                         "export it again with model.export(dir) or tf.saved_model.save") from None
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if SERVING_SIGNATURE not in signatures:
        have = ", ".join(sorted(signatures)) or "none"
        raise ModelError(f"the SavedModel {p} has no serving signature '{SERVING_SIGNATURE}' (signatures: {have})",
                         "export it with model.export(dir), or tf.saved_model.save(obj, dir, signatures=fn)")
    fn = signatures[SERVING_SIGNATURE]
    args, kwargs = fn.structured_input_signature
    specs = [*args, *kwargs.values()]
    outputs = fn.structured_outputs
    if len(specs) != 1:
        raise ModelError(f"the SavedModel's serving signature has {len(specs)} inputs; edgeseq converts "
                         "single-input sequence models", "export a model with one input")
    if not isinstance(outputs, dict) or len(outputs) != 1:
        n = len(outputs) if isinstance(outputs, dict | list | tuple) else 1
        raise ModelError(f"the SavedModel's serving signature has {n} outputs; edgeseq converts single-output "
                         "models", "export a model with one output")
    ops = _graph_ops(fn)
    unsafe = sorted({op for op in ops if op in UNSAFE_GRAPH_OPS})
    if unsafe and not trust_model:
        raise ModelError(f"the SavedModel {p} runs {', '.join(unsafe[:3])} (file or Python access) in its serving "
                         "signature", TRUST_HINT)
    spec = specs[0]
    layer = keras.layers.TFSMLayer(str(p), call_endpoint=SERVING_SIGNATURE, name="saved_model")
    layer.edgeseq_families = {"recurrent"} if any(op in LOOP_OPS for op in ops) else set()
    inp = keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name, name="input")
    out = layer(inp)
    if isinstance(out, dict):
        out = next(iter(out.values()))
    name = re.sub(r"[^A-Za-z0-9_]+", "_", p.name).strip("_") or "saved_model"
    model = keras.Model(inp, out, name=name)
    model.edgeseq_source = {"format": "saved_model", "signature": SERVING_SIGNATURE,
                            "loops": sum(op in LOOP_OPS for op in ops)}
    return model


def saved_model_vocab(model: Any) -> int | None:
    """A token-id SavedModel's vocabulary: rows of its 2-D variable named like an embedding table, else None."""
    import keras

    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.TFSMLayer):
            for v in layer.weights:
                name = getattr(v, "path", None) or getattr(v, "name", "")
                if "embedding" in name.lower() and len(v.shape) == 2:
                    return int(v.shape[0])
    return None


def holds_lambda(config: dict) -> bool:
    return "Lambda" in _walk_classes(config)


def _custom_classes(node: Any) -> set[tuple[str, str]]:
    """(class name, registered name) of every object in a config that Keras did not ship (a `registered_name` with a
    package, `Package>Class`)."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        reg = node.get("registered_name")
        if isinstance(node.get("class_name"), str) and isinstance(reg, str) and ">" in reg:
            found.add((node["class_name"], reg))
        for value in node.values():
            found |= _custom_classes(value)
    elif isinstance(node, list):
        for value in node:
            found |= _custom_classes(value)
    return found


def check_registered(path: str | os.PathLike, config: dict) -> None:
    """Every custom class the file names is registered in this process, else one line naming it and the option."""
    import keras

    missing = sorted(reg for cls, reg in _custom_classes(config) if keras.saving.get_registered_object(reg) is None)
    if missing:
        names = ", ".join(f"{r.split('>', 1)[1]} (registered as {r!r})" for r in missing[:4])
        raise ModelError(f"{path} uses custom class(es) {names} that no imported module registers",
                         "pass --custom-objects PATH.py (or a module name): the file that defines them with "
                         "@keras.saving.register_keras_serializable; importing it runs its code")


def register_edgeseq_layers() -> None:
    """Import the zoo's custom layers so their registered names resolve in safe mode."""
    try:
        import edgeseq.models.layers  # noqa: F401
    except ImportError:  # pragma: no cover - a trimmed install without the zoo
        pass


def load_keras_model(path: str | os.PathLike, *, trust_model: bool = False) -> Any:
    """A keras.Model from a .keras or .h5 file (a Lambda-holding file is refused unless `trust_model`), or from a
    SavedModel directory (see `load_saved_model`)."""
    from edgeseq.models.backend import use_tensorflow_keras

    use_tensorflow_keras(f"loading {Path(path).name} for conversion")  # whichever backend trained it
    fmt = model_format(path)
    if fmt == "saved_model":
        return load_saved_model(path, trust_model=trust_model)
    config = check_h5_file(path) if fmt == "h5" else check_keras_file(path)
    if holds_lambda(config) and not trust_model:
        raise ModelError(f"{path} holds a Python lambda layer, which safe mode refuses to load", TRUST_HINT)
    import keras

    from edgeseq.core.custom_objects import import_all

    register_edgeseq_layers()
    import_all()  # --custom-objects: the user's modules register their classes (in this process and every child)
    check_registered(path, config)
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust_model)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "lambda" in text.lower():
            raise ModelError(f"{path} holds code that safe mode refuses to load", TRUST_HINT) from exc
        what = "a Keras model saved with model.save('x.h5')" if fmt == "h5" else "a Keras 3 model saved with model.save()"
        raise ModelError(f"cannot load {path}: {text[:200]}", f"is it {what}?") from exc
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} does not hold a keras.Model")
    model, policy = float32_compute(model)
    model.edgeseq_source = {"format": fmt, **({"trained_dtype_policy": policy} if policy else {})}
    return model


def _is_mixed(value: Any) -> bool:
    """A mixed dtype policy: its name, or its config dict as a layer config holds it."""
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    return isinstance(value, str) and value.startswith("mixed_")


def _mixed_policy(layer: Any) -> str | None:
    name = getattr(getattr(layer, "dtype_policy", None), "name", None)
    return name if _is_mixed(name) else None


def _float32_config(config: Any) -> Any:
    """A layer config with every mixed `dtype` policy in it, nested layer configs included, made float32."""
    if isinstance(config, dict):
        return {k: "float32" if k == "dtype" and _is_mixed(v) else _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def float32_compute(model: Any) -> tuple[Any, str | None]:
    """(`model` with every layer computing in float32, the mixed policy it was trained with or None).

    A model trained with `--mixed-precision` (Keras's mixed_float16 / mixed_bfloat16) keeps float32 weights but
    computes in float16, and TF's converter refuses its float16 casts inside a recurrent loop ("the converter
    refused: ... transpose"). The same weights computing in float32 is what the device runs for every recipe (fp16
    stores float16 weights, not float16 math), and it is also the Keras reference the converted file is checked
    against."""
    import keras

    policies = sorted({p for layer in model._flatten_layers(include_self=False) if (p := _mixed_policy(layer))})
    if not policies:
        return model, None

    def clone(layer: Any) -> Any:  # wrapped layers too (Bidirectional's, TimeDistributed's, an RNN's cell)
        return layer.__class__.from_config(_float32_config(layer.get_config()))

    try:
        rebuilt = keras.models.clone_model(model, clone_function=clone, recursive=True)
        rebuilt.set_weights(model.get_weights())  # a mixed policy keeps its variables in float32 already
    except Exception as exc:  # a subclassed model cannot be cloned layer by layer
        raise ModelError(
            f"the model was trained with the {policies[0]} policy and cannot be rebuilt to compute in float32 "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})",
            "save it from a float32 copy: keras.mixed_precision.set_global_policy('float32'), rebuild, set_weights",
        ) from exc
    return rebuilt, policies[0]
