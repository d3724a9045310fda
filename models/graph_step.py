"""One time step through a user's own functional (or Sequential) Keras graph, node by node in call order.

Used by edgeseq.models.streaming for models that are not a plain chain of recurrent layers or that hold layers a
chain cannot stream: keras MultiHeadAttention (causal), Conv1D with kernel > 1, residual connections. Every tensor of
the sequence graph becomes a one-step tensor ((B, 1, ...) while it has a time axis, (B, ...) after the last step was
taken); the layers' own weights are used (nothing is copied):

- per-step layers (Dense, normalization, activations, merges such as Add/Concatenate on the feature axis, Dropout as
  the identity, elementwise keras.ops) apply to the step as they are;
- RNN layers step through `layer.cell`, state `state_<layer>_h` (and `_c`);
- a Conv1D with kernel k > 1 (stride 1, dilation d) keeps a ring buffer of its last (k-1)*d inputs as state
  `state_<layer>_buf` (1, (k-1)*d, C_in): the step sees the buffer plus its own input, the taps every d-th entry.
  padding="causal" is exactly the zero-padded sequence layer. padding="valid" delays the output by (k-1)*d steps:
  a second state `state_<layer>_fill` (1, (k-1)*d) marks the slots that hold an input (1.0) so far, and every state
  downstream (RNN cells, later buffers) holds still until the window is full, so after T steps y equals the sequence model's output; the
  delay is part of the analysis (and of the manifest);
- a causal keras MultiHeadAttention (called with use_causal_mask=True, or with an explicit lower-triangular
  attention_mask) becomes cached attention: its query/key/value EinsumDense layers project the step, the new key and
  value are returned as `k_cache_<i>_at_pos`/`v_cache_<i>_at_pos` (B, heads, 1, dim) for the runtime to write at slot
  `pos`, and the step attends to slots 0..pos-1 of `k_cache_<i>`/`v_cache_<i>` plus itself, with the zoo step's
  bounded masking (edgeseq.models.transformer_step.scaled_masked_attention). sliding_window is honoured;
- positions: a constant (T, d) table added to a tensor (a sinusoidal table, or an Embedding over ops.arange(T)
  evaluated while the model was built) and a custom layer whose only weight is a learned (N, d) position table
  (verified by probing it: it returns the input plus the table's first T rows, or the rows alone) add row `pos`;
- the last step (`x[:, -1]`, SequencePooling("last")) drops the time axis.

Anything else that needs other time steps is refused with the layer and the reason.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseq.errors import EdgeseqError, InputError, ModelError
from edgeseq.models.recurrent_step import (
    BIDIRECTIONAL_HINT,
    BIDIRECTIONAL_WHY,
    IDENTITY,
    PER_STEP,
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
WHY = {
    "GlobalAveragePooling1D": "it averages over the whole sequence",
    "GlobalMaxPooling1D": "it takes a maximum over the whole sequence",
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

    def cache_specs(self, capacity: int) -> list[tuple[str, tuple[int, int, int]]]:
        specs = []
        for i, a in enumerate(self.attention):
            specs += [(f"k_cache_{i}", (a["heads"], int(capacity), a["key_dim"])),
                      (f"v_cache_{i}", (a["heads"], int(capacity), a["value_dim"]))]
        return specs

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


class _Walker:
    def __init__(self, model: Any):
        self.model = model
        self.name = model.name
        self.seq_len = model.inputs[0].shape[1]
        self.records: list[_Rec] = []
        self.meta: dict[int, _Meta] = {}
        self.carried: list = []
        self.attention: list = []
        self.tables: list = []
        self.needs_pos = False
        self.stateful: list = []
        self.names: set = set()
        self.posids: set = set()  # ids of tensors that are (or only compute) position indices 0..T-1

    # ------------------------------------------------------------------------------------------- walk
    def walk(self, fn: Any, needed: set | None = None) -> None:
        """Every node in Keras's own order; with `needed` (the top level), nodes that only compute an attention mask
        or position indices are left out (the step has its own mask and `pos`)."""
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if needed is not None and not any(id(o) in needed for o in node.outputs):
                    for o in node.outputs:
                        if id(o) in self.posids:
                            self.meta[id(o)] = _Meta(True, posids=True)
                    continue
                if any(id(t) not in self.meta and (needed is None or id(t) in needed) for t in node.input_tensors):
                    continue  # not reachable from the input (Keras skips it too)
                self.node(node)

    def needed(self, fn: Any) -> set:
        """Ids of the tensors the output is computed from, not counting what only feeds an attention mask or an
        Embedding of position indices."""
        import keras

        seen, stack = set(), list(fn.outputs)
        while stack:
            t = stack.pop()
            if id(t) in seen:
                continue
            seen.add(id(t))
            history = getattr(t, "_keras_history", None)
            if history is None:
                continue
            op, node_index, _ = history
            node = op._inbound_nodes[node_index]
            parents = list(node.input_tensors)
            if isinstance(op, keras.layers.MultiHeadAttention):
                try:
                    bound = inspect.signature(op.call).bind(*node.arguments.args, **node.arguments.kwargs).arguments
                    parents = [bound[k] for k in ("query", "value", "key") if bound.get(k) is not None]
                except TypeError:
                    pass  # refused with its reason when the node is walked
            elif isinstance(op, keras.layers.Embedding) and all(id(p) in self.posids for p in parents):
                parents = []
            stack.extend(p for p in parents if hasattr(p, "_keras_history"))
        return seen

    def node(self, node: Any) -> None:
        import keras

        op = node.operation
        if isinstance(op, keras.Model) and not isinstance(op, keras.layers.RNN):
            inner = _functional_of(op)
            outer = list(node.input_tensors)
            if len(outer) != len(inner.inputs):
                raise ModelError(f"cannot stream {self.name}: nested model {op.name!r} takes its inputs in a form "
                                 "edgeseq cannot map", DEFAULT_HINT)
            self._alias([id(t) for t in outer], [id(t) for t in inner.inputs])
            self.walk(inner)
            self._alias([id(t) for t in inner.outputs], [id(t) for t in node.outputs])
            return
        if len(node.outputs) != 1:
            raise _refuse(self.name, op, "it returns several tensors (return_state or attention scores); edgeseq "
                                         "streams one tensor per layer")
        ins = [self.meta[id(t)] for t in node.input_tensors if id(t) in self.meta]  # not: a mask left out
        out = node.outputs[0]
        if id(out) in self.posids:  # computes position indices: the step has `pos` instead
            self.meta[id(out)] = _Meta(True, posids=True)
            return
        if any(m.posids for m in ins):
            if not (isinstance(op, keras.layers.Embedding) and len(ins) == 1):
                raise _refuse(self.name, op, "it uses the position indices other than through an Embedding")
            self.needs_pos = True
            self.tables.append(int(op.input_dim))
            rec, meta = _Rec("positions", info={"mode": "table", "table": "embeddings"}), _Meta(True)
        else:
            rec, meta = self.classify(node, op, ins)
        rec.node, rec.layer = node, op
        rec.src, rec.dst = [id(t) for t in node.input_tensors], [id(out)]
        self.records.append(rec)
        self.meta[id(out)] = meta

    def _alias(self, src: list, dst: list) -> None:
        self.records.append(_Rec("alias", src=src, dst=dst))
        for s, d in zip(src, dst, strict=True):
            self.meta[d] = self.meta[s]

    def _own(self, op: Any) -> None:
        if op.name in self.names:
            raise ModelError(f"cannot stream {self.name}: the stateful layer {op.name!r} is called more than once "
                             "(or its name is used twice); its state would be ambiguous",
                             "give every recurrent, convolution and attention call its own uniquely named layer")
        self.names.add(op.name)
        self.stateful.append(op.name)

    # ------------------------------------------------------------------------------------------- classify
    def classify(self, node: Any, op: Any, ins: list[_Meta]) -> tuple[_Rec, _Meta]:
        import keras

        kind = type(op).__name__
        first = ins[0] if ins else _Meta(False)
        if not isinstance(op, keras.layers.Layer):  # a keras.ops operation (its class may share a layer's name)
            if kind == "GetItem":
                return self._getitem(node, op, first)
            return self._op(node, op, ins)
        if isinstance(op, keras.layers.RNN):
            return self._rnn(node, op, first)
        if isinstance(op, keras.layers.MultiHeadAttention):
            return self._mha(node, op)
        if isinstance(op, keras.layers.Conv1D) and not isinstance(op, keras.layers.Conv1DTranspose):
            return self._conv(op, first)
        if kind in IDENTITY or kind in IDENTITY_ALSO:
            return _Rec("skip"), first
        if kind in PER_STEP or kind in MERGE:
            if kind == "Concatenate" and op.axis not in (-1, len(node.outputs[0].shape) - 1):
                raise _refuse(self.name, op, "it concatenates along an axis other than the features")
            return _Rec("layer"), self._merged(op, ins)
        if kind == "TimeDistributed":
            if type(op.layer).__name__ not in PER_STEP:
                raise _refuse(self.name, op, f"it wraps a {type(op.layer).__name__}, not a per-step layer")
            return _Rec("inner"), first
        if kind == "SequencePooling":
            if op.mode != "last":
                raise _refuse(self.name, op, "it averages over the whole sequence")
            return self._last(op, first)
        if kind in WHY:
            raise _refuse(self.name, op, WHY[kind])
        probed = self._probe_positions(node, op, first)
        if probed is not None:
            return probed
        raise _refuse(self.name, op, f"edgeseq does not know how to apply a {kind} layer one step at a time")

    def _merged(self, op: Any, ins: list[_Meta]) -> _Meta:
        if len({m.time for m in ins}) > 1 or len({m.delay for m in ins}) > 1:
            raise _refuse(self.name, op, "it joins tensors that are not aligned in time (one per step and one per "
                                         "sequence, or delayed by different 'valid' convolutions)")
        gate = frozenset().union(*(m.gate for m in ins)) if ins else frozenset()
        return _Meta(ins[0].time, ins[0].delay, gate) if ins else _Meta(False)

    def _last(self, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        if not m.time:
            raise _refuse(self.name, op, "its input has no time axis left")
        return _Rec("last"), _Meta(False, m.delay, m.gate)

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

    def _getitem(self, node: Any, op: Any, m: _Meta) -> tuple[_Rec, _Meta]:
        args = node.arguments.args
        key = args[1] if len(args) > 1 else node.arguments.kwargs.get("key")
        key = tuple(key) if isinstance(key, (tuple, list)) else (key,)  # a reloaded model holds a list
        full = slice(None, None, None)
        if m.time and len(key) >= 2 and key[0] == full and isinstance(key[1], int) and not isinstance(key[1], bool) \
                and (key[1] == -1 or (self.seq_len is not None and key[1] == self.seq_len - 1)) \
                and all(k == full or k is Ellipsis for k in key[2:]):
            return self._last(op, m)
        raise _refuse(self.name, op, f"indexing with {key!r} is not the last step (x[:, -1])")

    def _op(self, node: Any, op: Any, ins: list[_Meta]) -> tuple[_Rec, _Meta]:
        from keras.src.backend import KerasTensor

        kind = type(op).__name__
        if kind not in ELEMENTWISE_OPS:
            raise _refuse(self.name, op, f"the keras.ops operation {kind} is not known to act on each step alone")
        tables = {}
        time_axis_len = self.seq_len
        for i, a in enumerate(node.arguments.args):
            if isinstance(a, KerasTensor):
                continue
            arr = _const_array(a)
            if arr is None or arr.ndim < 2:
                continue
            rows = arr.reshape(arr.shape[-2:]) if arr.ndim == 3 and arr.shape[0] == 1 else arr
            if rows.ndim == 2 and rows.shape[0] > 1 and time_axis_len is not None and rows.shape[0] == time_axis_len:
                tables[i] = rows.astype(np.float32)
            elif arr.shape[-2] != 1:
                raise _refuse(self.name, op, f"it combines the sequence with a constant of shape {arr.shape} that "
                                             "is not one row per time step")
        if any(not isinstance(v, (int, float, bool)) and _const_array(v) is not None and _const_array(v).ndim >= 2
               for v in node.arguments.kwargs.values()):
            raise _refuse(self.name, op, "it takes a constant table as a keyword argument")
        if tables:
            if any(m.delay for m in ins):
                raise _refuse(self.name, op, POSITIONS_DELAYED)
            self.needs_pos = True
            self.tables += [t.shape[0] for t in tables.values()]
        return _Rec("op", info={"tables": tables}), self._merged(op, ins)

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


def graph_plan(model: Any) -> GraphPlan:
    """Walk `model`'s graph once: what each node becomes in the step, the state it needs; refusals with reasons."""
    fn = _functional_of(model)
    if len(fn.inputs) != 1 or len(fn.outputs) != 1:
        raise ModelError(f"cannot stream {model.name}: it has {len(fn.inputs)} inputs and {len(fn.outputs)} outputs",
                         "streaming exports single-input, single-output sequence models")
    w = _Walker(model)
    w.meta[id(fn.inputs[0])] = _Meta(True)
    try:
        w.find_position_ids(fn)
        w.walk(fn, w.needed(fn))
    except EdgeseqError:
        raise
    except Exception as exc:  # noqa: BLE001 - a graph form nobody foresaw: a one-line refusal, not a traceback
        first = " ".join(str(exc).split())[:200]
        raise ModelError(f"cannot stream {model.name}: edgeseq could not walk its graph ({type(exc).__name__}: "
                         f"{first})", DEFAULT_HINT) from exc
    out = fn.outputs[0]
    if id(out) not in w.meta:
        raise ModelError(f"cannot stream {model.name}: its output is not connected to its input")
    m = w.meta[id(out)]
    if not w.stateful:
        raise ModelError(f"cannot stream {model.name}: it has neither recurrent layers, causal convolutions nor "
                         "causal self-attention", "streaming exports RNN/LSTM/GRU, causal Conv1D and causal "
                         "attention models")
    return GraphPlan(model.name, w.seq_len, w.records, id(fn.inputs[0]), id(out), m.time, w.carried, w.attention,
                     w.tables, w.needs_pos, m.delay, w.stateful)


# ----------------------------------------------------------------------------------------------- the step layer
def _gated(new: Any, old: Any, ready: Any) -> Any:
    """`new` where the window is full (ready = 1.0), else `old` (ready = 0.0): arithmetic rather than a comparison and
    a select, which TF 2.21's 16x8 quantizer lacks (GREATER); 0 and 1 are exact in any int8/int16 scale of [0, 1]."""
    from keras import ops

    if ready is None:
        return new
    r = ready
    while len(r.shape) < len(old.shape):
        r = ops.expand_dims(r, -1)
    return r * new + (1.0 - r) * old


def make_graph_step_layer(model: Any, capacity: int | None):
    import keras
    from keras import ops

    from edgeseq.models.transformer_step import scaled_masked_attention

    plan = graph_plan(model)
    if plan.attention and not capacity:
        raise InputError("a KV-cache step model needs a capacity", "pass --kv-capacity N")
    if plan.tables and capacity and capacity > min(plan.tables):
        raise InputError(f"--kv-capacity {capacity} is longer than {model.name}'s positional table "
                         f"({min(plan.tables)} positions)", f"use --kv-capacity <= {min(plan.tables)}")
    layers = [r.layer for r in plan.records if isinstance(r.layer, keras.layers.Layer)]

    class GraphStep(keras.layers.Layer):
        """One step through the model's own graph (weights shared, not copied)."""

        def __init__(self):
            super().__init__(name="graph_step")
            self.graph_layers = layers

        def call(self, inputs):
            vals = {plan.input_id: ops.expand_dims(inputs["x"], 1)}  # (B, 1, F)
            pos = ops.cast(inputs["pos"], "int32") if plan.needs_pos else None
            ready: dict[str, Any] = {}
            out: dict[str, Any] = {}
            slots = None
            if plan.attention:
                slots = ops.expand_dims(ops.arange(capacity + 1, dtype="int32"), 0)  # (1, C + 1): cache, then self

            def gate_of(names):
                r = None
                for n in sorted(names):
                    r = ready[n] if r is None else r * ready[n]
                return r

            def rows(table):
                return ops.expand_dims(ops.take(ops.convert_to_tensor(table), pos, axis=0), 1)  # (B, 1, d)

            for rec in plan.records:
                if rec.kind == "alias":
                    for s, d in zip(rec.src, rec.dst, strict=True):
                        vals[d] = vals[s]
                    continue
                layer, node = rec.layer, rec.node
                h = vals.get(rec.src[0]) if rec.src else None  # None: position indices (the step has `pos`)
                if rec.kind == "skip":
                    y = h
                elif rec.kind == "layer":
                    args, kwargs = node.arguments.fill_in(vals)
                    y = layer(*args, **kwargs)
                elif rec.kind == "op":
                    args, kwargs = node.arguments.fill_in(vals)
                    args = list(args)
                    for i, table in rec.info["tables"].items():
                        args[i] = rows(table)
                    y = layer(*args, **kwargs)
                elif rec.kind == "inner":
                    y = layer.layer(h)
                elif rec.kind == "last":
                    y = h[:, 0]
                elif rec.kind == "positions":
                    table = rec.info["table"]
                    table = layer.embeddings if table == "embeddings" else layer.weights[0] if table == "weight" \
                        else table
                    y = rows(table) if rec.info["mode"] == "table" else h + rows(table)
                elif rec.kind == "rnn":
                    names = _state_names(layer)
                    states = [inputs[n] for n in names]
                    y, new = layer.cell(h[:, 0], states, training=False)
                    new = list(new) if isinstance(new, (list, tuple)) else [new]
                    r = gate_of(rec.info["gate"])
                    for n, s, old in zip(names, new, states, strict=True):
                        out[n] = _gated(s, old, r)
                    if layer.return_sequences:
                        y = ops.expand_dims(y, 1)
                elif rec.kind == "conv":
                    y = self._conv(layer, rec.info, h, inputs, out, ready, gate_of(rec.info["gate"]))
                elif rec.kind == "mha":
                    y = self._mha(layer, rec.info, vals, inputs, out, pos, slots, scaled_masked_attention)
                else:  # pragma: no cover - every kind is listed above
                    raise ModelError(f"unknown step record {rec.kind!r}")
                vals[rec.dst[0]] = y
            y = vals[plan.output_id]
            out["y"] = y[:, 0] if plan.output_time else y
            return out

        def _conv(self, layer, info, h, inputs, out, ready, r):
            name, k, d = layer.name, info["k"], info["d"]
            buf = inputs[f"state_{name}_buf"]  # (B, span, C_in): the last span inputs, oldest first
            window = ops.concatenate([buf, h], axis=1)  # (B, span + 1, C_in)
            taps = window[:, ::d, :] if d > 1 else window  # (B, k, C_in)
            cin = int(layer.kernel.shape[1])
            flat = ops.reshape(taps, (-1, k * cin))
            y = ops.matmul(flat, ops.reshape(layer.kernel, (k * cin, -1)))
            if layer.use_bias:
                y = y + layer.bias
            if layer.activation is not None:
                y = layer.activation(y)
            out[f"state_{name}_buf"] = _gated(window[:, 1:, :], buf, r)
            if info["valid"]:
                fill = inputs[f"state_{name}_fill"]  # (B, span): 1 where an input has been seen
                ready[name] = fill[:, :1]  # (B, 1): 1.0 once the window is full (its oldest slot holds an input)
                new_fill = ops.concatenate([fill[:, 1:], ops.ones_like(fill[:, :1])], axis=1)
                out[f"state_{name}_fill"] = _gated(new_fill, fill, r)
            return ops.expand_dims(y, 1)

        def _mha(self, layer, info, vals, inputs, out, pos, slots, attend):
            i = info["index"]
            q_in, v_in, k_in = vals[info["q"]], vals[info["v"]], vals[info["k"]]
            q = ops.transpose(layer._query_dense(q_in), (0, 2, 1, 3))  # (B, H, 1, key_dim)
            k = ops.transpose(layer._key_dense(k_in), (0, 2, 1, 3))
            v = ops.transpose(layer._value_dense(v_in), (0, 2, 1, 3))  # (B, H, 1, value_dim)
            out[f"k_cache_{i}_at_pos"], out[f"v_cache_{i}_at_pos"] = k, v
            kc = ops.concatenate([inputs[f"k_cache_{i}"], k], axis=2)  # (B, H, C + 1, key_dim)
            vc = ops.concatenate([inputs[f"v_cache_{i}"], v], axis=2)
            p = ops.expand_dims(pos, 1)  # (B, 1)
            valid = ops.less(slots, p)
            if info["window"]:
                valid = ops.logical_and(valid, ops.greater(slots, p - int(info["window"])))
            valid = ops.logical_or(valid, ops.equal(slots, capacity))[:, None, None, :]
            a = attend(q, kc, vc, valid, layer._inverse_sqrt_key_dim)  # (B, H, 1, value_dim)
            a = ops.transpose(a, (0, 2, 1, 3))  # (B, 1, H, value_dim)
            if getattr(layer, "_use_gate", False):
                a = a * layer._gate_dense(q_in)
            return layer._output_dense(a)

    return GraphStep()
