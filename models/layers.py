"""Custom layers of the zoo, written with keras.ops only so they stay backend-agnostic and convert to TFLite builtins.

Every layer is registered under the "edgeseq" package with a complete get_config, so a saved .keras reloads with
safe_mode=True. No Lambda layers: they do not survive safe_mode.

MultiHeadSelfAttention is ours rather than keras.layers.MultiHeadAttention because a KV-cache step model must reuse
its exact weights one token at a time; its pieces (project_qkv, attend, merge_heads, project_output) are public for
that, and its weight names (query_kernel, ..., output_bias) are part of the contract.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def sinusoidal_table(length: int, dim: int) -> np.ndarray:
    """The fixed encoding of "Attention Is All You Need": sin on even channels, cos on odd, float32 (length, dim)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    i = np.arange(dim)[None, :]
    angle = pos / np.power(10000.0, (2 * (i // 2)) / dim)
    table = np.where(i % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)


def causal_mask(q_len: int, k_len: int):
    """Boolean (q_len, k_len): query i (the last q_len of k_len positions) may see keys 0..k_len-q_len+i.

    With q_len == k_len this is the usual lower triangle; with q_len == 1 (a KV-cache step) it is all True.
    """
    i = ops.expand_dims(ops.arange(q_len), 1)
    j = ops.expand_dims(ops.arange(k_len), 0)
    return ops.less_equal(j, i + (k_len - q_len))


@keras.saving.register_keras_serializable(package="edgeseq")
class SinusoidalPositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal table to (batch, time, d_model). No weights: the table is rebuilt from max_len."""

    def __init__(self, max_len: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.max_len = int(max_len)

    def build(self, input_shape):
        self.dim = int(input_shape[-1])
        self._table = sinusoidal_table(self.max_len, self.dim)
        super().build(input_shape)

    def position_table(self, start: int, length: int):
        """Rows start..start+length of the table, (length, d_model): what a streaming step adds at its position."""
        return ops.convert_to_tensor(self._table[start : start + length], dtype=self.compute_dtype)

    def call(self, x):
        length = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
        table = ops.convert_to_tensor(self._table, dtype=self.compute_dtype)
        return x + table[:length]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len}


@keras.saving.register_keras_serializable(package="edgeseq")
class LearnedPositionalEncoding(keras.layers.Layer):
    """Adds a trained (max_len, d_model) table to (batch, time, d_model)."""

    def __init__(self, max_len: int = 256, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.max_len = int(max_len)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_len, int(input_shape[-1])), initializer=self.initializer
        )
        super().build(input_shape)

    def position_table(self, start: int, length: int):
        return self.embeddings[start : start + length]

    def call(self, x):
        length = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
        return x + ops.cast(self.embeddings[:length], x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_len": self.max_len,
            "initializer": keras.initializers.serialize(self.initializer),
        }


@keras.saving.register_keras_serializable(package="edgeseq")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Softmax self-attention over (batch, time, d_model), with an optional causal mask.

    Weights (stable names): query/key/value/output kernels (d_model, d_model) and biases (d_model,). Heads are
    contiguous slices of d_model: head h owns channels h*head_dim:(h+1)*head_dim.
    """

    def __init__(self, num_heads: int, causal: bool = False, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None

    def build(self, input_shape):
        d_model = int(input_shape[-1])
        if d_model % self.num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={self.num_heads}")
        self.d_model = d_model
        self.head_dim = d_model // self.num_heads
        for name in ("query", "key", "value", "output"):
            kernel = self.add_weight(
                name=f"{name}_kernel", shape=(d_model, d_model), initializer="glorot_uniform"
            )
            bias = self.add_weight(name=f"{name}_bias", shape=(d_model,), initializer="zeros")
            setattr(self, f"{name}_kernel", kernel)
            setattr(self, f"{name}_bias", bias)
        super().build(input_shape)

    # -- pieces a KV-cache step model reuses -----------------------------------------------------------------
    def split_heads(self, x):
        """(batch, time, d_model) -> (batch, heads, time, head_dim)."""
        length = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
        x = ops.reshape(x, (-1, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def merge_heads(self, x):
        """(batch, heads, time, head_dim) -> (batch, time, d_model)."""
        length = x.shape[2] if x.shape[2] is not None else ops.shape(x)[2]
        x = ops.transpose(x, (0, 2, 1, 3))
        return ops.reshape(x, (-1, length, self.d_model))

    def project_qkv(self, x):
        """(batch, time, d_model) -> q, k, v, each (batch, heads, time, head_dim)."""
        q = ops.matmul(x, self.query_kernel) + self.query_bias
        k = ops.matmul(x, self.key_kernel) + self.key_bias
        v = ops.matmul(x, self.value_kernel) + self.value_bias
        return self.split_heads(q), self.split_heads(k), self.split_heads(v)

    def attend(self, q, k, v, mask=None, training=None):
        """Scaled dot-product attention per head. mask: boolean, True = may attend, broadcastable to (B, H, Tq, Tk)."""
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(self.head_dim))
        if mask is not None:
            neg = -1e9 if scores.dtype == "float32" else -3e4
            scores = ops.where(mask, scores, ops.cast(neg, scores.dtype))
        probs = ops.softmax(scores, axis=-1)
        if self.dropout_layer is not None:
            probs = self.dropout_layer(probs, training=training)
        return ops.matmul(probs, v)

    def project_output(self, x):
        """(batch, time, d_model) -> (batch, time, d_model) through the output projection."""
        return ops.matmul(x, self.output_kernel) + self.output_bias

    # ---------------------------------------------------------------------------------------------------------
    def call(self, x, training=None):
        q, k, v = self.project_qkv(x)
        mask = None
        if self.causal:
            length = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
            mask = causal_mask(length, length)
        return self.project_output(self.merge_heads(self.attend(q, k, v, mask, training=training)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "causal": self.causal,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="edgeseq")
class SequencePooling(keras.layers.Layer):
    """(batch, time, d) -> (batch, d): "mean" over time or the "last" time step (what a causal model streams)."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("mean", "last"):
            raise ValueError(f"mode must be 'mean' or 'last', got {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "mean":
            return ops.mean(x, axis=1)
        return x[:, -1, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
