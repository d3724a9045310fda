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
- the last step (`x[:, -1]`, SequencePooling("last")) drops the time axis;
- GlobalAveragePooling1D / GlobalMaxPooling1D (channels_last) over time become running state: `state_<layer>_mean`
  (the sum of the steps so far divided by the pooled length L, so the output at step L is the whole-sequence mean;
  before that the steps still to come count as zeros) or `state_<layer>_max` with `state_<layer>_seen`.

Anything else that needs other time steps is refused with the layer and the reason.
"""

from __future__ import annotations

from typing import Any

from edgeseq.core.errors import InputError, ModelError
from edgeseq.models.graph.plan import graph_plan
from edgeseq.models.recurrent_step import _state_names


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
            for name, _, tid in plan.held:  # static inputs: (B, F) as in the sequence model
                vals[tid] = inputs[name]
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
                elif rec.kind == "reshape":
                    y = ops.reshape(h, (-1, 1, *rec.info["frame"]))
                elif rec.kind == "frame":  # ZeroPadding2D: frequency padded per frame; time padding is the buffer's
                    (_, _), (left, right) = layer.padding
                    y = ops.pad(h, ((0, 0), (0, 0), (left, right), (0, 0))) if left or right else h
                elif rec.kind == "conv2d":
                    y = self._conv2d(layer, rec.info, h, inputs, out, ready, gate_of(rec.info["gate"]))
                elif rec.kind == "pool":
                    y = self._pool(layer, rec.info, h, inputs, out, gate_of(rec.info["gate"]))
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

        def _conv2d(self, layer, info, h, inputs, out, ready, r):
            """Conv2D / DepthwiseConv2D over [time, frequency]: the ring buffer of the last span frames plus this
            one, convolved 'valid' (frequency padding, if any, came from a ZeroPadding2D per frame; the layer's own
            stride and dilation in frequency)."""
            name = layer.name
            buf = inputs[f"state_{name}_buf"]  # (B, span, F, C): the last span frames, oldest first
            window = ops.concatenate([buf, h], axis=1)  # (B, span + 1, F, C)
            (_, sf), (dt, df) = tuple(layer.strides), tuple(layer.dilation_rate)
            if info["depthwise"]:
                y = ops.depthwise_conv(window, layer.kernel, strides=(1, sf), padding="valid", dilation_rate=(dt, df))
            else:
                y = ops.conv(window, layer.kernel, strides=(1, sf), padding="valid", dilation_rate=(dt, df))
            if layer.use_bias:
                y = y + layer.bias
            if layer.activation is not None:
                y = layer.activation(y)
            out[f"state_{name}_buf"] = _gated(window[:, 1:], buf, r)
            if info["valid"]:
                fill = inputs[f"state_{name}_fill"]
                ready[name] = fill[:, :1]
                new_fill = ops.concatenate([fill[:, 1:], ops.ones_like(fill[:, :1])], axis=1)
                out[f"state_{name}_fill"] = _gated(new_fill, fill, r)
            return y  # (B, 1, F', C')

        def _pool(self, layer, info, h, inputs, out, r):
            """Running global pooling: the sum so far / L (mean), or the maximum so far (max; `seen` = 1 once a step
            arrived, so the first step is taken as it is rather than compared with the zero initial state)."""
            x, name = h[:, 0], layer.name  # (B, C)
            if info["mode"] == "mean":
                acc = inputs[f"state_{name}_mean"]
                y = _gated(acc + x * (1.0 / info["length"]), acc, r)
                out[f"state_{name}_mean"] = y
            else:
                best, seen = inputs[f"state_{name}_max"], inputs[f"state_{name}_seen"]
                y = _gated(seen * ops.maximum(best, x) + (1.0 - seen) * x, best, r)
                out[f"state_{name}_max"] = y
                out[f"state_{name}_seen"] = _gated(ops.ones_like(seen), seen, r)
            return ops.expand_dims(y, 1) if info["keepdims"] else y

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
