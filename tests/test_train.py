"""Training: deterministic splits and seeds, what a run directory holds, the CPU strategy path, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseq.core.errors import InputError
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
    assert "[1/1] transformer-tiny epoch" in proc.stderr and "Traceback" not in proc.stderr
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


# ---- hostile options and memory, the run directory on failure (no TensorFlow unless a fixture needs it) ----------

@pytest.mark.parametrize("opts, needle", [
    ({"learning_rate": float("nan")}, "--lr"),
    ({"learning_rate": float("inf")}, "--lr"),
    ({"learning_rate": 0.0}, "--lr"),
    ({"validation_split": float("nan")}, "--validation-split"),
    ({"seed": -1}, "--seed"),
    ({"patience": -1}, "--patience"),
    ({"clipnorm": float("nan")}, "clipnorm"),
])
def test_non_finite_and_out_of_range_options_are_refused(opts, needle):
    with pytest.raises(InputError, match=needle):
        TrainOptions(**opts).check()


@pytest.mark.parametrize("arch, overrides", [
    ("gru", {}), ("lstm", {"num_layers": 2, "bidirectional": True}), ("rnn", {"head": "mean"}),
    ("transformer", {}), ("transformer", {"pos_encoding": "learned", "max_len": 64, "num_layers": 3}),
])
def test_parameter_estimate_matches_a_real_build(arch, overrides):
    from edgeseq.models.config import estimate_params
    from edgeseq.models.zoo import count_params, get_config

    for seq_len, features, outputs in ((29, 12, 9), (64, 16, 10)):
        est = estimate_params(get_config(arch, "tiny", **overrides), seq_len=seq_len, num_features=features,
                              num_outputs=outputs)
        assert est == count_params(arch, "tiny", seq_len=seq_len, num_features=features, num_outputs=outputs,
                                   **overrides)


def test_a_model_too_big_for_memory_is_refused_before_building():
    from edgeseq.models.run_dir import check_model_fits
    from edgeseq.models.zoo import get_config

    huge = get_config("gru", "tiny", units=100_000_000)
    with pytest.raises(InputError, match=r"gru with 30,000,\S+ parameters needs about .* PiB .* available"):
        check_model_fits(huge, seq_len=7, num_features=3, num_outputs=3)
    tiny = get_config("gru", "tiny")
    assert check_model_fits(tiny, seq_len=7, num_features=3, num_outputs=3, available=1 << 30) > 0
    with pytest.raises(InputError, match="1.0 KiB of memory"):
        check_model_fits(tiny, seq_len=7, num_features=3, num_outputs=3, available=1024)


def test_set_values_are_checked_before_any_work():
    from edgeseq.models.config import parse_overrides
    from edgeseq.models.zoo import get_config

    for pair, needle in (("dropout=NaN", "finite"), ("units=Infinity", "finite"), ("units=1e999", "finite")):
        with pytest.raises(InputError, match=needle):
            parse_overrides((pair,))
    for kw, needle in (({"units": 0}, "units"), ({"units": 2.5}, "units"), ({"dropout": 1.0}, "dropout")):
        with pytest.raises(InputError, match=needle):
            get_config("gru", "tiny", **kw)
    with pytest.raises(InputError, match="norm_epsilon"):
        get_config("transformer", "tiny", norm_epsilon=float("inf"))


def test_run_directory_appears_only_complete_and_failures_leave_nothing(tmp_path):
    from edgeseq.models.run_dir import prepare_run_dir, publish_run_dir

    out = tmp_path / "runs" / "deep" / "r1"
    assert prepare_run_dir(out, overwrite=False) == out and not (tmp_path / "runs").exists()  # checks only
    with pytest.raises(RuntimeError), publish_run_dir(out, overwrite=False) as stage:
        (stage / "model.keras").write_text("half")
        raise RuntimeError("training crashed")
    assert list(tmp_path.iterdir()) == [], "a failed run left files or folders"
    with publish_run_dir(out, overwrite=False) as stage:
        (stage / "model.keras").write_text("v1")
        (stage / "training.json").write_text("{}")
    assert sorted(p.name for p in out.parent.iterdir()) == ["r1"]
    assert (out / "model.keras").read_text() == "v1" and oct(out.stat().st_mode & 0o777) != "0o700"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="already holds a trained model"):
        prepare_run_dir(out, overwrite=False)
    with pytest.raises(KeyboardInterrupt), publish_run_dir(out, overwrite=True) as stage:
        (stage / "model.keras").write_text("v2, interrupted")
        raise KeyboardInterrupt
    assert (out / "model.keras").read_text() == "v1", "a failed --overwrite run must keep the stored model"
    with publish_run_dir(out, overwrite=True) as stage:
        (stage / "model.keras").write_text("v2")
        (stage / "training.json").write_text("{}")
    assert (out / "model.keras").read_text() == "v2" and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.parent.iterdir()) == ["r1"], "temporary sibling left behind"
    (tmp_path / "afile").write_text("x")
    for bad, needle in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "r", "afile is a file")):
        with pytest.raises(InputError, match=needle):
            prepare_run_dir(bad, overwrite=False)


def test_training_that_diverges_writes_no_run_directory(tmp_path):
    from edgeseq.datasets import load_dataset
    from edgeseq.models.train import train_model

    data = load_dataset("adding:length=8,n_train=64,n_test=16")  # regression: a 1e30 step overflows the MSE
    out = tmp_path / "runs" / "diverged"
    with pytest.raises(InputError, match="diverged"):
        train_model("gru", data, out, preset="tiny", options=TrainOptions(epochs=2, batch_size=16, learning_rate=1e30))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (["--lr", "nan"], "--lr"),
    (["--set", "units=100000000"], "parameters"),
])
def test_cli_refuses_hostile_options_without_writing(tmp_path, args, needle):
    proc = subprocess.run([*EDGESEQ, "train", "--model", "gru", "--dataset", "japanese_vowels", *args,
                           "--out", str(tmp_path / "runs" / "x")], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []
