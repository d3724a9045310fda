"""The models users bring (README "Your own model"): token-id classifiers (int ids -> Embedding -> LSTM), per-frame
taggers (return_sequences=True heads), TensorFlow SavedModel directories and legacy .h5 files; and the data they come
with (.npz with int X [N, T], per-step labels [N, T] / [N, T, H]).

Tiny models are built and trained in the tests (a few seconds each); conversions are @slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeseq.cli import cli
from edgeseq.datasets import load_dataset
from edgeseq.errors import DatasetError, InputError

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
    info = json.loads(res.output)
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
    assert json.loads(res.output)["labels"] == "one per time step"


@pytest.mark.parametrize("over, words", [
    ({"X_train": np.zeros((240, T))}, "'X_train' has rank 2 .*token ids"),  # floats [N, T]: not ids
    ({"X_test": np.zeros((80, T, 2))}, "one holds token ids"),
    ({"X_train": np.full((240, T), -1)}, "token id -1"),
    ({"y_train": np.zeros((240, T + 1), np.int64)}, r"expected labels \[N\] or one label per time step"),
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
    from edgeseq.metrics import metrics_for

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


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """`edgeseq ARGS` as the console runs it: (exit code, stdout, stderr)."""
    from edgeseq.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
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
