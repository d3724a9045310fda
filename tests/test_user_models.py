"""The models users bring (README "Your own model"): token-id classifiers (int ids -> Embedding -> LSTM), per-frame
taggers (return_sequences=True heads), TensorFlow SavedModel directories and legacy .h5 files; and the data they come
with (.npz with int X [N, T], per-step labels [N, T] / [N, T, H]).

Tiny models are built and trained in the tests (a few seconds each); conversions are @slow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli
from _zoo_cache import costs, plan_table, planner, prefetch_session
from click.testing import CliRunner

from edgeseq.cli import cli
from edgeseq.core.errors import DatasetError, InputError, ModelError
from edgeseq.core.progress import is_progress_line
from edgeseq.datasets import load_dataset
from edgeseq.targets.runner import agent_path

T, F, V, E, C = 12, 4, 40, 8, 3


# ---------------------------------------------------------------- data: token ids and per-step labels (no TensorFlow)
def token_arrays(n_train: int = 240, n_test: int = 80, seed: int = 0) -> dict:
    """Ids 1..V-1 with 3 pre-padding zeros; the class is read from the last ids (learnable by an LSTM)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(1, V, (n, T))
        X[:, :3] = 0
        y = np.digitize(X[:, -1], [V // 3, 2 * V // 3])
        out[f"X_{split}"], out[f"y_{split}"] = X.astype(np.int64), y.astype(np.int64)
    return out


def tagger_arrays(n_train: int = 240, n_test: int = 80, seed: int = 0, regression: bool = False) -> dict:
    """Features [N, T, F]; per-frame labels [N, T] from a running sum (needs state), or per-frame targets [N, T, 2]."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.normal(size=(n, T, F)).astype(np.float32)
        run = np.cumsum(X[..., 0], axis=1)
        if regression:
            y = np.stack([np.tanh(run / 2), X[..., 1]], axis=-1).astype(np.float32)
        else:
            y = ((run > 0).astype(np.int64) + (X[..., 1] > 1)).astype(np.int64)
        out[f"X_{split}"], out[f"y_{split}"] = X, y
    return out


def save_npz(path: Path, arrays: dict) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_npz_token_ids_are_read_as_int32_and_described(tmp_path):
    ds = load_dataset(save_npz(tmp_path / "tok.npz", token_arrays()))
    assert ds.token_ids and ds.X_train.dtype == np.int32 and ds.X_train.shape == (240, T)
    assert ds.input_shape == (T,) and ds.max_token_id == V - 1 and not ds.per_step
    res = CliRunner().invoke(cli, ["datasets", "show", str(tmp_path / "tok.npz"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)["dataset"]
    assert info["train_shape"] == [240, T] and info["max_token_id"] == V - 1 and info["num_features"] is None
    assert info["input"].startswith("token ids int32") and info["labels"] == "one per sequence"
    text = CliRunner().invoke(cli, ["datasets", "show", str(tmp_path / "tok.npz")])
    assert text.exit_code == 0 and "token ids" in text.output


def test_npz_per_step_labels_and_targets(tmp_path):
    tag = load_dataset(save_npz(tmp_path / "tag.npz", tagger_arrays()))
    assert tag.task == "classification" and tag.per_step and tag.y_train.shape == (240, T) and tag.num_classes == 3
    reg = load_dataset(save_npz(tmp_path / "reg.npz", tagger_arrays(regression=True)))
    assert reg.task == "regression" and reg.per_step and reg.output_dim == 2 and reg.y_test.shape == (80, T, 2)
    res = CliRunner().invoke(cli, ["datasets", "show", str(tmp_path / "reg.npz"), "--json"])
    assert json.loads(res.output)["dataset"]["labels"] == "one per time step"


@pytest.mark.parametrize("over, words", [
    ({"X_train": np.zeros((240, T))}, "'X_train' has rank 2 .*token ids"),  # floats [N, T]: not ids
    ({"X_test": np.zeros((80, T, 2))}, "one holds token ids"),
    ({"X_train": np.full((240, T), -1)}, "token id -1"),
    ({"y_train": np.full((240, T + 1), 2, np.int64)}, r"expected labels \[N\], one label per time step"),
    ({"y_test": np.zeros((80, T), np.int64)}, "one labels each sequence, the other each time step"),
    ({"y_train": np.zeros((240, T + 1, 2), np.float32), "y_test": np.zeros((80, T + 1, 2), np.float32)},
     "per-step targets for 13 steps"),
])
def test_npz_token_and_per_step_errors_name_the_key(tmp_path, over, words):
    arrays = token_arrays() | over
    with pytest.raises(DatasetError, match=words) as err:
        load_dataset(save_npz(tmp_path / "bad.npz", arrays))
    assert "\n" not in err.value.one_line() and err.value.hint


def test_per_frame_metrics_and_mismatches():
    from edgeseq.core.metrics import metrics_for

    pred = np.zeros((2, T, C), np.float32)
    pred[..., 1] = 1
    y = np.ones((2, T), np.int64)
    y[0, 0] = 0
    m = metrics_for("classification", pred, y)
    assert m["per_frame"] and m["frames"] == 2 * T and m["accuracy"] == pytest.approx(1 - 1 / (2 * T))
    r = metrics_for("regression", np.zeros((2, T, 2)), np.ones((2, T, 2)))
    assert r["per_frame"] and r["mse"] == 1.0 and r["frames"] == 2 * T
    with pytest.raises(InputError, match="labels have shape"):
        metrics_for("classification", np.zeros((2, C)), y)  # a per-sequence model on per-frame labels




def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_zoo_training_refuses_token_and_per_step_data(tmp_path, capsys):
    save_npz(tmp_path / "tok.npz", token_arrays())
    code, _, err = run_cli(["train", "--model", "gru", "--dataset", str(tmp_path / "tok.npz"),
                            "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "token ids" in one_line_error(err)
    save_npz(tmp_path / "tag.npz", tagger_arrays())
    code, _, err = run_cli(["train", "--model", "gru", "--dataset", str(tmp_path / "tag.npz"),
                            "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "one label per time step" in one_line_error(err)


# ---------------------------------------------------------------- tiny trained models (built once per module)
def _fit(model, arrays: dict, epochs: int) -> float:
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(arrays["X_train"], arrays["y_train"], epochs=epochs, batch_size=32, verbose=0)
    return float(model.evaluate(arrays["X_test"], arrays["y_test"], verbose=0)[1])


def _build_token_model(root: Path) -> dict:
    """int32 ids [batch, T] -> Embedding(V) -> LSTM -> softmax; its .keras, SavedModel and data."""
    import keras

    keras.utils.set_random_seed(0)
    arrays = token_arrays()
    inp = keras.Input((T,), dtype="int32", name="ids")
    x = keras.layers.Embedding(V, E)(inp)
    x = keras.layers.LSTM(16)(x)
    model = keras.Model(inp, keras.layers.Dense(C, activation="softmax")(x))
    accuracy = _fit(model, arrays, 25)
    model.save(root / "tok.keras")
    model.export(str(root / "tok_savedmodel"), verbose=False)
    return {"keras": root / "tok.keras", "saved_model": root / "tok_savedmodel", "accuracy": accuracy,
            "data": save_npz(root / "tok.npz", arrays), "root": root}


def _build_tagger_model(root: Path) -> dict:
    """[batch, T, F] -> GRU(return_sequences=True) -> Dense softmax per step; as .keras, legacy .h5 and SavedModel."""
    import keras

    keras.utils.set_random_seed(0)
    arrays = tagger_arrays()
    inp = keras.Input((T, F))
    x = keras.layers.GRU(16, return_sequences=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(C, activation="softmax")(x))
    accuracy = _fit(model, arrays, 20)
    model.save(root / "tag.keras")
    model.save(root / "tag.h5")  # Keras 3 still writes the legacy HDF5 format (with a warning)
    model.export(str(root / "tag_savedmodel"), verbose=False)
    return {"keras": root / "tag.keras", "h5": root / "tag.h5", "saved_model": root / "tag_savedmodel",
            "accuracy": accuracy, "data": save_npz(root / "tag.npz", arrays), "root": root}


# The tiny models are built (and trained) once per session in the session's conversion cache (tests/_zoo_cache.py),
# always in the main thread; the tests only read their files.
def _token(cache) -> dict:
    return cache.get(("user_models.token",), _build_token_model)


def _tagger(cache) -> dict:
    return cache.get(("user_models.tagger",), _build_tagger_model)


@pytest.fixture(scope="module")
def token_model(conversions) -> dict:
    return _token(conversions)


@pytest.fixture(scope="module")
def tagger_model(conversions) -> dict:
    return _tagger(conversions)


def _converted(results, recipes: list[str]) -> dict:
    out = {}
    for res in results:
        assert res.ok, res.error.one_line()
        assert res.validation["passed"], res.validation.get("failures")
        out[res.recipe.slug] = res
    assert sorted(out) == sorted(recipes)
    return out


# ---------------------------------------------------------------- conversions shared in the session
# Each conversion below is the very call its test made itself, made once per session into a folder of its own, two at
# a time with the session's other conversions (tests/_zoo_cache.py); the tests read the results and files and copy a
# file before changing it. Models are built in the main thread when the session plans (cache entries of their own).
def _convert_job(key: tuple, model: Path, recipes: list[str], **kw):
    from edgeseq.quantize.convert import convert_model

    return ("user_models.convert", *key), lambda folder: convert_model(model, recipes, out_dir=folder, **kw)


def _stream_job(key: tuple, model: Path, recipes: list[str], **kw):
    from edgeseq.quantize.stream.convert import convert_stream

    return ("user_models.stream", *key), lambda folder: convert_stream(model, recipes, out_dir=folder, **kw)


def _token_recipes(cache):
    tok = _token(cache)
    return _convert_job(("tok",), tok["keras"], ["fp32", "dynamic", "int8"], calibration=tok["data"],
                        calibration_samples=64)


def _token_random_ids(cache):
    return _convert_job(("tok", "random-ids"), _token(cache)["keras"], ["fp32"])


def _token_int8_32(cache):
    tok = _token(cache)
    return _convert_job(("tok", "int8-32"), tok["keras"], ["int8"], calibration=tok["data"], calibration_samples=32)


def _token_saved_model(cache):
    tok = _token(cache)
    return _convert_job(("tok-sm",), tok["saved_model"], ["fp32"], name="tok-sm", calibration=tok["data"])


def _tagger_form(cache, form: str):
    tag = _tagger(cache)
    return _convert_job(("tag", form), tag[form], ["fp32", "int8"], calibration=tag["data"], calibration_samples=64)


def _tagger_stream(cache):
    tag = _tagger(cache)
    return _stream_job(("tag",), tag["keras"], ["fp32", "int8"], calibration=tag["data"], calibration_samples=64)


def _token_stream(cache, which: str):
    """which: "tok" (the token model) or "tokmask" (_token_mask_model)."""
    tok = _token(cache)
    path = tok["keras"] if which == "tok" else cache.get(("user_models.tokmask",), _token_mask_model)
    return _stream_job((which,), path, ["fp32", "int8"], calibration=tok["data"], calibration_samples=64)


def _frames(cache, how: str):
    """how: "convert" (convert_model) or "stream" (convert_stream) of _frames_model."""
    path, data = cache.get(("user_models.frames",), _frames_model)
    job = _convert_job if how == "convert" else _stream_job
    return job(("frames",), path, ["fp32", "int8"], calibration=data, calibration_samples=64)


_JOBS = {
    "test_token_classifier_converts_every_recipe_and_evaluates": lambda c, p: costs(18, _token_recipes(c)),
    "test_token_ids_out_of_vocabulary_are_one_line_errors": lambda c, p: costs(6, _token_random_ids(c)),
    "test_per_frame_tagger_validates_and_evaluates_per_frame": lambda c, p: costs(12, _tagger_form(c, "keras")),
    "test_saved_model_and_h5_convert_with_parity": lambda c, p: costs(14, _tagger_form(c, p["form"]))
    + (costs(8, _token_saved_model(c)) if p["form"] == "saved_model" else []),
    "test_per_frame_tagger_streams_with_per_step_parity": lambda c, p: costs(10, _tagger_stream(c)),
    "test_token_classifier_streams_one_id_per_step": lambda c, p: costs(10, _token_stream(c, "tok"),
                                                                         _token_stream(c, "tokmask")),
    "test_token_model_profiles_with_ids_from_the_manifest": lambda c, p: costs(8, _token_int8_32(c)),
    "test_per_frame_regression_converts_evaluates_and_streams": lambda c, p: costs(10, _frames(c, "convert"),
                                                                                    _frames(c, "stream")),
}


@planner
def _plan(cache, items) -> dict:
    return plan_table(cache, items, __name__, _JOBS)


@pytest.fixture
def shared(conversions, request):
    """shared(job, *args): the session's result of that conversion (see above); the first use makes all that the
    session's selected tests need."""
    prefetch_session(conversions, request)
    return lambda job, *args: conversions.get(*job(conversions, *args))


def _own_copy(res, folder: Path) -> Path:
    """A copy of a shared result's .tflite and manifest in the test's own folder (for a test that deletes one)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(res.manifest_path, folder / res.manifest_path.name)
    return Path(shutil.copy2(res.tflite_path, folder / res.tflite_path.name))


# ---------------------------------------------------------------- token ids
@pytest.mark.slow
def test_token_classifier_converts_every_recipe_and_evaluates(token_model, shared):
    from edgeseq.quantize.evaluate import evaluate_tflite

    recipes = ["fp32", "dynamic", "int8"]
    done = _converted(shared(_token_recipes), recipes)
    for slug, res in done.items():
        m = res.manifest
        assert m["source"]["input"] == {"kind": "token-ids", "dtype": "int32", "vocab_size": V,
                                        "vocab_from": "Embedding input_dim"}
        sig = m["signature"]["inputs"][0]
        assert sig["dtype"] == "int32" and sig["shape"] == [1, T] and "scale" not in sig  # ids stay int32 in int8
        assert m["validation"]["data"]["source"] == "dataset"
        ev = evaluate_tflite(res.tflite_path, token_model["data"])
        assert ev["vocab_size"] == V and ev["vocab_from"] == "manifest"
        assert abs(ev["accuracy"] - token_model["accuracy"]) <= (0.0 if slug == "fp32" else 0.05), (slug, ev)
    from edgeseq.quantize.tflite.reader import read_tflite
    from edgeseq.quantize.tokens import gather_tables

    tables = {slug: gather_tables(read_tflite(res.tflite_path)) for slug, res in done.items()}
    assert tables["fp32"] == [{"rows": V, "shape": [V, E], "dtype": "float32"}]
    assert tables["int8"][0]["dtype"] == "int8"  # the Embedding table is quantized like any weight


@pytest.mark.slow
def test_token_ids_out_of_vocabulary_are_one_line_errors(token_model, shared, tmp_path, capsys):
    from edgeseq.quantize.manifest import manifest_path_for

    bad = token_arrays()
    bad["X_test"][5, 7] = V + 9
    oov = save_npz(tmp_path / "oov.npz", bad)
    code, _, err = run_cli(["convert", str(token_model["keras"]), "--calibration", oov, "--out",
                            str(tmp_path / "a")], capsys)
    line = one_line_error(err)
    assert code == 2 and f"token id {V + 9}" in line and f"vocabulary has {V} ids" in line
    (res,) = shared(_token_random_ids)  # random ids 0..V-1
    assert res.validation["data"]["source"] == "random-ids" and res.validation["passed"]
    tflite = _own_copy(res, tmp_path / "b")
    for manifest in (True, False):  # the vocabulary from the manifest, else from the file's GATHER table
        if not manifest:
            manifest_path_for(tflite).unlink()
        code, _, err = run_cli(["evaluate", str(tflite), "--dataset", oov], capsys)
        assert code == 2 and f"token id {V + 9}" in one_line_error(err)
    from edgeseq.quantize.tflite.reader import read_tflite
    from edgeseq.quantize.tokens import gather_vocab

    assert gather_vocab(read_tflite(tflite)) == V


# ---------------------------------------------------------------- per-step outputs
@pytest.mark.slow
def test_per_frame_tagger_validates_and_evaluates_per_frame(tagger_model, shared, tmp_path, capsys):
    recipes = ["fp32", "int8"]
    done = _converted(shared(_tagger_form, "keras"), recipes)
    for slug, res in done.items():
        v = res.manifest["validation"]
        assert res.manifest["source"]["per_step_output"] and v["frames"] == 80 * T
        assert v["tflite_metrics"]["per_frame"] and v["keras_metrics"]["frames"] == 80 * T
        code, out, _ = run_cli(["evaluate", str(res.tflite_path), "--dataset", tagger_model["data"]], capsys)
        assert code == 0 and "per-frame accuracy" in out and f"{80 * T} frames" in out
        acc = float(out.split("per-frame accuracy ")[1].split()[0])
        assert abs(acc - tagger_model["accuracy"]) <= (1e-4 if slug == "fp32" else 0.03)
    seq_level = save_npz(tmp_path / "seq.npz", tagger_arrays() | {"y_train": np.arange(240) % C,
                                                                  "y_test": np.arange(80) % C})
    code, _, err = run_cli(["evaluate", str(done["fp32"].tflite_path), "--dataset", seq_level], capsys)
    assert code == 2 and "one output per time step" in one_line_error(err)


# ---------------------------------------------------------------- SavedModel directories and legacy .h5
@pytest.mark.slow
@pytest.mark.parametrize("form", ["saved_model", "h5"])
def test_saved_model_and_h5_convert_with_parity(tagger_model, token_model, form, shared):
    recipes = ["fp32", "int8"]
    done = _converted(shared(_tagger_form, form), recipes)
    for res in done.values():
        src, v = res.manifest["source"], res.manifest["validation"]
        assert src["format"] == form and len(src["sha256"]) == 64 and src["bytes"] > 0
        assert v["reference"] == ("the SavedModel's serving signature (TensorFlow)" if form == "saved_model"
                                  else "the Keras model")
        assert abs(v["tflite_metrics"]["accuracy"] - v["keras_metrics"]["accuracy"]) <= 0.03
    if form == "saved_model":
        assert "SavedModel" in done["fp32"].manifest["route"]["converter"]
        (tok,) = shared(_token_saved_model)
        assert tok.ok and tok.validation["passed"] and tok.manifest["source"]["input"]["vocab_size"] == V


def test_saved_model_without_serving_signature_is_refused(tmp_path, capsys):
    import tensorflow as tf

    class NoSignature(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([F, C]))

        @tf.function
        def f(self, x):
            return tf.matmul(x, self.w)

    module = NoSignature()
    module.f.get_concrete_function(tf.TensorSpec([None, T, F]))
    tf.saved_model.save(module, str(tmp_path / "nosig"))
    code, _, err = run_cli(["convert", str(tmp_path / "nosig"), "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and "has no serving signature 'serving_default'" in one_line_error(err)
    code, _, err = run_cli(["convert", str(tmp_path), "--out", str(tmp_path / "a")], capsys)  # a plain folder
    assert code == 2 and "not a TensorFlow SavedModel" in one_line_error(err)
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())


def test_h5_with_a_lambda_needs_trust(tmp_path):
    import keras

    from edgeseq.quantize.loading import load_keras_model

    inp = keras.Input((T, F))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp))
    model.save(tmp_path / "lam.h5")
    with pytest.raises(ModelError, match="lambda"):
        load_keras_model(tmp_path / "lam.h5")
    assert load_keras_model(tmp_path / "lam.h5", trust_model=True).edgeseq_source == {"format": "h5"}
    (tmp_path / "weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="not an HDF5 file"):
        load_keras_model(tmp_path / "weights.h5")


# ---------------------------------------------------------------- streaming: per-step outputs and token ids
AGENT = agent_path()  # the zipapp pushed to devices (edgeseq.targets.agent_build), built from the sources


def _agent(*args: str) -> dict:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(AGENT), *args], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_per_frame_tagger_streams_with_per_step_parity(tagger_model, shared):
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.targets.agent import StreamStepper

    recipes = ["fp32", "int8"]
    done = _converted(shared(_tagger_stream), recipes)
    X = load_dataset(tagger_model["data"]).X_test[:4]
    ref = load_keras_model(tagger_model["keras"]).predict(X, verbose=0)
    for slug, res in done.items():
        v = res.validation
        assert v["per_step"] and v["frames"] == 80 * T and "every step's y" in v["how"]
        assert v["tflite_metrics"]["per_frame"] and abs(v["tflite_metrics"]["accuracy"] - tagger_model["accuracy"]) \
            <= (1e-4 if slug == "fp32" else 0.03)
        stepper = StreamStepper(np, load_interpreter(res.tflite_path))
        got = np.stack([stepper.run(seq, collect=True) for seq in X])  # y_t at every step
        assert got.shape == (4, T, C)
        assert np.abs(got - ref).max() <= (1e-5 if slug == "fp32" else 0.15)
        doc = _agent("--model", str(res.tflite_path), "--stream", "--runs", "24", "--warmup", "2")
        assert doc["ok"] and doc["stream"]["kind"] == "recurrent-step" and len(doc["stream"]["final_output"]) == C


def _token_mask_model(root: Path) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    arrays = token_arrays()
    inp = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(V, E, mask_zero=True)(inp)  # id 0 (the pre-padding) is skipped by the RNNs
    x = keras.layers.GRU(16, return_sequences=True)(x)
    x = keras.layers.LSTM(16)(x)
    model = keras.Model(inp, keras.layers.Dense(C, activation="softmax")(x))
    _fit(model, arrays, 3)
    model.save(root / "tokmask.keras")
    return root / "tokmask.keras"


@pytest.mark.slow
def test_token_classifier_streams_one_id_per_step(token_model, shared, tmp_path, capsys):
    recipes = ["fp32", "int8"]
    for which in ("tok", "tokmask"):  # the token model, then _token_mask_model's
        done = _converted(shared(_token_stream, which), recipes)
        for res in done.values():
            x = next(t for t in res.manifest["signature"]["inputs"] if t["name"].endswith("_x:0"))
            assert x["dtype"] == "int32" and x["shape"] == [1] and "scale" not in x
            assert res.manifest["source"]["input"]["vocab_size"] == V and not res.validation["per_step"]
            assert res.validation["top1_agreement_decisive"] >= 0.9
    step = done["int8"].tflite_path
    doc = _agent("--model", str(step), "--stream", "--runs", "24", "--warmup", "2")  # vocab from the GATHER table
    x = next(i for i in doc["inputs"] if i["name"] == "x")
    assert doc["ok"] and x["source"] == "random-ids"
    ids = tmp_path / "ids.npy"
    np.save(ids, load_dataset(token_model["data"]).X_test[0])
    assert _agent("--model", str(step), "--stream", "--input", str(ids), "--runs", "12")["ok"]
    np.save(ids, np.full(T, V + 3, np.int32))
    bad = _agent("--model", str(step), "--stream", "--input", str(ids), "--runs", "12")
    assert not bad["ok"] and f"token id {V + 3}" in bad["error"]["message"]
    code, out, err = run_cli(["profile", str(step), "--stream", "--target", "local", "--runs", "20"], capsys)
    assert code == 0, err


@pytest.mark.slow
def test_token_model_profiles_with_ids_from_the_manifest(token_model, shared, tmp_path):
    from edgeseq.quantize.manifest import manifest_path_for
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.runner import AgentOptions, agent_argv, manifest_vocab, run_agent

    tflite = _own_copy(shared(_token_int8_32)[0], tmp_path)  # its manifest is deleted below
    assert manifest_vocab(tflite) == V
    assert agent_argv("py", "a", "m", "s", AgentOptions(), None, vocab=V)[-2:] == ["--vocab", str(V)]
    data = run_agent(LocalTarget(), tflite, AgentOptions(runs=5, warmup=1))
    (inp,) = data["inputs"]
    assert inp["source"] == "random-ids" and inp["vocab"] == V and inp["dtype"] == "int32"
    manifest_path_for(tflite).unlink()  # no manifest: the agent reads the GATHER table's rows
    data = run_agent(LocalTarget(), tflite, AgentOptions(runs=5, warmup=1))
    assert data["inputs"][0]["vocab"] == V


def test_saved_model_does_not_stream(tagger_model, tmp_path):
    from edgeseq.quantize.stream.convert import convert_stream

    with pytest.raises(ModelError, match="SavedModel"):
        convert_stream(tagger_model["saved_model"], ["fp32"], out_dir=tmp_path)


def _frames_model(root: Path) -> tuple[Path, str]:
    """[batch, T, F] -> LSTM(return_sequences=True) -> TimeDistributed Dense(2): per-frame regression; and its data."""
    import keras

    keras.utils.set_random_seed(0)
    arrays = tagger_arrays(regression=True)
    data = save_npz(root / "frames.npz", arrays)
    inp = keras.Input((T, F))
    x = keras.layers.LSTM(16, return_sequences=True)(inp)
    model = keras.Model(inp, keras.layers.TimeDistributed(keras.layers.Dense(2))(x))
    model.compile("adam", "mse")
    model.fit(arrays["X_train"], arrays["y_train"], epochs=10, verbose=0)
    model.save(root / "frames.keras")
    return root / "frames.keras", data


@pytest.mark.slow
def test_per_frame_regression_converts_evaluates_and_streams(shared, conversions, capsys):
    _, data = conversions.get(("user_models.frames",), _frames_model)
    done = _converted(shared(_frames, "convert"), ["fp32", "int8"])
    streamed = _converted(shared(_frames, "stream"), ["fp32", "int8"])
    for res in [*done.values(), *streamed.values()]:
        tm, km = res.validation["tflite_metrics"], res.validation["keras_metrics"]
        assert tm["per_frame"] and tm["frames"] == 80 * T and tm["mse"] <= km["mse"] * 1.2 + 1e-6
    code, out, _ = run_cli(["evaluate", str(done["int8"].tflite_path), "--dataset", data], capsys)
    assert code == 0 and "per-frame mse" in out
