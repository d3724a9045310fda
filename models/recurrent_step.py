"""The recurrent step: one time step through a sequence model's own layers and cells (weights shared, not copied).

SimpleRNN, LSTM, GRU and any keras.layers.RNN with a plain cell step through `layer.cell`; the layers between and
after them must work one step at a time (PER_STEP, IDENTITY, Conv1D with kernel 1, TimeDistributed, "last" pooling).
State tensors are named `state_<layer>_h` (and `_c` for an LSTM). Used by edgeseq.models.streaming.
"""

from __future__ import annotations

from typing import Any

from edgeseq.core.errors import InputError, ModelError

BIDIRECTIONAL_WHY = (
    "a bidirectional RNN reads the sequence backwards from its last step, so no output exists before the whole "
    "window has arrived: it cannot stream one step at a time"
)
BIDIRECTIONAL_HINT = "retrain with bidirectional=False, or measure the sliding-window baseline with --window W"

# Layers that act on each time step on its own (applied to a (B, 1, F) tensor in the step model; an Embedding on
# token ids to a (B, 1) id).
PER_STEP = {
    "Dense", "Activation", "Softmax", "ReLU", "ELU", "LeakyReLU", "PReLU", "LayerNormalization",
    "BatchNormalization", "Normalization", "Rescaling", "UnitNormalization", "Embedding",
}
# Layers that are the identity at inference.
IDENTITY = {"Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization"}
_STATE_SUFFIXES = {"LSTM": ("h", "c"), "GRU": ("h",), "SimpleRNN": ("h",)}


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
        if (isinstance(inp, (list, tuple)) and len(inp) == 2 and isinstance(layer, keras.layers.RNN)
                and inp[0] is prev and str(getattr(inp[1], "dtype", "")) == "bool"):
            inp = inp[0]  # an RNN called with the mask of Embedding(mask_zero=True): the step gates on id 0 itself
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
        elif kind in IDENTITY:
            plan.append(("skip", layer))
        elif kind in PER_STEP:
            plan.append(("step", layer))
        elif isinstance(layer, SequencePooling) and layer.mode == "last":
            plan.append(("skip", layer))
        elif kind == "Conv1D" and tuple(layer.kernel_size) == (1,) and tuple(layer.strides) == (1,):
            plan.append(("step", layer))
        elif kind == "TimeDistributed" and type(layer.layer).__name__ in PER_STEP:
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
    # Embedding(mask_zero=True) first: id 0 is padding, which the sequence model skips (its RNNs carry the state and
    # repeat the last output). The step does the same: on id 0 every state is carried and each RNN's y is its old h.
    masked = bool(plan) and type(plan[0][1]).__name__ == "Embedding" and bool(getattr(plan[0][1], "mask_zero", False))

    class RecurrentStep(keras.layers.Layer):
        """One time step through the sequence model's layers and cells (weights shared, not copied)."""

        def __init__(self):
            super().__init__(name="recurrent_step")
            self.steps = [layer for _, layer in plan]

        def call(self, inputs):
            h = inputs["x"]  # (B, F), or (B,) token ids
            keep = ops.expand_dims(ops.not_equal(h, 0), -1) if masked else None  # (B, 1): not padding
            out = {}
            for action, layer in plan:
                if action == "rnn":
                    names = _state_names(layer)
                    states = [inputs[n] for n in names]
                    y, new = layer.cell(h, states if len(states) > 1 else states, training=False)
                    new = list(new) if isinstance(new, (list, tuple)) else [new]
                    if keep is not None:
                        y = ops.where(keep, y, states[0])
                        new = [ops.where(keep, s, old) for s, old in zip(new, states, strict=True)]
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
