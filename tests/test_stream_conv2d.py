"""Conv2D over time streams (issue 21, the kws_streaming approach): a keyword-spotting CRNN (Reshape [T, F] ->
[T, F, 1], Conv2D, Reshape to [T', F'*C], GRUs) steps frame by frame with a ring buffer per 2-D convolution;
DepthwiseConv2D, frequency pooling, ZeroPadding2D (causal in time) too; strides in time and other time-mixing are
refused with the reason. Keras-level step equality is fast; .tflite conversions are @slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
layers = keras.layers

from edgeseq.core.errors import InputError  # noqa: E402
from edgeseq.models.streaming import (  # noqa: E402
    analyze_streaming,
    build_step_model,
    run_steps,
    state_specs,
    stream_delay,
)

T, F = 14, 10


def _x(n=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, T, F)).astype("float32")


def kws(causal=False, depthwise=False, pool=False, dilation=1, per_frame=False, classes=3):
    """The issue's CRNN keyword spotter, with the variants kws_streaming models use."""
    inp = keras.Input((T, F))
    x = layers.Reshape((T, F, 1))(inp)
    if causal:
        x = layers.ZeroPadding2D(((2 * dilation, 0), (1, 1)))(x)
    x = layers.Conv2D(8, (3, 3), padding="valid", dilation_rate=(dilation, 1), activation="relu", name="conv")(x)
    if depthwise:
        x = layers.DepthwiseConv2D((2, 3), padding="valid", name="dw")(x)
    if pool:
        x = layers.MaxPooling2D((1, 2))(x)
    t, f, c = x.shape[1:]
    x = layers.Reshape((t, f * c))(x)
    x = layers.GRU(12, return_sequences=True, name="g1")(x)
    x = layers.GRU(12, return_sequences=per_frame, name="g2")(x)
    return keras.Model(inp, layers.Dense(classes, activation="softmax")(x))


@pytest.mark.parametrize("kw, delay, state", [
    ({}, 2, ["state_conv_buf", "state_conv_fill"]),
    ({"causal": True}, 0, ["state_conv_buf"]),
    ({"depthwise": True}, 3, ["state_conv_buf", "state_conv_fill", "state_dw_buf", "state_dw_fill"]),
    ({"pool": True, "dilation": 2}, 4, ["state_conv_buf", "state_conv_fill"]),
    ({"causal": True, "dilation": 2, "depthwise": True, "pool": True}, 1, ["state_conv_buf", "state_dw_buf",
                                                                          "state_dw_fill"]),
])
def test_conv2d_steps_equal_the_sequence_model(kw, delay, state):
    keras.utils.set_random_seed(0)
    model = kws(**kw)
    assert stream_delay(model) == delay
    assert [n for n, _ in state_specs(model) if not n.startswith("state_g")] == state
    y = run_steps(build_step_model(model, batch_size=None), _x())
    np.testing.assert_allclose(y, model.predict(_x(), verbose=0), atol=1e-5)


def test_per_frame_conv2d_model_steps_equal_every_frame_after_the_delay():
    keras.utils.set_random_seed(0)
    model = kws(per_frame=True)  # valid: the step at t gives the sequence output at t - 2
    ys = run_steps(build_step_model(model, batch_size=None), _x(), collect=True)
    np.testing.assert_allclose(ys[:, 2:], model.predict(_x(), verbose=0), atol=1e-5)


def _refused(build, words):
    with pytest.raises(InputError, match=words) as info:
        analyze_streaming(build())
    assert info.value.hint


@pytest.mark.parametrize("middle, words", [
    (lambda x: layers.Conv2D(4, (3, 3), strides=(2, 1))(x), "strides=2 in time emits one output every 2 steps"),
    (lambda x: layers.Conv2D(4, (3, 3), padding="same")(x), "padding='same' with a kernel of 3 in time"),
    (lambda x: layers.MaxPooling2D((2, 2))(x), "pools 2 neighbouring time steps"),
    (lambda x: layers.ZeroPadding2D(((1, 1), (0, 0)))(x), "pads 1 future frames"),
    (lambda x: layers.Conv2D(4, (3, 3))(layers.ZeroPadding2D(((1, 0), (0, 0)))(x)), "pads 1 frames in time"),
])
def test_time_mixing_2d_layers_are_refused_with_the_reason(middle, words):
    def build():
        inp = keras.Input((T, F))
        x = middle(layers.Reshape((T, F, 1))(inp))
        t, f, c = x.shape[1:]
        return keras.Model(inp, layers.Dense(2)(layers.GRU(4)(layers.Reshape((t, f * c))(x))))

    _refused(build, words)


def test_a_reshape_across_time_is_refused():
    def build():
        inp = keras.Input((T, F))
        x = layers.Reshape((T // 2, 2 * F))(layers.GRU(F, return_sequences=True)(inp))
        return keras.Model(inp, layers.Dense(2)(layers.GRU(4)(x)))

    _refused(build, "does not keep the time axis")


# ----------------------------------------------------------------------------------------------- .tflite (slow)
def kws_arrays(n_train=400, n_test=400, seed=0, per_frame=False) -> dict:
    """A class-specific frequency band in the middle frames, in noise; per frame: the band's class from its frame on."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.normal(size=(n, T, F)).astype(np.float32)
        y = rng.integers(0, 3, n)
        for c in range(3):
            X[y == c, 5:9, 3 * c : 3 * c + 3] += 1.2
        out[f"X_{split}"] = X
        out[f"y_{split}"] = np.repeat(y[:, None], T - 2, 1) * (np.arange(T - 2) >= 7) if per_frame else y
    return out


def _trained(root: Path, per_frame: bool) -> dict:
    keras.utils.set_random_seed(0)
    arrays = kws_arrays(per_frame=per_frame)
    if per_frame:  # per-frame labels follow the valid convolution's output frames (T - 2)
        arrays = {k: (v.astype(np.int64) if k.startswith("y") else v) for k, v in arrays.items()}
    model = kws(per_frame=per_frame)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(arrays["X_train"], arrays["y_train"], epochs=15, batch_size=32, verbose=0)
    name = "kws_frames" if per_frame else "kws"
    model.save(root / f"{name}.keras")
    np.savez(root / f"{name}.npz", **arrays)
    return {"keras": root / f"{name}.keras", "data": str(root / f"{name}.npz")}


@pytest.mark.slow
@pytest.mark.parametrize("per_frame", [False, True])
def test_kws_crnn_streams_fp32_and_int8(conversions, per_frame):
    from edgeseq.quantize.stream.convert import convert_stream

    built = conversions.get(("stream_conv2d.kws", per_frame), lambda root: _trained(root, per_frame))
    results = conversions.get(("stream_conv2d.kws", per_frame, "fp32,int8"), lambda out: convert_stream(
        built["keras"], ["fp32", "int8"], out_dir=out, calibration=built["data"] if not per_frame else None))
    for r in results:
        v, stream = r.validation, r.manifest["stream"]
        assert r.ok and v["passed"], (r.error, v)
        assert stream["delay_steps"] == 2 and {"state_conv_buf", "state_conv_fill"} <= {s["name"] for s in
                                                                                          stream["state"]}
        if per_frame:
            assert v["per_step"]
        else:
            assert v["tflite_metrics"]["accuracy"] >= v["keras_metrics"]["accuracy"] - 0.01
            assert v["keras_metrics"]["accuracy"] > 0.9
