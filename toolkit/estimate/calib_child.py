"""The calibration child: `python -m edgeseq.estimate.calib_child JOBDIR` builds and converts the grid's models.

TensorFlow is imported once here, for every model (a conversion child per model would pay its start-up each time).
Input: JOBDIR/job.json {"out": folder, "specs": [...], "recipes": [...]}. Each file is written atomically as
`<name>-<recipe>.tflite` into `out` as soon as it converts, so a stopped calibration keeps what it made; a spec the
converter refuses is recorded in JOBDIR/report.json and skipped. Files already in `out` are not rebuilt.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def build_block(block: str, p: dict) -> tuple[Any, int]:
    """(a Keras model at batch None, its sequence length) for one grid spec."""
    import keras
    from keras import layers

    if block == "embedding":
        x = keras.Input((p["steps"],), dtype="int32")
        h = layers.Embedding(p["vocab"], p["d"])(x)
        h = layers.GRU(p["units"])(h)
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    if block == "conv1d":
        x = keras.Input((p["steps"], p["features"]))
        h = layers.Conv1D(p["channels"], 3, padding="causal", activation="relu")(x)
        h = layers.Conv1D(p["channels"], 3, padding="same", activation="relu")(h)
        h = layers.GlobalAveragePooling1D()(h)
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    if block == "kvstep":
        from edgeseq.models.streaming import build_step_model
        from edgeseq.models.zoo import build_model

        full = build_model("transformer-causal", "small", seq_len=p["cache"], num_features=16, num_outputs=4,
                           d_model=p["d"], num_heads=p["heads"], ff_dim=2 * p["d"], max_len=p["cache"])
        return build_step_model(full, kv_capacity=p["cache"]), None
    if block == "conv2d":
        x = keras.Input((p["steps"], p["features"]))
        h = layers.Reshape((p["steps"], p["features"], 1))(x)
        h = layers.Conv2D(p["channels"], 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D((1, 2))(h)  # a CRNN front end pools the feature axis (MAX_POOL_2D)
        h = layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
        h = layers.Conv2D(p["channels"], 1, activation="relu")(h)
        h = layers.Reshape((p["steps"], p["features"] // 2 * p["channels"]))(h)
        h = layers.GlobalAveragePooling1D()(h)
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    x = keras.Input((p["steps"], p.get("features", p.get("d"))))
    if block == "rnn":
        cell = {"rnn": layers.SimpleRNN, "gru": layers.GRU, "lstm": layers.LSTM}[p["cell"]]
        h = layers.Bidirectional(cell(p["units"]))(x) if p.get("bidirectional") else cell(p["units"])(x)
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    if block == "fused_lstm":
        h = layers.LSTM(p["units"])(x)
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    if block == "dense":
        a = layers.Dense(p["units"], activation="sigmoid")(x)
        b = layers.Dense(p["units"], activation="tanh")(x)
        h = layers.Multiply()([a, b])
        h = layers.Add()([h, layers.Dense(p["units"], activation="relu")(h)])
        h = layers.Dense(p["units"], activation="gelu")(h)
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    if block == "matmul":
        q = layers.Dense(p["d"])(x)
        k = layers.Dense(p["d"])(x)
        s = layers.Softmax()(keras.ops.matmul(q, keras.ops.transpose(k, (0, 2, 1))))
        h = keras.ops.matmul(s, x)
        return keras.Model(x, h), p["steps"]
    if block == "attention":
        h = layers.Dense(p["d"])(x)
        n = layers.LayerNormalization(epsilon=1e-5)(h)
        a = layers.MultiHeadAttention(p["heads"], p["d"] // p["heads"])(n, n)
        h = layers.Add()([h, a])
        n = layers.LayerNormalization(epsilon=1e-5)(h)
        f = layers.Dense(p["d"])(layers.Dense(p["ff"], activation="gelu")(n))
        h = layers.GlobalAveragePooling1D()(layers.Add()([h, f]))
        return keras.Model(x, layers.Dense(4, activation="softmax")(h)), p["steps"]
    raise ValueError(f"unknown calibration block {block!r}")


def _convert_step(model: Any, recipe: str) -> bytes:
    """A step model (several inputs, batch 1 already) straight through the converter; inputs fed by name (the
    file's input order is not Keras's)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    specs = [(i.name, [1, *[int(d) for d in i.shape[1:]]], str(i.dtype)) for i in model.inputs]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if recipe == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.representative_dataset = lambda: (
            {n: np.zeros(s, dtype=d) if "int" in d else rng.standard_normal(s).astype(np.float32)
             for n, s, d in specs} for _ in range(16))
    return conv.convert()


def _calibration(model: Any, block: str, p: dict) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (32, *[int(d) for d in model.inputs[0].shape[1:]])
    if block == "embedding":
        return rng.integers(0, p["vocab"], size=shape).astype(np.int32)
    return rng.standard_normal(shape).astype(np.float32)


def run(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text())
    out = Path(job["out"])
    from edgeseq.core.fsio import atomic_write_bytes
    from edgeseq.quantize._child import convert_in_process
    from edgeseq.quantize.recipes import get_recipe

    report: dict[str, Any] = {"made": [], "failed": {}}
    for spec in job["specs"]:
        todo = [r for r in job["recipes"] if not (out / f"{spec['name']}-{r}.tflite").exists()]
        if not todo:
            continue
        import keras

        keras.utils.set_random_seed(0)
        model, steps = build_block(spec["block"], spec["params"])
        cal = None if steps is None else _calibration(model, spec["block"], spec["params"])
        strategy = "fused" if spec["block"] == "fused_lstm" else "loop"
        for r in todo:
            name = f"{spec['name']}-{r}.tflite"
            try:
                data = (_convert_step(model, r) if steps is None
                        else convert_in_process(model, get_recipe(r), cal, steps, strategy))
            except Exception as exc:  # noqa: BLE001 - one refused block leaves the rest of the grid
                report["failed"][name] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            atomic_write_bytes(out / name, data)
            report["made"].append(name)
            print(f"made {name}", flush=True)
        keras.backend.clear_session()
    (job_dir / "report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
