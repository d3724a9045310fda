"""Hostile inputs for this wave's surfaces: `--custom-objects` modules that raise, exit, hang or are not Python; a
state-inside stream file whose variables have no initialiser; a damaged store given to a target-keyed command
(recommend, estimate, calibrate); quant-report on a float file.

Each case goes through `run_hostile` (tests/robustness/_harness.py): one `error:` line naming the problem, the
documented exit code, no traceback, bounded time and memory, nothing new in the working directory or TMPDIR.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _harness import private_box, run_hostile
from test_hostile_store_targets import NEEDLE, STRUCTURAL, make_store

MODULES = {
    "raises": ("import keras\nraise RuntimeError('the layer registry is broken')\n", "RuntimeError"),
    "exits": ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    "hangs": ("import time\nwhile True:\n    time.sleep(0.05)\n", "did not finish within 3 s"),
    "not-python": ("\x00\x01PK\x03\x04 this is a zip, not Python \xff\n", "custom-objects"),
}


@pytest.fixture
def box(tmp_path):
    return private_box(tmp_path, EDGESEQ_IMPORT_TIMEOUT_S="3")


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory) -> Path:
    import keras

    inp = keras.Input((6, 3))
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GRU(4)(inp))
    path = tmp_path_factory.mktemp("model") / "gru.keras"
    keras.Model(inp, out).save(path)
    return path


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_a_custom_objects_module_that_misbehaves_on_import_is_one_line(box, keras_model, kind):
    work, home, env = box
    source, needle = MODULES[kind]
    module = home / "my_layers.py"
    module.write_bytes(source.encode("latin-1"))
    shutil.copy(keras_model, work / "gru.keras")
    res = run_hostile(["convert", "gru.keras", "--custom-objects", str(module), "--recipe", "fp32", "--dataset",
                       "random", "--out", "out"], cwd=work, code=2, contains=("--custom-objects", needle), env=env,
                      timeout=90, watch=(home,))
    assert res.wall_s < 80  # a hang is bounded by EDGESEQ_IMPORT_TIMEOUT_S, not by the harness


@pytest.fixture(scope="module")
def uninitialised(tmp_path_factory) -> Path:
    """A TF-converted state-inside keyword spotter (tests/test_state_inside.py) with its CALL_ONCE removed: the
    variables it reads are never set."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s
    from test_state_inside import wake_word_tflite

    folder = tmp_path_factory.mktemp("noinit")
    data = wake_word_tflite(folder / "spotter.tflite").read_bytes()
    model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(data, 0))
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    main = model.subgraphs[0]
    main.operators = [op for op in main.operators if codes[op.opcodeIndex] != s.BuiltinOperator.CALL_ONCE]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path = folder / "noinit.tflite"
    path.write_bytes(bytes(b.Output()))
    return path


@pytest.mark.parametrize("verb", ["profile", "deploy"])
def test_a_state_inside_file_without_an_initialiser_is_refused_before_it_runs(box, uninitialised, verb):
    work, home, env = box
    shutil.copy(uninitialised, work / "noinit.tflite")
    args = (["profile", "noinit.tflite", "--target", "local", "--stream", "--steps", "4", "--runs", "5", "--db",
             "store.db"] if verb == "profile" else ["deploy", "noinit.tflite", "--target", "local"])
    run_hostile(args, cwd=work, code=2, contains=("no CALL_ONCE initialiser", "resource variable"), env=env,
                watch=(home,))


TARGET_KEYED = {
    "recommend": ["recommend", "--target", "local", "--latency-budget-ms", "5"],
    "estimate": ["estimate", "model.tflite", "--target", "local"],
    "calibrate": ["calibrate", "--target", "local", "--quick"],
}


@pytest.mark.parametrize("verb", sorted(TARGET_KEYED))
@pytest.mark.parametrize("kind", STRUCTURAL)
def test_a_damaged_store_given_to_a_target_keyed_command_is_one_line(box, kind, verb):
    from _tiny_tflite import dense_model

    work, home, env = box
    make_store(kind, work / "store.db")
    (work / "model.tflite").write_bytes(dense_model())
    run_hostile([*TARGET_KEYED[verb], "--db", "store.db"], cwd=work, code=7, contains=NEEDLE[kind], env=env,
                watch=(home,))


def test_quant_report_on_a_float_file_is_one_line(box):
    from _tiny_tflite import dense_model

    work, home, env = box
    (work / "float.tflite").write_bytes(dense_model())
    run_hostile(["quant-report", "float.tflite", "--dataset", "random"], cwd=work, code=2,
                contains=("is a float file", "int8"), env=env, watch=(home,))
