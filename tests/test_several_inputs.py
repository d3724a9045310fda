"""Models with several inputs (issue 21): a [T, F] sensor sequence beside a [3] vector of static features,
concatenated after a GRU. Convert (calibration and validation from an .npz with one array per input name, or random
inputs per input), inspect, profile (the agent feeds every input), evaluate. Conversions are @slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeseq.core.errors import DatasetError
from edgeseq.datasets import load_dataset

T, F, S = 10, 4, 3


def two_input_arrays(n_train: int = 320, n_test: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.normal(size=(n, T, F)).astype(np.float32)
        st = rng.normal(size=(n, S)).astype(np.float32)
        y = ((X[:, :, 0].mean(1) * 3 + st[:, 0]) > 0).astype(np.int64) + (st[:, 1] > 0.8)
        out[f"X_{split}_sensors"], out[f"X_{split}_static"], out[f"y_{split}"] = X, st, y
    return out


def test_npz_with_one_array_per_input_loads(tmp_path):
    np.savez(tmp_path / "two.npz", **two_input_arrays(40, 20))
    ds = load_dataset(str(tmp_path / "two.npz"))
    assert ds.inputs is not None and set(ds.inputs["test"]) == {"sensors", "static"}
    assert ds.X_test.shape == (20, T, F) and ds.seq_len == T and ds.meta["inputs"]["static"] == [S]
    bad = two_input_arrays(40, 20)
    bad["X_test_static"] = bad["X_test_static"][:5]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(DatasetError, match="different sample counts"):
        load_dataset(str(tmp_path / "bad.npz"))


def _two_input_model(root: Path) -> dict:
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    arrays = two_input_arrays()
    seq, static = keras.Input((T, F), name="sensors"), keras.Input((S,), name="static")
    x = layers.Concatenate()([layers.GRU(12)(seq), layers.Dense(6, activation="relu")(static)])
    model = keras.Model([seq, static], layers.Dense(3, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train = {"sensors": arrays["X_train_sensors"], "static": arrays["X_train_static"]}
    model.fit(train, arrays["y_train"], epochs=20, batch_size=32, verbose=0)
    model.save(root / "two.keras")
    np.savez(root / "two.npz", **arrays)
    test = {"sensors": arrays["X_test_sensors"], "static": arrays["X_test_static"]}
    return {"keras": root / "two.keras", "data": str(root / "two.npz"),
            "accuracy": float(model.evaluate(test, arrays["y_test"], verbose=0)[1])}


@pytest.fixture(scope="module")
def two(conversions) -> dict:
    return conversions.get(("several_inputs.two",), _two_input_model)


@pytest.mark.slow
def test_two_inputs_convert_validate_evaluate_inspect_profile(two, conversions, tmp_path):
    from edgeseq.api import evaluate, profile
    from edgeseq.quantize.convert import convert_model
    from edgeseq.quantize.inspect import inspect_tflite

    assert two["accuracy"] > 0.8
    results = conversions.get(("several_inputs.two", "fp32,int8"), lambda out: convert_model(
        two["keras"], ["fp32", "int8"], out_dir=out, calibration=two["data"]))
    for r in results:
        v = r.validation
        assert r.ok and v["passed"], (r.error, v)
        assert v["keras_metrics"]["accuracy"] == pytest.approx(two["accuracy"], abs=1e-6)
        assert v["tflite_metrics"]["accuracy"] >= two["accuracy"] - 0.01
        record = r.manifest["source"]["input"]
        assert record["kind"] == "several" and [i["name"] for i in record["inputs"]] == ["sensors", "static"]
        assert [i["kind"] for i in record["inputs"]] == ["sequence", "static"]
        if r.recipe.calibrated:
            assert r.manifest["calibration"]["inputs"] == ["sensors", "static"]
        e = evaluate(r.tflite_path, two["data"])
        assert e.metrics["accuracy"] == pytest.approx(v["tflite_metrics"]["accuracy"])
        shapes = sorted(i["shape"] for i in inspect_tflite(r.tflite_path)["inputs"])
        assert shapes == [[1, S], [1, T, F]]
    [run] = profile([results[1].tflite_path], runs=20, warmup=2, db=tmp_path / "r.db")
    assert run.p50_us and run.p50_us > 0


@pytest.mark.slow
def test_two_inputs_convert_on_random_inputs_per_input(two, tmp_path):
    from edgeseq.quantize.convert import convert_model

    [r] = convert_model(two["keras"], ["int8"], out_dir=tmp_path / "o")
    assert r.ok and r.validation["passed"] and r.validation["data"]["source"] == "random-normal"
    assert r.manifest["calibration"]["inputs"] == ["sensors", "static"]


def test_two_sequence_inputs_are_refused_for_streaming_with_the_reason():
    import keras

    from edgeseq.core.errors import InputError
    from edgeseq.models.streaming import analyze_streaming

    a, b = keras.Input((T, F), name="a"), keras.Input((T, 2), name="b")
    x = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.GRU(4)(x)))
    with pytest.raises(InputError, match="2 of its inputs have a time axis"):
        analyze_streaming(model)


def test_static_input_is_held_through_keras_steps():
    import keras

    from edgeseq.models.streaming import build_step_model, run_steps, state_specs

    keras.utils.set_random_seed(1)
    seq, static = keras.Input((T, F), name="sensors"), keras.Input((S,), name="static")
    h = keras.layers.GRU(6, return_sequences=True, name="g1")(seq)
    x = keras.layers.Concatenate()([keras.layers.GRU(5, name="g2")(h), keras.layers.Dense(4)(static)])
    model = keras.Model([seq, static], keras.layers.Dense(2)(x))
    step = build_step_model(model, batch_size=None)
    assert [t.name for t in step.inputs] == ["x", "static", "state_g1_h", "state_g2_h"]
    assert [n for n, _ in state_specs(model)] == ["state_g1_h", "state_g2_h"]
    rng = np.random.default_rng(0)
    X, st = rng.normal(size=(5, T, F)).astype(np.float32), rng.normal(size=(5, S)).astype(np.float32)
    np.testing.assert_allclose(run_steps(step, X, held={"static": st}), model.predict([X, st], verbose=0), atol=1e-5)


@pytest.mark.slow
def test_two_inputs_stream_the_sequence_and_hold_the_static_features(two, conversions):
    from edgeseq.quantize.stream.convert import convert_stream

    results = conversions.get(("several_inputs.two", "stream", "fp32,int8"), lambda out: convert_stream(
        two["keras"], ["fp32", "int8"], out_dir=out, calibration=two["data"]))
    for r in results:
        v, stream = r.validation, r.manifest["stream"]
        assert r.ok and v["passed"], (r.error, v)
        assert stream["held"] == [{"name": "static", "shape": [1, S]}] and stream["kind"] == "recurrent-step"
        assert v["tflite_metrics"]["accuracy"] >= v["keras_metrics"]["accuracy"] - 0.01
