"""edgeseq evaluate: accuracy or MSE of any .tflite on LiteRT, with clear errors for mismatched data and bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq.core.errors import InputError, ModelError
from edgeseq.quantize.evaluate import evaluate_tflite

T, F, CLASSES = 10, 3, 4


def _npz(path: Path, regression: bool = False, seq_len: int = T) -> Path:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, seq_len, F)).astype(np.float32)
    y = rng.standard_normal((80, 2)).astype(np.float32) if regression else (X[:, -1, :].argmax(1) % CLASSES)
    np.savez(path, X_train=X[:40], y_train=y[:40], X_test=X[40:], y_test=y[40:])
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    import keras
    import tensorflow as tf

    tmp = tmp_path_factory.mktemp("evaluate")
    keras.utils.set_random_seed(0)
    L = keras.layers
    out = {"tmp": tmp}
    for name, head in (("clf", L.Dense(CLASSES, activation="softmax")), ("reg", L.Dense(2))):
        inp = keras.Input(batch_shape=(1, T, F))
        model = keras.Model(inp, head(L.Flatten()(L.Dense(8, activation="tanh")(inp))))
        (tmp / f"{name}.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        data = np.load(_npz(tmp / f"{name}.npz", regression=name == "reg"))
        pred = model.predict(data["X_test"], batch_size=1, verbose=0)
        out[name] = (tmp / f"{name}.tflite", tmp / f"{name}.npz", pred, data["y_test"])
    return out


def test_accuracy_matches_the_keras_model(setup):
    path, npz, pred, y = setup["clf"]
    r = evaluate_tflite(path, str(npz))
    assert r["task"] == "classification" and r["n"] == 40
    assert r["accuracy"] == pytest.approx(float(np.mean(pred.argmax(1) == y)))
    assert r["runtime"] == "ai-edge-litert"


def test_regression_reports_mse(setup):
    path, npz, pred, y = setup["reg"]
    r = evaluate_tflite(path, str(npz))
    assert r["mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-4)
    assert "accuracy" not in r


def test_shape_mismatch_is_a_clear_input_error(setup):
    path = setup["clf"][0]
    npz = _npz(setup["tmp"] / "long.npz", seq_len=T + 5)
    with pytest.raises(InputError, match="takes input"):
        evaluate_tflite(path, str(npz))


def test_class_count_mismatch_is_an_input_error(setup):
    with pytest.raises(InputError, match="classes"):
        evaluate_tflite(setup["reg"][0], str(setup["clf"][1]))


@pytest.mark.parametrize("content", [b"", b"TFL3 but not really", b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8])
def test_bad_files_are_model_errors(content, setup, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    with pytest.raises(ModelError):
        evaluate_tflite(bad, str(setup["clf"][1]))


def test_cli_json_and_exit_codes(setup):
    path, npz, _, _ = setup["clf"]
    cli = [sys.executable, "-m", "edgeseq.cli", "evaluate"]
    proc = subprocess.run([*cli, str(path), "--dataset", str(npz), "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 0.0 <= json.loads(proc.stdout)["accuracy"] <= 1.0
    proc = subprocess.run([*cli, str(setup["reg"][0]), "--dataset", str(npz)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_load_interpreter_runs_the_checked_reader_first(tmp_path):
    """LiteRT never sees a file edgeseq's parser refuses (it can abort on some), nor blocks on a FIFO."""
    import os
    import signal

    from _tiny_tflite import TFLiteBuilder, while_model
    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize.runtime import load_interpreter

    model = schema.ModelT.InitFromPackedBuf(bytearray(while_model()), 0)
    next(op for op in model.subgraphs[0].operators if op.builtinOptions is not None
         and hasattr(op.builtinOptions, "bodySubgraphIndex")).builtinOptions.bodySubgraphIndex = 7
    b = TFLiteBuilder()
    b.model = model
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b.finish())
    for kwargs in ({"model_path": bad}, {"model_content": bad.read_bytes()}):
        with pytest.raises(ModelError, match="body subgraph 7"):
            load_interpreter(**kwargs)
    fifo = tmp_path / "fifo.tflite"
    os.mkfifo(fifo)
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("load_interpreter blocked on a FIFO"))
    signal.alarm(20)
    try:
        with pytest.raises(ModelError, match="FIFO"):
            load_interpreter(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    good = tmp_path / "good.tflite"
    good.write_bytes(while_model())
    assert load_interpreter(good).get_output_details()[0]["shape"].tolist() == [1, 3]
