"""Step (streaming) models that share a trained sequence model's weights, and the sliding-window baseline.

A step model consumes one time step and carries everything it needs between calls as explicit tensors:

    recurrent:   {"x": (B, F), "state_<layer>_h": (B, units)[, "state_<layer>_c"]}  -> {"y", "state_...": next}
    transformer: {"x": (B, F), "pos": (B,) int32, "k_cache_<i>", "v_cache_<i>": (B, heads, capacity, head_dim)}
                 -> {"y", "k_cache_<i>_at_pos", "v_cache_<i>_at_pos": (B, heads, 1, head_dim)}

The naming contract (the device agent relies on it, never on tensor order): every input whose name is also an
output name is state, fed back from that output on the next step; an output named `<input>_at_pos` is one new slot
of that input (a KV cache), written by the runtime at index `pos` of axis 2 before the next step; `x` is the step's
features; `pos` (if present) is the step index from 0; `y` is the model's output as if the sequence ended here.

- Recurrent models (the zoo's and users' own: SimpleRNN, LSTM, GRU, any keras.layers.RNN with a plain cell, stacked)
  step through each layer's `.cell`. Layers between and after them must work one step at a time (Dense, Dropout,
  normalization, activations, Conv1D with kernel 1, TimeDistributed, "last" pooling); anything that needs other time
  steps is refused with the reason. A Bidirectional layer (or go_backwards) reads the sequence from its end, so it
  cannot produce an output before the whole window has arrived: refused.
- The zoo Transformer streams when its attention is causal: a fixed-capacity KV cache per block, read-only in the
  graph (the step attends to slots 0..pos-1 of the cache plus its own new key/value; unfilled slots are masked) and
  the new key/value returned for the runtime to write at slot `pos`. Each cached entry is thus quantized once, when
  written: passing the whole cache through the graph every step re-rounded every old int8 entry at every step.
  Positions 0..capacity-1 are served.
- The sliding-window baseline is the batch model itself at a fixed window W, re-run for every new step.

Keras is imported lazily, in the builders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.errors import InputError, ModelError

BIDIRECTIONAL_WHY = (
    "a bidirectional RNN reads the sequence backwards from its last step, so no output exists before the whole "
    "window has arrived: it cannot stream one step at a time"
)
BIDIRECTIONAL_HINT = "retrain with bidirectional=False, or measure the sliding-window baseline with --window W"
NONCAUSAL_WHY = (
    "its attention is not causal: every output attends to future steps, so a step's output is not final until the "
    "window ends and there is no KV cache to keep"
)
NONCAUSAL_HINT = "retrain with causal=True (edgeseq train ... --set causal=true), or use the sliding-window baseline --window W"

# Layers that act on each time step on its own (applied to a (B, 1, F) tensor in the step model).
_PER_STEP = {
    "Dense", "Activation", "Softmax", "ReLU", "ELU", "LeakyReLU", "PReLU", "LayerNormalization",
    "BatchNormalization", "Normalization", "Rescaling", "UnitNormalization",
}
# Layers that are the identity at inference.
_IDENTITY = {"Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}
_STATE_SUFFIXES = {"LSTM": ("h", "c"), "GRU": ("h",), "SimpleRNN": ("h",)}


@dataclass(frozen=True)
class StreamInfo:
    """What kind of step model a sequence model gives: 'recurrent' or 'transformer' (KV cache)."""

    kind: str
    seq_len: int | None
    num_features: int
    detail: dict


# ----------------------------------------------------------------------------------------------- analysis
def _flatten_chain(model: Any) -> list:
    """The model's layers in call order, nested Sequential/Functional models expanded; ModelError if not a chain."""
    import keras

    out = []
    prev = model.inputs[0] if getattr(model, "inputs", None) else None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            inp = layer.input
        except Exception as exc:  # noqa: BLE001 - a layer used twice has no single input
            raise ModelError(
                f"layer {layer.name!r} is used more than once; edgeseq streams models whose layers form one chain",
                "build the model as a plain stack of layers",
            ) from exc
        if isinstance(inp, (list, tuple, dict)) or (prev is not None and inp is not prev):
            raise _not_chain(layer)
        if isinstance(layer, keras.Model) and not isinstance(layer, keras.layers.RNN):
            out.extend(_flatten_chain(layer))
        else:
            out.append(layer)
        prev = layer.output
    return out


def _not_chain(layer: Any) -> ModelError:
    return ModelError(
        f"layer {layer.name!r} does not take the previous layer's output; edgeseq streams recurrent models "
        "whose layers form one chain (branches and skip connections are not supported)",
        "build the model as a plain stack of layers, or measure the sliding-window baseline with --window W",
    )


def _find_bidirectional(model: Any) -> Any | None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            return layer
        if isinstance(layer, keras.layers.RNN) and getattr(layer, "go_backwards", False):
            return layer
        if isinstance(layer, keras.Model):
            found = _find_bidirectional(layer)
            if found is not None:
                return found
    return None


def _attention_layers(model: Any) -> list:
    import keras

    from edgeseq.models.layers import MultiHeadSelfAttention

    found = []
    for layer in model.layers:
        if isinstance(layer, (MultiHeadSelfAttention, keras.layers.MultiHeadAttention)):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_attention_layers(layer))
    return found


def _shape(model: Any) -> tuple[int | None, int]:
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 3:
        raise ModelError(
            "a streaming model needs one [batch, time, features] input",
            "export a single-input sequence model",
        )
    _, t, f = model.inputs[0].shape
    if f is None:
        raise ModelError("the model's feature axis is not fixed", "give the model a fixed number of features")
    return (int(t) if t is not None else None), int(f)


def analyze_streaming(model: Any) -> StreamInfo:
    """Which step model `model` gives, or the typed error that says why it cannot stream."""
    import keras

    seq_len, features = _shape(model)
    bi = _find_bidirectional(model)
    if bi is not None:
        raise InputError(f"cannot stream {model.name}: layer {bi.name!r} is bidirectional; {BIDIRECTIONAL_WHY}",
                         BIDIRECTIONAL_HINT)
    attention = _attention_layers(model)
    if attention:
        from edgeseq.models.layers import MultiHeadSelfAttention

        foreign = [a for a in attention if not isinstance(a, MultiHeadSelfAttention)]
        if foreign:
            raise ModelError(
                f"cannot stream {model.name} with a KV cache: layer {foreign[0].name!r} is keras MultiHeadAttention; "
                "edgeseq builds KV-cache step models for the zoo Transformer (MultiHeadSelfAttention)",
                "measure the sliding-window baseline with --window W instead",
            )
        noncausal = [a for a in attention if not a.causal]
        if noncausal:
            raise InputError(f"cannot stream {model.name}: {NONCAUSAL_WHY} (layer {noncausal[0].name!r})",
                             NONCAUSAL_HINT)
        pool = _get(model, "pool")
        if pool is None or getattr(pool, "mode", None) != "last":
            raise InputError(
                f"cannot stream {model.name}: its pooling averages over the whole window, so a step's output "
                "changes with every later step",
                "retrain the causal Transformer with pooling='last' (the default for causal=True)",
            )
        return StreamInfo("transformer", seq_len, features, {"num_layers": len(attention)})
    recurrent = [ly for ly in _flatten_chain(model) if isinstance(ly, keras.layers.RNN)]
    if not recurrent:
        raise ModelError(
            f"cannot stream {model.name}: it has neither recurrent layers nor causal self-attention",
            "streaming exports RNN/LSTM/GRU models and the causal zoo Transformer",
        )
    _recurrent_plan(model)  # refuses layers that need other time steps
    return StreamInfo("recurrent", seq_len, features, {"layers": [ly.name for ly in recurrent]})


def _get(model: Any, name: str) -> Any | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------------- recurrent
def _state_names(layer: Any) -> list[str]:
    size = layer.cell.state_size
    sizes = list(size) if isinstance(size, (list, tuple)) else [size]
    suffixes = _STATE_SUFFIXES.get(type(layer).__name__)
    if suffixes is None or len(suffixes) != len(sizes):
        suffixes = tuple(f"s{i}" for i in range(len(sizes)))
    return [f"state_{layer.name}_{s}" for s in suffixes]


def _state_sizes(layer: Any) -> list[int]:
    size = layer.cell.state_size
    sizes = list(size) if isinstance(size, (list, tuple)) else [size]
    for s in sizes:
        if not isinstance(s, int):
            raise ModelError(f"layer {layer.name!r} has a state of shape {s}; edgeseq streams vector states",
                             "use SimpleRNN, LSTM or GRU layers")
    return sizes


def _recurrent_plan(model: Any) -> list[tuple[str, Any]]:
    """(action, layer) per layer: 'rnn', 'step' (per-step layer), 'inner' (TimeDistributed), 'skip'."""
    import keras

    from edgeseq.models.layers import SequencePooling

    plan = []
    for layer in _flatten_chain(model):
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.RNN):
            if getattr(layer, "go_backwards", False):
                raise InputError(f"cannot stream {model.name}: layer {layer.name!r} runs backwards; "
                                 f"{BIDIRECTIONAL_WHY}", BIDIRECTIONAL_HINT)
            if isinstance(layer.cell, keras.layers.StackedRNNCells):
                raise ModelError(f"layer {layer.name!r} wraps stacked cells; edgeseq streams one cell per layer",
                                 "stack separate RNN layers instead")
            _state_sizes(layer)
            plan.append(("rnn", layer))
        elif kind in _IDENTITY:
            plan.append(("skip", layer))
        elif kind in _PER_STEP:
            plan.append(("step", layer))
        elif isinstance(layer, SequencePooling) and layer.mode == "last":
            plan.append(("skip", layer))
        elif kind == "Conv1D" and tuple(layer.kernel_size) == (1,) and layer.padding in ("valid", "same", "causal"):
            plan.append(("step", layer))
        elif kind == "TimeDistributed" and type(layer.layer).__name__ in _PER_STEP:
            plan.append(("inner", layer))
        else:
            why = {
                "Conv1D": "a Conv1D with kernel > 1 looks at neighbouring time steps",
                "GlobalAveragePooling1D": "it averages over the whole sequence",
                "GlobalMaxPooling1D": "it takes a maximum over the whole sequence",
                "SequencePooling": "it averages over the whole sequence",
                "Flatten": "it mixes all time steps into one vector",
            }.get(kind, f"edgeseq does not know how to apply a {kind} layer one step at a time")
            raise InputError(f"cannot stream {model.name}: layer {layer.name!r} ({kind}): {why}",
                             "streaming exports plain stacks of RNN/LSTM/GRU layers with per-step layers around them")
    return plan


def _make_recurrent_step_layer(model: Any):
    import keras
    from keras import ops

    plan = _recurrent_plan(model)

    class RecurrentStep(keras.layers.Layer):
        """One time step through the sequence model's layers and cells (weights shared, not copied)."""

        def __init__(self):
            super().__init__(name="recurrent_step")
            self.steps = [layer for _, layer in plan]

        def call(self, inputs):
            h = inputs["x"]  # (B, F)
            out = {}
            for action, layer in plan:
                if action == "rnn":
                    names = _state_names(layer)
                    states = [inputs[n] for n in names]
                    y, new = layer.cell(h, states if len(states) > 1 else states, training=False)
                    new = list(new) if isinstance(new, (list, tuple)) else [new]
                    for n, s in zip(names, new, strict=True):
                        out[n] = s
                    h = y
                elif action == "step":
                    h = ops.squeeze(layer(ops.expand_dims(h, 1), training=False), 1)
                elif action == "inner":
                    h = ops.squeeze(layer.layer(ops.expand_dims(h, 1), training=False), 1)
            out["y"] = h
            return out

    return RecurrentStep()


def recurrent_state_specs(model: Any) -> list[tuple[str, int]]:
    """(input name, size) of every state tensor, in layer order."""
    specs = []
    for action, layer in _recurrent_plan(model):
        if action == "rnn":
            specs.extend(zip(_state_names(layer), _state_sizes(layer), strict=True))
    return specs


# ----------------------------------------------------------------------------------------------- transformer
def _transformer_parts(model: Any) -> dict:
    from edgeseq.models.layers import LearnedPositionalEncoding, SinusoidalPositionalEncoding

    names = [ly.name for ly in model.layers]
    need = ["input_proj", "pos_encoding", "final_norm", "pool"]
    missing = [n for n in need if n not in names]
    if missing:
        raise ModelError(
            f"cannot build a KV-cache step model for {model.name}: no layer named {missing[0]!r}",
            "KV-cache streaming supports the zoo Transformer (edgeseq train); use --window W for other models",
        )
    blocks = []
    i = 0
    while f"block{i}_attn" in names:
        blocks.append({k: model.get_layer(f"block{i}_{k}") for k in ("norm1", "attn", "add1", "norm2", "ff1", "ff2", "add2")})
        i += 1
    pos = model.get_layer("pos_encoding")
    if not isinstance(pos, (SinusoidalPositionalEncoding, LearnedPositionalEncoding)):
        raise ModelError(f"unknown positional encoding {type(pos).__name__} in {model.name}")
    after = names[names.index("pool") + 1 :]
    tail = []
    for n in after:
        layer = model.get_layer(n)
        kind = type(layer).__name__
        if kind in _IDENTITY:
            continue
        if kind not in _PER_STEP:
            raise InputError(f"cannot stream {model.name}: layer {n!r} ({kind}) after the pooling is not per-step")
        tail.append(layer)
    return {"input_proj": model.get_layer("input_proj"), "pos": pos, "blocks": blocks,
            "final_norm": model.get_layer("final_norm"), "tail": tail}


def kv_cache_specs(model: Any, capacity: int) -> list[tuple[str, tuple[int, int, int]]]:
    """(input name, (heads, capacity, head_dim)) of every cache tensor, block by block: k then v."""
    parts = _transformer_parts(model)
    specs = []
    for i, b in enumerate(parts["blocks"]):
        attn = b["attn"]
        shape = (attn.num_heads, int(capacity), attn.head_dim)
        specs += [(f"k_cache_{i}", shape), (f"v_cache_{i}", shape)]
    return specs


def _position_table(pos_layer: Any, capacity: int, d_model: int) -> np.ndarray:
    from edgeseq.models.layers import LearnedPositionalEncoding, sinusoidal_table

    if isinstance(pos_layer, LearnedPositionalEncoding):
        if capacity > pos_layer.max_len:
            raise InputError(
                f"--kv-capacity {capacity} is longer than the learned positional table ({pos_layer.max_len} positions)",
                f"use --kv-capacity <= {pos_layer.max_len}, or a sinusoidal encoding",
            )
        return np.asarray(pos_layer.embeddings)[:capacity].astype(np.float32)
    return sinusoidal_table(capacity, d_model)


MASK_MARGIN = 30.0  # masked scores sit this far below the row's smallest: weight <= e^-30 of the largest


def _masked_attention(attn: Any, q: Any, k: Any, v: Any, valid: Any) -> Any:
    """attn.attend(q, k, v, valid) for inference, written so that every tensor keeps a bounded range.

    The batch layer fills masked scores with -1e9: calibrated into one int8 scale, such a constant leaves the real
    scores a handful of quantization steps. Here a masked slot's score is the row's smallest score minus 30, which
    gives it a weight below e^-30 (float parity ~1e-7) while the scores' int8 range grows by 30 at most. One SOFTMAX
    op, no DIV: tflite-runtime 2.14 has no int8 DIV kernel.
    """
    from keras import ops

    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(attn.head_dim))
    low = ops.min(scores, axis=-1, keepdims=True) - MASK_MARGIN
    return ops.matmul(ops.softmax(ops.where(valid, scores, low), axis=-1), v)


def _make_transformer_step_layer(model: Any, capacity: int):
    import keras
    from keras import ops

    parts = _transformer_parts(model)
    d_model = int(parts["input_proj"].units)
    table = _position_table(parts["pos"], capacity, d_model)

    class TransformerStep(keras.layers.Layer):
        """One token through the causal Transformer, reading a fixed-capacity KV cache; returns the new slot."""

        def __init__(self):
            super().__init__(name="kv_cache_step")
            self.parts = parts
            self.table = table

        def call(self, inputs):
            x, pos = inputs["x"], ops.cast(inputs["pos"], "int32")  # (B, F), (B,)
            h = parts["input_proj"](ops.expand_dims(x, 1))  # (B, 1, d)
            h = h + ops.expand_dims(ops.take(ops.convert_to_tensor(self.table), pos, axis=0), 1)
            slots = ops.expand_dims(ops.arange(capacity + 1, dtype="int32"), 0)  # (1, C + 1): the cache, then self
            p = ops.expand_dims(pos, 1)  # (B, 1)
            # cache slots written so far (0..pos-1) and the step's own key/value (slot C of the extended axis)
            valid = ops.logical_or(ops.less(slots, p), ops.equal(slots, capacity))[:, None, None, :]
            out = {}
            for i, b in enumerate(parts["blocks"]):
                attn = b["attn"]
                q, k, v = attn.project_qkv(b["norm1"](h))  # (B, H, 1, hd)
                out[f"k_cache_{i}_at_pos"], out[f"v_cache_{i}_at_pos"] = k, v
                kc = ops.concatenate([inputs[f"k_cache_{i}"], k], axis=2)  # (B, H, C + 1, hd)
                vc = ops.concatenate([inputs[f"v_cache_{i}"], v], axis=2)
                a = attn.project_output(attn.merge_heads(_masked_attention(attn, q, kc, vc, valid)))
                h = b["add1"]([h, a])
                f = b["ff2"](b["ff1"](b["norm2"](h)))
                h = b["add2"]([h, f])
            y = parts["final_norm"](h)[:, -1, :]
            for layer in parts["tail"]:
                y = layer(y)
            out["y"] = y
            return out

    return TransformerStep()


# ----------------------------------------------------------------------------------------------- builders
def build_step_model(model: Any, *, kv_capacity: int | None = None, batch_size: int | None = 1) -> Any:
    """The step model of `model` (see the module docstring). `kv_capacity` defaults to the model's seq_len."""
    import keras

    info = analyze_streaming(model)
    F = info.num_features
    x = keras.Input(batch_shape=(batch_size, F), name="x")
    inputs = {"x": x}
    if info.kind == "recurrent":
        for name, size in recurrent_state_specs(model):
            inputs[name] = keras.Input(batch_shape=(batch_size, size), name=name)
        step = _make_recurrent_step_layer(model)
        name = f"{model.name}_step"
    else:
        capacity = kv_capacity or info.seq_len
        if not capacity or capacity < 1:
            raise InputError("a KV-cache step model needs a capacity", "pass --kv-capacity N")
        inputs["pos"] = keras.Input(batch_shape=(batch_size,), dtype="int32", name="pos")
        for name, shape in kv_cache_specs(model, capacity):
            inputs[name] = keras.Input(batch_shape=(batch_size, *shape), name=name)
        step = _make_transformer_step_layer(model, capacity)
        name = f"{model.name}_kv{capacity}"
    outputs = step(inputs)
    # A list of inputs, not a dict: TFLiteConverter.from_keras_model takes a Keras-2 code path for dict inputs.
    return keras.Model(list(inputs.values()), outputs, name=name.replace("-", "_"))


def build_window_model(model: Any, window: int, *, batch_size: int | None = 1) -> Any:
    """The batch model rebuilt for a fixed window of `window` steps (same weights), re-run for every new step."""
    import keras

    _, features = _shape(model)
    if not isinstance(window, int) or window < 1:
        raise InputError(f"--window must be a positive integer, got {window!r}")
    inp = keras.Input(batch_shape=(batch_size, window, features), dtype=model.inputs[0].dtype, name="inputs")
    try:
        clone = keras.models.clone_model(model, input_tensors=inp)
        if tuple(clone.inputs[0].shape)[1:] != (window, features):
            clone = keras.Model(inp, clone(inp))
        clone.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - layers that bake in the length fail here
        first = " ".join(str(exc).split())[:200]
        raise InputError(f"cannot rebuild {model.name} for a window of {window} steps: {first}",
                         "pick a window the model supports (a Transformer's window must be <= its max_len)") from exc
    return keras.Model(clone.inputs[0], clone.outputs[0], name=f"{model.name}_win{window}".replace("-", "_"))


def initial_state(step_model: Any, batch: int = 1) -> dict[str, np.ndarray]:
    """Zeros for every state input (and pos = 0 where there is one)."""
    out = {}
    for t in step_model.inputs:
        name = t.name.split(":")[0]
        if name == "x":
            continue
        shape = (batch, *[int(d) for d in t.shape[1:]])
        out[name] = np.zeros(shape, np.int32 if name == "pos" else np.float32)
    return out


def run_steps(step_model: Any, X: np.ndarray, *, collect: bool = False, record_every: int = 0) -> Any:
    """Feed X (N, T, F) one step at a time through a batch-None step model in Keras.

    Returns the last step's y (N, ...), or with `collect` the stacked y of every step (N, T, ...). With
    `record_every` k > 0, also returns the step inputs seen at every k-th step (calibration samples for int8).
    """
    X = np.asarray(X, np.float32)
    state = initial_state(step_model, len(X))
    names = [n for n in state if n != "pos"]
    ys, seen = [], []
    y = None
    for t in range(X.shape[1]):
        feed = {"x": X[:, t], **state}
        if record_every and t % record_every == 0:
            seen.append({k: np.array(v) for k, v in feed.items()})
        out = step_model(feed, training=False)
        y = np.asarray(out["y"])
        for n in names:
            if n in out:
                state[n] = np.asarray(out[n])
            else:  # a KV cache: the step's new slot is written at index pos
                state[n] = state[n].copy()
                state[n][:, :, t] = np.asarray(out[f"{n}_at_pos"])[:, :, 0]
        if "pos" in feed:
            state["pos"] = feed["pos"] + 1
        if collect:
            ys.append(y)
    result = np.stack(ys, 1) if collect else y
    return (result, seen) if record_every else result
