"""The fused route: Keras 3 LSTM layers rebuilt so TF's converter emits TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM.

The converter's prepare-composite-functions pass replaces a function whose `api_implements` attribute starts with
"lstm_" (plus `time_major` and `go_backwards` attributes) by one fused LSTM op, provided the function takes
(inputs, init_h, init_c, kernel, recurrent_kernel, bias) with static shapes (batch 1), returns five values
(last output, all outputs, h, c, runtime) and the caller reads only the first two. This is the contract tf_keras's
LSTM layer meets through `gru_lstm_utils.DefunWrapper` / `generate_defun_backend`
(`tf.function(..., experimental_attributes={"api_implements": "lstm_<uuid>", ...})`); Keras 3 layers never carry
it. `FusedLSTM` wraps a trained Keras 3 LSTM layer (sharing its weights, no copy) and calls such a function, so no
tf_keras dependency is needed. The function body (a plain `tf.scan` over the LSTM cell) is what runs in TensorFlow
and is what the converter would keep if it did not fuse; the child checks the op count, so an unfused graph is a
failed route, not a silent loop.

The fused op has a full-integer kernel (int8 activations, int16 cell state); TF 2.21's quantizer refuses it for
16x8 ("Quantization to 16x8-bit not yet supported for op: 'UNIDIRECTIONAL_SEQUENCE_LSTM'").

State: the op keeps h and c in *variable* tensors. The float kernel carries the last sequence's final state into
the next invoke (tensorflow/tensorflow#47813; measured here: max |diff| 6e-3 between a sequence run after another
and the same sequence in a fresh interpreter), so deployed code would have to call ResetVariableTensors() before
each sequence; a FILL op zeroing them in the graph fixes that on LiteRT, but edgeseq's file validator
(quantize/tflite/verify.py) refuses an op that writes a variable tensor. The int8 kernel showed no carry-over
(identical outputs, ai-edge-litert 2.3 and tflite-runtime 2.14), and validation runs its samples back to back in
one interpreter, so a carry-over would fail parity. Hence the route is int8 only (quantize/rnn_routes.py).
Conversion child and host analysis only (imports Keras / TensorFlow).
"""

from __future__ import annotations

import uuid
from typing import Any

from edgeseq.core.errors import ModelError

OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"


def why_not_fusable(layer: Any) -> str | None:
    """None when `layer` can become one fused op; otherwise the reason, for the manifest."""
    import keras

    if not isinstance(layer, keras.layers.LSTM) or not isinstance(layer.cell, keras.layers.LSTMCell):
        return f"{layer.name} is not a keras LSTM"
    cell = layer.cell
    if cell.activation is not keras.activations.tanh or cell.recurrent_activation is not keras.activations.sigmoid:
        return f"{layer.name}: the fused kernel has tanh/sigmoid activations only"
    for flag in ("go_backwards", "stateful", "return_state"):
        if getattr(layer, flag, False):
            return f"{layer.name}: {flag}=True is not fused"
    if layer.dtype_policy.compute_dtype != "float32":
        return f"{layer.name}: compute dtype {layer.dtype_policy.compute_dtype}, not float32"
    return None


def _masking_layer(model: Any) -> str | None:
    """The first layer that attaches a mask (Masking, mask_zero=True), nested models included, or None."""
    import keras

    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.Masking) or getattr(layer, "mask_zero", False):
            return layer.name
        if isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return None


def survey(model: Any) -> dict:
    """Recurrent layers of `model` (nested included): {'lstm_fusable': [...], 'not_fusable': {name: why}}."""
    import keras

    fusable, refused = [], {}
    masked = _masking_layer(model)
    stack = list(model.layers)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.Bidirectional):
            refused[layer.name] = f"{layer.name}: a Bidirectional LSTM is not fused"
        elif isinstance(layer, keras.layers.RNN):
            why = why_not_fusable(layer)
            if why is None and masked:
                why = f"{layer.name}: {masked} masks the input and the fused op has no mask input"
            if why is None:
                fusable.append(layer.name)
            elif isinstance(layer, keras.layers.LSTM):
                refused[layer.name] = why
        elif isinstance(layer, keras.Model):
            stack.extend(layer.layers)
    return {"lstm_fusable": fusable, "not_fusable": refused}


def _lstm_reference(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
    """Keras's LSTM math (gates i, f, c, o), batch-major; the body the converter replaces by the fused op."""
    import tensorflow as tf

    def step(carry, x_t):
        h, c = carry[0], carry[1]
        z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel) + bias
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return tf.stack([h, c])

    states = tf.scan(step, tf.transpose(inputs, [1, 0, 2]), initializer=tf.stack([init_h, init_c]))
    hs = states[:, 0]
    return hs[-1], tf.transpose(hs, [1, 0, 2]), states[-1, 0], states[-1, 1], tf.constant(1.0)


def _annotated_function() -> Any:
    import tensorflow as tf

    return tf.function(_lstm_reference, autograph=False, experimental_attributes={
        "api_implements": f"lstm_{uuid.uuid4()}", "time_major": False, "go_backwards": False})


def _fused_layer_class() -> Any:
    import keras
    import tensorflow as tf

    class FusedLSTM(keras.layers.Layer):
        """Calls the annotated LSTM function with `source`'s current weights; owns no weights itself."""

        def __init__(self, source: Any, **kwargs: Any):
            super().__init__(name=f"{source.name}_fused", **kwargs)
            self._source = [source]  # a list: not tracked as a sublayer, so the weights stay the source's
            self._fn = _annotated_function()

        def compute_output_shape(self, shape):
            units, src = self._source[0].units, self._source[0]
            return (shape[0], shape[1], units) if src.return_sequences else (shape[0], units)

        def call(self, x, mask=None):
            if mask is not None:
                raise ModelError(f"{self._source[0].name} receives a mask; the fused LSTM op has no mask input",
                                 "use --rnn-strategy loop")
            cell = self._source[0].cell
            batch = x.shape[0]
            zeros = tf.zeros([batch, cell.units], x.dtype)
            bias = tf.convert_to_tensor(cell.bias) if cell.use_bias else tf.zeros([4 * cell.units], x.dtype)
            last, seq, _, _, _ = self._fn(x, zeros, zeros, tf.convert_to_tensor(cell.kernel),
                                          tf.convert_to_tensor(cell.recurrent_kernel), bias)
            return seq if self._source[0].return_sequences else last

    return FusedLSTM


def fused_model(model: Any, seq_len: int | None) -> tuple[Any, int]:
    """A batch-1, fixed-length model computing what `model` does, each fusable LSTM replaced by a FusedLSTM
    (sharing its weights); other layers are `model`'s own. Returns (model, number of fused layers)."""
    import keras

    from edgeseq.quantize.rebuild import fixed_batch_shape, fixed_input

    shape = fixed_batch_shape(model, seq_len)
    masked = _masking_layer(model)
    if masked:
        raise ModelError(f"{masked} masks the input and the fused LSTM op has no mask input",
                         "use --rnn-strategy loop")
    fused_cls = _fused_layer_class()
    count = 0

    def swap(layer: Any) -> Any:
        nonlocal count
        if why_not_fusable(layer) is None:
            count += 1
            return fused_cls(layer)
        return layer

    inp = fixed_input(model, seq_len)
    try:
        clone = keras.models.clone_model(model, input_tensors=inp, clone_function=swap, recursive=True)
    except ModelError:
        raise
    except Exception as exc:  # subclassed models cannot be cloned layer by layer
        raise ModelError(
            f"cannot rebuild this model with fused LSTMs ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})",
            "use --rnn-strategy loop, or build the model as a Functional/Sequential model",
        ) from exc
    if tuple(clone.inputs[0].shape) != shape:
        clone = keras.Model(inp, clone(inp), name=f"{model.name}_fused")
    if count == 0:
        raise ModelError("no LSTM layer of this model can be fused", "use --rnn-strategy loop")
    return clone, count


def count_fused_ops(data: bytes) -> int:
    """How many UNIDIRECTIONAL_SEQUENCE_LSTM ops a converted file holds (the child checks it against the layers)."""
    from edgeseq.quantize.tflite import edit as tflite_edit

    fb = tflite_edit._fb()
    model = tflite_edit.load(data)
    return sum(tflite_edit.op_code(model, op) == fb.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
               for sg in model.subgraphs for op in sg.operators)
