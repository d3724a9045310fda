"""`edgeseq sweep`: the grid and its keys, resuming after a real SIGKILL, failed cells recorded and skipped, full mode
on resampled data, the Ray executor on a real local head, and the report's sweep sections."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from edgeseq.core.errors import InputError
from edgeseq.datasets.base import Dataset
from edgeseq.datasets.lengths import resample_steps, resampled
from edgeseq.sweep.grid import expand, spec_from_file, spec_from_options

EDGESEQ = [sys.executable, "-m", "edgeseq.cli"]
VERSIONS = {"edgeseq": "x", "tensorflow": "y", "keras": "z", "litert": "w"}


def _cli(*args: str, cwd: Path, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGESEQ, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _cells(db: Path) -> dict[str, tuple[str, int | None, str | None]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {k: (s, r, why) for k, s, r, why in conn.execute("SELECT key, status, run_id, reason FROM sweep_cells")}
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def _run_ids(db: Path) -> set[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM runs")}
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ grid
def test_grid_expands_every_combination_with_stable_shared_keys():
    spec = spec_from_options({"arch": "gru,transformer-causal,transformer", "seq_len": "16,32", "recipe": "fp32,int8",
                              "stream": True, "target": ("local", "pi4")}).check()
    cells = expand(spec, VERSIONS)
    # recurrent and causal archs: 2 lengths x 2 recipes x 2 forms x 2 targets; a non-causal one has no stream form
    assert len(cells) == 16 + 16 + 8
    assert len({c.key for c in cells}) == len(cells)
    assert not any(c.arch == "transformer" and c.form == "stream" for c in cells)
    gru16 = [c for c in cells if c.arch == "gru" and c.seq_len == 16]
    assert len({c.model_key for c in gru16}) == 1  # one model for every recipe, form and target
    assert len({c.artifact_key for c in gru16}) == 4  # one file per recipe x form, shared by the targets
    assert [c.key for c in expand(spec, VERSIONS)] == [c.key for c in cells]  # stable
    newer = expand(spec, {**VERSIONS, "tensorflow": "y2"})
    assert not {c.key for c in newer} & {c.key for c in cells}  # a new toolchain measures again
    more_runs = expand(spec_from_options({"runs": 99}, spec), VERSIONS)
    assert {c.model_key for c in more_runs} == {c.model_key for c in cells}  # ... but reuses the models
    assert not {c.key for c in more_runs} & {c.key for c in cells}
    new_agent = expand(spec, VERSIONS, agent="99.0.0")  # a new agent measures again, with the same models and files
    assert not {c.key for c in new_agent} & {c.key for c in cells}
    assert [(c.model_key, c.artifact_key) for c in new_agent] == [(c.model_key, c.artifact_key) for c in cells]


def test_lengths_with_an_ellipsis_and_the_file_form_match_the_flags(tmp_path):
    flags = spec_from_options({"arch": "gru,lstm", "seq_len": "16,32,...,256", "recipe": "fp32,int8", "set": ("units=32",),
                               "stream": True, "mode": "cost", "runs": 7})
    assert flags.seq_lens == (16, 32, 64, 128, 256)
    f = tmp_path / "sweep.toml"
    f.write_text('arch = ["gru", "lstm"]\nseq_len = "16,32,...,256"\nrecipe = "fp32,int8"\nstream = true\n'
                 'mode = "cost"\nruns = 7\n[set]\nunits = 32\n')
    from_file = spec_from_file(f)
    assert [c.key for c in expand(from_file, VERSIONS)] == [c.key for c in expand(flags, VERSIONS)]
    assert from_file.overrides == {"units": 32}
    # flags given on the command line win over the file
    assert spec_from_options({"runs": 3}, from_file).runs == 3


@pytest.mark.parametrize("options, fragment", [
    ({"arch": "grux"}, "unknown architecture 'grux'"),
    ({"mode": "full"}, "needs a data set"),
    ({"seq_len": "16,1"}, "sequence lengths must be"),
    ({"hop_ms": float("nan")}, "--hop-ms must be a finite positive number"),
    ({"jobs": 0}, "--jobs must be an integer"),
    ({"executor": "ray"}, "needs the cluster's address"),
    ({"recipe": "int4"}, "int4"),
    ({"set": ("causal=true",)}, "transformer-causal"),
])
def test_bad_grids_are_refused_before_anything_runs(options, fragment):
    with pytest.raises(InputError, match=None) as exc:
        spec_from_options(options).check()
    assert fragment in exc.value.one_line()


def test_cli_refusals_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("arch = [\n")
    for args, fragment in ((["--arch", "nope", "--dry-run"], "unknown architecture"),
                           ([str(tmp_path / "missing.toml")], "no sweep file"),
                           ([str(bad)], "cannot read"),
                           (["--hop-ms", "inf", "--dry-run"], "hop")):
        res = _cli("sweep", *args, cwd=tmp_path)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr and fragment in res.stderr, (args, res.stderr)
    assert not list(tmp_path.glob("sweep-out")) and not (tmp_path / ".edgeseq").exists()


def test_dry_run_prints_the_grid_and_builds_nothing(tmp_path):
    res = _cli("sweep", "--arch", "gru,transformer", "--seq-len", "16,32,...,2048", "--recipe", "fp32,int8",
               "--stream", "--dry-run", cwd=tmp_path, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "48 cells" in res.stdout  # gru 8 x 2 x 2 + transformer 8 x 2 x 1
    assert "window recompute" in res.stdout
    assert not (tmp_path / "sweep-out").exists() and not (tmp_path / ".edgeseq").exists()


# ------------------------------------------------------------------------------------------ data at a length
def test_resampling_keeps_labels_and_interpolates_features():
    X = np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1)
    up = resample_steps(X, 9)
    assert up.shape == (2, 9, 1) and np.allclose(up[0, :, 0], np.linspace(0, 4, 9))
    ds = Dataset("toy", "classification", X, np.array([0, 1]), X, np.array([1, 0]), num_classes=2)
    short = resampled(ds, 3)
    assert short.seq_len == 3 and list(short.y_train) == [0, 1]
    assert short.meta["resampled"] == {"from_steps": 5, "to_steps": 3, "method": "linear"}
    per_step = Dataset("toy", "classification", X, np.array([[0, 0, 1, 1, 1]] * 2), X,
                       np.array([[0, 1, 1, 1, 1]] * 2), num_classes=2)
    assert resampled(per_step, 9).y_train.shape == (2, 9)  # per-step labels follow the steps (nearest)


# ------------------------------------------------------------------------------------------ running
@pytest.mark.slow
def test_a_killed_sweep_keeps_its_cells_and_a_rerun_finishes_the_rest(tmp_path):
    args = ["sweep", "--arch", "gru", "--preset", "tiny", "--seq-len", "8,12,16,20", "--runs", "10", "--warmup", "2",
            "--db", "r.db", "--out", "sw", "--jobs", "2"]
    db = tmp_path / "r.db"
    proc = subprocess.Popen([*EDGESEQ, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and any(s == "ok" for s, _, _ in _cells(db).values()):
            break
        time.sleep(0.05)  # a local target is measured once the builds are done: the cells then finish within seconds
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # no cleanup of any kind runs
    proc.communicate()
    before = _cells(db)
    assert 1 <= len(before) < 4
    assert {r for s, r, _ in before.values() if s == "ok"} <= _run_ids(db)  # every recorded cell names a stored run

    res = _cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    after = _cells(db)
    assert len(after) == 4 and all(s == "ok" for s, _, _ in after.values()), after
    assert all(after[k] == v for k, v in before.items())  # nothing recorded earlier was redone or lost
    assert f"({len(before)} recorded earlier)" in res.stderr
    assert len(_run_ids(db)) == 4

    again = _cli(*args, cwd=tmp_path, timeout=120)
    assert again.returncode == 0 and "nothing left to do" in again.stderr, again.stderr
    assert len(_run_ids(db)) == 4
    assert not [p for p in (tmp_path / "sw" / ".work").iterdir()]  # the killed run's worker folders are gone

    report = _cli("report", "--db", "r.db", "--format", "md", cwd=tmp_path, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "## Scaling" in report.stdout and "## The textbook claims, measured" in report.stdout
    assert "RNN time is O(n)" in report.stdout


@pytest.mark.slow
def test_a_refused_cell_is_recorded_with_its_reason_and_the_sweep_goes_on(tmp_path):
    args = ["sweep", "--arch", "gru,transformer", "--preset", "tiny", "--seq-len", "8", "--recipe", "int16x8",
            "--runs", "10", "--warmup", "2", "--db", "r.db", "--out", "sw", "--jobs", "2"]
    res = _cli(*args, cwd=tmp_path, env={"KERAS_BACKEND": "jax"})  # the sweep converts on TensorFlow regardless
    assert res.returncode == 0, res.stderr
    cells = _cells(tmp_path / "r.db")
    statuses = sorted(s for s, _, _ in cells.values())
    assert statuses == ["failed", "ok"], cells
    why = next(w for s, _, w in cells.values() if s == "failed")
    assert "int16x8" in why and "\n" not in why
    assert "1 cells measured, 1 failed" in res.stdout and "transformer-tiny n=8 int16x8" in res.stdout
    again = _cli(*args, cwd=tmp_path, timeout=120)
    assert "nothing left to do" in again.stderr  # a failed cell is finished too ...
    retry = _cli(*args, "--retry-failed", cwd=tmp_path)
    assert "1 cells to run (1 recorded earlier)" in retry.stderr  # ... until asked to try it again


@pytest.mark.slow
def test_full_mode_trains_on_the_data_resampled_to_each_length(tmp_path):
    from edgeseq.sweep.rows import sweep_rows

    res = _cli("sweep", "--mode", "full", "--dataset", "japanese_vowels", "--arch", "gru", "--preset", "tiny",
               "--seq-len", "16,40", "--epochs", "2", "--runs", "10", "--warmup", "2", "--db", "r.db", "--out", "sw",
               "--jobs", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = sweep_rows(tmp_path / "r.db")
    assert sorted(r["seq_len"] for r in rows) == [16, 40]
    assert all(r["mode"] == "full" and 0.0 <= r["accuracy"] <= 1.0 for r in rows), rows
    trained = [json.loads(p.read_text())["dataset"] for p in (tmp_path / "sw" / "models").glob("*/model/training.json")]
    assert sorted((d["seq_len"], d["name"]) for d in trained) == [(16, "japanese_vowels@16"), (40, "japanese_vowels@40")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_ray_executor_builds_on_a_real_local_head(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgeseq[ray]'; make test installs it)")
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    start = subprocess.run([str(ray_bin), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                            "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
                            f"--temp-dir={temp}"], capture_output=True, text=True, timeout=180, env=env)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        res = _cli("sweep", "--arch", "gru", "--preset", "tiny", "--seq-len", "8", "--runs", "10", "--warmup", "2",
                   "--db", "r.db", "--out", "sw", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                   cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        cells = _cells(tmp_path / "r.db")
        assert len(cells) == 1 and all(s == "ok" for s, _, _ in cells.values()), cells
        assert len(list((tmp_path / "sw" / "models").glob("*/*/artifact.json"))) == 1  # files came back whole
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)


def test_an_unreachable_ray_head_is_one_line(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgeseq[ray]'; make test installs it)")
    res = _cli("sweep", "--arch", "gru", "--seq-len", "8", "--db", "r.db", "--executor", "ray", "--ray-address",
               f"127.0.0.1:{_free_port()}", cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "no Ray head answers" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r.db").exists()


def test_a_failure_measured_since_is_not_listed_as_failed(tmp_path):
    """A cell that failed and was measured later under a new key (another agent, toolchain or --runs) is no longer a
    failure of the sweep; of several failures of one point only the latest is listed."""
    from edgeseq.store.results import ResultsStore
    from edgeseq.sweep.rows import failed_cells

    spec = spec_from_options({"arch": "gru", "seq_len": "16,32,64", "recipe": "int8"}).check()
    old = {c.seq_len: c for c in expand(spec, VERSIONS, agent="3.0.0")}
    new = {c.seq_len: c for c in expand(spec, VERSIONS)}
    db = tmp_path / "results.db"
    with ResultsStore(db, create=True) as store:
        store.put_cell(old[16].key, "s", "failed", old[16].config, why="parity 0.6 < 0.9")
        store.put_cell(old[32].key, "s", "failed", old[32].config, why="first try")
        store.put_cell(new[32].key, "s", "failed", new[32].config, why="second try")
        store.put_cell(old[64].key, "s", "failed", old[64].config, why="still failing")
    assert sorted((c["config"]["seq_len"], c["reason"]) for c in failed_cells(db)) == [
        (16, "parity 0.6 < 0.9"), (32, "second try"), (64, "still failing")]
    with ResultsStore(db, create=True) as store:  # n=16 measured since: no longer a failure
        store.put_cell(new[16].key, "s", "ok", new[16].config, run_id=1)
    assert sorted(c["config"]["seq_len"] for c in failed_cells(db)) == [32, 64]
