"""The model zoo: every architecture builds, trains, saves and reloads safely; presets are matched in size; the
attention layer's pieces behave as a KV-cache step model will need; the `models` command lists the zoo."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgeseq.core.errors import InputError  # noqa: E402
from edgeseq.models.config import REFERENCE_SHAPE, config_from_dict, config_to_dict  # noqa: E402
from edgeseq.models.layers import MultiHeadSelfAttention, causal_mask  # noqa: E402
from edgeseq.models.zoo import (  # noqa: E402
    ARCH_NAMES,
    ARCHITECTURES,
    PRESETS,
    build_model,
    count_params,
    get_config,
    zoo_table,
)

T, F, K = 12, 5, 3  # a small test shape: time steps, features, classes (or forecast horizon)


def _data(task: str, n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, F)).astype("float32")
    y = rng.integers(0, K, size=n) if task == "classification" else rng.normal(size=(n, K)).astype("float32")
    return x, y


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_model_builds_trains_and_reloads_identically(arch, task, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(arch, "tiny", seq_len=T, num_features=F, task=task, num_outputs=K)
    assert model.name == f"{arch}-tiny"
    x, y = _data(task)

    out = np.asarray(model(x))
    assert out.shape == (len(x), K)
    if task == "classification":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
        assert (out >= 0).all()

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(reloaded(x)), out)

    # Eager steps: tracing a train function would cost more than the eight tiny steps themselves.
    loss = "sparse_categorical_crossentropy" if task == "classification" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, run_eagerly=True)
    losses = [float(model.train_on_batch(x, y)) for _ in range(8)]
    assert losses[-1] < losses[0], losses


def test_transformer_variants_reload_under_safe_mode(tmp_path):
    x, _ = _data("classification", n=2)
    for i, overrides in enumerate(
        [
            {"causal": True, "pos_encoding": "learned", "activation": "relu"},
            {"causal": True, "pooling": "mean", "dropout": 0.1, "attention_dropout": 0.1},
        ]
    ):
        model = build_model("transformer", "tiny", seq_len=T, num_features=F, num_outputs=K, **overrides)
        model.save(tmp_path / f"m{i}.keras")
        reloaded = keras.saving.load_model(tmp_path / f"m{i}.keras", safe_mode=True)
        np.testing.assert_array_equal(reloaded(x), model(x))
        expected = overrides.get("pooling", "last")  # causal defaults to the last token
        assert model.get_layer("pool").mode == expected


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_recurrent_models_accept_any_length_when_seq_len_is_none(arch):
    model = build_model(arch, "tiny", seq_len=None, num_features=F, num_outputs=K)
    for length in (7, 19):
        assert model(np.zeros((2, length, F), "float32")).shape == (2, K)


def test_transformer_length_is_checked():
    with pytest.raises(InputError, match="fixed seq_len"):
        build_model("transformer", "tiny", seq_len=None, num_features=F, num_outputs=K)
    with pytest.raises(InputError, match="max_len") as err:
        build_model("transformer", "tiny", seq_len=40, num_features=F, num_outputs=K, max_len=32,
                    pos_encoding="learned")
    assert "max_len=40" in err.value.hint
    # A sinusoidal table has no weights: it grows to cover longer inputs, parameter count unchanged.
    short = build_model("transformer", "tiny", seq_len=32, num_features=F, num_outputs=K, max_len=32)
    long = build_model("transformer", "tiny", seq_len=400, num_features=F, num_outputs=K, max_len=32)
    assert long.count_params() == short.count_params()
    assert long(np.zeros((1, 400, F), "float32")).shape == (1, K)
    with pytest.raises(InputError, match="unroll"):
        build_model("gru", "tiny", seq_len=None, num_features=F, num_outputs=K, unroll=True)


def test_causal_attention_ignores_the_future():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 10, 16)).astype("float32")
    later = x.copy()
    later[:, 6:] = rng.normal(size=(2, 4, 16))
    causal = MultiHeadSelfAttention(num_heads=4, causal=True)
    np.testing.assert_array_equal(np.asarray(causal(x))[:, :6], np.asarray(causal(later))[:, :6])
    full = MultiHeadSelfAttention(num_heads=4, causal=False)
    assert not np.allclose(np.asarray(full(x))[:, :6], np.asarray(full(later))[:, :6])


# The first token attends to itself only, a softmax over one key, which Keras warns about.
@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")
def test_attention_pieces_reproduce_the_layer_one_token_at_a_time():
    """What a KV-cache step model does: project the new token, append its k/v, attend over the cache."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 8, 16)).astype("float32")
    layer = MultiHeadSelfAttention(num_heads=2, causal=True)
    full = np.asarray(layer(x))
    assert {w.path.split("/")[-1] for w in layer.weights} == {
        f"{n}_{p}" for n in ("query", "key", "value", "output") for p in ("kernel", "bias")
    }
    q, k, v = layer.project_qkv(x)
    for t in range(8):
        step = layer.attend(q[:, :, t : t + 1], k[:, :, : t + 1], v[:, :, : t + 1], causal_mask(1, t + 1))
        y = np.asarray(layer.project_output(layer.merge_heads(step)))
        np.testing.assert_allclose(y[:, 0], full[:, t], atol=1e-5)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_same_seed_builds_same_weights(arch):
    def weights(seed, count_first=False):
        keras.utils.set_random_seed(seed)
        if count_first:  # counting parameters builds a model too; it must not consume the seed
            count_params(arch, "tiny", num_features=7)
        return build_model(arch, "tiny", seq_len=T, num_features=F, num_outputs=K).get_weights()

    a, b, c = weights(3), weights(3, count_first=True), weights(4)
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a, c, strict=True))


def test_recurrent_options_build_and_reload(tmp_path):
    x, _ = _data("classification", n=2)
    model = build_model(
        "gru", "tiny", seq_len=T, num_features=F, num_outputs=K, bidirectional=True, num_layers=2, head="mean"
    )
    assert [layer.name for layer in model.layers if "gru" in layer.name] == ["bigru_0", "bigru_1"]
    model.save(tmp_path / "m.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)(x), model(x))
    unrolled = build_model("lstm", "tiny", seq_len=T, num_features=F, num_outputs=K, unroll=True)
    assert unrolled.get_layer("lstm_0").unroll
    with pytest.raises(InputError, match="true or false"):
        get_config("lstm", "tiny", unroll=1)


def test_presets_have_matched_parameter_counts():
    for preset in PRESETS:
        counts = {arch: count_params(arch, preset) for arch in ARCHITECTURES}
        assert max(counts.values()) <= 1.15 * min(counts.values()), (preset, counts)
    assert count_params("lstm", "tiny") < 5_000
    assert 25_000 <= count_params("gru", "small") <= 40_000
    assert 150_000 <= count_params("transformer", "base") <= 250_000


def test_unknown_names_fail_with_a_did_you_mean():
    with pytest.raises(InputError, match="unknown preset 'smal'") as err:
        get_config("lstm", "smal")
    assert "small" in err.value.hint
    with pytest.raises(InputError, match="unknown architecture") as err:
        build_model("lstn", "tiny", seq_len=T, num_features=F, num_outputs=K)
    assert "lstm" in err.value.hint
    with pytest.raises(InputError, match="no hyperparameter 'unit'") as err:
        get_config("gru", "tiny", unit=8)
    assert "units" in err.value.hint
    with pytest.raises(InputError, match="num_heads"):
        get_config("transformer", "tiny", num_heads=3)
    with pytest.raises(InputError, match="task"):
        build_model("gru", "tiny", seq_len=T, num_features=F, num_outputs=K, task="forecast")


def test_overrides_return_a_new_frozen_config_that_round_trips_through_json():
    base = get_config("lstm", "small")
    cfg = get_config("lstm", "small", units=32, dropout=0.2)
    assert (cfg.units, cfg.dropout, base.units) == (32, 0.2, 90)
    with pytest.raises(AttributeError):
        cfg.units = 8  # frozen
    for arch in ARCHITECTURES:
        c = get_config(arch, "base")
        assert config_from_dict(json.loads(json.dumps(config_to_dict(c)))) == c
    with pytest.raises(InputError, match="unknown lstm config field"):
        config_from_dict({**config_to_dict(base), "unitz": 3})


def test_mixed_precision_keeps_float32_outputs():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for arch in ("gru", "transformer"):
            model = build_model(arch, "tiny", seq_len=T, num_features=F, num_outputs=K)
            out = model(np.zeros((1, T, F), "float32"))
            assert out.dtype == "float32" and np.isfinite(np.asarray(out)).all()
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_mixed_precision_model_is_rebuilt_to_compute_in_float32_with_its_weights():
    """What `convert` does with a --mixed-precision model (quantize.loading.float32_compute): every layer, the
    layers a Bidirectional wraps included, computes in float32 with the same weights; a float32 model is untouched."""
    from edgeseq.quantize.loading import float32_compute

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = keras.Sequential([keras.Input((T, F)), keras.layers.Bidirectional(keras.layers.LSTM(8)),
                                  keras.layers.Dense(K), keras.layers.Activation("softmax", dtype="float32")])
        zoo = build_model("gru", "tiny", seq_len=T, num_features=F, num_outputs=K)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = np.random.default_rng(0).normal(size=(4, T, F)).astype("float32")
    for model in (mixed, zoo):
        rebuilt, policy = float32_compute(model)
        assert policy == "mixed_float16"
        layers = list(rebuilt._flatten_layers(include_self=False))
        assert len(layers) == len(list(model._flatten_layers(include_self=False)))
        assert all(layer.dtype_policy.name == "float32" for layer in layers), [
            (layer.name, layer.dtype_policy.name) for layer in layers]
        for a, b in zip(model.get_weights(), rebuilt.get_weights(), strict=True):
            assert np.array_equal(a, b)
        assert np.abs(np.asarray(rebuilt(x)) - np.asarray(model(x), dtype="float32")).max() < 2e-2  # fp16 rounding
    same, policy = float32_compute(rebuilt)
    assert same is rebuilt and policy is None


def test_zoo_table_and_models_command_list_every_architecture():
    from click.testing import CliRunner

    from edgeseq.cli import cli

    rows = zoo_table()
    assert {(r["arch"], r["preset"]) for r in rows} == {(a, p) for a in ARCH_NAMES for p in PRESETS}
    assert all(r["params"] == count_params(r["arch"], r["preset"]) for r in rows)  # the formula is exact
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    for arch in ARCH_NAMES:
        assert arch in result.output
    assert f"T={REFERENCE_SHAPE[0]}" in result.output
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"schema": "edgeseq.models/1", "models": rows}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_models_convert_to_tflite_builtins_and_match_keras(arch, tmp_path):
    tf = pytest.importorskip("tensorflow")
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")
    overrides = {"causal": True, "pos_encoding": "learned"} if arch == "transformer" else {}
    model = build_model(arch, "tiny", seq_len=T, num_features=F, num_outputs=K, **overrides)
    x, _ = _data("classification", n=1)
    model.export(
        str(tmp_path / "sm"),
        format="tf_saved_model",
        input_signature=[tf.TensorSpec([1, T, F])],
        verbose=False,
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = interpreter_mod.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(model(x)), atol=1e-4)
