"""The KV-cache step of the zoo's causal Transformer: one position per call, keys/values of earlier positions read
from a fixed-capacity cache, the new key/value returned for the runtime to write at slot `pos` (see
edgeseq.models.streaming for the naming contract). Weights are the trained layers' own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgeseq.core.errors import InputError, ModelError
from edgeseq.models.recurrent_step import IDENTITY, PER_STEP


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
        if kind in IDENTITY:
            continue
        if kind not in PER_STEP:
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
    return scaled_masked_attention(q, k, v, valid, 1.0 / math.sqrt(attn.head_dim))


def scaled_masked_attention(q: Any, k: Any, v: Any, valid: Any, scale: float) -> Any:
    """softmax(q k^T * scale, masked) v with `_masked_attention`'s bounded masking; q (B, H, 1, dk), k (B, H, S, dk),
    v (B, H, S, dv), valid broadcastable to (B, H, 1, S). Shared by the zoo step and users' MultiHeadAttention."""
    from keras import ops

    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * scale
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
