"""The walk of a user's functional (or Sequential) graph that decides how it streams: a GraphPlan.

Node by node in Keras's own call order, each tensor is classified (still has its time axis, delayed by "valid"
convolutions, gated, position ids) and each layer gets a record the step layer replays; edgeseq.models.graph.rules
holds the per-layer rules. See edgeseq.models.graph.step for the whole picture.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from edgeseq.core.errors import EdgeseqError, ModelError
from edgeseq.models.graph.frames import CONV2D, FRAME, _FrameRules
from edgeseq.models.graph.rules import (
    DEFAULT_HINT,
    ELEMENTWISE_OPS,
    IDENTITY_ALSO,
    MERGE,
    POOLS,
    POSITIONS_DELAYED,
    WHY,
    GraphPlan,
    _const_array,
    _functional_of,
    _LayerRules,
    _Meta,
    _Rec,
    _refuse,
)
from edgeseq.models.recurrent_step import (
    IDENTITY,
    PER_STEP,
)


class _Walker(_LayerRules, _FrameRules):
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
            if any(m.tpad for m in ins) and type(op).__name__ not in CONV2D:
                raise _refuse(self.name, op, "it follows a ZeroPadding2D that pads the time axis; only a Conv2D "
                                             "right after it streams that padding (as a causal buffer)")
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
        if kind in POOLS:
            return self._pool(node, op, first)
        if kind in FRAME:
            return self._frame(node, op, first)
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


def graph_plan(model: Any) -> GraphPlan:
    """Walk `model`'s graph once: what each node becomes in the step, the state it needs; refusals with reasons."""
    from edgeseq.models.streaming import held_inputs

    fn = _functional_of(model)
    if len(fn.outputs) != 1:
        raise ModelError(f"cannot stream {model.name}: it has {len(fn.outputs)} outputs",
                         "streaming exports single-output sequence models")
    held_names = {n: s for n, s in held_inputs(model)}  # static inputs, held for the whole stream
    w = _Walker(model)
    seq = next(t for t in fn.inputs if str(t.name) not in held_names)
    w.seq_len = seq.shape[1]
    held = []
    for t in fn.inputs:
        w.meta[id(t)] = _Meta(t is seq)
        if t is not seq:
            held.append((str(t.name), held_names[str(t.name)], id(t)))
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
    return GraphPlan(model.name, w.seq_len, w.records, id(seq), id(out), m.time, w.carried, w.attention,
                     w.tables, w.needs_pos, m.delay, w.stateful, held)
