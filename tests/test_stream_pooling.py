"""Global pooling over time streams (issue 21): GlobalAveragePooling1D / GlobalMaxPooling1D in causal models become
running state whose value after the last step is the whole-sequence output; channels_first pooling (each step's
features) is refused with the reason. .tflite conversions are @slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
layers = keras.layers

from edgeseq.core.errors import InputError  # noqa: E402
from edgeseq.models.streaming import analyze_streaming, build_step_model, run_steps, state_specs  # noqa: E402

T, F = 12, 3


def _x(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, T, F)).astype("float32")


def _pooled(pool: str, padding: str = "causal"):
    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F))
    h = layers.Conv1D(5, 3, padding=padding, name="conv")(inp)
    h = layers.GRU(6, return_sequences=True, name="gru")(h)
    p = (layers.GlobalAveragePooling1D(name="pool") if pool == "mean" else layers.GlobalMaxPooling1D(name="pool"))(h)
    return keras.Model(inp, layers.Dense(2)(p))


@pytest.mark.parametrize("pool, padding", [("mean", "causal"), ("max", "causal"), ("mean", "valid"),
                                           ("max", "valid")])
def test_running_pool_after_the_last_step_equals_the_sequence_model(pool, padding):
    model = _pooled(pool, padding)
    names = [n for n, _ in state_specs(model)]
    assert (["state_pool_mean"] if pool == "mean" else ["state_pool_max", "state_pool_seen"]) == \
        [n for n in names if n.startswith("state_pool")]
    y = run_steps(build_step_model(model, batch_size=None), _x())
    np.testing.assert_allclose(y, model.predict(_x(), verbose=0), atol=1e-5)


def test_running_mean_is_the_sum_so_far_over_the_length():
    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F))
    model = keras.Model(inp, layers.GlobalAveragePooling1D()(layers.GRU(4, return_sequences=True)(inp)))
    step = build_step_model(model, batch_size=None)
    ys = run_steps(step, _x(), collect=True)  # (N, T, 4): step t holds sum(h_0..h_t) / T
    h = keras.Model(inp, model.layers[1].output).predict(_x(), verbose=0)
    np.testing.assert_allclose(ys, np.cumsum(h, axis=1) / T, atol=1e-5)


def test_channels_first_pooling_is_refused_with_the_reason():
    inp = keras.Input((T, F))
    h = layers.GRU(4, return_sequences=True)(inp)
    model = keras.Model(inp, layers.Dense(2)(layers.GlobalAveragePooling1D(data_format="channels_first")(h)))
    with pytest.raises(InputError, match="channels_first.*reads across time") as info:
        analyze_streaming(model)
    assert "--window" in info.value.hint


def test_pooling_after_a_non_causal_layer_is_refused_for_that_layer():
    inp = keras.Input((T, F))
    h = layers.Bidirectional(layers.GRU(4, return_sequences=True))(inp)
    with pytest.raises(InputError, match="bidirectional"):
        analyze_streaming(keras.Model(inp, layers.GlobalAveragePooling1D()(h)))
    h = layers.Conv1D(4, 3, padding="same")(inp)
    with pytest.raises(InputError, match="future steps"):
        analyze_streaming(keras.Model(inp, layers.GlobalMaxPooling1D()(h)))


def _pool_classifier(root: Path) -> dict:
    """Causal Conv1D -> GRU(seq) -> [mean, max] pooling -> softmax, trained on which half of a 0/1 mix is larger."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(720, T, F)).astype(np.float32)
    X[:, :, 0] += rng.choice([-0.6, 0.6], size=(720, 1))
    y = (X[:, :, 0].mean(1) > 0).astype(np.int64)
    inp = keras.Input((T, F))
    h = layers.GRU(12, return_sequences=True)(layers.Conv1D(8, 3, padding="causal", activation="relu")(inp))
    x = layers.Concatenate()([layers.GlobalAveragePooling1D(name="avg")(h), layers.GlobalMaxPooling1D(name="mx")(h)])
    model = keras.Model(inp, layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X[:320], y[:320], epochs=15, batch_size=32, verbose=0)
    model.save(root / "pool.keras")
    np.savez(root / "pool.npz", X_train=X[:320], y_train=y[:320], X_test=X[320:], y_test=y[320:])
    return {"keras": root / "pool.keras", "data": str(root / "pool.npz")}


@pytest.mark.slow
def test_pooling_classifier_streams_fp32_and_int8(conversions):
    from edgeseq.quantize.stream.convert import convert_stream

    built = conversions.get(("stream_pooling.classifier",), _pool_classifier)
    results = conversions.get(("stream_pooling.classifier", "fp32,int8"), lambda out: convert_stream(
        built["keras"], ["fp32", "int8"], out_dir=out, calibration=built["data"]))
    for r in results:
        v = r.validation
        assert r.ok and v["passed"], (r.error, v)
        k, t = v["keras_metrics"]["accuracy"], v["tflite_metrics"]["accuracy"]
        assert k > 0.85 and t >= k - 0.01
        assert {s["name"] for s in r.manifest["stream"]["state"]} >= {"state_avg_mean", "state_mx_max", "state_mx_seen"}
