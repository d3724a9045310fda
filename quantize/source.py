"""What a manifest says about the source model (`source`): its name, format, fingerprint, input kind, output head
(how its outputs are scored), the --custom-objects it needed. Keras objects are passed in; no Keras import here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_GENERIC_STEMS = {"model", "best", "final", "last", "checkpoint"}


def default_name(model_path: str | os.PathLike) -> str:
    """runs/gru-jv/model.keras -> 'gru-jv'; their_model.keras -> 'their_model'."""
    p = Path(model_path)
    stem = p.parent.name if p.stem.lower() in _GENERIC_STEMS and p.parent.name else p.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "model"


def _guess_task(model: Any) -> str | None:
    """Classification when the model ends in a softmax (a Softmax layer or a Dense with softmax activation)."""
    last = model.layers[-1] if model.layers else None
    if last is None:
        return None
    if type(last).__name__ == "Softmax" or getattr(last, "get_config", dict)().get("activation") == "softmax":
        return "classification"
    return None


def custom_objects_record() -> list[dict]:
    """The --custom-objects modules this conversion imported: spec, and a file's sha256."""
    from edgeseq.core.custom_objects import listed
    from edgeseq.core.fsio import sha256_file

    return [{"module": s, **({"sha256": sha256_file(s)} if s.endswith(".py") and Path(s).is_file() else {})}
            for s in listed()]


def head_record(model: Any) -> dict:
    """The output layer's activation and width (`source.head`): how a one-unit-per-label output is scored (sigmoid:
    threshold 0.5; linear: logits, threshold 0) and compared (thresholded agreement), edgeseq.core.metrics."""
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    while layer is not None and type(layer).__name__ in ("TimeDistributed", "Bidirectional") and hasattr(layer, "layer"):
        layer = layer.layer
    name = type(layer).__name__ if layer is not None else ""
    activation = "softmax" if name == "Softmax" else (getattr(layer, "get_config", dict)() or {}).get("activation")
    units = model.outputs[0].shape[-1]
    return {"activation": activation if isinstance(activation, str) else None,
            "units": int(units) if units is not None else None}


def model_input_record(model: Any) -> dict:
    """What the model's input is, for the manifest (`source.input`): features, or token ids with the vocabulary
    size (what the agent's random ids and evaluate's id check read)."""
    from edgeseq.quantize.loading import saved_model_vocab
    from edgeseq.quantize.rebuild import is_token_input, token_vocab

    if not is_token_input(model):
        return {"kind": "features", "dtype": "float32"}
    vocab, where = token_vocab(model), "Embedding input_dim"
    if vocab is None:
        vocab, where = saved_model_vocab(model), "the SavedModel's embedding variable"
    return {"kind": "token-ids", "dtype": "int32", "vocab_size": vocab, "vocab_from": where if vocab else None}


def source_record(path: Path, model: Any, task: str | None, input_record: dict) -> dict:
    """The manifest's `source`: path, format, sha256 and bytes (of a SavedModel directory's files), parameters,
    task, input, and whether the model gives one output per time step."""
    from edgeseq.quantize.loading import source_fingerprint

    sha, size = source_fingerprint(path)
    loaded = getattr(model, "edgeseq_source", None) or {}
    fmt, policy = loaded.get("format", "keras"), loaded.get("trained_dtype_policy")
    out_rank = len(model.outputs[0].shape)
    return {"path": str(path), "format": fmt, "sha256": sha, "bytes": size, "parameters": int(model.count_params()),
            "task": task, "input": input_record, "per_step_output": out_rank == 3, "head": head_record(model),
            "output_shape": [None if d is None else int(d) for d in model.outputs[0].shape],
            **({"custom_objects": custom_objects_record()} if custom_objects_record() else {}),
            **({"trained_dtype_policy": policy, "converted_compute": "float32"} if policy else {})}
