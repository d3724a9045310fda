"""The models users copy (issue 21): tiny models shaped like the most-copied public Keras examples, built here.

- the Keras documentation's timeseries-classification Transformer (non-causal MHA encoder, LayerNorm eps 1e-6,
  Conv1D(k=1) feed-forward, GlobalAveragePooling1D(channels_first), univariate [T, 1] input): Keras's batch-1 `add`
  trap (quantize/keras_fixes.py), LayerNorm over one feature (quantize/simplify.py), TF's plain converter as the
  fallback route and converter refusals as one line plus a log file (quantize/converter_log.py).
Conversions are @slow; the root causes are shown without a converter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

T_TS = 24  # the timeseries Transformer's length (the docs use 500; 96 in the issue): small keeps the test quick




def timeseries_arrays(n_train: int = 160, n_test: int = 64, seed: int = 0, steps: int = T_TS) -> dict:
    """Univariate [N, T, 1]; class 1 when the first half's mean is above the second half's."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.normal(size=(n, steps, 1)).astype(np.float32)
        X[:, : steps // 2] += rng.choice([-0.8, 0.8], size=(n, 1, 1)).astype(np.float32)
        y = (X[:, : steps // 2, 0].mean(1) > X[:, steps // 2 :, 0].mean(1)).astype(np.int64)
        out[f"X_{split}"], out[f"y_{split}"] = X, y
    return out


def timeseries_transformer(steps: int = T_TS, blocks: int = 1, head_size: int = 8, heads: int = 2, ff: int = 4):
    """keras.io/examples/timeseries/timeseries_classification_transformer, scaled down."""
    import keras
    from keras import layers

    def encoder(inputs):
        x = layers.MultiHeadAttention(key_dim=head_size, num_heads=heads, dropout=0.1)(inputs, inputs)
        x = layers.Dropout(0.1)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        res = x + inputs
        x = layers.Conv1D(filters=ff, kernel_size=1, activation="relu")(res)
        x = layers.Dropout(0.1)(x)
        x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
        x = layers.LayerNormalization(epsilon=1e-6)(x)
        return x + res

    inp = keras.Input(shape=(steps, 1))
    x = inp
    for _ in range(blocks):
        x = encoder(x)
    x = layers.GlobalAveragePooling1D(data_format="channels_first")(x)
    x = layers.Dense(16, activation="relu")(x)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(x))


# ---------------------------------------------------------------- root causes, no converter
def test_keras_batch1_add_becomes_bias_add_and_the_fix_keeps_broadcasting():
    """Keras 3 turns `[1, 8, 8] + [1, 8, 1]` into a BiasAdd along the wrong axis at batch 1 (and `[1, T, 1] + [1, T,
    1]` into an NCHW BiasAdd the converter cannot lower); inside batch1_safe_add the numbers are numpy's."""
    import keras

    from edgeseq.quantize.keras_fixes import batch1_safe_add

    keras.utils.set_random_seed(0)
    inp = keras.Input(batch_shape=(1, 8, 8))
    model = keras.Model(inp, inp + keras.layers.Dense(1)(inp))
    x = np.random.default_rng(0).normal(size=(1, 8, 8)).astype(np.float32)
    dense = model.layers[1]
    expected = x + (x @ dense.kernel.numpy() + dense.bias.numpy())  # numpy broadcasting: [1, 8, 8] + [1, 8, 1]
    assert np.abs(model(x).numpy() - expected).max() > 1e-3  # Keras's own batch-1 trap
    with batch1_safe_add():
        assert np.abs(model(x).numpy() - expected).max() < 1e-5
        with batch1_safe_add():  # re-entrant
            pass
        assert np.abs(model(x).numpy() - expected).max() < 1e-5
    assert np.abs(model(x).numpy() - expected).max() > 1e-3  # restored on exit


def test_layernorm_over_one_feature_is_its_beta():
    import keras

    from edgeseq.quantize.simplify import simplify_degenerate_norms

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 1))
    ln = keras.layers.LayerNormalization(epsilon=1e-6, name="ln1")
    model = keras.Model(inp, keras.layers.LayerNormalization(name="ln4")(keras.layers.Dense(4)(ln(inp))))
    ln.beta.assign(np.array([0.25], np.float32))
    x = np.random.default_rng(1).normal(size=(3, 6, 1)).astype(np.float32) * 50
    before = model.predict(x, verbose=0)
    assert simplify_degenerate_norms(model) == ["ln1"]  # ln4 normalizes 4 features: untouched
    np.testing.assert_allclose(ln(x).numpy(), np.full((3, 6, 1), 0.25, np.float32), atol=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-3)


MLIR = ('<unknown>:0: error: loc(callsite(fused["BiasAdd:", "functional_1/conv1d_3/BiasAdd@__inference_f_1484"] at '
        'callsite(fused["StatefulPartitionedCall:", "StatefulPartitionedCall@__inference_w_1639"] at '
        'fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]))): \'tf.Transpose\' op x should be of the '
        'same rank with y, got x of rank 3, and y of rank 4\n<unknown>:0: note: loc(fused["S:", "S_1"]): called from')


def test_converter_refusal_is_one_line_in_words_with_a_log(tmp_path):
    from edgeseq.quantize.converter_log import refusal_line, write_log

    log = write_log(tmp_path / "logs" / "c.log", MLIR, {"recipe": "fp32", "log_path": "x"})
    line = refusal_line(MLIR, ["dense", "conv1d_3"], log)
    assert line.startswith("op tf.Transpose (a BiasAdd in layer `conv1d_3`): x should be of the same rank with y")
    assert "loc(" not in line and "fused[" not in line and "\n" not in line and line.endswith(f"output: {log}")
    assert MLIR in Path(log).read_text() and '"recipe": "fp32"' in Path(log).read_text()
    assert refusal_line(MLIR, []).startswith("op tf.Transpose (a BiasAdd at conv1d_3/BiasAdd): ")
    assert refusal_line("error: loc(x(\"a\")): plain words") == "plain words"
    assert write_log(None, MLIR) is None


# ---------------------------------------------------------------- conversions
@pytest.fixture(scope="module")
def ts_transformer(tmp_path_factory) -> dict:
    import keras

    root = tmp_path_factory.mktemp("ts-transformer")
    keras.utils.set_random_seed(0)
    arrays = timeseries_arrays()
    model = timeseries_transformer()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(arrays["X_train"], arrays["y_train"], epochs=15, batch_size=32, verbose=0)
    model.save(root / "ts.keras")
    np.savez(root / "ts.npz", **arrays)
    return {"keras": root / "ts.keras", "data": str(root / "ts.npz"), "root": root}


@pytest.mark.slow
def test_timeseries_transformer_converts_fp32_and_int8_on_edgeseqs_route(ts_transformer, tmp_path, monkeypatch):
    from edgeseq.quantize.convert import convert_model

    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(tmp_path / "cache"))
    results = convert_model(ts_transformer["keras"], ["fp32", "int8"], out_dir=tmp_path / "o",
                            calibration=ts_transformer["data"])
    for r in results:
        route, v = r.manifest["route"], r.validation
        assert r.ok and v["passed"] and "fallback" not in route and route["batch"] == 1, (r.error, v)
        assert len(route["norms_as_beta"]) == 2 and all(n.startswith("layer_normalization") for n in route["norms_as_beta"])
        keras_acc, tfl_acc = v["keras_metrics"]["accuracy"], v["tflite_metrics"]["accuracy"]
        assert keras_acc > 0.8 and tfl_acc >= keras_acc - 0.01
    assert not (tmp_path / "cache" / "logs").exists()  # nothing refused, nothing logged


@pytest.mark.slow
def test_plain_converter_route_is_the_fallback(ts_transformer, tmp_path, monkeypatch, capsys):
    """edgeseq's own route refused (test hook): TF's plain converter route converts, batch fixed to 1 in the file,
    validated the same way; the manifest says which route and why, and the log holds the converter's text."""
    from edgeseq.quantize.inspect import inspect_tflite

    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGESEQ_TEST_CHILD_CRASH", "refuse:none")
    code, out, err = run_cli(["convert", str(ts_transformer["keras"]), "--recipe", "fp32", "--calibration",
                              ts_transformer["data"], "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    assert "TF's plain converter route" in out and "route.fallback" in err
    manifest = json.loads((tmp_path / "o" / "ts-fp32.json").read_text())
    route = manifest["route"]
    assert route["rnn"] == "none" and route["batch"] == 1 and manifest["validation"]["passed"]
    assert route["converter"].startswith("tf.lite.TFLiteConverter.from_keras_model on the model as saved")
    fb = route["fallback"]
    assert fb["to"] == "plain" and "op tf.Transpose" in fb["why"] and "loc(" not in fb["why"]
    assert fb["fixed_signature"]["inputs"] == [{"from": [-1, T_TS, 1], "to": [1, T_TS, 1]}]
    logs = list((tmp_path / "cache" / "logs").glob("convert-ts-fp32-*.log"))
    assert len(logs) == 1 and "loc(callsite" in logs[0].read_text() and str(logs[0]) in fb["why"]
    assert inspect_tflite(tmp_path / "o" / "ts-fp32.tflite")["inputs"][0]["shape"] == [1, T_TS, 1]


@pytest.mark.slow
def test_refusal_on_both_routes_is_one_line(tmp_path, monkeypatch, capsys):
    """A GRU whose own route is refused (test hook) and whose plain route needs Flex ops (refused with builtins): one
    line, exit 3, no file."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 3))
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.GRU(4)(inp))).save(tmp_path / "g.keras")
    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGESEQ_TEST_CHILD_CRASH", "refuse:loop")
    code, _, text = run_cli(["convert", str(tmp_path / "g.keras"), "--recipe", "fp32", "--out", str(tmp_path / "o")],
                            capsys)
    err = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert code == 3 and len(err) == 1 and "loc(" not in err[0]
    assert "the converter refused op tf.Transpose" in err[0] and "plain converter route failed too" in err[0]
    assert "op tf.TensorListReserve" in err[0] and "the converter's full output: " in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
