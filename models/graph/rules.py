"""How a user's graph's layers stream: the per-layer rules of edgeseq.models.graph.plan's walk.

RNN layers (stepped through their cell), Conv1D with kernel > 1 (a ring buffer of past inputs), causal keras
MultiHeadAttention (cached attention; the causal mask recognised from use_causal_mask or by evaluating the mask), and
positions (constant tables, position ids, probed position layers); plus the records the walk produces. See
edgeseq.models.graph.step for the whole picture.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseq.core.errors import InputError, ModelError
from edgeseq.models.recurrent_step import (
    BIDIRECTIONAL_HINT,
    BIDIRECTIONAL_WHY,
    _state_names,
    _state_sizes,
)

MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"}
IDENTITY_ALSO = {"Identity"}
# keras.ops nodes of a functional graph that act elementwise (each time step on its own)
ELEMENTWISE_OPS = {
    "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Negative", "Abs", "Square",
    "Sqrt", "Exp", "Log", "Relu", "Relu6", "Gelu", "Sigmoid", "Tanh", "Silu", "Swish", "Softplus", "Softsign",
    "Elu", "Selu", "LeakyRelu", "HardSigmoid", "HardSilu", "Cast", "Clip",
}
DEFAULT_HINT = "streaming exports causal models built from per-step layers, RNNs, causal Conv1D and causal attention; " \
               "or measure the sliding-window baseline with --window W"
USER_NONCAUSAL_HINT = ("call the attention layer with use_causal_mask=True and retrain, or measure the sliding-window "
                       "baseline with --window W")
POSITIONS_DELAYED = "it adds positions after a 'valid' Conv1D, which shifts every position (use padding='causal')"
POOLS = {"GlobalAveragePooling1D": "mean", "GlobalMaxPooling1D": "max"}  # streamed as running state
WHY = {
    "AveragePooling1D": "it pools neighbouring time steps",
    "MaxPooling1D": "it pools neighbouring time steps",
    "Flatten": "it mixes all time steps into one vector",
    "Lambda": "a Lambda layer's function cannot be inspected",
    "Attention": "edgeseq streams keras MultiHeadAttention (causal) and the zoo's attention, not this layer",
    "AdditiveAttention": "edgeseq streams keras MultiHeadAttention (causal) and the zoo's attention, not this layer",
    "GroupQueryAttention": "edgeseq streams keras MultiHeadAttention (causal) and the zoo's attention, not this layer",
}


@dataclass
class _Rec:
    """One node of the walk (or an alias that maps a nested model's tensors)."""

    kind: str
    node: Any = None
    layer: Any = None
    src: list = field(default_factory=list)  # input tensor ids
    dst: list = field(default_factory=list)  # output tensor ids
    info: dict = field(default_factory=dict)


@dataclass
class _Meta:
    time: bool  # the tensor still has its time axis (B, T, ...) -> (B, 1, ...) in the step
    delay: int = 0  # steps by which "valid" convolutions delay it
    gate: frozenset = frozenset()  # "valid" convolutions whose window must be full before states downstream move
    posids: bool = False  # position indices 0..T-1 computed from the input's shape (they only feed an Embedding)
    tpad: int = 0  # zero frames a ZeroPadding2D put before the time axis (consumed by the next Conv2D: causal)


@dataclass
class GraphPlan:
    model_name: str
    seq_len: int | None
    records: list
    input_id: int
    output_id: int
    output_time: bool
    carried: list  # (name, shape without batch): state fed back whole
    attention: list  # per MultiHeadAttention, in call order: dict(layer, heads, key_dim, value_dim)
    tables: list  # lengths of positional tables (the KV capacity must not exceed them)
    needs_pos: bool
    delay: int
    stateful: list  # names of the layers that carry state
    held: list = field(default_factory=list)  # (name, shape, tensor id): static inputs, the same at every step

    def cache_specs(self, capacity: int) -> list[tuple[str, tuple[int, int, int]]]:
        specs = []
        for i, a in enumerate(self.attention):
            specs += [(f"k_cache_{i}", (a["heads"], int(capacity), a["key_dim"])),
                      (f"v_cache_{i}", (a["heads"], int(capacity), a["value_dim"]))]
        return specs

    @property
    def held_specs(self) -> list[tuple[str, tuple]]:
        return [(n, s) for n, s, _ in self.held]

    def state_specs(self, capacity: int | None = None) -> list[tuple[str, tuple]]:
        """Every state input (name, shape without batch): carried ones, then the KV caches."""
        return list(self.carried) + (self.cache_specs(capacity) if self.attention and capacity else [])


def _functional_of(model: Any) -> Any:
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, Functional):
        return model
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is not None:
            return fn
    raise ModelError(f"cannot walk {model.name}: it is neither a functional nor a built Sequential model (a "
                     "subclassed model's call cannot be inspected)",
                     "build the model with the functional API or keras.Sequential with an Input")


def _refuse(model_name: str, layer: Any, why: str, hint: str = DEFAULT_HINT) -> InputError:
    kind = type(layer).__name__
    name = getattr(layer, "name", kind)
    return InputError(f"cannot stream {model_name}: layer {name!r} ({kind}): {why}", hint)


def _const_array(value: Any) -> np.ndarray | None:
    if isinstance(value, (int, float, bool)) or value is None:
        return None
    try:
        return np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like is not a constant table
        return None


def _probes(inp: Any, steps: int, batches: tuple) -> list[np.ndarray]:
    """Random inputs shaped and typed like `inp` (float features, or int token ids >= 1), one per batch size."""
    rng = np.random.default_rng(0)
    out = []
    for b in batches:
        shape = [b, *[steps if i == 0 and d is None else int(d) for i, d in enumerate(inp.shape[1:])]]
        if str(inp.dtype).startswith(("int", "uint")):
            out.append(rng.integers(1, 4, shape).astype(str(inp.dtype)))
        else:
            out.append(rng.standard_normal(shape).astype("float32"))
    return out


class _LayerRules:
    """The layer-specific half of the walk (mixed into graph_plan._Walker)."""

    def _rnn(self, node: Any, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        import keras

        if getattr(op, "go_backwards", False):
            raise InputError(f"cannot stream {self.name}: layer {op.name!r} runs backwards; {BIDIRECTIONAL_WHY}",
                             BIDIRECTIONAL_HINT)
        if isinstance(op.cell, keras.layers.StackedRNNCells):
            raise ModelError(f"layer {op.name!r} wraps stacked cells; edgeseq streams one cell per layer",
                             "stack separate RNN layers instead")
        if any(node.arguments.kwargs.get(k) is not None for k in ("initial_state", "mask")) \
                or len(node.input_tensors) != 1:
            raise _refuse(self.name, op, "it is called with an initial state or a mask; edgeseq streams RNNs that "
                                         "start from zeros")
        if not m.time:
            raise _refuse(self.name, op, "its input has no time axis")
        sizes = _state_sizes(op)
        self._own(op)
        self.carried += [(n, (s,)) for n, s in zip(_state_names(op), sizes, strict=True)]
        return _Rec("rnn", info={"gate": m.gate}), _Meta(bool(op.return_sequences), m.delay, m.gate)

    def _conv(self, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        (k,), (s,), (d,) = tuple(op.kernel_size), tuple(op.strides), tuple(op.dilation_rate)
        if s != 1:
            raise _refuse(self.name, op, f"strides={s} emits one output every {s} steps, while a step model "
                                         "emits an output at every step",
                          "use strides=1 (subsample after streaming, or feed every s-th frame), or measure the "
                          "sliding-window baseline with --window W")
        if not m.time:
            raise _refuse(self.name, op, "its input has no time axis")
        if k == 1:
            return _Rec("layer"), m
        if op.padding == "same":
            raise _refuse(self.name, op, f"a Conv1D with kernel {k} and padding='same' looks at neighbouring future "
                                         "steps, so a step's output is not final until later steps arrive",
                          "retrain with padding='causal' (or 'valid'), or measure the window baseline --window W")
        if op.data_format != "channels_last" or getattr(op, "groups", 1) != 1:
            raise _refuse(self.name, op, "edgeseq streams channels_last Conv1D layers with groups=1")
        span = (k - 1) * d
        self._own(op)
        cin = int(op.kernel.shape[1])
        self.carried.append((f"state_{op.name}_buf", (span, cin)))
        valid = op.padding == "valid"
        if valid:
            self.carried.append((f"state_{op.name}_fill", (span,)))
        gate = m.gate | ({op.name} if valid else set())
        info = {"k": k, "d": d, "span": span, "valid": valid, "gate": m.gate}
        return _Rec("conv", info=info), _Meta(True, m.delay + (span if valid else 0), frozenset(gate))

    def _pool(self, node: Any, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        """Global average / max pooling over time as a running state: the sum of the steps so far divided by the
        pooled length L (`state_<layer>_mean`; at step L it is the whole-sequence mean), or the maximum so far
        (`state_<layer>_max`, with `state_<layer>_seen` marking that a step arrived). Every layer the walk accepted
        before it is causal (a non-causal one is refused with its own reason), so the output after the last step
        equals the whole-sequence output."""
        mode = POOLS[type(op).__name__]
        if getattr(op, "data_format", "channels_last") != "channels_last":
            raise _refuse(self.name, op, "with data_format='channels_first' on a [batch, time, features] tensor it "
                                         "pools each step's features and leaves [batch, time], which the next layer "
                                         "reads across time (every step at once)",
                          "pool over time with data_format='channels_last', or use --window W")
        if not m.time:
            raise _refuse(self.name, op, "its input has no time axis")
        if node.arguments.kwargs.get("mask") is not None:
            raise _refuse(self.name, op, "it is called with a mask; edgeseq streams unmasked pooling")
        shape = node.input_tensors[0].shape
        length = shape[1] if shape[1] is not None else (self.seq_len - m.delay if self.seq_len else None)
        if length is None or shape[-1] is None:
            raise _refuse(self.name, op, "the pooled length is not fixed", "give the model a fixed sequence length")
        self._own(op)
        c = int(shape[-1])
        if mode == "mean":
            self.carried.append((f"state_{op.name}_mean", (c,)))
        else:
            self.carried += [(f"state_{op.name}_max", (c,)), (f"state_{op.name}_seen", (1,))]
        info = {"mode": mode, "length": int(length), "keepdims": bool(getattr(op, "keepdims", False)), "gate": m.gate}
        return _Rec("pool", info=info), _Meta(False, m.delay, m.gate)

    def _mha(self, node: Any, op: Any) -> tuple[_Rec, _Meta]:
        from keras.src.backend import KerasTensor

        from edgeseq.models.streaming import NONCAUSAL_WHY

        bound = inspect.signature(op.call).bind(*node.arguments.args, **node.arguments.kwargs).arguments
        for key in ("query_mask", "value_mask", "key_mask"):
            if bound.get(key) is not None:
                raise _refuse(self.name, op, f"it is called with {key}; edgeseq streams attention without padding masks")
        if bound.get("return_attention_scores"):
            raise _refuse(self.name, op, "it returns its attention scores")
        if op._attention_axes not in (None, (1,), [1]):
            raise _refuse(self.name, op, f"it attends over axes {op._attention_axes}, not the time axis")
        causal = bool(bound.get("use_causal_mask"))
        mask = bound.get("attention_mask")
        if mask is not None:
            if not self._is_causal_mask(mask):
                raise _refuse(self.name, op, "its attention_mask is not (or cannot be shown to be) the causal lower "
                                             "triangle; edgeseq streams causal attention only",
                              "call it with use_causal_mask=True instead of a custom mask, or use --window W")
            causal = True
        if not causal:
            raise InputError(f"cannot stream {self.name}: {NONCAUSAL_WHY} (layer {op.name!r}: keras "
                             "MultiHeadAttention called without use_causal_mask=True)", USER_NONCAUSAL_HINT)
        query, value = bound["query"], bound["value"]
        key = bound.get("key")
        key = value if key is None else key
        parts = []
        for t in (query, value, key):
            if not isinstance(t, KerasTensor) or id(t) not in self.meta:
                raise _refuse(self.name, op, "its query, key and value must come from the streamed input")
            parts.append(self.meta[id(t)])
        if not all(p.time for p in parts) or any(p.delay or p.gate for p in parts):
            raise _refuse(self.name, op, "its query, key and value must be one per step and undelayed (a 'valid' "
                                         "Conv1D before attention shifts every position)",
                          "use padding='causal' for convolutions before attention")
        self._own(op)
        self.needs_pos = True
        index = len(self.attention)
        self.attention.append({"layer": op.name, "heads": int(op._num_heads), "key_dim": int(op._key_dim),
                               "value_dim": int(op._value_dim)})
        info = {"index": index, "q": id(query), "v": id(value), "k": id(key),
                "window": getattr(op, "_sliding_window", None)}
        return _Rec("mha", info=info), _Meta(True)

    def _is_causal_mask(self, mask: Any) -> bool:
        import keras
        from keras.src.backend import KerasTensor

        if isinstance(mask, KerasTensor):
            if id(mask) not in {id(t) for t in self._top_tensors()}:
                return False
            sub = keras.Model(self.model.inputs[0], mask)
            probes = _probes(self.model.inputs[0], self.seq_len or 6, (2,))
            probes.append(np.zeros_like(probes[0]))
            values = [np.asarray(sub(p)) for p in probes]
        else:
            values = [_const_array(mask)]
            if values[0] is None:
                return False
        for v in values:
            if v.ndim < 2 or v.shape[-1] != v.shape[-2]:
                return False
            n = v.shape[-1]
            tril = np.tril(np.ones((n, n), bool))
            if not np.array_equal(np.broadcast_to(v.astype(bool), v.shape), np.broadcast_to(tril, v.shape)):
                return False
        return True

    def _top_tensors(self) -> list:
        fn = _functional_of(self.model)
        out = []
        for nodes in fn._nodes_by_depth.values():
            for node in nodes:
                out.extend(node.outputs)
        return out

    def find_position_ids(self, fn: Any) -> None:
        """Tensors feeding an Embedding that hold 0..T-1 in every row whatever the input (e.g.
        ops.cumsum(ops.ones_like(x[:, :, 0], "int32"), axis=1) - 1): learned positions; found by evaluating them."""
        import keras

        if self.seq_len is None:
            return
        t = int(self.seq_len)
        inp = fn.inputs[0]
        for nodes in fn._nodes_by_depth.values():
            for node in nodes:
                if not isinstance(node.operation, keras.layers.Embedding) or len(node.input_tensors) != 1:
                    continue
                ids = node.input_tensors[0]
                ancestry = self._ancestry(ids, inp)
                if not ancestry:  # the input itself (token ids), or not computed from it alone
                    continue
                try:
                    sub = keras.Model(fn.inputs[0], ids)
                    got = [np.asarray(sub(p)) for p in _probes(inp, t, (1, 3))]
                except Exception:  # noqa: BLE001 - a tensor that cannot be evaluated alone is not position ids
                    continue
                if all(g.shape == (len(g), t) and np.array_equal(g, np.broadcast_to(np.arange(t), g.shape))
                       for g in got):
                    self.posids |= ancestry

    @staticmethod
    def _ancestry(tensor: Any, inp: Any) -> set | None:
        """Ids of `tensor` and every tensor it is computed from, back to (not including) `inp`."""
        seen, stack = set(), [tensor]
        while stack:
            t = stack.pop()
            if t is inp or id(t) in seen:
                continue
            history = getattr(t, "_keras_history", None)
            if history is None:
                return None
            op, node_index, _ = history
            node = op._inbound_nodes[node_index]
            if node.is_input:
                return None  # another model input
            seen.add(id(t))
            stack.extend(node.input_tensors)
        return seen

    def _probe_positions(self, node: Any, op: Any, m: _Meta) -> tuple[_Rec, _Meta] | None:
        """A custom layer whose only weight is an (N, d) table and which adds its first T rows to its input (or
        returns them): learned positions. The zoo's positional encodings are named."""
        from edgeseq.models.layers import LearnedPositionalEncoding, SinusoidalPositionalEncoding

        if isinstance(op, (SinusoidalPositionalEncoding, LearnedPositionalEncoding)) and m.delay:
            raise _refuse(self.name, op, POSITIONS_DELAYED)
        if isinstance(op, SinusoidalPositionalEncoding):
            self.needs_pos = True
            self.tables.append(int(op.max_len))
            return _Rec("positions", info={"mode": "add", "table": np.asarray(op._table, np.float32)}), m
        if isinstance(op, LearnedPositionalEncoding):
            self.needs_pos = True
            self.tables.append(int(op.max_len))
            return _Rec("positions", info={"mode": "add", "table": "weight"}), m
        if len(node.input_tensors) != 1 or len(op.weights) != 1 or not m.time or self.seq_len is None:
            return None
        table = np.asarray(op.weights[0])
        t = int(self.seq_len)
        shape = node.input_tensors[0].shape
        if table.ndim != 2 or table.shape[0] < t or shape[-1] is None or len(shape) != 3:
            return None
        if table.shape[1] != int(shape[-1]) or tuple(node.outputs[0].shape[1:]) not in ((t, table.shape[1]),):
            return None
        x = np.random.default_rng(0).standard_normal((2, t, table.shape[1])).astype("float32")
        try:
            got = np.asarray(op(x, *node.arguments.args[1:], **node.arguments.kwargs))
        except Exception:  # noqa: BLE001 - a layer that does not run on a probe is simply not a position table
            return None
        rows = table[:t][None]
        tol = 1e-5 * max(1.0, float(np.abs(table).max()))
        if got.shape[-2:] == rows.shape[-2:] and np.allclose(got, x + rows, atol=tol):
            mode = "add"
        elif got.shape[-2:] == rows.shape[-2:] and np.allclose(got, np.broadcast_to(rows, got.shape), atol=tol):
            mode = "table"
        else:
            return None
        if m.delay:
            raise _refuse(self.name, op, POSITIONS_DELAYED)
        self.needs_pos = True
        self.tables.append(table.shape[0])
        return _Rec("positions", info={"mode": mode, "table": "weight"}), _Meta(True, m.delay, m.gate)
