"""Binary and multi-label sigmoid heads (issue 21): thresholded accuracy and agreement, never the argmax of one output;
the ambiguous float [N, T] label layout read by the model's output shape. Conversions are @slow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeseq.cli import cli
from edgeseq.core.metrics import label_reading, metrics_for
from edgeseq.datasets import load_dataset
from edgeseq.quantize.recipes import get_recipe
from edgeseq.quantize.validate import parity

SIGMOID = {"activation": "sigmoid", "units": 1}


def test_one_sigmoid_output_is_binary_accuracy_at_threshold_half():
    y = np.array([0, 1, 1, 0, 1])
    pred = np.array([[0.2], [0.9], [0.6], [0.4], [0.3]], np.float32)
    m = metrics_for("classification", pred, y, SIGMOID)
    assert m["accuracy"] == pytest.approx(0.8) and m["threshold"] == 0.5 and m["reading"].startswith("binary")
    assert metrics_for("classification", pred, y)["accuracy"] == pytest.approx(0.8)  # [0, 1] outputs: 0.5 too
    logits = np.array([[-2.0], [3.0], [0.5], [-0.1], [-1.0]], np.float32)
    m = metrics_for("classification", logits, y, {"activation": "linear"})
    assert m["accuracy"] == pytest.approx(0.8) and m["threshold"] == 0.0 and "logits" in m["reading"]


def test_multi_label_and_per_frame_readings():
    y = np.array([[1, 0, 1], [0, 0, 1]])
    pred = np.array([[0.7, 0.6, 0.9], [0.1, 0.2, 0.4]], np.float32)
    m = metrics_for("classification", pred, y, {"activation": "sigmoid", "units": 3})
    assert m["accuracy"] == pytest.approx(4 / 6) and m["labels"] == 3 and "averaged" in m["reading"]
    # float [N, T] 0/1 labels against a per-step sigmoid head [N, T, 1]: per-frame binary, not a T-horizon regression
    yf = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], np.float32)
    pf = np.array([[0.1, 0.8, 0.7, 0.6], [0.9, 0.6, 0.2, 0.1]], np.float32)[..., None]
    m = metrics_for("regression", pf, yf, SIGMOID)
    assert m["task"] == "classification" and m["per_frame"] and m["frames"] == 8 and m["accuracy"] == 7 / 8
    assert m["reading"].startswith("per-frame binary")
    # the same labels against a linear per-step head: per-frame regression, said so
    r = metrics_for("regression", pf, yf, {"activation": "linear"})
    assert "mse" in r and r["reading"].startswith("per-frame regression")
    # a softmax over two classes is still argmaxed
    two = np.array([[0.3, 0.7], [0.8, 0.2]], np.float32)
    assert metrics_for("classification", two, np.array([1, 0]), {"activation": "softmax"})["accuracy"] == 1.0


def test_parity_of_a_sigmoid_head_is_thresholded_agreement():
    ref = np.array([[0.1], [0.9], [0.7], [0.2]], np.float32)
    got = ref + np.array([[0.01], [-0.01], [-0.3], [0.0]], np.float32)  # one flip: 0.7 -> 0.4
    v = parity(ref, got, "classification", get_recipe("int8").tolerance, SIGMOID)
    assert v["top1_agreement"] == 0.75 and v["agreement"].startswith("thresholded at 0.5") and not v["passed"]
    assert parity(ref, ref, "classification", get_recipe("int8").tolerance, SIGMOID)["top1_agreement"] == 1.0


def test_multi_label_npz_loads_and_datasets_show_says_the_reading(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6, 2)).astype(np.float32)
    y = (rng.random((20, 3)) > 0.5).astype(np.int64)
    np.savez(tmp_path / "ml.npz", X_train=X, y_train=y, X_test=X, y_test=y)
    ds = load_dataset(str(tmp_path / "ml.npz"))
    assert ds.multi_label and not ds.per_step and ds.output_dim == 3
    res = CliRunner().invoke(cli, ["datasets", "show", str(tmp_path / "ml.npz"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["dataset"]["reading"].startswith("multi-label: 3 0/1 labels")
    yf = (rng.random((20, 6)) > 0.5).astype(np.float32)
    assert "the model's output shape decides" in label_reading("regression", yf, 6)
    assert label_reading("classification", np.array([0, 1, 1]), 6).startswith("0/1 labels: binary")


# ---------------------------------------------------------------- converted models (slow)
T, V = 12, 30


def _imdb_like(root: Path) -> dict:
    """Embedding -> Bidirectional(LSTM, seq) -> Bidirectional(LSTM) -> Dense(1, sigmoid), labels 0/1."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.integers(1, V, (680, T))  # 400 test samples: one sample is 0.25 pt
    y = (X[:, -2:].mean(1) > V / 2).astype(np.int64)
    inp = keras.Input((T,), dtype="int32")
    x = layers.Embedding(V, 8)(inp)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(8))(x)
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(x))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", metrics=["accuracy"])
    model.fit(X[:280], y[:280], epochs=25, batch_size=32, verbose=0)
    model.save(root / "imdb.keras")
    np.savez(root / "imdb.npz", X_train=X[:280], y_train=y[:280], X_test=X[280:], y_test=y[280:])
    acc = float(model.evaluate(X[280:], y[280:], verbose=0)[1])
    return {"keras": root / "imdb.keras", "data": str(root / "imdb.npz"), "accuracy": acc}


def _tagger_float(root: Path) -> dict:
    """GRU(return_sequences) -> Dense(1, sigmoid) per step; y float32 0/1 [N, T]."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(320, T, 3)).astype(np.float32)
    y = (np.cumsum(X[..., 0], 1) > 0).astype(np.float32)
    inp = keras.Input((T, 3))
    model = keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.GRU(12, return_sequences=True)(inp)))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", metrics=["accuracy"])
    model.fit(X[:240], y[:240], epochs=12, batch_size=32, verbose=0)
    model.save(root / "tagf.keras")
    np.savez(root / "tagf.npz", X_train=X[:240], y_train=y[:240], X_test=X[240:], y_test=y[240:])
    return {"keras": root / "tagf.keras", "data": str(root / "tagf.npz")}


@pytest.mark.slow
def test_binary_bilstm_validates_and_evaluates_thresholded(conversions, tmp_path):
    from edgeseq.quantize.convert import convert_model
    from edgeseq.quantize.evaluate import evaluate_tflite

    built = conversions.get(("sigmoid.imdb",), _imdb_like)
    assert built["accuracy"] > 0.8
    results = conversions.get(("sigmoid.imdb", "fp32,int8"), lambda out: convert_model(
        built["keras"], ["fp32", "int8"], out_dir=out, calibration=built["data"]))
    for r in results:
        v = r.validation
        assert r.ok and v["passed"] and v["agreement"].startswith("thresholded at 0.5"), (r.error, v)
        assert v["keras_metrics"]["accuracy"] == pytest.approx(built["accuracy"], abs=1e-6)  # not 0.5 (argmax)
        assert v["tflite_metrics"]["accuracy"] >= built["accuracy"] - 0.01
        assert r.manifest["source"]["head"] == {"activation": "sigmoid", "units": 1}
        e = evaluate_tflite(r.tflite_path, built["data"])
        assert e["accuracy"] == v["tflite_metrics"]["accuracy"] and e["reading"].startswith("binary")


@pytest.mark.slow
def test_per_frame_sigmoid_tagger_with_float_labels_evaluates(conversions, tmp_path):
    import shutil

    from edgeseq.quantize.convert import convert_model

    built = conversions.get(("sigmoid.tagger",), _tagger_float)
    [r] = conversions.get(("sigmoid.tagger", "int8"), lambda out: convert_model(
        built["keras"], ["int8"], out_dir=out, calibration=built["data"]))
    assert r.ok and r.validation["passed"], r.error
    k, t = r.validation["keras_metrics"], r.validation["tflite_metrics"]
    assert k["per_frame"] and k["frames"] == 80 * T and k["accuracy"] > 0.85 and t["accuracy"] >= k["accuracy"] - 0.01
    bare = tmp_path / "bare.tflite"  # no manifest: the file's LOGISTIC op says sigmoid
    shutil.copy(r.tflite_path, bare)
    res = CliRunner().invoke(cli, ["evaluate", str(bare), "--dataset", built["data"]])
    assert res.exit_code == 0, res.output
    assert "per-frame accuracy" in res.output and "labels read as per-frame binary" in res.output
