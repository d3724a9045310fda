"""Models with several inputs: a `[T, F]` sequence beside static features (`[F2]`), or several sequences.

Every input is addressed by its Keras name, which the batch-1 rebuild keeps, so it is also the `.tflite` signature's
name and the data's key: an `.npz` holds `X_train_<name>` / `X_test_<name>` for each input (edgeseq.datasets.npz),
calibration and validation take the same rows of every input, and random inputs are drawn per input's shape and
dtype (N(0, 1) features, ids 0..V-1 for an Embedding's int input). An input with a time axis is `[batch, T, F]` (or
int `[batch, T]` ids); any other is static (`[batch, F]`), held for a whole stream by `convert --stream`.
No Keras import at module level.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from edgeseq.core.errors import InputError, ModelError

PREFIX = {"train": "X_train_", "test": "X_test_"}


def input_specs(model: Any, seq_len: int | None = None) -> list[dict]:
    """One record per model input, in the model's order: name, dtype, kind (sequence | token-ids | static), the
    batch-1 shape (the free time axis set to `seq_len`)."""
    specs = []
    for t in model.inputs:
        shape, dtype = tuple(t.shape), str(getattr(t, "dtype", "float32"))
        ints = dtype.startswith(("int", "uint"))
        kind = "sequence" if len(shape) == 3 else "token-ids" if len(shape) == 2 and ints and _feeds_embedding(
            model, t) else "static"
        dims = list(shape[1:])
        if kind != "static" and dims[0] is None:
            if seq_len is None:
                raise ModelError(f"input {t.name!r} has a variable time axis; a converted model needs a fixed one",
                                 "pass --seq-len N (the sequence length the device will see)")
            dims[0] = int(seq_len)
        if any(d is None for d in dims):
            raise ModelError(f"input {t.name!r} has a free axis besides time ({list(shape)})",
                             "give every input a fixed shape")
        specs.append({"name": str(t.name), "dtype": "int32" if ints else "float32", "kind": kind,
                      "shape": [1, *(int(d) for d in dims)]})
    return specs


def _feeds_embedding(model: Any, tensor: Any) -> bool:
    """An int [batch, T] input read by an Embedding (token ids) rather than an int static vector."""
    import keras

    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.Embedding):
            try:
                if any(i is tensor for i in keras.tree.flatten(layer.input)):
                    return True
            except (AttributeError, ValueError):
                continue
    return len(model.inputs) == 1


def time_inputs(specs: list[dict]) -> list[dict]:
    return [s for s in specs if s["kind"] != "static"]


def fixed_inputs(model: Any, seq_len: int | None) -> list[Any]:
    """Batch-1 keras.Inputs named like the model's, so the .tflite signature names match the data's keys."""
    import keras

    return [keras.Input(batch_shape=tuple(s["shape"]), dtype=s["dtype"], name=s["name"])
            for s in input_specs(model, seq_len)]


def random_inputs(specs: list[dict], n: int, rng: np.random.Generator, vocab: dict | None = None) -> dict:
    """n random samples per input: N(0, 1) floats, uniform ids 0..V-1 for token inputs (V from `vocab`)."""
    from edgeseq.quantize.calibration import random_ids

    out = {}
    for s in specs:
        shape = (n, *s["shape"][1:])
        if s["dtype"] == "int32":
            out[s["name"]] = random_ids(rng, shape, (vocab or {}).get(s["name"]))
        else:
            out[s["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


def take(X: dict, idx: np.ndarray) -> dict:
    return {k: np.ascontiguousarray(v[idx]) for k, v in X.items()}


def check_data(name: str, arrays: dict, specs: list[dict], split: str) -> dict:
    """The data's arrays for `split`, keyed and shaped like the model's inputs (one line naming the key otherwise)."""
    out = {}
    for s in specs:
        if s["name"] not in arrays:
            raise InputError(f"data set {name} has no array for the model's input {s['name']!r} (key "
                             f"'{PREFIX[split]}{s['name']}')", f"keys there: {', '.join(sorted(arrays))}; name each "
                             "X_train_<input>/X_test_<input> after the model's keras.Input(name=...)")
        arr = arrays[s["name"]]
        if list(arr.shape[1:]) != s["shape"][1:]:
            raise InputError(f"data set {name}: input {s['name']!r} has samples of shape {list(arr.shape[1:])} but "
                             f"the model takes {s['shape'][1:]}", "use the data the model was trained on")
        out[s["name"]] = arr.astype(np.int32 if s["dtype"] == "int32" else np.float32, copy=False)
    sizes = {len(v) for v in out.values()}
    if len(sizes) != 1:
        raise InputError(f"data set {name}: the inputs of split {split} have different sample counts {sorted(sizes)}",
                         "give every input one row per sample")
    return out


def as_list(X: dict | np.ndarray, specs: list[dict] | None) -> Any:
    """Keras's order of a dict of inputs (what model.predict and the representative dataset take)."""
    if not isinstance(X, dict):
        return X
    return [X[s["name"]] for s in specs] if specs else list(X.values())


def count(X: dict | np.ndarray) -> int:
    return len(next(iter(X.values()))) if isinstance(X, dict) else len(X)


def indices_sha(idx: np.ndarray) -> str:
    return hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest()


def several_inputs(model: Any, seq_len: int | None, calibration: Any) -> tuple[int, int | None, dict, Any]:
    """(time steps, features of the first time-axis input, source.input, validation inputs) of a model with several
    inputs."""
    from edgeseq.quantize.calibration import prepare_multi_inputs

    specs = input_specs(model, seq_len)
    timed = time_inputs(specs)
    if not timed:
        raise ModelError("none of the model's inputs has a time axis", "edgeseq converts sequence models: give one "
                         "input the shape [batch, time, features]")
    first = timed[0]
    vocab = token_vocab_of(model) if any(s["kind"] == "token-ids" for s in specs) else None
    record = {"kind": "several", "dtype": "float32", "inputs": [dict(s, shape=s["shape"][1:]) for s in specs],
              **({"vocab_size": vocab} if vocab else {})}
    features = first["shape"][2] if len(first["shape"]) == 3 else None
    return first["shape"][1], features, record, prepare_multi_inputs(calibration, specs, vocab)


def token_vocab_of(model: Any) -> int | None:
    """input_dim of the model's first Embedding (several inputs: the vocabulary of its token-id input)."""
    import keras

    layers = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, keras.layers.Embedding)]
    return int(layers[0].input_dim) if layers else None
