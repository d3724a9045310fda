"""NaN and infinity fail every tolerance and budget check (edgeseq.core.finite), and a source model whose own
outputs are non-finite is refused before conversion, naming the first layer that goes non-finite."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from _cli import run_cli

from edgeseq.core.finite import at_least, is_number, nonfinite_rows, rank_key, show, within
from edgeseq.quantize.recipes import get_recipe
from edgeseq.quantize.validate import parity

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value", [NAN, INF, -INF, None, "1", True])
def test_a_non_number_is_never_within_a_tolerance_nor_above_a_floor(value):
    assert not within(value, 1.0) and not at_least(value, 0.0) and not is_number(value)
    assert not within(0.5, NAN) and not at_least(0.5, NAN)  # a NaN bound passes nothing either
    assert within(0.5, 1.0) and at_least(0.5, 0.0) and within(0.5, None)


def test_non_finite_figures_are_spelled_and_ranked_last():
    assert [show(v) for v in (NAN, INF, -INF, None, 1.5)] == ["NaN", "+inf", "-inf", "-", "1.5"]
    assert sorted([3.0, NAN, 1.0, INF, None], key=rank_key)[:2] == [1.0, 3.0]
    assert nonfinite_rows(np.array([[1.0, NAN], [1.0, 2.0], [INF, 0.0]])) == 2


@pytest.mark.parametrize("recipe", ["fp32", "int8"])
@pytest.mark.parametrize("bad", [NAN, INF])
def test_parity_fails_when_the_reference_or_the_file_is_non_finite(recipe, bad):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(8, 4)).astype(np.float32)
    broken = ref.copy()
    broken[:, 0] = bad
    tol = get_recipe(recipe).tolerance
    for reference, outputs in ((broken, ref), (broken, broken), (ref, broken)):  # source, both, or the file
        result = parity(reference, outputs, "classification", tol)
        assert result["passed"] is False, result
        assert any("non-finite" in f for f in result["failures"]), result["failures"]
    assert parity(ref, ref.copy(), "classification", tol)["passed"] is True


# ------------------------------------------------------------------------- the guard against bare comparisons
VALIDATION_CODE = ["quantize/validate.py", "quantize/training_reference.py", "quantize/stream/convert.py",
                   "quantize/granularity.py", "toolkit/recommend.py", "toolkit/profiling/memory_need.py",
                   "toolkit/sweep/scaling.py", "toolkit/sweep/claims.py"]
WORDS = ("tol", "budget", "limit", "top1")


def bare_comparisons(path: Path) -> list[str]:
    """`x < tol` style comparisons (an operand that names a tolerance, budget or limit) outside edgeseq.core.finite."""
    found, lines = [], path.read_text().splitlines()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.Lt | ast.LtE | ast.Gt | ast.GtE) for op in node.ops):
            text = ast.unparse(node)
            names = {n.id.lower() for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {n.attr.lower() for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            exempt = "# finite-ok:" in lines[node.lineno - 1]  # an element-wise mask, with its reason
            if any(w in name for name in names for w in WORDS) and not exempt:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text}")
    return found


def test_validation_code_compares_against_tolerances_only_through_the_finite_helpers():
    found = [line for rel in VALIDATION_CODE if (ROOT / rel).exists() for line in bare_comparisons(ROOT / rel)]
    assert not found, "use edgeseq.core.finite.within / at_least (NaN passes a bare comparison):\n" + "\n".join(found)


def test_the_guard_sees_a_bare_tolerance_comparison(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def check(diff, tol):\n    return diff > tol.max_abs\n")
    bad = bad.rename(ROOT / "tests" / f".tmp_guard_{tmp_path.name}.py")
    try:
        assert bare_comparisons(bad)
    finally:
        bad.unlink()


# ------------------------------------------------------------------------------------ stored and sampled figures
def test_latency_statistics_with_a_non_finite_sample_say_so():
    from edgeseq.core.stats import latency_stats, pareto_front

    stats = latency_stats([1000, 2000, NAN, 1500])
    assert stats["nonfinite_samples"] == 1 and math.isnan(stats["p50_us"]) and math.isnan(stats["mean_us"])
    assert "nonfinite_samples" not in latency_stats([1000, 2000])
    assert pareto_front([(1.0, 0.9), (NAN, 1.0), (2.0, 0.95)]) == [0, 2]


def test_recommend_never_lets_a_nan_figure_meet_a_budget():
    from edgeseq.recommend import _breach

    assert _breach("latency", NAN, 5.0, "ms", "p99") is not None
    assert _breach("accuracy", NAN, 0.9, "", "accuracy", above=False) is not None
    assert _breach("latency", 4.0, 5.0, "ms", "p99") is None


def test_report_rows_show_nan_as_such_and_never_first():
    from edgeseq.report.rows import accuracy_text, fixed

    assert fixed(1)(NAN) == "NaN" and accuracy_text(INF) == "+inf"
    rows = [{"where": "pi", "p50_us": NAN}, {"where": "pi", "p50_us": 5.0}, {"where": "pi", "p50_us": None}]
    from edgeseq.core.finite import rank_key as key

    assert sorted(rows, key=lambda r: (r["where"], *key(r["p50_us"])))[0]["p50_us"] == 5.0


# ------------------------------------------------------------------------------ the source model is refused
def _gru_with(bad: float, path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 3), name="x")
    h = keras.layers.Dense(4, name="proj")(inp)
    h = keras.layers.GRU(6, name="gru")(h)
    out = keras.layers.Dense(2, activation="softmax", name="head")(h)
    model = keras.Model(inp, out)
    gru = model.get_layer("gru")
    weights = gru.get_weights()
    weights[0][0, 0] = bad
    gru.set_weights(weights)
    model.save(path)
    return path


def test_a_source_model_with_a_nan_weight_is_refused_before_conversion(tmp_path, capsys):
    """The issue's case: GRU kernel[0, 0] = NaN; today `--recipe int8` passed validation with max_abs_diff NaN."""
    model = _gru_with(NAN, tmp_path / "gru.keras")
    out = tmp_path / "out"
    code, _, err = run_cli(["convert", str(model), "--recipe", "int8", "--dataset", "random", "--out", str(out)],
                           capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1, err
    assert "non-finite (NaN) on 64 of 64" in errors[0] and "'gru'" in errors[0] and "nothing converted" in errors[0]
    assert not out.exists()


def test_convert_stream_refuses_a_source_with_a_nan_weight_too(tmp_path, capsys):
    model = _gru_with(NAN, tmp_path / "gru.keras")
    out = tmp_path / "out"
    code, _, err = run_cli(["convert", str(model), "--stream", "--recipe", "fp32", "--dataset", "random", "--out",
                            str(out)], capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "non-finite (NaN)" in errors[0] and "'gru'" in errors[0], err
    assert not out.exists()


def test_an_inf_weight_that_keras_saturates_fails_parity_on_the_converted_nans(tmp_path, capsys):
    """GRU kernel[0, 0] = inf: Keras's outputs stay finite (the gates saturate), the .tflite's are NaN; today the
    fp32 file passed (inf - inf is NaN, and NaN > tol is False) and stayed."""
    model = _gru_with(INF, tmp_path / "gru.keras")
    out = tmp_path / "out"
    code, _, err = run_cli(["convert", str(model), "--recipe", "fp32", "--dataset", "random", "--out", str(out)],
                           capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 4 and len(errors) == 1, err
    assert "converted outputs non-finite (NaN)" in errors[0], errors[0]
    assert not out.exists() or not list(out.iterdir())


def test_a_stored_run_with_nan_latency_is_shown_as_nan_last_and_never_recommended(tmp_path, capsys):
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "robustness"))
    from test_hostile_store_targets import record

    from edgeseq.store.results import ResultsStore

    bad = record(1)
    bad["stats_json"] = dict(bad["stats_json"], p50_us=NAN, mean_us=NAN, p99_us=NAN)
    bad |= {"p50_us": NAN, "mean_us": NAN, "model_name": "nanmodel", "model_sha256": "f" * 64}
    with ResultsStore(tmp_path / "s.db") as s:
        s.add_run(bad)  # stored first: a NaN must not sort first anyway
        s.add_run(record(0))
    code, out, err = run_cli(["report", "--db", str(tmp_path / "s.db")], capsys)
    rows = [ln.split() for ln in out.splitlines() if ln.startswith(("model0", "nanmodel"))]
    assert code == 0 and [r[0] for r in rows] == ["model0", "nanmodel"], out
    assert rows[1][3:5] == ["NaN", "NaN"], out
    code, out, err = run_cli(["recommend", "--target", "local", "--latency-budget-ms", "100", "--db",
                              str(tmp_path / "s.db")], capsys)
    meets = out[out.index("meets"):out.index("excluded")]
    assert code == 0 and "model0" in meets and "nanmodel" not in meets, out
