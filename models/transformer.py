"""A compact pre-norm Transformer encoder for sequence classification and forecasting.

    x (B, T, F) -> Dense(d_model) "input_proj" -> positional encoding "pos_encoding"
      -> num_layers x [ x + Attn(LN(x)) ; x + FFN(LN(x)) ] -> LayerNorm "final_norm" -> pooling "pool" -> head

Block i's layers are named block{i}_norm1, block{i}_attn, block{i}_drop1, block{i}_add1, block{i}_norm2,
block{i}_ff1, block{i}_ff2, block{i}_drop2, block{i}_add2: a KV-cache step model looks them up by these names.
"""

from __future__ import annotations

import keras

from edgeseq.core.errors import InputError
from edgeseq.models.config import TransformerConfig
from edgeseq.models.layers import (
    LearnedPositionalEncoding,
    MultiHeadSelfAttention,
    SequencePooling,
    SinusoidalPositionalEncoding,
)


def build_transformer_body(cfg: TransformerConfig, inputs):
    """Encoder blocks on `inputs` (batch, time, features); returns pooled (batch, d_model) features."""
    seq_len = inputs.shape[1]
    if seq_len is None:
        raise InputError("the transformer needs a fixed seq_len", f"pass seq_len <= max_len ({cfg.max_len})")
    if seq_len > cfg.max_len and cfg.pos_encoding == "learned":
        raise InputError(
            f"seq_len={seq_len} is longer than the transformer's learned position table (max_len={cfg.max_len})",
            f"pass max_len={seq_len} (or more) as an override",
        )
    x = keras.layers.Dense(cfg.d_model, name="input_proj")(inputs)
    if cfg.pos_encoding == "sinusoidal":
        # No weights: the table simply covers the data's length, so long inputs need no override.
        x = SinusoidalPositionalEncoding(max(cfg.max_len, seq_len), name="pos_encoding")(x)
    else:
        x = LearnedPositionalEncoding(cfg.max_len, name="pos_encoding")(x)
    for i in range(cfg.num_layers):
        h = keras.layers.LayerNormalization(epsilon=cfg.norm_epsilon, name=f"block{i}_norm1")(x)
        h = MultiHeadSelfAttention(
            cfg.num_heads, causal=cfg.causal, dropout=cfg.attention_dropout, name=f"block{i}_attn"
        )(h)
        if cfg.dropout:
            h = keras.layers.Dropout(cfg.dropout, name=f"block{i}_drop1")(h)
        x = keras.layers.Add(name=f"block{i}_add1")([x, h])
        h = keras.layers.LayerNormalization(epsilon=cfg.norm_epsilon, name=f"block{i}_norm2")(x)
        h = keras.layers.Dense(cfg.ff_dim, activation=cfg.activation, name=f"block{i}_ff1")(h)
        h = keras.layers.Dense(cfg.d_model, name=f"block{i}_ff2")(h)
        if cfg.dropout:
            h = keras.layers.Dropout(cfg.dropout, name=f"block{i}_drop2")(h)
        x = keras.layers.Add(name=f"block{i}_add2")([x, h])
    x = keras.layers.LayerNormalization(epsilon=cfg.norm_epsilon, name="final_norm")(x)
    return SequencePooling(cfg.resolved_pooling, name="pool")(x)
