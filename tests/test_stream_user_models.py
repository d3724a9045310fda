"""Users' own models stream: a causal keras MultiHeadAttention inside a functional Transformer (residual blocks,
learned or constant positions) becomes a KV-cache step model from the layer's own weights; causal (and "valid")
Conv1D front ends stream with a ring buffer of their last inputs, so a CRNN keyword spotter streams end to end.
Step models reproduce the sequence model step by step in Keras (fast) and as .tflite on LiteRT (slow). What cannot
stream (non-causal attention, 'same' padding, strides) is refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from _zoo_cache import costs, plan_table, planner, prefetch_session

keras = pytest.importorskip("keras")

from keras import layers, ops  # noqa: E402

from edgeseq.core.errors import InputError  # noqa: E402
from edgeseq.models.streaming import (  # noqa: E402
    analyze_streaming,
    build_step_model,
    initial_state,
    run_steps,
    state_specs,
    stream_delay,
)
from edgeseq.models.streamkind import StreamKind  # noqa: E402

T, F, D, K = 10, 5, 16, 3


def _x(n=4, t=T, seed=0):
    return np.random.default_rng(seed).standard_normal((n, t, F)).astype("float32")


def _transformer(positions="constant", blocks=2, causal=True, mask=None, seq_len=T, **mha):
    """A user's functional causal Transformer: projection, positions, pre-norm residual blocks, last step, head."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((seq_len, F))
    h = layers.Dense(D, name="proj")(inp)
    if positions == "constant":  # Keras evaluates an Embedding over ops.arange(T) while building: a constant table
        h = h + layers.Embedding(seq_len, D)(ops.arange(seq_len))
    elif positions == "ids":  # trainable: position ids computed from the input's shape feed an Embedding
        ids = ops.cumsum(ops.ones_like(inp[:, :, 0], dtype="int32"), axis=1) - 1
        h = layers.Add()([h, layers.Embedding(seq_len + 4, D, name="pos_emb")(ids)])
    elif positions == "learned":  # the zoo's layer, used in a user's model (it loads in safe mode)
        from edgeseq.models.layers import LearnedPositionalEncoding

        h = LearnedPositionalEncoding(max_len=seq_len + 4, name="pos")(h)
    for i in range(blocks):
        n = layers.LayerNormalization(name=f"ln{i}a")(h)
        kw = {"use_causal_mask": True} if causal and mask is None else {}
        if mask is not None:
            kw["attention_mask"] = mask
        a = layers.MultiHeadAttention(2, 8, name=f"mha{i}", **mha)(n, n, **kw)
        h = layers.Add(name=f"res{i}a")([h, a])
        n = layers.LayerNormalization(name=f"ln{i}b")(h)
        f = layers.Dense(D, name=f"ff{i}b")(layers.Dense(2 * D, activation="gelu", name=f"ff{i}a")(n))
        h = layers.Add(name=f"res{i}b")([h, layers.Dropout(0.1)(f)])
    h = layers.LayerNormalization(name="final")(h)
    out = layers.Dense(K, activation="softmax", name="head")(h[:, -1, :])
    return keras.Model(inp, out, name="user_tf")


def _crnn(padding="causal", dilation=1, kernel=3, strides=1, seq2seq=False, seq_len=T):
    """A CRNN keyword spotter: Conv1D front end -> GRU -> Dense."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((seq_len, F))
    h = layers.Conv1D(8, kernel, padding=padding, dilation_rate=dilation, strides=strides, activation="relu",
                      name="conv")(inp)
    h = layers.Conv1D(8, 2, padding=padding, name="conv2")(h)
    h = layers.GRU(12, return_sequences=seq2seq, name="gru")(h)
    out = layers.Dense(K, name="head")(h)
    return keras.Model(inp, out, name="crnn")


def _parity(model, capacity=None, x=None, atol=2e-5):
    step = build_step_model(model, kv_capacity=capacity, batch_size=None)
    x = _x() if x is None else x
    np.testing.assert_allclose(run_steps(step, x), np.asarray(model(x)), atol=atol)
    assert {id(w) for w in step.weights} <= {id(w) for w in model.weights}  # shared, not copied
    return step


# ----------------------------------------------------------------------------------------------- attention (fast)
@pytest.mark.parametrize("positions", ["constant", "ids", "learned", None])
def test_users_causal_mha_kv_step_reproduces_the_full_forward(positions):
    model = _transformer(positions)
    info = analyze_streaming(model)
    assert info.kind == StreamKind.KV_CACHE and info.detail["num_layers"] == 2
    step = _parity(model, capacity=T if positions == "constant" else T + 3)  # spare slots stay masked
    names = [t.name for t in step.inputs]
    assert names == ["x", "pos", "k_cache_0", "v_cache_0", "k_cache_1", "v_cache_1"]
    out = step({"x": _x(n=1)[:, 0], **initial_state(step, 1)})
    assert set(out) == {"y", "k_cache_0_at_pos", "v_cache_0_at_pos", "k_cache_1_at_pos", "v_cache_1_at_pos"}
    assert dict(state_specs(model, T))["k_cache_1"] == (2, T, 8)


def test_every_step_of_the_stream_equals_the_causal_prefix():
    model = _transformer("ids")
    x = _x(n=2)
    ys = run_steps(build_step_model(model, batch_size=None), x, collect=True)
    trunk = keras.Model(model.inputs[0], model.get_layer("final").output)  # (B, T, D): the causal forward at every t
    head = model.get_layer("head")
    np.testing.assert_allclose(ys, np.asarray(head(trunk(x))), atol=2e-5)


def test_explicit_causal_mask_gated_sliding_window_and_cross_inputs():
    tril = np.tril(np.ones((T, T), bool))[None]
    _parity(_transformer("constant", mask=tril))
    _parity(_transformer(None, use_gate=True, sliding_window=3))
    # query from the normalized stream, key/value from the raw one: still causal self-attention over one time axis
    keras.utils.set_random_seed(2)
    inp = keras.Input((T, F))
    h = layers.Dense(D)(inp)
    a = layers.MultiHeadAttention(2, 4, value_dim=6, output_shape=D)(layers.LayerNormalization()(h), h,
                                                                         use_causal_mask=True)
    _parity(keras.Model(inp, layers.Dense(K)(layers.Add()([h, a])[:, -1])))


def _graph_mask_model(causal=True):
    """The mask computed in the graph from the input's shape (row index >= column index), or a non-causal one."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((T, F))
    h = layers.Dense(D)(inp)
    row = ops.cumsum(ops.ones_like(inp[:, :, 0]), axis=1)  # 1..T per sequence
    mask = (ops.greater_equal(ops.expand_dims(row, 2), ops.expand_dims(row, 1)) if causal
            else ops.less_equal(ops.expand_dims(row, 2), ops.expand_dims(row, 1)))  # attends to the future
    a = layers.MultiHeadAttention(2, 8)(h, h, attention_mask=mask)
    return keras.Model(inp, layers.Dense(K)(layers.Add()([h, a])[:, -1]))


def test_a_causal_mask_computed_in_the_graph_streams():
    _parity(_graph_mask_model())


def test_capacity_beyond_the_positional_table_is_refused():
    with pytest.raises(InputError, match="positional table"):
        build_step_model(_transformer("learned"), kv_capacity=T + 5)
    with pytest.raises(InputError, match="positional table"):
        build_step_model(_transformer("constant"), kv_capacity=T + 1)


@pytest.mark.parametrize("make, words", [
    (lambda: _transformer(None, causal=False), "not causal"),
    (lambda: _transformer(None, mask=np.ones((1, T, T), bool)), "causal lower triangle"),
    (lambda: _graph_mask_model(causal=False), "causal lower triangle"),
])
def test_non_causal_attention_is_refused_with_the_reason(make, words):
    with pytest.raises(InputError, match=words) as info:
        analyze_streaming(make())
    assert info.value.hint and "window" in info.value.hint


def test_global_pooling_after_causal_attention_streams_as_a_running_mean():
    """Issue 21: refused before; a running mean (state) whose value after the last step is the sequence output."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F))
    h = layers.Dense(D)(inp)
    h = layers.MultiHeadAttention(2, 8)(h, h, use_causal_mask=True)
    model = keras.Model(inp, layers.Dense(K)(layers.GlobalAveragePooling1D(name="gap")(h)))
    assert analyze_streaming(model).kind == StreamKind.KV_CACHE
    assert ("state_gap_mean", (D,)) in state_specs(model, T)
    y = run_steps(build_step_model(model, batch_size=None), _x())
    np.testing.assert_allclose(y, np.asarray(model(_x())), atol=1e-5)


# ----------------------------------------------------------------------------------------------- conv (fast)
@pytest.mark.parametrize("padding, dilation", [("causal", 1), ("causal", 2), ("valid", 1), ("valid", 2)])
def test_conv_gru_step_equals_the_sequence_model(padding, dilation):
    model = _crnn(padding, dilation)
    info = analyze_streaming(model)
    assert info.kind == StreamKind.RECURRENT_STEP
    span = 2 * dilation
    specs = dict(state_specs(model))
    assert specs["state_conv_buf"] == (span, F) and specs["state_conv2_buf"] == (1, 8)
    assert specs["state_gru_h"] == (12,)
    assert ("state_conv_fill" in specs) == (padding == "valid")
    assert stream_delay(model) == (span + 1 if padding == "valid" else 0)
    _parity(model, atol=1e-5)
    free = _crnn(padding, dilation, seq_len=None)  # a variable time axis streams any length
    for t in (span + 2, 17):
        _parity(free, x=_x(t=t, seed=3), atol=1e-5)


def test_valid_padding_output_is_delayed_per_step():
    model = _crnn("valid", seq2seq=True)  # one output per step: the step at t gives output t - delay
    delay = stream_delay(model)
    ys = run_steps(build_step_model(model, batch_size=None), _x(), collect=True)
    ref = np.asarray(model(_x()))  # (B, T - delay, K)
    assert ref.shape[1] == T - delay
    np.testing.assert_allclose(ys[:, delay:], ref, atol=1e-5)


def test_causal_conv_only_model_streams():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((T, F)), layers.Conv1D(6, 4, padding="causal", activation="tanh"),
                              layers.LayerNormalization(), layers.Conv1D(4, 3, padding="causal", dilation_rate=2),
                              layers.Dense(K)])
    ys = run_steps(build_step_model(model, batch_size=None), _x(), collect=True)
    np.testing.assert_allclose(ys, np.asarray(model(_x())), atol=1e-5)


def test_conv_buffer_is_state_named_like_its_output():
    step = build_step_model(_crnn(), batch_size=None)
    state = initial_state(step, 1)
    out = step({"x": _x(n=1)[:, 0], **state})
    assert set(state) == {"state_conv_buf", "state_conv2_buf", "state_gru_h"} and set(state) < set(out)


@pytest.mark.parametrize("make, words", [
    (lambda: _crnn(strides=2), "strides=2 emits one output every 2 steps"),
    (lambda: _crnn(padding="same"), "padding='same' looks at neighbouring future steps"),
    (lambda: keras.Sequential([keras.Input((T, F)), layers.Conv1D(4, 1, strides=2), layers.GRU(4)]), "strides=2"),
])
def test_convolutions_that_cannot_stream_are_refused_with_the_reason(make, words):
    with pytest.raises(InputError, match=words) as info:
        build_step_model(make())
    assert info.value.hint


# ----------------------------------------------------------------------------------------------- .tflite (slow)
# Each conversion is made once per session (tests/_zoo_cache.py), two at a time with the session's other conversions:
# the model is built and saved in the main thread when the session plans, then converted by the very call the test
# made itself, into a folder of its own; the tests only read the results.
_MODELS = {"transformer-learned": lambda: _transformer("learned"), "transformer-ids": lambda: _transformer("ids"),
           "crnn-causal-d2": lambda: _crnn("causal", dilation=2), "crnn-valid": lambda: _crnn("valid")}


def _saved(cache, which: str):
    def build(folder):
        model = _MODELS[which]()
        path = folder / f"{model.name}.keras"
        model.save(path)
        return path

    return cache.get(("stream_user_models.model", which), build)


def _convert(cache, which, recipes, **kw):
    from edgeseq.quantize.stream.convert import convert_stream

    path = _saved(cache, which)

    def make(folder):
        return {r.recipe.slug: r for r in convert_stream(path, recipes, out_dir=folder / "out", raise_on_error=False,
                                                          strict=False, **kw)}

    return ("stream_user_models.convert", which, *recipes, *(f"{k}={v}" for k, v in kw.items())), make


MHA = ("transformer-learned", ["fp32", "fp16", "dynamic", "int8"])
MHA_WINDOW = ("transformer-ids", ["fp32", "int8"], {"window": T})  # the baseline: batch model
CRNN = ("crnn-causal-d2", ["fp32", "fp16", "dynamic", "int8"])
CRNN_VALID = ("crnn-valid", ["fp32", "int8"])


@planner
def _plan(cache, items) -> dict:
    return plan_table(cache, items, __name__, {
        "test_users_causal_mha_converts_and_passes_stream_parity": lambda c, p: costs(
            12, _convert(c, *MHA[:2]), _convert(c, *MHA_WINDOW[:2], **MHA_WINDOW[2])),
        "test_crnn_converts_and_passes_stream_parity": lambda c, p: costs(8, _convert(c, *CRNN),
                                                                          _convert(c, *CRNN_VALID)),
    })


@pytest.fixture
def shared(conversions, request):
    """shared(which, recipes, **kw): the session's conversion (see above); the first use makes all that the session's
    selected tests need."""
    prefetch_session(conversions, request)
    return lambda which, recipes, **kw: conversions.get(*_convert(conversions, which, recipes, **kw))


def _report(results):
    return {slug: (r.ok, r.error and r.error.one_line(), r.validation and r.validation.get("max_abs_diff"))
            for slug, r in results.items()}


@pytest.mark.slow
def test_users_causal_mha_converts_and_passes_stream_parity(shared):
    results = shared(*MHA)
    print(_report(results))
    for slug, r in results.items():
        assert r.ok and r.validation["passed"], (slug, _report(results))
    m = results["fp32"].manifest
    assert m["stream"]["kind"] == "kv-cache" and m["stream"]["kv_capacity"] == T
    assert {s["name"] for s in m["stream"]["state"]} == {"k_cache_0", "v_cache_0", "k_cache_1", "v_cache_1"}
    assert results["fp32"].validation["max_abs_diff"] < 1e-4
    win = shared(*MHA_WINDOW[:2], **MHA_WINDOW[2])  # the baseline: batch model
    print(_report(win))
    assert win["fp32"].ok and win["fp32"].validation["passed"], _report(win)
    # The batch int8 attention converts and runs, but its causal mask constant costs it parity (the KV step's bounded
    # masking is what keeps int8 within tolerance): recorded, not required.
    assert win["int8"].ok and win["int8"].validation["mean_abs_diff"] < 0.3, _report(win)


@pytest.mark.slow
def test_crnn_converts_and_passes_stream_parity(shared):
    results = shared(*CRNN)
    valid = shared(*CRNN_VALID)
    print(_report(results), _report(valid))
    for r in [*results.values(), *valid.values()]:
        assert r.ok and r.validation["passed"], (_report(results), _report(valid))
    m = results["fp32"].manifest["stream"]
    assert m["kind"] == "recurrent-step" and {"state_conv_buf", "state_gru_h"} <= {s["name"] for s in m["state"]}
    assert valid["fp32"].manifest["stream"]["delay_steps"] == 3
