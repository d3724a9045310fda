"""Training on Keras's JAX and PyTorch backends (models/backend.py, backend_run.py, train_child.py), and the
conversion of what they train: the .tflite is checked against the outputs of the backend that trained the model
(quantize/training_reference.py), so a backend difference fails parity instead of hiding."""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseq.core.errors import InputError
from edgeseq.datasets.base import Dataset
from edgeseq.models.backend import require_installed, resolve_backend
from edgeseq.models.run_dir import TrainOptions
from edgeseq.models.zoo import ARCHITECTURES

EDGESEQ = [sys.executable, "-m", "edgeseq.cli"]
REPO = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None
# A few steps are enough: what is tested is the line from another backend to a validated .tflite, not learning.
FEW_STEPS = TrainOptions(epochs=2, batch_size=16, patience=5, seed=3)


def small_data(n_train: int = 64, n_test: int = 32, steps: int = 12, features: int = 4, classes: int = 3) -> Dataset:
    """Three classes told apart by their mean; learnable in a few steps, built in microseconds."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % classes
        x = rng.normal(size=(n, steps, features)).astype(np.float32) + y[:, None, None].astype(np.float32)
        return x, y.astype(np.int64)

    (xtr, ytr), (xte, yte) = split(n_train), split(n_test)
    return Dataset(name="three-means", task="classification", X_train=xtr, y_train=ytr, X_test=xte, y_test=yte,
                   num_classes=classes)


# -- choosing a backend: cheap checks, one-line errors --------------------------------------------------------------
def test_backend_defaults_to_keras_backend_variable_else_tensorflow(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert resolve_backend(None) == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert resolve_backend(None) == "jax"
    assert resolve_backend("TensorFlow") == "tensorflow" and resolve_backend("pytorch") == "torch"
    with pytest.raises(InputError) as info:
        resolve_backend("jx")
    assert "did you mean 'jax'" in info.value.one_line()
    monkeypatch.setenv("KERAS_BACKEND", "numpy")  # a Keras backend edgeseq does not train on
    with pytest.raises(InputError, match="KERAS_BACKEND 'numpy'"):
        resolve_backend(None)


def test_missing_backend_names_the_extra_to_install(monkeypatch):
    real = importlib.machinery.PathFinder.find_spec
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec",
                        lambda name, *a: None if name == "jax" else real(name, *a))
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # an earlier test in this process may have imported it
    with pytest.raises(InputError) as info:
        require_installed("jax")
    assert "pip install 'edgeseq[jax]'" in info.value.one_line() and "jax[cuda12]" in info.value.one_line()


def test_cli_unknown_backend_is_one_line_before_any_work(tmp_path):
    proc = subprocess.run([*EDGESEQ, "train", "--model", "gru", "--dataset", "japanese_vowels", "--backend", "jaks",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "did you mean 'jax'" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(HAVE_TORCH, reason="PyTorch is installed here, so its absence cannot be shown through the CLI "
                                       "(test_missing_backend_names_the_extra_to_install covers the check)")
def test_cli_backend_not_installed_names_the_extra(tmp_path):
    proc = subprocess.run([*EDGESEQ, "train", "--model", "gru", "--dataset", "japanese_vowels", "--backend", "torch",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'edgeseq[torch]'" in proc.stderr


def test_conversion_pins_keras_to_tensorflow_or_refuses_in_one_line(monkeypatch):
    import types

    from edgeseq.core.errors import ModelError
    from edgeseq.models.backend import use_tensorflow_keras

    fake = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: "jax"))
    monkeypatch.setitem(sys.modules, "keras", fake)  # a process whose Keras already runs on JAX
    with pytest.raises(ModelError, match="needs Keras on TensorFlow, but Keras in this process runs on jax"):
        use_tensorflow_keras("converting x.keras")
    monkeypatch.delitem(sys.modules, "keras")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    use_tensorflow_keras("converting x.keras")  # Keras not loaded yet: this process and its children get TF
    assert os.environ["KERAS_BACKEND"] == "tensorflow"


# -- every zoo architecture on JAX, converted by TensorFlow, checked against JAX's outputs --------------------------
def _train(tmp_path: Path, arch: str, backend: str, *, options: TrainOptions = FEW_STEPS, env: dict | None = None):
    from edgeseq.models.backend_run import train_on_backend

    epochs = []
    result = train_on_backend(arch, small_data(), tmp_path / f"{arch}-{backend}", backend=backend, preset="tiny",
                              options=options, progress=epochs.append, env=env)
    assert [e["epoch"] for e in epochs] == list(range(1, result.record["epochs_run"] + 1))  # shown as they ended
    return result


def _convert_fp32(result, tmp_path: Path) -> dict:
    from edgeseq.quantize.convert import convert_model

    (res,) = convert_model(result.model_path, ["fp32"], out_dir=tmp_path / "tflite")
    return res.manifest["validation"]


def _check_record(rec: dict, backend: str) -> None:
    b = rec["backend"]
    # The module's own version (PyTorch adds its build, e.g. 2.14.1+cu130, to what pip lists).
    assert b["name"] == backend and b["version"].split("+")[0] == importlib.metadata.version(backend).split("+")[0]
    assert rec["versions"][backend] == b["version"] and "tensorflow" not in rec["versions"]
    assert b["devices"] and b["strategy"] and b["kind"] == "cpu"
    assert b["tensorflow_loaded"] is False  # the run is the same as on a GPU machine without TensorFlow
    assert rec["reference"]["backend"] == backend and rec["reference"]["samples"] == 32


@pytest.fixture(scope="module")
def jax_gru(tmp_path_factory):
    """One GRU trained on JAX and converted to fp32, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("jax-gru")
    result = _train(tmp, "gru", "jax")
    return result, _convert_fp32(result, tmp), tmp / "tflite" / "gru-jax-fp32.tflite"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_zoo_model_trains_on_jax_and_converts_with_parity_against_jax(tmp_path, arch, request):
    if arch == "gru":
        result, validation, _ = request.getfixturevalue("jax_gru")
    else:
        result = _train(tmp_path, arch, "jax")
        validation = _convert_fp32(result, tmp_path)
    _check_record(result.record, "jax")
    assert result.record["backend"]["strategy"] == "single-device"
    ref = validation["training_reference"]
    assert validation["passed"] and ref["passed"] and ref["backend"] == "jax" and ref["samples"] == 32
    assert ref["max_abs_diff"] < 1e-4  # fp32 tolerance: TFLite agrees with what JAX computed
    assert ref["keras_tensorflow_vs_training"]["max_abs_diff"] < 1e-5  # and so does TF's reading of the file


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not in the dev extra: the only Linux wheel the package index "
                                           "serves pulls CUDA (5.4 GB installed), see README 'Training on a GPU'")
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_zoo_model_trains_on_torch_and_converts_with_parity_against_torch(tmp_path, arch):
    result = _train(tmp_path, arch, "torch", env={"CUDA_VISIBLE_DEVICES": ""})
    _check_record(result.record, "torch")
    assert result.record["backend"]["note"].startswith("one device")
    validation = _convert_fp32(result, tmp_path)
    ref = validation["training_reference"]
    assert validation["passed"] and ref["passed"] and ref["backend"] == "torch" and ref["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_cli_convert_runs_on_tensorflow_even_with_keras_backend_jax_set(tmp_path, jax_gru):
    result = jax_gru[0]
    proc = subprocess.run([*EDGESEQ, "convert", str(result.model_path), "--recipe", "fp32", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="jax"))
    assert proc.returncode == 0, proc.stderr
    assert "parity ok" in proc.stdout and "vs the jax-trained reference: ok" in proc.stdout


@pytest.mark.slow
def test_streaming_export_of_a_jax_model_checks_tensorflow_keras_against_jax(tmp_path, jax_gru):
    from edgeseq.quantize.stream.convert import convert_stream

    (res,) = convert_stream(jax_gru[0].model_path, ["fp32"], out_dir=tmp_path / "stream")
    ref = res.manifest["validation"]["training_reference"]
    assert res.manifest["validation"]["passed"] and ref["passed"] and ref["backend"] == "jax"
    assert ref["keras_tensorflow_vs_training"]["max_abs_diff"] < 1e-5 and "streaming parity" in ref["how"]


@pytest.mark.slow
def test_a_backend_difference_fails_parity_and_names_the_backend(tmp_path, jax_gru):
    """The stored JAX outputs nudged by 0.05 stand for a backend that computes differently: TensorFlow's own Keras
    output would not notice, the stored reference does."""
    import keras

    from edgeseq.quantize.recipes import get_recipe
    from edgeseq.quantize.training_reference import check_keras_reference, check_reference, load_reference

    result, _, tflite = jax_gru
    run = tmp_path / "run"
    shutil.copytree(result.out_dir, run)
    with np.load(run / "reference.npz") as npz:
        inputs, outputs = npz["inputs"], npz["outputs"]
    np.savez(run / "reference.npz", inputs=inputs, outputs=outputs + np.float32(0.05))
    model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
    ref = load_reference(run / "model.keras", 12, 4, model)
    validation = {"passed": True, "failures": []}
    check_reference(validation, tflite.read_bytes(), get_recipe("fp32"), "classification", ref)
    assert validation["passed"] is False and validation["training_reference"]["passed"] is False
    assert validation["failures"][0].startswith("against the jax-trained reference: max |diff| 0.05")
    assert any(f.startswith("TensorFlow's Keras against the jax-trained reference") for f in validation["failures"])
    # --stream compares its .tflite with TensorFlow's Keras; TF's Keras is then held to the stored outputs.
    streamed = {"passed": True, "failures": []}
    check_keras_reference(streamed, ref)
    assert streamed["passed"] is False and streamed["training_reference"]["passed"] is False
    # A model file that is not the one training wrote: the reference is not used, and the record says why.
    with open(run / "model.keras", "ab") as fh:
        fh.write(b"\0")  # same zip contents, another sha256
    assert "sha256 differs" in load_reference(run / "model.keras", 12, 4, model)["skipped"]
    assert load_reference(tmp_path / "elsewhere.keras", 12, 4, model) is None  # no run directory: no reference


@pytest.mark.slow
def test_jax_data_parallel_over_two_devices_with_mixed_precision(tmp_path):
    """Two host devices (XLA's flag) stand in for two GPUs: keras.distribution.DataParallel splits each batch.
    mixed_float16 on top; TensorFlow's Keras gives the same outputs from the saved file within float16 rounding.
    The file converts (TF's converter refused the float16 casts in its GRU loop, whichever backend trained it): its
    layers are rebuilt to compute in float32 with the same weights, checked against the float16-computed reference
    at fp16's tolerance, and the manifest says so."""
    import keras

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    opts = TrainOptions(epochs=2, batch_size=16, seed=2, mixed_precision=True)
    result = _train(tmp_path, "gru", "jax", options=opts, env=env)
    b, data = result.record["backend"], result.record["dataset"]
    assert b["strategy"] == "DataParallel" and b["devices"] == ["cpu:0", "cpu:1"] and b["kind"] == "multi-cpu"
    assert b["mixed_precision"] is True and np.isfinite(result.record["history"]["loss"]).all()
    assert data["n_train"] % 2 == 0 and data["n_val"] % 2 == 0  # trimmed so every batch splits evenly
    with np.load(result.out_dir / "reference.npz") as npz:
        inputs, outputs = npz["inputs"], npz["outputs"]
    assert outputs.dtype == np.float32 and len(outputs) == 32  # predict padded to the devices, then cut back
    model = keras.saving.load_model(result.model_path, safe_mode=True, compile=False)
    assert np.abs(model.predict(inputs, verbose=0) - outputs).max() < 1e-2
    from edgeseq.quantize.training_reference import load_reference

    keras_level = load_reference(result.model_path, 12, 4, model)["keras_tensorflow_vs_training"]
    assert keras_level["passed"] and keras_level["tolerance"] == "fp16 (mixed precision)"
    from edgeseq.quantize.convert import convert_model

    for res in convert_model(result.model_path, ["fp32", "int8"], out_dir=tmp_path / "tflite", raise_on_error=False):
        assert res.ok, res.error.one_line()
        src, val = res.manifest["source"], res.manifest["validation"]
        assert src["trained_dtype_policy"] == "mixed_float16" and src["converted_compute"] == "float32"
        assert val["passed"] and val["training_reference"]["passed"] and val["training_reference"]["samples"] == 32
    with pytest.raises(InputError, match="does not split over the 2 devices"):
        _train(tmp_path / "odd", "gru", "jax", options=TrainOptions(epochs=1, batch_size=15), env=env)


@pytest.mark.slow
def test_cli_trains_on_jax_without_importing_tensorflow_or_keras_in_its_own_process(tmp_path):
    data = small_data()
    npz = tmp_path / "three.npz"
    np.savez(npz, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test, y_test=data.y_test)
    code = ("import json, sys\nfrom edgeseq.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    rc = e.code\nprint(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules, "
            "'keras': 'keras' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code, "train", "--model", "lstm", "--preset", "tiny", "--dataset",
                           str(npz), "--epochs", "1", "--backend", "jax", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == {"rc": 0, "tf": False, "keras": False}, proc.stderr
    assert "on jax cpu" in proc.stdout and "Traceback" not in proc.stderr
    assert (tmp_path / "run" / "reference.npz").exists()


@pytest.mark.slow
def test_gpu_train_benchmark_runs_on_cpu_with_jax_and_never_loads_tensorflow(tmp_path):
    """benchmarks/gpu_train.py --device cpu: what this machine can prove of the GPU script (no GPU here)."""
    data = small_data()
    npz = tmp_path / "three.npz"
    np.savez(npz, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test, y_test=data.y_test)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_train.py"), "--backend", "jax", "--device",
                           "cpu", "--dataset", str(npz), "--archs", "gru", "--preset", "tiny", "--epochs", "1",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["tensorflow_loaded"] is False
    (row,) = summary["rows"]
    assert row["device"] == "cpu" and row["samples_per_s"] > 0 and Path(row["model"]).exists()
    assert "| gru-tiny | jax cpu (cpu:0) |" in proc.stdout


@pytest.mark.slow
def test_sigterm_while_training_on_jax_stops_the_child_and_leaves_nothing(tmp_path):
    import signal
    import time

    tmpdir, run_dir, err = tmp_path / ".tmp", tmp_path / "runs" / "gru", tmp_path / ".stderr"
    tmpdir.mkdir()
    with open(err, "wb") as sink:
        proc = subprocess.Popen([*EDGESEQ, "train", "--model", "gru", "--preset", "tiny", "--dataset",
                                 "japanese_vowels", "--epochs", "500", "--patience", "500", "--backend", "jax",
                                 "--out", str(run_dir)], stdout=subprocess.DEVNULL, stderr=sink,
                                stdin=subprocess.DEVNULL, env=dict(os.environ, TMPDIR=str(tmpdir)))
    deadline = time.monotonic() + 120
    while not _processes_mentioning(f"edgeseq.models.train_child {tmpdir}") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3.0)  # into Keras, JAX and the first epochs
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    lines = [ln for ln in err.read_text().splitlines() if ln.strip() and " epoch " not in ln]
    assert proc.returncode == 143 and len(lines) == 1 and lines[0].startswith("error: terminated"), lines
    assert _processes_mentioning(str(tmpdir)) == [] and sorted(os.listdir(tmpdir)) == []  # child and job folder gone
    assert not run_dir.exists()


def _processes_mentioning(needle: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                found.append(pid)
        except OSError:  # it ended while we looked
            continue
    return found
