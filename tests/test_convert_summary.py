"""Several recipes, some failing: the summary lists each recipe as written or failed, one line each; the exit code is
the worst of the failed recipes' codes; the written files stay (README: "Several recipes")."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from _cli import run_cli

from edgeseq.core.errors import ConversionError, InputError, ValidationError
from edgeseq.report.views import recipes_summary


def _result(slug: str, error=None, path: str | None = None):
    return SimpleNamespace(recipe=SimpleNamespace(slug=slug), ok=error is None, error=error, tflite_path=path)


def test_the_exit_code_is_the_worst_failed_recipes_and_the_line_names_them_all():
    results = [_result("fp32", path="a/m-fp32.tflite"), _result("int16x8", ConversionError("refused", "use int8")),
               _result("int8", ValidationError("parity failed", "try another")), _result("fp16", InputError("bad"))]
    lines, err = recipes_summary(results)
    assert lines[0] == "summary: 1 of 4 recipes written, 3 failed"
    assert [ln.split()[:2] for ln in lines[1:]] == [["written", "fp32"], ["failed", "int16x8"], ["failed", "int8"],
                                                    ["failed", "fp16"]]
    assert "a/m-fp32.tflite" in lines[1] and "exit 3" in lines[2] and "exit 4" in lines[3]
    assert err.exit_code == 4  # ValidationError's 4 over ConversionError's 3 and InputError's 2
    assert "3 of 4 recipes failed (int16x8, int8, fp16); written: fp32; worst: int8: parity failed" in err.one_line()


def test_all_written_is_exit_zero_and_one_recipe_keeps_its_own_error():
    lines, err = recipes_summary([_result("fp32", path="x"), _result("int8", path="y")])
    assert err is None and lines[0] == "summary: 2 of 2 recipes written"
    only = ConversionError("refused")
    assert recipes_summary([_result("int8", only)])[1] is only


@pytest.fixture(scope="module")
def layer_norm_model(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 4))
    h = keras.layers.LayerNormalization()(keras.layers.Dense(8)(inp))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling1D()(h))
    path = tmp_path_factory.mktemp("ln") / "ln.keras"
    keras.Model(inp, out).save(path)
    return path


def test_a_refused_recipe_among_written_ones_is_listed_and_sets_the_exit_code(layer_norm_model, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["convert", str(layer_norm_model), "--recipe", "fp32,int16x8", "--dataset", "random",
                                 "--out", str(out)], capsys)
    assert code == 3, err  # int16x8 on LayerNormalization is refused (quantize/capabilities.py)
    summary = stdout[stdout.index("summary:"):].splitlines()
    assert summary[0] == "summary: 1 of 2 recipes written, 1 failed", stdout
    assert summary[1].split()[:2] == ["written", "fp32"] and str(out / "ln-fp32.tflite") in summary[1]
    assert summary[2].split()[:4] == ["failed", "int16x8", "exit", "3:"]
    assert (out / "ln-fp32.tflite").exists() and not list(out.glob("*int16x8*"))
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "1 of 2 recipes failed (int16x8); written: fp32" in errors[0], err
