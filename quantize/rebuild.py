"""Rebuild a Keras model at a fixed shape (batch 1, fixed time axis), optionally with every RNN unrolled.

Why: on TF 2.21 / Keras 3 a recurrent layer with a free batch dimension converts only with Flex ops, and a looped
(WHILE) recurrent graph crashes the int8 / int16x8 calibrator. A batch-1 graph converts to builtin ops; an unrolled
one also quantizes. The rebuilt model carries the source model's weights, so its outputs are the same numbers.
Imports Keras; only the conversion child and the host's reference pass use this module.
"""

from __future__ import annotations

from typing import Any

from edgeseq.core.errors import ModelError


def is_token_input(model: Any) -> bool:
    """The single input is integer ids [batch, time] (a model whose first layer is an Embedding)."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1 or len(inputs[0].shape) != 2:
        return False
    return str(getattr(inputs[0], "dtype", "")).startswith(("int", "uint"))


def input_shape(model: Any) -> tuple:
    """The single input's shape, (batch, time, features), or (batch, time) for token ids; None for free axes."""
    if len(model.inputs) != 1:
        raise ModelError(
            f"the model has {len(model.inputs)} inputs; edgeseq converts single-input sequence models",
            "export a model with one [batch, time, features] (or [batch, time] token-id) input",
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 3 and not is_token_input(model):
        what = f"{model.inputs[0].dtype} " if len(shape) == 2 else ""
        raise ModelError(
            f"the model's input is {what}of shape {shape}; edgeseq expects [batch, time, features] or integer token "
            "ids [batch, time]",
            "give the model a 3-D input, or an int32 [batch, time] input for token ids",
        )
    return shape


def resolve_seq_len(model: Any, seq_len: int | None) -> tuple[int, int | None]:
    """(time steps, features) for the fixed-shape rebuild (features None for token ids); a variable time axis needs
    an explicit `seq_len`."""
    shape = input_shape(model)
    t, f = shape[1], (shape[2] if len(shape) == 3 else None)
    if len(shape) == 3 and f is None:
        raise ModelError("the model's feature axis is not fixed", "give the model a fixed number of features")
    if t is None:
        if seq_len is None:
            raise ModelError(
                "the model has a variable time axis; a converted model needs a fixed one",
                "pass --seq-len N (the sequence length the device will see)",
            )
        return int(seq_len), (int(f) if f is not None else None)
    if seq_len is not None and int(seq_len) != int(t):
        raise ModelError(
            f"--seq-len {seq_len} does not match the model's fixed time axis ({t})",
            f"drop --seq-len or pass --seq-len {t}",
        )
    return int(t), (int(f) if f is not None else None)


def fixed_batch_shape(model: Any, seq_len: int | None) -> tuple:
    """(1, T, F), or (1, T) for token ids."""
    steps, features = resolve_seq_len(model, seq_len)
    return (1, steps) if features is None else (1, steps, features)


def fixed_input(model: Any, seq_len: int | None, name: str = "input") -> Any:
    """A batch-1, fixed-length keras.Input for `model`; token ids are int32 (what the .tflite's input will be)."""
    import keras

    shape = fixed_batch_shape(model, seq_len)
    dtype = "int32" if len(shape) == 2 else model.inputs[0].dtype
    return keras.Input(batch_shape=shape, dtype=dtype, name=name)


def token_vocab(model: Any) -> int | None:
    """The vocabulary size (input_dim of the first Embedding, nested models included) of a token-id model, else
    None."""
    import keras

    if not is_token_input(model):
        return None
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
        if isinstance(layer, keras.Model):
            stack[:0] = list(layer.layers)
    return None


def has_recurrent(model: Any) -> bool:
    """True if any RNN layer (also inside Bidirectional or nested models) is in the model."""
    import keras

    def walk(layer: Any) -> bool:
        if isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional):
            return True
        if "recurrent" in (getattr(layer, "edgeseq_families", None) or ()):  # a SavedModel with a loop
            return True
        return any(walk(sub) for sub in getattr(layer, "layers", []) or [])

    return walk(model)


def _unrolled_config(config: dict) -> dict:
    """Set unroll=True in an RNN or Bidirectional layer config, including its wrapped layer configs."""
    config = dict(config)
    if "unroll" in config:
        config["unroll"] = True
    for key in ("layer", "backward_layer"):
        sub = config.get(key)
        if isinstance(sub, dict) and isinstance(sub.get("config"), dict):
            config[key] = dict(sub, config=_unrolled_config(sub["config"]))
    return config


def _clone_layer(layer: Any, unroll: bool) -> Any:
    import keras

    config = layer.get_config()
    if unroll and isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional):
        config = _unrolled_config(config)
    return layer.__class__.from_config(config)


def fixed_shape_model(model: Any, seq_len: int | None, *, unroll: bool) -> Any:
    """A batch-1, fixed-length functional model with `model`'s weights; RNNs unrolled when `unroll`. A model with
    several inputs gets batch-1 inputs named like its own (quantize/multi_input.py)."""
    import keras

    if len(model.inputs) > 1:
        from edgeseq.quantize.multi_input import fixed_inputs

        inp = fixed_inputs(model, seq_len)
        shape = tuple(inp[0].shape)
    else:
        shape = fixed_batch_shape(model, seq_len)
        inp = fixed_input(model, seq_len)
    if not unroll:
        # Shares the layers (and weights) of `model`: nothing to copy.
        return keras.Model(inp, model(inp), name=f"{model.name}_fixed")
    from edgeseq.quantize.loading import is_saved_model_wrapper

    if is_saved_model_wrapper(model):
        raise ModelError("a SavedModel's loops are traced graph ops, not Keras layers: they cannot be unrolled",
                         "convert the .keras file for the unrolled route, or use --rnn-strategy loop")
    try:
        clone = keras.models.clone_model(
            model, input_tensors=inp, clone_function=lambda layer: _clone_layer(layer, True), recursive=True
        )
    except Exception as exc:  # subclassed models cannot be cloned layer by layer
        raise ModelError(
            f"cannot rebuild this model unrolled ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
            "use --rnn-strategy loop, or build the model as a Functional/Sequential model",
        ) from exc
    if not isinstance(clone, keras.Model) or tuple(clone.inputs[0].shape) != shape or len(clone.inputs) != len(
            model.inputs):
        clone = keras.Model(inp, clone(inp), name=f"{model.name}_unrolled")
    src, dst = model.get_weights(), clone.get_weights()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst, strict=True)):
        raise ModelError(
            "the unrolled rebuild does not match the model's weights layout",
            "use --rnn-strategy loop",
        )
    clone.set_weights(src)
    return clone
