"""Tiny .tflite files for the profiling tests, built once per session (TensorFlow is imported here, in the test
process only; the agent, profile and report code never import it).

`build_tiny_models(dir)` writes:
  dense-fp32.tflite    Flatten+Dense, float I/O, with a converter-style manifest (dense-fp32.json)
  dense-int8.tflite    the same, full int8 with int8 I/O, with a manifest
  dense-dynamic.tflite dynamic-range (FULLY_CONNECTED v12 on TF 2.21: tflite-runtime 2.14 cannot run it)
  gru-fp32.tflite      unrolled GRU, batch 1 (a real sequence model, builtin ops only)
  gru-flex.tflite      GRU with batch None and SELECT_TF_OPS (needs Flex: no runtime here can run it)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

_BUILT: dict[str, dict[str, Path]] = {}


def _write(path: Path, data: bytes, manifest: dict | None = None) -> Path:
    path.write_bytes(data)
    if manifest is not None:
        manifest = {**manifest, "sha256": hashlib.sha256(data).hexdigest()}
        path.with_suffix(".json").write_text(json.dumps(manifest))
    return path


def build_tiny_models(out: Path) -> dict[str, Path]:
    key = str(out)
    if key in _BUILT:
        return _BUILT[key]
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 8), batch_size=1)
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(32, activation="relu")(x)
    dense = keras.Model(inp, keras.layers.Dense(4)(x))
    params = int(dense.count_params())

    def conv(model, mode=None, flex=False):
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode in ("dynamic", "int8"):
            c.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "int8":
            rng = np.random.default_rng(0)

            def rep():
                for _ in range(8):
                    yield [rng.standard_normal((1, 16, 8)).astype(np.float32)]

            c.representative_dataset = rep
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = tf.int8
            c.inference_output_type = tf.int8
        if flex:
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Statistics for quantized inputs were expected": harmless
            return c.convert()

    models = {
        "dense-fp32": _write(
            out / "dense-fp32.tflite",
            conv(dense),
            {"recipe": {"slug": "fp32"}, "params": params, "validation": {"accuracy": 0.91}},
        ),
        "dense-int8": _write(
            out / "dense-int8.tflite",
            conv(dense, "int8"),
            {"recipe": {"slug": "int8"}, "params": params, "validation": {"accuracy": 0.89}},
        ),
        "dense-dynamic": _write(out / "dense-dynamic.tflite", conv(dense, "dynamic")),
    }
    gi = keras.Input((8, 4), batch_size=1)
    gru = keras.Model(gi, keras.layers.Dense(3)(keras.layers.GRU(8, unroll=True)(gi)))
    models["gru-fp32"] = _write(out / "gru-fp32.tflite", conv(gru))
    fi = keras.Input((8, 4))
    flex = keras.Model(fi, keras.layers.GRU(4)(fi))
    models["gru-flex"] = _write(out / "gru-flex.tflite", conv(flex, flex=True))
    _BUILT[key] = models
    return models


# ------------------------------------------------------------------------------------------ TF-free builders
# Realistic small .tflite files written with the flatbuffers object API of the schema that ships in ai-edge-litert
# (no TensorFlow: ~1 ms per file). The hostile-input and fuzz tests edit these. `dense_model` and `while_model` run on
# LiteRT; the others are for the parser only.


class TFLiteBuilder:
    """Build a model subgraph by subgraph: `sg = b.subgraph()`, `t = b.tensor(sg, ...)`, `b.op(sg, 'ADD', ...)`."""

    def __init__(self, description: str = "edgeseq test model"):
        from ai_edge_litert import schema_py_generated as schema

        self.s = schema
        self.model = schema.ModelT()
        self.model.version = 3
        self.model.description = description
        self.model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel every converter writes
        self.model.operatorCodes = []
        self.model.subgraphs = []
        self._codes: dict[str, int] = {}

    def subgraph(self, name: str = "main"):
        sg = self.s.SubGraphT()
        sg.name, sg.tensors, sg.operators, sg.inputs, sg.outputs = name, [], [], [], []
        self.model.subgraphs.append(sg)
        return sg

    def tensor(self, sg, name: str, shape, dtype: str = "FLOAT32", data=None, quant=None, signature=None) -> int:
        import numpy as np

        t = self.s.TensorT()
        t.name, t.shape, t.type = name, list(shape), getattr(self.s.TensorType, dtype)
        t.shapeSignature = list(signature) if signature is not None else None
        t.buffer = 0
        if data is not None:
            buf = self.s.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        else:  # converters give every activation its own empty buffer
            self.model.buffers.append(self.s.BufferT())
            t.buffer = len(self.model.buffers) - 1
        if quant is not None:
            q = self.s.QuantizationParametersT()
            scale, zero, dim = quant
            q.scale, q.zeroPoint, q.quantizedDimension = list(scale), list(zero), dim
            t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def opcode(self, name: str) -> int:
        if name not in self._codes:
            code = self.s.OperatorCodeT()
            builtin = getattr(self.s.BuiltinOperator, name, None)
            if builtin is None:  # a custom op, e.g. a Flex op
                code.builtinCode, code.customCode = self.s.BuiltinOperator.CUSTOM, name
            else:
                code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
            code.version = 1
            self.model.operatorCodes.append(code)
            self._codes[name] = len(self.model.operatorCodes) - 1
        return self._codes[name]

    def op(self, sg, name: str, inputs, outputs, options=None, options_type: str | None = None):
        op = self.s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self.opcode(name), list(inputs), list(outputs)
        if options is not None:
            op.builtinOptions = options
            op.builtinOptionsType = getattr(self.s.BuiltinOptions, options_type or type(options).__name__[:-1])
        sg.operators.append(op)
        return op

    def finish(self) -> bytes:
        import flatbuffers

        builder = flatbuffers.Builder(1024)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _fc_options(b: TFLiteBuilder, activation: str = "NONE"):
    opts = b.s.FullyConnectedOptionsT()
    opts.fusedActivationFunction = getattr(b.s.ActivationFunctionType, activation)
    return opts


def dense_model(seq: int = 8, features: int = 4, hidden: int = 16, classes: int = 3) -> bytes:
    """[1, seq, features] -> RESHAPE -> FULLY_CONNECTED+RELU -> FULLY_CONNECTED -> SOFTMAX: a converter-shaped classifier."""
    import numpy as np

    rng = np.random.default_rng(0)
    b = TFLiteBuilder()
    sg = b.subgraph()
    x = b.tensor(sg, "serving_default_input:0", [1, seq, features], signature=[-1, seq, features])
    shape = b.tensor(sg, "flatten/shape", [2], "INT32", np.array([1, seq * features], np.int32))
    w1 = b.tensor(sg, "dense/kernel", [hidden, seq * features], data=rng.standard_normal((hidden, seq * features), np.float32) * 0.1)
    b1 = b.tensor(sg, "dense/bias", [hidden], data=np.zeros(hidden, np.float32))
    w2 = b.tensor(sg, "dense_1/kernel", [classes, hidden], data=rng.standard_normal((classes, hidden), np.float32) * 0.1)
    b2 = b.tensor(sg, "dense_1/bias", [classes], data=np.zeros(classes, np.float32))
    flat = b.tensor(sg, "flatten/Reshape", [1, seq * features])
    h = b.tensor(sg, "dense/Relu", [1, hidden])
    logits = b.tensor(sg, "dense_1/BiasAdd", [1, classes])
    out = b.tensor(sg, "StatefulPartitionedCall:0", [1, classes])
    reshape = b.s.ReshapeOptionsT()
    reshape.newShape = [1, seq * features]
    b.op(sg, "RESHAPE", [x, shape], [flat], reshape)
    b.op(sg, "FULLY_CONNECTED", [flat, w1, b1], [h], _fc_options(b, "RELU"))
    b.op(sg, "FULLY_CONNECTED", [h, w2, b2], [logits], _fc_options(b))
    softmax = b.s.SoftmaxOptionsT()
    softmax.beta = 1.0
    b.op(sg, "SOFTMAX", [logits], [out], softmax)
    sg.inputs, sg.outputs = [x], [out]
    return b.finish()


def while_model(steps: int = 6, features: int = 4, hidden: int = 8, classes: int = 3) -> bytes:
    """A recurrent cell in a WHILE loop (three subgraphs: main, cond, body), the way converters emit a non-unrolled RNN.

    main: [1, steps, features] -> RESHAPE [steps, features] -> WHILE(i=0, h=0, xs) -> FULLY_CONNECTED head.
    cond: i < steps.  body: h = tanh(W x[i] + U h + b); i += 1 (U's bias input is the optional -1).
    """
    import numpy as np

    rng = np.random.default_rng(1)
    b = TFLiteBuilder()
    main, cond, body = b.subgraph("main"), b.subgraph("while_cond"), b.subgraph("while_body")

    def loop_vars(sg, prefix):
        return (b.tensor(sg, f"{prefix}/i", [], "INT32"), b.tensor(sg, f"{prefix}/h", [1, hidden]),
                b.tensor(sg, f"{prefix}/xs", [steps, features]))

    x = b.tensor(main, "serving_default_input:0", [1, steps, features])
    xs_shape = b.tensor(main, "xs/shape", [2], "INT32", np.array([steps, features], np.int32))
    xs = b.tensor(main, "xs", [steps, features])
    i0 = b.tensor(main, "i0", [], "INT32", np.array(0, np.int32))
    h0 = b.tensor(main, "h0", [1, hidden], data=np.zeros((1, hidden), np.float32))
    i_end, h_end, xs_end = loop_vars(main, "while")
    wo = b.tensor(main, "head/kernel", [classes, hidden], data=rng.standard_normal((classes, hidden), np.float32))
    bo = b.tensor(main, "head/bias", [classes], data=np.zeros(classes, np.float32))
    out = b.tensor(main, "StatefulPartitionedCall:0", [1, classes])
    b.op(main, "RESHAPE", [x, xs_shape], [xs])
    loop = b.s.WhileOptionsT()
    loop.condSubgraphIndex, loop.bodySubgraphIndex = 1, 2
    b.op(main, "WHILE", [i0, h0, xs], [i_end, h_end, xs_end], loop)
    b.op(main, "FULLY_CONNECTED", [h_end, wo, bo], [out], _fc_options(b))
    main.inputs, main.outputs = [x], [out]

    ci, ch, cx = loop_vars(cond, "cond")
    limit = b.tensor(cond, "cond/limit", [], "INT32", np.array(steps, np.int32))
    flag = b.tensor(cond, "cond/Less", [], "BOOL")
    b.op(cond, "LESS", [ci, limit], [flag])
    cond.inputs, cond.outputs = [ci, ch, cx], [flag]

    bi, bh, bx = loop_vars(body, "body")
    one = b.tensor(body, "body/one", [], "INT32", np.array(1, np.int32))
    row_shape = b.tensor(body, "body/row_shape", [2], "INT32", np.array([1, features], np.int32))
    w = b.tensor(body, "cell/kernel", [hidden, features], data=rng.standard_normal((hidden, features), np.float32) * 0.3)
    u = b.tensor(body, "cell/recurrent_kernel", [hidden, hidden], data=rng.standard_normal((hidden, hidden), np.float32) * 0.3)
    bias = b.tensor(body, "cell/bias", [hidden], data=np.zeros(hidden, np.float32))
    row = b.tensor(body, "body/row", [features])
    row2 = b.tensor(body, "body/row2", [1, features])
    wx = b.tensor(body, "body/wx", [1, hidden])
    uh = b.tensor(body, "body/uh", [1, hidden])
    pre = b.tensor(body, "body/pre", [1, hidden])
    h_next = b.tensor(body, "body/h_next", [1, hidden])
    i_next = b.tensor(body, "body/i_next", [], "INT32")
    b.op(body, "GATHER", [bx, bi], [row], b.s.GatherOptionsT())
    b.op(body, "RESHAPE", [row, row_shape], [row2])
    b.op(body, "FULLY_CONNECTED", [row2, w, bias], [wx], _fc_options(b))
    b.op(body, "FULLY_CONNECTED", [bh, u, -1], [uh], _fc_options(b))
    b.op(body, "ADD", [wx, uh], [pre], b.s.AddOptionsT())
    b.op(body, "TANH", [pre], [h_next])
    b.op(body, "ADD", [bi, one], [i_next], b.s.AddOptionsT())
    body.inputs, body.outputs = [bi, bh, bx], [i_next, h_next, bx]
    return b.finish()


def sequence_loop_model(steps: int = 6) -> bytes:
    """A WHILE loop that rewrites its sequence around step i, the way a converter writes a stacked RNN layer's output
    sequence: body: prefix = SLICE(seq, [0], [i]), rest = SLICE(seq, [i], [-1]), seq' = CONCATENATION(prefix, rest),
    i += 1. At trip 0 the prefix has shape [0] (LiteRT's get_tensor refuses a zero-size tensor).
    main: [1, steps] -> RESHAPE [steps] -> WHILE(i=0, seq) -> RESHAPE [1, steps]."""
    import numpy as np

    b = TFLiteBuilder()
    main, cond, body = b.subgraph("main"), b.subgraph("while_cond"), b.subgraph("while_body")

    def loop_vars(sg, prefix):
        return b.tensor(sg, f"{prefix}/i", [], "INT32"), b.tensor(sg, f"{prefix}/seq", [steps])

    x = b.tensor(main, "serving_default_input:0", [1, steps])
    flat = b.tensor(main, "flat/shape", [1], "INT32", np.array([steps], np.int32))
    back = b.tensor(main, "out/shape", [2], "INT32", np.array([1, steps], np.int32))
    seq = b.tensor(main, "seq", [steps])
    i0 = b.tensor(main, "i0", [], "INT32", np.array(0, np.int32))
    i_end, seq_end = loop_vars(main, "while")
    out = b.tensor(main, "StatefulPartitionedCall:0", [1, steps])
    b.op(main, "RESHAPE", [x, flat], [seq])
    loop = b.s.WhileOptionsT()
    loop.condSubgraphIndex, loop.bodySubgraphIndex = 1, 2
    b.op(main, "WHILE", [i0, seq], [i_end, seq_end], loop)
    b.op(main, "RESHAPE", [seq_end, back], [out])
    main.inputs, main.outputs = [x], [out]

    ci, cs = loop_vars(cond, "cond")
    limit = b.tensor(cond, "cond/limit", [], "INT32", np.array(steps, np.int32))
    flag = b.tensor(cond, "cond/Less", [], "BOOL")
    b.op(cond, "LESS", [ci, limit], [flag])
    cond.inputs, cond.outputs = [ci, cs], [flag]

    bi, bs = loop_vars(body, "body")
    one = b.tensor(body, "body/one", [], "INT32", np.array(1, np.int32))
    shape1 = b.tensor(body, "body/shape1", [1], "INT32", np.array([1], np.int32))
    zero = b.tensor(body, "body/zero", [1], "INT32", np.array([0], np.int32))
    to_end = b.tensor(body, "body/to_end", [1], "INT32", np.array([-1], np.int32))
    at = b.tensor(body, "body/at", [1], "INT32")
    prefix = b.tensor(body, "body/prefix", [0], signature=[-1])
    rest = b.tensor(body, "body/rest", [steps], signature=[-1])
    seq_next = b.tensor(body, "body/seq_next", [steps])
    i_next = b.tensor(body, "body/i_next", [], "INT32")
    b.op(body, "RESHAPE", [bi, shape1], [at])
    b.op(body, "SLICE", [bs, zero, at], [prefix], b.s.SliceOptionsT())
    b.op(body, "SLICE", [bs, at, to_end], [rest], b.s.SliceOptionsT())
    concat = b.s.ConcatenationOptionsT()
    concat.axis = 0
    b.op(body, "CONCATENATION", [prefix, rest], [seq_next], concat)
    b.op(body, "ADD", [bi, one], [i_next], b.s.AddOptionsT())
    body.inputs, body.outputs = [bi, bs], [i_next, seq_next]
    return b.finish()


def chain_model(n_ops: int, width: int = 16) -> bytes:
    """[1, width] through `n_ops` ops (FULLY_CONNECTED and TANH alternating, one shared weight): a long graph."""
    import numpy as np

    b = TFLiteBuilder()
    sg = b.subgraph()
    x = b.tensor(sg, "input", [1, width])
    w = b.tensor(sg, "kernel", [width, width], data=np.eye(width, dtype=np.float32))
    prev = x
    for n in range(n_ops):
        nxt = b.tensor(sg, f"t{n}", [1, width])
        if n % 2 == 0:
            b.op(sg, "FULLY_CONNECTED", [prev, w, -1], [nxt], _fc_options(b))
        else:
            b.op(sg, "TANH", [prev], [nxt])
        prev = nxt
    sg.inputs, sg.outputs = [x], [prev]
    return b.finish()


def conv_int8_model(length: int = 10, channels: int = 4, filters: int = 8) -> bytes:
    """int8 Conv1D as CONV_2D (per-channel weights, int32 bias) plus a custom Flex op: quantization and custom codes."""
    import numpy as np

    rng = np.random.default_rng(2)
    b = TFLiteBuilder()
    sg = b.subgraph()
    x = b.tensor(sg, "input", [1, 1, length, channels], "INT8", quant=([0.05], [-3], 0))
    w = b.tensor(sg, "conv/kernel", [filters, 1, 3, channels], "INT8",
                 rng.integers(-127, 128, (filters, 1, 3, channels), dtype=np.int8),
                 quant=([0.01 + 0.001 * k for k in range(filters)], [0] * filters, 0))
    bias = b.tensor(sg, "conv/bias", [filters], "INT32", np.zeros(filters, np.int32),
                    quant=([0.0005] * filters, [0] * filters, 0))
    y = b.tensor(sg, "conv", [1, 1, length - 2, filters], "INT8", quant=([0.1], [0], 0))
    out = b.tensor(sg, "flex_out", [1, 1, length - 2, filters], "INT8", quant=([0.1], [0], 0))
    conv = b.s.Conv2DOptionsT()
    conv.strideW = conv.strideH = conv.dilationWFactor = conv.dilationHFactor = 1
    conv.padding = b.s.Padding.VALID
    b.op(sg, "CONV_2D", [x, w, bias], [y], conv)
    b.op(sg, "FlexIdentity", [y], [out])
    sg.inputs, sg.outputs = [x], [out]
    return b.finish()
