"""Recurrent builders: SimpleRNN, LSTM and GRU stacks with a last-state (or mean) head.

Plain Keras layers only, named predictably ("lstm_0", "lstm_1", ..., "head"), so that a step (streaming) model can find
each layer's `.cell` by name and share its weights.
"""

from __future__ import annotations

import keras

from edgeseq.core.errors import InputError
from edgeseq.models.config import RNNConfig
from edgeseq.models.layers import SequencePooling

RNN_LAYERS = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def build_recurrent_body(cfg: RNNConfig, inputs):
    """Stacked recurrent layers on `inputs` (batch, time, features); returns the pooled (batch, units) features."""
    if cfg.unroll and inputs.shape[1] is None:
        raise InputError("unroll=True needs a fixed seq_len", "pass seq_len, or build with unroll=False")
    layer_cls = RNN_LAYERS[cfg.arch]
    x = inputs
    for i in range(cfg.num_layers):
        last = i == cfg.num_layers - 1
        layer = layer_cls(
            cfg.units,
            return_sequences=not last or cfg.head == "mean",
            unroll=cfg.unroll,
            name=f"{cfg.arch}_{i}",
        )
        if cfg.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"bi{cfg.arch}_{i}")
        x = layer(x)
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    if cfg.head == "mean":
        x = SequencePooling("mean", name="pool")(x)
    return x
