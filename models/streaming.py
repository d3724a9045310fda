"""Step (streaming) models that share a trained sequence model's weights, and the sliding-window baseline.

A step model consumes one time step and carries everything it needs between calls as explicit tensors:

    recurrent:   {"x": (B, F), "state_<layer>_h": (B, units)[, "state_<layer>_c"]}  -> {"y", "state_...": next}
    conv1d:      {"state_<layer>_buf": (B, (k-1)*dilation, C_in)[, "state_<layer>_fill"]}  (carried like the above)
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
- Users' own functional graphs (edgeseq.models.graph.step) stream node by node, residual connections included: a
  causal keras MultiHeadAttention becomes the same kind of KV-cache step from the layer's own projections, a Conv1D
  with kernel k > 1 and stride 1 keeps a ring buffer of its last (k-1)*dilation inputs (padding "causal" exact,
  "valid" with a delay of (k-1)*dilation steps, `stream_delay`), and learned or constant position tables add row
  `pos`. Plain chains of RNN cells keep the recurrent path above; the zoo Transformer keeps its own.
- The sliding-window baseline is the batch model itself at a fixed window W, re-run for every new step.

Keras is imported lazily, in the builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.core.errors import InputError, ModelError
from edgeseq.models.recurrent_step import (  # noqa: F401 - recurrent_state_specs is public here too
    BIDIRECTIONAL_HINT,
    BIDIRECTIONAL_WHY,
    _flatten_chain,
    _make_recurrent_step_layer,
    _recurrent_plan,
    recurrent_state_specs,
)
from edgeseq.models.streamkind import StreamKind
from edgeseq.models.transformer_step import _make_transformer_step_layer
from edgeseq.models.transformer_step import kv_cache_specs as _zoo_kv_cache_specs

NONCAUSAL_WHY = (
    "its attention is not causal: every output attends to future steps, so a step's output is not final until the "
    "window ends and there is no KV cache to keep"
)
NONCAUSAL_HINT = "retrain with causal=True (edgeseq train ... --set causal=true), or use the sliding-window baseline --window W"


@dataclass(frozen=True)
class StreamInfo:
    """What kind of step model a sequence model gives: StreamKind.RECURRENT_STEP or StreamKind.KV_CACHE."""

    kind: StreamKind
    seq_len: int | None
    num_features: int | None  # None: token ids (one int id per step; x is an int32 (B,) input)
    detail: dict


# ----------------------------------------------------------------------------------------------- analysis
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


def _stateful_layers(model: Any) -> list:
    """RNN layers and Conv1D layers with kernel > 1 (nested models included): what a step model carries state for."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.RNN):
            found.append(layer)
        elif isinstance(layer, keras.layers.Conv1D) and max(layer.kernel_size) > 1:
            found.append(layer)
        elif isinstance(layer, keras.layers.GlobalAveragePooling1D | keras.layers.GlobalMaxPooling1D):
            found.append(layer)  # running mean / max over time
        elif isinstance(layer, keras.Model):
            found.extend(_stateful_layers(layer))
    return found


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


def _token_ids(model: Any) -> bool:
    """One integer [batch, time] input: token ids (an Embedding first)."""
    inputs = getattr(model, "inputs", None) or []
    return len(inputs) == 1 and len(inputs[0].shape) == 2 and str(inputs[0].dtype).startswith(("int", "uint"))


def held_inputs(model: Any) -> list[tuple[str, tuple]]:
    """(name, shape without batch) of the inputs without a time axis (static features, [batch, F]): a step model
    takes them as they are at every step, held for the whole stream. Refused when more than one input has a time
    axis (which would the step's x be?)."""
    if len(getattr(model, "inputs", None) or []) < 2:
        return []
    timed = [t for t in model.inputs if len(t.shape) == 3 or (len(t.shape) == 2 and str(t.dtype).startswith(
        ("int", "uint")) and t.shape[1] is None)]
    timed = timed or [t for t in model.inputs if len(t.shape) == 3]
    if len(timed) != 1:
        raise InputError(f"cannot stream {model.name}: {len(timed)} of its inputs have a time axis "
                         f"({', '.join(str(t.name) for t in timed)}); a step model takes one step of one sequence",
                         "stream a model with one sequence input (other inputs are held for the whole stream), or "
                         "measure the sliding-window baseline of a single-input model with --window W")
    held = [(str(t.name), tuple(int(d) for d in t.shape[1:])) for t in model.inputs if t is not timed[0]]
    for name, shape in held:
        if len(shape) != 1 or name in ("x", "pos", "y"):
            raise InputError(f"cannot stream {model.name}: input {name!r} ({list(shape)}) is neither the sequence "
                             "nor a static feature vector [batch, F] named other than x, pos and y",
                             "give static inputs the shape [batch, F] and their own names")
    return held


def _time_input(model: Any) -> Any:
    """The one input with a time axis (the only input of a single-input model)."""
    if len(model.inputs) == 1:
        return model.inputs[0]
    held = {n for n, _ in held_inputs(model)}
    return next(t for t in model.inputs if str(t.name) not in held)


def _shape(model: Any) -> tuple[int | None, int | None]:
    """(time steps or None, features; None for token ids) of the sequence input."""
    if _token_ids(model):
        t = model.inputs[0].shape[1]
        return (int(t) if t is not None else None), None
    if len(model.inputs) > 1:
        seq = _time_input(model)
        if len(seq.shape) == 2:
            return (int(seq.shape[1]) if seq.shape[1] is not None else None), None
        return (int(seq.shape[1]) if seq.shape[1] is not None else None), int(seq.shape[2])
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 3:
        raise ModelError(
            "a streaming model needs one [batch, time, features] input (or int token ids [batch, time])",
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
    from edgeseq.models.layers import MultiHeadSelfAttention

    if attention and not any(isinstance(a, MultiHeadSelfAttention) for a in attention):
        return _graph_info(model, seq_len, features)  # users' own keras MultiHeadAttention: refused there if not causal
    if attention:
        foreign = [a for a in attention if not isinstance(a, MultiHeadSelfAttention)]
        if foreign:
            raise ModelError(
                f"cannot stream {model.name} with a KV cache: layer {foreign[0].name!r} is keras MultiHeadAttention "
                "beside the zoo's MultiHeadSelfAttention; edgeseq streams one kind of attention per model",
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
        return StreamInfo(StreamKind.KV_CACHE, seq_len, features, {"num_layers": len(attention)})
    if len(model.inputs) > 1:  # a sequence beside static features: the graph walk holds the static inputs
        return _graph_info(model, seq_len, features)
    if not _stateful_layers(model):
        raise ModelError(
            f"cannot stream {model.name}: it has neither recurrent layers, causal convolutions nor causal "
            "self-attention",
            "streaming exports RNN/LSTM/GRU models, causal Conv1D front ends and causal attention",
        )
    try:
        recurrent = [ly for ly in _flatten_chain(model) if isinstance(ly, keras.layers.RNN)]
        _recurrent_plan(model)  # refuses layers that need other time steps
    except InputError:  # not a plain chain of cells and per-step layers: walk the graph (refuses with its reason)
        return _graph_info(model, seq_len, features)
    return StreamInfo(StreamKind.RECURRENT_STEP, seq_len, features, {"layers": [ly.name for ly in recurrent]})


def _graph_info(model: Any, seq_len: int | None, features: int) -> StreamInfo:
    from edgeseq.models.graph.step import graph_plan

    plan = graph_plan(model)
    kind = StreamKind.KV_CACHE if plan.needs_pos else StreamKind.RECURRENT_STEP
    return StreamInfo(kind, seq_len, features, {"builder": "graph", "layers": plan.stateful,
                                                "num_layers": len(plan.attention), "delay": plan.delay})


def _is_graph(info: StreamInfo) -> bool:
    return info.detail.get("builder") == "graph"


def state_specs(model: Any, kv_capacity: int | None = None) -> list[tuple[str, tuple]]:
    """(input name, shape without batch) of every state input of the step model: carried state, then KV caches."""
    info = analyze_streaming(model)
    if _is_graph(info):
        from edgeseq.models.graph.step import graph_plan

        return graph_plan(model).state_specs(kv_capacity or info.seq_len)
    if info.kind == StreamKind.KV_CACHE:
        return list(_zoo_kv_cache_specs(model, kv_capacity or info.seq_len))
    return [(n, (s,)) for n, s in recurrent_state_specs(model)]


def kv_cache_specs(model: Any, capacity: int) -> list[tuple[str, tuple[int, int, int]]]:
    """(input name, (heads, capacity, head_dim)) of every KV cache, the zoo Transformer's or a user's attention."""
    return [(n, s) for n, s in state_specs(model, capacity) if n.startswith(("k_cache_", "v_cache_"))]


def stream_delay(model: Any) -> int:
    """Steps by which the step model's y lags the input ("valid" convolutions); 0 for everything else."""
    return int(analyze_streaming(model).detail.get("delay", 0))


def _get(model: Any, name: str) -> Any | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


# ----------------------------------------------------------------------------------------------- builders
def build_step_model(model: Any, *, kv_capacity: int | None = None, batch_size: int | None = 1,
                     stride: int = 1) -> Any:
    """The step model of `model` (see the module docstring). `kv_capacity` defaults to the model's seq_len. With
    `stride` K > 1 (recurrent and conv models) one call takes K frames, x (B, K, F), and steps K times; y is the
    last frame's output, or every frame's (B, K, ...) for a model with an output per time step."""
    import keras

    info = analyze_streaming(model)
    if stride != 1:
        return _strided(model, build_step_model(model, kv_capacity=kv_capacity, batch_size=batch_size), info,
                        stride, batch_size)
    F = info.num_features
    if F is None:  # token ids: one int32 id per step
        x = keras.Input(batch_shape=(batch_size,), dtype="int32", name="x")
    else:
        x = keras.Input(batch_shape=(batch_size, F), name="x")
    inputs = {"x": x}
    if _is_graph(info):
        from edgeseq.models.graph.step import graph_plan, make_graph_step_layer

        plan = graph_plan(model)
        capacity = (kv_capacity or info.seq_len) if plan.attention else None
        step = make_graph_step_layer(model, capacity)  # checks the capacity
        if plan.needs_pos:
            inputs["pos"] = keras.Input(batch_shape=(batch_size,), dtype="int32", name="pos")
        for name, shape in plan.held_specs:  # static inputs, the same at every step of a stream
            inputs[name] = keras.Input(batch_shape=(batch_size, *shape), name=name)
        for name, shape in plan.state_specs(capacity):
            inputs[name] = keras.Input(batch_shape=(batch_size, *shape), name=name)
        name = f"{model.name}_kv{capacity}" if capacity else f"{model.name}_step"
    elif info.kind == StreamKind.RECURRENT_STEP:
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


def _strided(model: Any, step_model: Any, info: StreamInfo, stride: int, batch_size: int | None) -> Any:
    import keras
    from keras import ops

    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise InputError(f"--stride must be a positive integer, got {stride!r}")
    names = [t.name.split(":")[0] for t in step_model.inputs]
    if "pos" in names:
        raise InputError(f"cannot stream {model.name} {stride} frames per invoke: its step reads a position (a KV "
                         "cache or a position table), and --stride steps recurrent state and conv ring buffers only",
                         "drop --stride for attention models")
    F = info.num_features
    x = keras.Input(batch_shape=(batch_size, stride) + (() if F is None else (F,)), name="x",
                    dtype="int32" if F is None else "float32")
    inputs = {"x": x}
    for t, n in zip(step_model.inputs, names, strict=True):
        if n != "x":
            inputs[n] = keras.Input(batch_shape=(batch_size, *t.shape[1:]), name=n)
    state = {n: v for n, v in inputs.items() if n != "x"}
    ys = []
    for k in range(stride):
        out = step_model([x[:, k], *[state[n] for n in names if n != "x"]])
        state = {n: out[n] for n in state}
        ys.append(out["y"])
    per_frame = len(model.outputs[0].shape) == 3
    outputs = {"y": ops.stack(ys, axis=1) if per_frame else ys[-1], **state}
    return keras.Model(list(inputs.values()), outputs, name=f"{step_model.name}_s{stride}")


def build_window_model(model: Any, window: int, *, batch_size: int | None = 1) -> Any:
    """The batch model rebuilt for a fixed window of `window` steps (same weights), re-run for every new step."""
    import keras

    _, features = _shape(model)
    if not isinstance(window, int) or window < 1:
        raise InputError(f"--window must be a positive integer, got {window!r}")
    shape = (batch_size, window) if features is None else (batch_size, window, features)
    inp = keras.Input(batch_shape=shape, dtype="int32" if features is None else model.inputs[0].dtype, name="inputs")
    try:
        clone = keras.models.clone_model(model, input_tensors=inp)
        if tuple(clone.inputs[0].shape)[1:] != shape[1:]:
            clone = keras.Model(inp, clone(inp))
        clone.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - layers that bake in the length fail here
        first = " ".join(str(exc).split())[:200]
        raise InputError(f"cannot rebuild {model.name} for a window of {window} steps: {first}",
                         "pick a window the model supports (a Transformer's window must be <= its max_len)") from exc
    return keras.Model(clone.inputs[0], clone.outputs[0], name=f"{model.name}_win{window}".replace("-", "_"))


def initial_state(step_model: Any, batch: int = 1, held: dict | None = None) -> dict[str, np.ndarray]:
    """Zeros for every state input (and pos = 0 where there is one); `held` inputs are not state."""
    out = {}
    for t in step_model.inputs:
        name = t.name.split(":")[0]
        if name == "x" or name in (held or {}):
            continue
        shape = (batch, *[int(d) for d in t.shape[1:]])
        out[name] = np.zeros(shape, np.int32 if name == "pos" else np.float32)
    return out


def run_steps(step_model: Any, X: np.ndarray, *, collect: bool = False, record_every: int = 0,
              held: dict | None = None) -> Any:
    """Feed X (N, T, F), or token ids (N, T), one step at a time through a batch-None step model in Keras; `held`:
    {input name: (N, F)} static inputs, fed unchanged at every step.

    Returns the last step's y (N, ...), or with `collect` the stacked y of every step (N, T, ...). With
    `record_every` k > 0, also returns the step inputs seen at every k-th step (calibration samples for int8).
    """
    X = np.asarray(X)
    X = X.astype(np.int32) if np.issubdtype(X.dtype, np.integer) else X.astype(np.float32, copy=False)
    held = {k: np.asarray(v, np.float32) for k, v in (held or {}).items()}
    state = initial_state(step_model, len(X), held)
    names = [n for n in state if n != "pos"]
    ys, seen = [], []
    y = None
    for t in range(X.shape[1]):
        feed = {"x": X[:, t], **held, **state}
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
