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
