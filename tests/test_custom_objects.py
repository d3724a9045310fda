"""`--custom-objects PATH.py|module` (issue 21): the user's own registered layers load in safe mode, in the CLI process
and in every child; a missing class is one line naming it and the option. The module is written by the test."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

from edgeseq.core import custom_objects
from edgeseq.core.errors import InputError, ModelError

LAYERS = textwrap.dedent('''
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="{package}")
    class Gain(keras.layers.Layer):
        """y = x * g, one learned gain per feature."""

        def build(self, input_shape):
            self.g = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="g")

        def call(self, x):
            return x * ops.reshape(self.g, (1, 1, -1))
''')




@pytest.fixture
def isolated_env(monkeypatch):
    """Each test starts with no custom objects handed down and its own record of what was imported."""
    monkeypatch.setenv(custom_objects.ENV, "")  # restored (removed) after the test, whatever the test set
    monkeypatch.setattr(custom_objects, "_imported", {})


def _model_with_custom_layer(root: Path, package: str) -> Path:
    """GRU over a custom `Gain` layer, saved, then the module's class unregistered (as in a fresh process)."""
    import keras

    module = root / f"{package}.py"
    module.write_text(LAYERS.format(package=package))
    namespace: dict = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)  # noqa: S102 - the test's own module
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 3))
    x = keras.layers.GRU(4, return_sequences=True)(namespace["Gain"]()(inp))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.GRU(4)(x)))
    model.save(root / "custom.keras")
    from keras.src.saving import object_registration

    object_registration.GLOBAL_CUSTOM_OBJECTS.pop(f"{package}>Gain", None)
    object_registration.GLOBAL_CUSTOM_NAMES.pop(namespace["Gain"], None)
    return root / "custom.keras"


def test_use_checks_paths_and_hands_them_to_children(tmp_path, isolated_env):
    with pytest.raises(InputError, match="no such file"):
        custom_objects.use([str(tmp_path / "nope.py")])
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(InputError, match="not a .py file"):
        custom_objects.use([str(tmp_path / "a.txt")])
    (tmp_path / "mine.py").write_text("VALUE = 3\n")
    assert custom_objects.use([str(tmp_path / "mine.py"), "json"]) == [str(tmp_path / "mine.py"), "json"]
    assert custom_objects.listed() == [str(tmp_path / "mine.py"), "json"]
    assert custom_objects.import_all() == ["mine", "json"]
    (tmp_path / "broken.py").write_text("x = 1\nraise ValueError('nope')\n")
    custom_objects.use([str(tmp_path / "broken.py")])
    with pytest.raises(ModelError, match=r"broken.py failed \(line 2\): ValueError: nope"):
        custom_objects.import_all()
    os.environ[custom_objects.ENV] = "no_such_module_xyz"
    with pytest.raises(InputError, match="no module named 'no_such_module_xyz'"):
        custom_objects.import_all()


@pytest.mark.slow
def test_custom_layers_load_in_safe_mode_in_every_child(tmp_path, capsys, isolated_env):
    path = _model_with_custom_layer(tmp_path, "issue21_gain")
    code, _, err = run_cli(["convert", str(path), "--recipe", "fp32", "--out", str(tmp_path / "o")], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(line) == 1, err
    assert "Gain (registered as 'issue21_gain>Gain')" in line[0] and "--custom-objects PATH.py" in line[0]
    # the path: imported here (the reference) and in the conversion and streaming children
    code, out, err = run_cli(["convert", str(path), "--recipe", "fp32,int8", "--calibration", "random", "--out", str(tmp_path / "o"),
                              "--custom-objects", str(tmp_path / "issue21_gain.py")], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "o" / "custom-int8.json").read_text())
    assert manifest["validation"]["passed"]
    assert manifest["source"]["custom_objects"][0]["module"] == str(tmp_path / "issue21_gain.py")
    # a custom layer has no per-step rule: the window model streams it (loaded in the streaming child)
    code, out, err = run_cli(["convert", str(path), "--window", "6", "--recipe", "fp32", "--out", str(tmp_path / "s"),
                              "--custom-objects", str(tmp_path / "issue21_gain.py")], capsys)
    assert code == 0, err
    assert json.loads(next((tmp_path / "s").glob("*.json")).read_text())["validation"]["passed"]


@pytest.mark.slow
def test_a_module_name_works_too(tmp_path, capsys, isolated_env, monkeypatch):
    path = _model_with_custom_layer(tmp_path, "issue21_gain_mod")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run_cli(["convert", str(path), "--recipe", "fp32", "--out", str(tmp_path / "o"),
                            "--custom-objects", "issue21_gain_mod"], capsys)
    assert code == 0, err
    assert np.isfinite(json.loads((tmp_path / "o" / "custom-fp32.json").read_text())["validation"]["max_abs_diff"])
