"""Training: deterministic splits and seeds, what a run directory holds, the CPU strategy path, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseq.errors import InputError
from edgeseq.models.run_dir import TrainOptions, split_validation

EDGESEQ = [sys.executable, "-m", "edgeseq.cli"]


def test_validation_split_is_stratified_and_deterministic():
    y = np.repeat(np.arange(5), 20)
    tr1, va1 = split_validation(y, 0.2, seed=3, stratify=True)
    tr2, va2 = split_validation(y, 0.2, seed=3, stratify=True)
    np.testing.assert_array_equal(va1, va2)
    assert set(tr1).isdisjoint(va1) and len(tr1) + len(va1) == len(y)
    assert np.bincount(y[va1]).tolist() == [4] * 5  # every class in validation, in proportion
    _, va3 = split_validation(y, 0.2, seed=4, stratify=True)
    assert not np.array_equal(va1, va3)


def test_bad_options_are_refused_before_training():
    with pytest.raises(InputError, match="--epochs"):
        TrainOptions(epochs=0).check()
    with pytest.raises(InputError, match="--validation-split"):
        TrainOptions(validation_split=1.5).check()


@pytest.fixture(scope="module")
def jv():
    from edgeseq.datasets import load_dataset

    return load_dataset("japanese_vowels")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, jv):
    from edgeseq.models.train import train_model

    out = tmp_path_factory.mktemp("run") / "gru-jv"
    opts = TrainOptions(epochs=3, batch_size=64, seed=7, patience=5)
    return train_model("gru", jv, out, preset="tiny", options=opts)


def test_run_directory_holds_model_and_full_training_record(trained, jv):
    rec = json.loads((trained.out_dir / "training.json").read_text())
    assert trained.model_path.exists()
    assert rec["model"]["arch"] == "gru" and rec["model"]["preset"] == "tiny"
    assert rec["dataset"]["name"] == jv.name and rec["dataset"]["n_test"] == len(jv.y_test)
    assert rec["dataset"]["n_train"] + rec["dataset"]["n_val"] == len(jv.y_train)
    assert rec["seed"] == 7 and 1 <= rec["epochs_run"] <= 3
    assert len(rec["history"]["loss"]) == rec["epochs_run"] and "val_loss" in rec["history"]
    assert rec["history"]["loss"][-1] < rec["history"]["loss"][0]
    assert 0.0 <= rec["test_metrics"]["accuracy"] <= 1.0
    assert rec["parameters"] > 0 and rec["wall_time_s"] > 0
    # No GPU here: the same strategy code path runs on the CPU through a one-device strategy.
    assert rec["device"] == {"kind": "cpu", "devices": ["/cpu:0"], "strategy": "OneDeviceStrategy",
                             "mixed_precision": False}
    assert not list(trained.out_dir.glob(".*tmp*")), "temporary files left behind"


def test_saved_model_reloads_safely_and_reproduces_recorded_accuracy(trained, jv):
    import keras

    model = keras.saving.load_model(trained.model_path, safe_mode=True)
    pred = model.predict(jv.X_test, verbose=0)
    acc = float(np.mean(np.argmax(pred, -1) == jv.y_test))
    assert acc == pytest.approx(trained.test_metrics["accuracy"], abs=1e-6)


def test_same_seed_gives_same_weights(tmp_path, jv, trained):
    import keras

    from edgeseq.models.train import train_model

    opts = TrainOptions(epochs=3, batch_size=64, seed=7, patience=5)
    again = train_model("gru", jv, tmp_path / "again", preset="tiny", options=opts)
    a = keras.saving.load_model(trained.model_path).get_weights()
    b = keras.saving.load_model(again.model_path).get_weights()
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_allclose(wa, wb, atol=1e-6)


def test_existing_run_is_never_overwritten_silently(trained, jv):
    from edgeseq.models.train import train_model

    before = trained.model_path.read_bytes()
    with pytest.raises(InputError, match="already holds a trained model"):
        train_model("gru", jv, trained.out_dir, preset="tiny", options=TrainOptions(epochs=1))
    assert trained.model_path.read_bytes() == before


def test_mixed_precision_path_runs_on_cpu_and_keeps_float32_outputs(tmp_path, jv):
    import keras

    from edgeseq.models.train import train_model

    res = train_model("lstm", jv, tmp_path / "mp", preset="tiny",
                      options=TrainOptions(epochs=1, batch_size=64, mixed_precision=True))
    assert res.record["device"]["mixed_precision"] is True
    assert np.isfinite(res.record["history"]["loss"][0])
    assert keras.config.dtype_policy().name == "float32", "global policy must be restored after training"
    model = keras.saving.load_model(res.model_path, safe_mode=True)
    out = model.predict(jv.X_test[:4], verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-3)


def test_cli_one_epoch_tiny_run_prints_plain_progress_without_tty(tmp_path):
    out = tmp_path / "tr"
    proc = subprocess.run(
        [*EDGESEQ, "train", "--model", "transformer", "--preset", "tiny", "--dataset", "japanese_vowels",
         "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/1" in proc.stderr and "Traceback" not in proc.stderr
    assert "test accuracy" in proc.stdout
    rec = json.loads((out / "training.json").read_text())
    assert rec["model"]["arch"] == "transformer" and rec["epochs_run"] == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "grux", "--dataset", "japanese_vowels"], "grux"),
        (["--model", "gru", "--preset", "huge", "--dataset", "japanese_vowels"], "huge"),
        (["--model", "gru", "--dataset", "no_such_data"], "no_such_data"),
        (["--model", "gru", "--dataset", "japanese_vowels", "--set", "units"], "KEY=VALUE"),
        (["--model", "gru", "--dataset", "japanese_vowels", "--epochs", "0"], "--epochs"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, args, needle):
    proc = subprocess.run([*EDGESEQ, "train", *args, "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert not (tmp_path / "x" / "model.keras").exists()
