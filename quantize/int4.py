"""The `int4w` recipe: 4-bit weights for the ops LiteRT runs with int4 weights, float activations quantized per op
at run time (dynamic range), done by Google's ai-edge-quantizer on the fp32 file the usual route made.

Why this route: TF 2.21's converter has no 4-bit post-training mode; ai-edge-quantizer (PyPI `ai-edge-quantizer`,
which pins ai-edge-litert 2.3.0 like edgeseq) rewrites a converted .tflite, subgraph by subgraph, so the RNN loop
route keeps its WHILE loop (the cell's FULLY_CONNECTED weights inside the body become int4) and its size stays
constant in T. What edgeseq adds: tensor names made unique across subgraphs before the quantizer sees the file
(it requires unique names; the compacted converter output repeats `t12` in every subgraph), the ops chosen
(OPS), its output silenced and re-checked, and the usual compaction afterwards.

Choices, measured on the zoo (LiteRT 2.3, x86-64, 1 thread): dynamic (int4 weights fed straight to the hybrid
FULLY_CONNECTED kernel) over weight-only (DEQUANTIZE to float weights at every invoke): Transformer small 51 vs 105 us,
GRU small 60 vs 124 us (fp32 55 / 84 us); per-channel scales, because blockwise (32 and up) does not divide the zoo's
12-16 input features and adds a scale per block.
Runtimes: ai-edge-litert 2.3 runs these files; tflite-runtime 2.14 (its last release) loads the dynamic int4 file and
computes wrong outputs without an error (a GRU's softmax came out uniform), and refuses the weight-only one
(DEQUANTIZE of INT4): the device agent refuses int4 files on tflite-runtime before running them.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

# op -> how ai-edge-quantizer 0.10 takes it: "dynamic" (int4 weights into the op's hybrid kernel) or "weight-only"
# (a DEQUANTIZE of the int4 weight to float; it has no dynamic BATCH_MATMUL). Not GATHER, the op TF's converter
# makes of a Keras Embedding: ai-edge-quantizer takes no config for it, so an Embedding table stays float32.
OPS = {"FULLY_CONNECTED": "dynamic", "BATCH_MATMUL": "weight-only", "EMBEDDING_LOOKUP": "dynamic"}
BITS = 4
FP16_TABLE_MIN = 512  # float32 constants this large (elements) that stay float are stored float16 (_fp16_tables)


def _unique_names(data: bytes) -> bytes:
    """The same model with every tensor named s<subgraph>_<name> (ai-edge-quantizer wants names unique in the file)."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize.slim import pack_model

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for k, sg in enumerate(model.subgraphs or []):
        for i, t in enumerate(sg.tensors or []):
            t.name = f"s{k}_t{i}".encode()
    return pack_model(model, len(data) + 4096)


def int4_weights(fp32: bytes, report: dict[str, Any]) -> bytes:
    """`fp32` with the weights of OPS in 4 bits (per channel, dynamic); `report` gets what was quantized."""
    from ai_edge_quantizer import qtyping, quantizer

    from edgeseq.core.errors import ConversionError

    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            q = quantizer.Quantizer(bytearray(_unique_names(fp32)))
            for op, how in OPS.items():
                add = q.add_dynamic_config if how == "dynamic" else q.add_weight_only_config
                add(".*", getattr(qtyping.TFLOperationName, op), BITS, qtyping.QuantGranularity.CHANNELWISE)
            data = bytes(q.quantize().quantized_model)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types; its reason is the message
        raise ConversionError(f"ai-edge-quantizer refused: {' '.join(str(exc).split())[:240]}",
                              "use dynamic or int8") from exc
    data, report_fp16 = _fp16_tables(data)
    count = _int4_tensors(data)
    if not count:
        raise ConversionError(f"ai-edge-quantizer left no weight in 4 bits (no {', '.join(OPS)} with a constant "
                              "weight in this model)", "use dynamic or int8")
    report["int4"] = {"tool": "ai-edge-quantizer 0.10, per-channel", "ops": OPS, "int4_tensors": count,
                      "float16_tables": report_fp16}
    return data


def _fp16_tables(data: bytes) -> tuple[bytes, list[dict]]:
    """Float32 constants of the main graph with FP16_TABLE_MIN elements or more that no weight quantization took
    (a position table added to the input, say) stored as float16 behind a DEQUANTIZE, as TF's fp16 recipe stores
    weights: half their bytes, values rounded to float16 (relative error <= 2^-11). XNNPACK folds such a DEQUANTIZE
    into the constant when it prepares the graph."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize.slim import pack_model

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sg, buffers = model.subgraphs[0], model.buffers
    done: list[dict] = []
    new_ops = []
    code = None
    for i, t in enumerate(list(sg.tensors)):
        buf = buffers[t.buffer]
        n = 0 if buf.data is None else len(buf.data) // 4
        if t.type != schema.TensorType.FLOAT32 or n < FP16_TABLE_MIN or t.quantization and t.quantization.scale:
            continue
        if code is None:
            code = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE, version=3)
        half = schema.BufferT()
        half.data = np.frombuffer(bytes(bytearray(buf.data)), "<f4").astype("<f2").view(np.uint8).copy()
        buffers.append(half)
        t16 = schema.TensorT()
        t16.shape, t16.type, t16.buffer = list(t.shape), schema.TensorType.FLOAT16, len(buffers) - 1
        t16.name = (t.name or b"") + b"_fp16" if isinstance(t.name, bytes) else f"{t.name}_fp16".encode()
        sg.tensors.append(t16)
        t.buffer = 0  # now the DEQUANTIZE's output, computed before every other op
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = code, [len(sg.tensors) - 1], [i]
        new_ops.append(op)
        done.append({"tensor": i, "elements": int(n), "bytes_saved": int(2 * n)})
    if not done:
        return data, done
    sg.operators = new_ops + list(sg.operators)
    return pack_model(model, len(data)), done


def _opcode(model: Any, schema: Any, builtin: int, version: int) -> int:
    for k, c in enumerate(model.operatorCodes or []):
        if max(int(c.builtinCode), int(c.deprecatedBuiltinCode)) == builtin:
            c.version = max(int(c.version), version)
            return k
    c = schema.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), version
    model.operatorCodes.append(c)
    return len(model.operatorCodes) - 1


def _int4_tensors(data: bytes) -> int:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    return sum(1 for sg in model.subgraphs or [] for t in sg.tensors or [] if t.type == schema.TensorType.INT4)
