"""edgeseq inspect: a TF-free report of any .tflite, and a clean error for anything that is not one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeseq.core.errors import ModelError
from edgeseq.quantize.inspect import inspect_tflite
from edgeseq.quantize.manifest import read_manifest


def _convert(model) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Small .tflite files converted in-process: dense (known MACs), looped GRU (WHILE), Conv1D."""
    import keras

    tmp = tmp_path_factory.mktemp("tflite")
    L = keras.layers
    out = {}
    inp = keras.Input(batch_shape=(1, 8, 4))
    dense = keras.Model(inp, L.Dense(3, bias_initializer="ones")(L.Dense(16, activation="relu", bias_initializer="ones")(inp)))
    inp = keras.Input(batch_shape=(1, 6, 4))
    gru = keras.Model(inp, L.Dense(3)(L.GRU(5)(inp)))
    inp = keras.Input(batch_shape=(1, 10, 4))
    conv = keras.Model(inp, L.Conv1D(8, 3)(inp))
    for name, model in (("dense", dense), ("gru", gru), ("conv", conv)):
        out[name] = tmp / f"{name}.tflite"
        out[name].write_bytes(_convert(model))
    return out


def test_report_lists_signature_ops_weights_and_macs(files):
    r = inspect_tflite(files["dense"])
    assert r["inputs"][0]["shape"] == [1, 8, 4] and r["inputs"][0]["dtype"] == "float32"
    assert r["outputs"][0]["shape"] == [1, 8, 3]
    assert r["ops"]["by_type"]["FULLY_CONNECTED"]["count"] == 2
    assert r["macs"]["by_op"]["FULLY_CONNECTED"] == 8 * 16 * 4 + 8 * 3 * 16
    assert r["weights"]["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert r["dtype_coverage"]["quantized_share"] == 0.0
    assert r["peak_activation_bytes"] >= 8 * 16 * 4
    assert r["flex_ops"] == []


def test_while_loop_macs_count_the_body_per_time_step(files):
    r = inspect_tflite(files["gru"])
    assert "WHILE" in r["ops"]["by_type"]
    assert any("x 6 iterations" in note for note in r["macs"]["notes"])
    # GRU input and recurrent kernels (3 gates x 5 units) per step, plus the head.
    assert r["macs"]["by_op"]["FULLY_CONNECTED"] >= 6 * (4 * 15 + 5 * 15)


def test_conv_macs(files):
    r = inspect_tflite(files["conv"])
    assert r["macs"]["total"] == 8 * 8 * 3 * 4


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "corrupt", "missing", "directory"])
def test_bad_files_are_one_line_model_errors(case, files, tmp_path):
    good = files["gru"].read_bytes()
    path = tmp_path / f"{case}.tflite"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello, I am not a model\n" * 10)
    elif case == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif case == "corrupt":
        path.write_bytes(b"\xff\xff\xff\x7f" + good[4:])
    elif case == "directory":
        path.mkdir()
    with pytest.raises(ModelError) as exc:
        inspect_tflite(path)
    assert "\n" not in exc.value.one_line()


def test_inspect_and_manifest_reader_never_import_tensorflow(files, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"schema": "edgeseq.manifest/1", "name": "x"}))
    code = (
        "import sys, json\n"
        "from edgeseq.quantize.inspect import inspect_tflite\n"
        "from edgeseq.quantize.manifest import read_manifest\n"
        "from edgeseq.cli import main\n"
        f"inspect_tflite({str(files['gru'])!r}); read_manifest({str(manifest)!r})\n"
        "import edgeseq.commands.inspect, edgeseq.commands.evaluate, edgeseq.quantize.evaluate\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_read_manifest_refuses_other_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(ModelError):
        read_manifest(p)
    with pytest.raises(ModelError):
        read_manifest(tmp_path / "absent.tflite")


def test_read_manifest_not_strict_is_none_for_missing_or_damaged_and_takes_any_object(tmp_path):
    """What profile reads next to a model: a model profiles without a manifest, and a hand-written one counts."""
    assert read_manifest(tmp_path / "absent.tflite", strict=False) is None
    for text in ("{nope", "[1, 2]", "\udcff", "[" * 100_000):
        (tmp_path / "bad.json").write_text(text, errors="surrogateescape")
        assert read_manifest(tmp_path / "bad.tflite", strict=False) is None, text[:8]
    (tmp_path / "hand.json").write_text('{"recipe": "int8", "accuracy": 0.9}')
    assert read_manifest(tmp_path / "hand.tflite", strict=False) == {"recipe": "int8", "accuracy": 0.9}


def test_cli_inspect_json_and_bad_file_exit_code(files, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "inspect", str(files["dense"]), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["macs"]["total"] > 0
    est = doc["memory_estimate"]
    parts = ("weights_kb", "graph_kb", "arena_kb", "state_kb", "xnnpack_kb")
    for key in (*parts, "code_kb", "xnnpack_packed_kb"):
        assert est[key] >= 0
    assert est["total_kb"] == pytest.approx(sum(est[k] for k in parts), abs=0.5)  # code_kb: not the model's
    text = subprocess.run([sys.executable, "-m", "edgeseq.cli", "inspect", str(files["gru"])],
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "WHILE" in text.stdout
    assert "memory on ai_edge_litert" in text.stdout and "XNNPACK" in text.stdout and "arena" in text.stdout
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 3)
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "inspect", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_stripping_names_keeps_io_names_alignment_and_outputs(files):
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.slim import strip_tensor_names
    from edgeseq.quantize.validate import run_tflite

    data = files["gru"].read_bytes()
    slim = strip_tensor_names(data)
    before, after = inspect_tflite(files["gru"]), None
    path = files["gru"].with_name("slim.tflite")
    path.write_bytes(slim)
    after = inspect_tflite(path)
    assert after["inputs"] == before["inputs"] and after["outputs"] == before["outputs"]
    assert after["ops"] == before["ops"] and after["weights"] == before["weights"]
    model = schema.Model.GetRootAs(slim, 0)
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            assert buf._tab.Vector(buf._tab.Offset(4)) % 16 == 0
    X = np.random.default_rng(0).standard_normal((4, 6, 4)).astype(np.float32)
    a = run_tflite(load_interpreter(files["gru"]), X)
    b = run_tflite(load_interpreter(path), X)
    assert np.array_equal(a, b)


def test_compact_keeps_every_graph_report_and_output_bit_identical(files, tmp_path):
    """compact (applied to every converted file) changes bytes only: same report, weights aligned, same outputs."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.slim import SMALL_BUFFER, compact
    from edgeseq.quantize.validate import run_tflite

    rng = np.random.default_rng(0)
    for name, path in files.items():  # dense, looped GRU (WHILE: three subgraphs), Conv1D
        data = path.read_bytes()
        slim = compact(data)
        assert len(slim) < len(data), name
        out = tmp_path / f"{name}-compact.tflite"
        out.write_bytes(slim)
        before, after = inspect_tflite(path), inspect_tflite(out)
        for key in ("inputs", "outputs", "ops", "weights", "macs", "dtype_coverage"):
            assert after[key] == before[key], (name, key)
        # a loop's unread pass-through results are marked absent: their tensors, never written, are not planned
        assert after["peak_activation_bytes"] <= before["peak_activation_bytes"], name
        model = schema.Model.GetRootAs(slim, 0)
        for i in range(model.BuffersLength()):
            buf = model.Buffers(i)
            if buf.DataLength():  # weights 16-byte aligned; constants under SMALL_BUFFER bytes 8
                assert buf._tab.Vector(buf._tab.Offset(4)) % (16 if buf.DataLength() >= SMALL_BUFFER else 8) == 0
        shape = tuple(int(d) for d in before["inputs"][0]["shape"])
        X = rng.standard_normal((3, *shape[1:])).astype(np.float32)
        assert np.array_equal(run_tflite(load_interpreter(path), X), run_tflite(load_interpreter(out), X)), name


def test_inspect_stays_linear_on_long_graphs():
    """16x the ops must cost well under 40x the time (peak memory was quadratic: 16k ops took 12-27 s).

    A ratio, not a wall-clock bound; benchmarks/inspect_scaling.py measures the absolute times.
    """
    import time

    from _tiny_tflite import chain_model

    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.tflite.reader import parse_bytes

    def cost(data: bytes) -> tuple[float, dict]:
        started = time.perf_counter()
        report = analyze(parse_bytes(data, "chain.tflite"))
        return time.perf_counter() - started, report

    small, big = chain_model(1000), chain_model(16000)
    t_small = sorted(cost(small)[0] for _ in range(3))[1]
    t_big, report = cost(big)
    assert report["ops"]["total"] == 16000 and report["peak_activation_bytes"] > 0
    assert t_big < 40 * t_small, f"1k ops {t_small:.3f} s, 16k ops {t_big:.3f} s"
