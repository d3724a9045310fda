"""edgeseq convert: recipes, child-process conversion, LiteRT parity, manifests, refusals and exit codes.

Unmarked tests run a handful of conversions (each child pays a TensorFlow import); the zoo x recipe matrix and the
user-style models are @slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _zoo_cache import params, planner, prefetch_session, selected

from edgeseq.core.errors import ConversionError, InputError, ModelError, ValidationError
from edgeseq.core.progress import is_progress_line
from edgeseq.datasets.base import Dataset
from edgeseq.quantize.calibration import guard_constant_steps, select_indices
from edgeseq.quantize.convert import convert_model, default_name
from edgeseq.quantize.manifest import read_manifest
from edgeseq.quantize.recipes import MODES, Recipe, get_recipe, parse_recipes

T, F, CLASSES = 12, 3, 4


def toy_dataset(seq_len: int = T, features: int = F, n: int = 64, seed: int = 0) -> Dataset:
    """Learnable-ish random classification data; pre-padded zeros like JapaneseVowels to exercise the guard."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2 * n, seq_len, features)).astype(np.float32)
    X[:, :2] = 0.0
    y = (X[:, -1, 0] > 0).astype(np.int64) + 2 * (X[:, -2, 1] > 0).astype(np.int64)
    return Dataset("toy", "classification", X[:n], y[:n], X[n:], y[n:], num_classes=CLASSES)


def save(model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def zoo_model(arch: str, tmp: Path, seq_len: int | None = T) -> Path:
    import keras

    from edgeseq.models.zoo import build_model

    keras.utils.set_random_seed(0)
    model = build_model(arch, "tiny", seq_len=seq_len, num_features=F, num_outputs=CLASSES)
    return save(model, tmp / f"{arch}-toy" / "model.keras")


# ---------------------------------------------------------------- conversions shared in the session
# The zoo x recipe matrix, the user-style models and the GRU fp32 + int8-unroll pair are each converted once per
# session (tests/_zoo_cache.py), two at a time: the tests below read the results and files, never change them.
# test_transformer_files_are_compacted_with_the_same_math reads the matrix's transformer fp32 and int8 (the same
# call: same model, calibration and sample count) when the matrix runs in the session.

ZOO = ("rnn", "lstm", "gru", "transformer")
USER_KINDS = ("stacked_gru", "bilstm_varlen", "conv_gru", "mha")


def matrix_recipes(arch: str) -> list[str]:
    return ["fp32", "fp16", "dynamic", "int8", "int16x8"] + (["int8-io8"] if arch == "gru" else [])


def _zoo_path(cache, arch: str) -> Path:
    return cache.get(("convert.zoo_model", arch), lambda folder: zoo_model(arch, folder))


def _matrix_job(cache, arch: str):
    path = _zoo_path(cache, arch)

    def make(folder: Path):
        results = convert_model(path, matrix_recipes(arch), out_dir=folder / "art", calibration=toy_dataset(),
                                calibration_samples=32, raise_on_error=False)
        return path, folder / "art", results

    return ("convert.matrix", arch), make


def _pair_job(cache, arch: str, recipes: tuple[str, ...], samples: int):
    path = _zoo_path(cache, arch)

    def make(folder: Path):
        return path, convert_model(path, list(recipes), out_dir=folder / "art", calibration=toy_dataset(),
                                   calibration_samples=samples)

    return ("convert.zoo", arch, recipes, samples), make


def _user_job(cache, kind: str):
    path, seq_len = cache.get(("convert.user_models",), user_models)[kind]  # all four built at once: seed 1, in order

    def make(folder: Path):
        return convert_model(path, ["fp32", "int8"], out_dir=folder / "art", seq_len=seq_len,
                             calibration=toy_dataset(), calibration_samples=32)

    return ("convert.user", kind), make


GRU_PAIR = ("gru", ("fp32", "int8-unroll"), 40)
TRANSFORMER_PAIR = ("transformer", ("fp32", "int8"), 32)


def _selected_matrix(items) -> set[str]:
    return {params(i)["arch"] for i in selected(items, __name__, {"test_every_zoo_arch_converts_with_every_recipe"})}


@planner
def _plan(cache, items) -> dict:
    names = {"test_user_models_convert_to_fp32_and_int8", "test_gru_fp32_and_int8_convert_validate_and_write_manifests",
             "test_transformer_files_are_compacted_with_the_same_math"}
    picked = selected(items, __name__, names)
    matrix = _selected_matrix(items)
    jobs = dict(_matrix_job(cache, arch) for arch in ZOO if arch in matrix)
    jobs |= dict(_user_job(cache, params(i)["kind"]) for i in picked
                 if i.originalname == "test_user_models_convert_to_fp32_and_int8")
    if any(i.originalname == "test_gru_fp32_and_int8_convert_validate_and_write_manifests" for i in picked):
        jobs.update([_pair_job(cache, *GRU_PAIR)])
    compacted = any(i.originalname == "test_transformer_files_are_compacted_with_the_same_math" for i in picked)
    if compacted and "transformer" not in matrix:
        jobs.update([_pair_job(cache, *TRANSFORMER_PAIR)])
    for key, make in jobs.items():
        make.cost = 25 if key[0] == "convert.matrix" else 12
    return jobs


@pytest.fixture
def shared(conversions, request):
    """The session's conversions of this file (see above); the first use makes all that the selected tests need."""
    prefetch_session(conversions, request)
    matrix = _selected_matrix(request.session.items)

    def transformer_pair():
        """(model path, [fp32, int8]) of transformer-toy, calibration toy_dataset(), 32 samples."""
        if "transformer" in matrix or ("convert.matrix", "transformer") in conversions:
            path, _, results = conversions.get(*_matrix_job(conversions, "transformer"))
            by_slug = {r.recipe.slug: r for r in results}
            return path, [by_slug["fp32"], by_slug["int8"]]
        return conversions.get(*_pair_job(conversions, *TRANSFORMER_PAIR))

    return SimpleNamespace(matrix=lambda arch: conversions.get(*_matrix_job(conversions, arch)),
                           user=lambda kind: conversions.get(*_user_job(conversions, kind)),
                           gru_pair=lambda: conversions.get(*_pair_job(conversions, *GRU_PAIR)),
                           transformer_pair=transformer_pair)


# ---------------------------------------------------------------- recipes (no TensorFlow)


def test_recipe_slugs_name_what_changes_the_bytes():
    assert get_recipe("int8").slug == "int8"
    assert get_recipe("int8", io="int8").slug == "int8-io8"
    assert get_recipe("int8-io8") == Recipe("int8", io="int8")
    assert get_recipe("fp32", rnn_strategy="unroll").slug == "fp32-unroll"
    assert get_recipe("int8-pc") == Recipe("int8", granularity="channel")
    assert get_recipe("int8", granularity="tensor").slug == "int8-pt"
    assert [r.slug for r in parse_recipes("fp32,int8", io="int8")] == ["fp32", "int8-io8"]


def test_recipe_round_trips_through_json():
    for mode in MODES:
        r = get_recipe(mode, calibration_samples=17)
        assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(InputError) as exc:
        get_recipe("int9")
    assert "did you mean 'int8'" in exc.value.one_line()


def test_bad_recipe_options_are_input_errors():
    with pytest.raises(InputError):
        Recipe("fp32", io="int8")
    with pytest.raises(InputError):
        parse_recipes("fp32", io="int8")
    with pytest.raises(InputError):
        get_recipe("int8", calibration_samples=0)
    with pytest.raises(InputError):
        get_recipe("int8", rnn_strategy="sideways")


def test_auto_strategy_loops_floats_and_unrolls_calibrated_recipes():
    from edgeseq.quantize.rnn_routes import plan  # the int8 routes in detail: tests/test_int8_rnn.py

    assert plan("fp32", "auto", True, {}).routes == ("loop",)
    assert plan("dynamic", "auto", True, {}).routes == ("loop",)
    assert plan("int8", "auto", True, {}).routes == ("loop", "unroll")
    assert plan("int16x8", "auto", True, {}).routes == ("unroll",)
    assert plan("int8", "auto", False, {}).routes == ("none",)
    assert get_recipe("int8").per_channel_for("unroll") is False
    assert get_recipe("int8").per_channel_for("none") is True
    assert get_recipe("int8-pc").per_channel_for("unroll") is True
    assert get_recipe("int8").compares_granularity("none") and get_recipe("int16x8").compares_granularity("loop")
    assert not get_recipe("int8").compares_granularity("unroll")
    assert not get_recipe("int8-pc").compares_granularity("none") and not get_recipe("int8-pt").compares_granularity("none")
    assert not get_recipe("dynamic").compares_granularity("none")


def test_granularity_rule_keeps_per_tensor_only_when_it_loses_nothing():
    from edgeseq.quantize.convert import prefer_per_tensor

    def v(passed=True, **figures):
        out = {"passed": passed, "failures": [] if passed else ["mean |diff| too large"], "mean_abs_diff": 0.01}
        if "accuracy" in figures or "mse" in figures:
            out["tflite_metrics"] = figures
        elif "top1" in figures:
            out["top1_agreement"] = figures["top1"]
        else:
            out["mean_abs_diff"] = figures.get("diff", 0.01)
        return out

    assert prefer_per_tensor(v(accuracy=0.90), v(accuracy=0.9), 100, 90)[0]
    assert prefer_per_tensor(v(accuracy=0.90), v(accuracy=0.8995), 100, 90)[0]  # within 0.1 pt
    keep, why = prefer_per_tensor(v(accuracy=0.90), v(accuracy=0.898), 100, 90)
    assert not keep and "accuracy" in why
    assert not prefer_per_tensor(v(accuracy=0.90), v(accuracy=0.95), 100, 100)[0]  # not smaller
    assert not prefer_per_tensor(v(accuracy=0.90), v(False, accuracy=0.95), 100, 90)[0]  # failed parity
    assert prefer_per_tensor(v(False, accuracy=0.90), v(accuracy=0.80), 100, 90)[0]  # per-channel failed parity
    assert prefer_per_tensor(v(mse=1.0), v(mse=1.019), 100, 90)[0]
    assert not prefer_per_tensor(v(mse=1.0), v(mse=1.03), 100, 90)[0]
    assert prefer_per_tensor(v(top1=0.95), v(top1=0.946), 100, 90)[0]
    assert not prefer_per_tensor(v(top1=0.95), v(top1=0.944), 100, 90)[0]
    assert prefer_per_tensor(v(diff=0.01), v(diff=0.0101), 100, 90)[0]
    assert not prefer_per_tensor(v(diff=0.01), v(diff=0.011), 100, 90)[0]


def test_default_name_uses_the_run_directory():
    assert default_name("runs/gru-jv/model.keras") == "gru-jv"
    assert default_name("their_model.keras") == "their_model"


def test_calibration_selection_is_deterministic_and_guards_constant_steps():
    a, b = select_indices(100, 10, 0), select_indices(100, 10, 0)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 10
    X = toy_dataset().X_train
    guarded, record = guard_constant_steps(X, 0)
    assert len(guarded) == len(X) + 1 and record["constant_steps"] == 2
    assert np.array_equal(guarded[: len(X)], X)


# ---------------------------------------------------------------- refusals before any conversion


def test_missing_and_non_keras_files_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        convert_model(tmp_path / "nope.keras", ["fp32"], out_dir=tmp_path)
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    with pytest.raises(ModelError, match="not a Keras model"):
        convert_model(bad, ["fp32"], out_dir=tmp_path)


def lambda_model(tmp: Path) -> Path:
    import keras

    inp = keras.Input((T, F))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    x = keras.layers.GRU(8)(x)
    return save(keras.Model(inp, keras.layers.Dense(CLASSES, activation="softmax")(x)), tmp / "lam.keras")


def test_lambda_model_is_refused_with_trust_model_hint(tmp_path):
    path = lambda_model(tmp_path)
    with pytest.raises(ModelError) as exc:
        convert_model(path, ["fp32"], out_dir=tmp_path / "out")
    assert "--trust-model" in exc.value.one_line()
    assert not (tmp_path / "out").exists()


def test_variable_time_axis_needs_seq_len(tmp_path):
    path = zoo_model("gru", tmp_path, seq_len=None)
    with pytest.raises(ModelError, match="variable time axis") as exc:
        convert_model(path, ["fp32"], out_dir=tmp_path / "out")
    assert "--seq-len" in exc.value.one_line()


def test_bad_out_and_name_are_refused_before_the_model_is_read(tmp_path):
    """A missing model would be a ModelError: these InputErrors prove nothing was loaded or converted first."""
    from edgeseq.quantize.stream.convert import convert_stream

    (tmp_path / "afile").write_text("results already stored")
    missing = tmp_path / "absent.keras"
    for out, needle in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "sub", "afile is a file")):
        with pytest.raises(InputError, match=needle):
            convert_model(missing, ["fp32"], out_dir=out)
        with pytest.raises(InputError, match=needle):
            convert_stream(missing, ["fp32"], out_dir=out)
    for name in ("../x", "a/b", "..", ".hidden", "x\ny"):
        with pytest.raises(InputError, match="not a plain file name"):
            convert_model(missing, ["fp32"], out_dir=tmp_path / "o", name=name)
        with pytest.raises(InputError, match="not a plain file name"):
            convert_stream(missing, ["fp32"], out_dir=tmp_path / "o", name=name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_stream_export_of_per_step_outputs_compares_every_step(tmp_path):
    """GRU(return_sequences=True) -> Dense per step crashed in metrics_for with --calibration, then was refused; now
    the step model emits y_t and parity compares every step (more in tests/test_user_models.py)."""
    import keras

    from edgeseq.quantize.stream.convert import convert_stream

    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F))
    out = keras.layers.Dense(1, name="per_step")(keras.layers.GRU(8, return_sequences=True, name="gru")(inp))
    path = save(keras.Model(inp, out), tmp_path / "per-step.keras")
    rng = np.random.default_rng(0)
    data = Dataset("per-step", "regression", rng.standard_normal((32, T, F)).astype(np.float32),
                   rng.standard_normal((32, T)).astype(np.float32), rng.standard_normal((16, T, F)).astype(np.float32),
                   rng.standard_normal((16, T)).astype(np.float32))
    for calibration in (data, None):
        (res,) = convert_stream(path, ["fp32"], out_dir=tmp_path / "out", calibration=calibration)
        assert res.ok and res.validation["passed"] and res.validation["per_step"]
        assert res.validation["samples"] == (16 if calibration is data else 64)
    assert res.validation.get("tflite_metrics") is None  # random inputs: no labels


def test_cli_bad_out_name_and_data_exit_2_before_converting(tmp_path):
    (tmp_path / "afile").write_text("x")
    model = tmp_path / "absent.keras"  # never read: every refusal comes first
    assert_one_line_error(run_cli("convert", str(model), "--out", str(tmp_path / "afile")), 2)
    assert_one_line_error(run_cli("convert", str(model), "--out", str(tmp_path / "o"), "--name", "../x"), 2)
    assert_one_line_error(run_cli("convert", str(model), "--stream", "--out", str(tmp_path / "o"), "--name", "a/b"), 2)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli("convert", str(model), "--calibration", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, 2)
    assert "bad.npz" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "bad.npz"]


# ---------------------------------------------------------------- conversions (children)


def test_gru_fp32_and_int8_convert_validate_and_write_manifests(shared):
    # convert_model(zoo_model("gru"), ["fp32", "int8-unroll"], calibration=toy_dataset(), calibration_samples=40)
    _, results = shared.gru_pair()
    assert [r.tflite_path.name for r in results] == ["gru-toy-fp32.tflite", "gru-toy-int8-unroll.tflite"]
    fp32, int8 = (read_manifest(r.tflite_path) for r in results)
    assert fp32["route"]["rnn"] == "loop" and "WHILE" in fp32["ops"]["by_type"]
    assert int8["route"]["rnn"] == "unroll" and "WHILE" not in int8["ops"]["by_type"]
    assert int8["route"]["size_cost"]["looped_fp32_bytes"] == fp32["artifact"]["bytes"]
    assert int8["route"]["weight_scales"] == "per-tensor"
    assert int8["route"]["compacted"]["bytes_saved"] > 0
    assert int8["signature"]["inputs"][0]["name"] == fp32["signature"]["inputs"][0]["name"]
    for m in (fp32, int8):
        assert m["validation"]["passed"] is True
        assert m["validation"]["runtime"] == "ai-edge-litert"
        assert "accuracy" in m["validation"]["tflite_metrics"]
        assert m["versions"]["tensorflow"] and m["versions"]["keras"] and m["versions"]["ai-edge-litert"]
        assert m["signature"]["inputs"][0]["shape"] == [1, T, F]
        assert len(m["source"]["sha256"]) == 64
    assert fp32["validation"]["max_abs_diff"] < 1e-4
    cal = int8["calibration"]
    assert cal["dataset"] == "toy" and cal["samples"] == 40 and cal["seed"] == 0 and len(cal["indices"]) == 40
    assert cal["constant_step_guard"]["constant_steps"] == 2
    assert int8["dtype_coverage"]["quantized_share"] > 0.9


def test_transformer_files_are_compacted_with_the_same_math(shared, tmp_path, monkeypatch):
    """Issue 3: every converted graph (not only unrolled ones) is re-packed smaller, and runs bit-identically."""
    import re

    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize import convert as convert_mod
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.slim import compact, strip_tensor_names
    from edgeseq.quantize.validate import run_tflite

    # convert_model(zoo_model("transformer"), ["fp32", "int8"], calibration=toy_dataset(), calibration_samples=32)
    path, results = shared.transformer_pair()
    data = toy_dataset()
    for res in results:
        m = res.manifest
        assert res.ok and res.validation["passed"] is True
        saved = m["route"]["compacted"]
        assert saved["bytes_saved"] > 0 and m["artifact"]["bytes"] == saved["converter_bytes"] - saved["bytes_saved"]
        blob = res.tflite_path.read_bytes()
        model = schema.ModelT.InitFromPackedBuf(bytearray(blob), 0)
        sg = model.subgraphs[0]
        io = {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs}
        names = {i: (t.name or b"").decode() for i, t in enumerate(sg.tensors)}
        assert all(names[i] == "" for i in names if i not in io)  # intermediates carry no name
        assert all(re.search(r"\w", names[i]) for i in io)  # inputs and outputs keep their names
        assert m["signature"]["inputs"][0]["name"] == names[int(sg.inputs[0])]
        # activations share the empty buffer 0; only constants (and metadata) own one
        for t in sg.tensors:
            if model.buffers[t.buffer].data is None:
                assert t.buffer == 0
        # equal vectors (zero points, shapes, scales) are written once: a plain re-pack is larger
        assert len(strip_tensor_names(blob)) > len(blob)
    int8 = results[1]
    monkeypatch.setattr(convert_mod, "compact", lambda b: b)
    [raw] = convert_model(path, ["int8"], out_dir=tmp_path / "raw", calibration=data, calibration_samples=32)
    assert raw.manifest["route"]["compacted"]["bytes_saved"] == 0
    assert raw.manifest["artifact"]["bytes"] > int8.manifest["artifact"]["bytes"]
    for key in ("ops", "weights", "signature", "dtype_coverage"):
        assert raw.manifest[key] == int8.manifest[key], key
    X = data.X_test[:16]
    a = run_tflite(load_interpreter(raw.tflite_path), X)
    b = run_tflite(load_interpreter(model_content=compact(raw.tflite_path.read_bytes())), X)
    assert np.array_equal(a, b)


def _count_children(monkeypatch) -> list[tuple[str, bool]]:
    """Every conversion child the parent starts, as (recipe slug, per-channel)."""
    from edgeseq.quantize import convert as convert_mod

    runs: list[tuple[str, bool]] = []
    real = convert_mod._run_child

    def counting(job_dir, label, hint):
        job = json.loads((job_dir / "job.json").read_text())
        runs.append((job["recipe"]["slug"], job["per_channel"]))
        return real(job_dir, label, hint)

    monkeypatch.setattr(convert_mod, "_run_child", counting)
    return runs


def test_auto_granularity_compares_both_files_and_explicit_converts_once(tmp_path, monkeypatch):
    """Not unrolled: auto makes and validates per-channel and per-tensor, keeps one by the rule, records both with
    figures that the explicit one-conversion recipes reproduce exactly (same bytes, same validation)."""
    from edgeseq.quantize.convert import GRANULARITY_RULE, prefer_per_tensor
    from edgeseq.report.views import convert_summary as _summary

    runs = _count_children(monkeypatch)
    path = zoo_model("transformer", tmp_path)
    out = tmp_path / "art"
    auto, pc, pt = convert_model(path, ["int8", "int8-pc", "int8-pt"], out_dir=out, calibration=toy_dataset(),
                                 calibration_samples=32)
    assert runs == [("int8", True), ("int8", False), ("int8-pc", True), ("int8-pt", False)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"transformer-toy-{slug}.{ext}" for slug in ("int8", "int8-pc", "int8-pt") for ext in ("tflite", "json"))
    gran = read_manifest(auto.tflite_path)["route"]["granularity"]
    assert gran["requested"] == "auto" and gran["rule"] == GRANULARITY_RULE
    cands = gran["candidates"]
    for explicit, scales in ((pc, "per-channel"), (pt, "per-tensor")):
        m = explicit.manifest
        assert m["timing"]["candidates"] == 1 and "candidates" not in m["route"]["granularity"]
        assert m["route"]["weight_scales"] == m["route"]["granularity"]["kept"] == scales
        assert "one conversion" in m["route"]["granularity"]["reason"]
        c = cands[scales]
        assert c["bytes"] == explicit.tflite_path.stat().st_size == m["artifact"]["bytes"]
        assert c["sha256"] == m["artifact"]["sha256"]
        v = explicit.validation
        assert c["figure"] == "accuracy" and c["value"] == v["tflite_metrics"]["accuracy"]
        assert c["passed"] == v["passed"] and c["mean_abs_diff"] == v["mean_abs_diff"]
        assert c["top1_agreement"] == v["top1_agreement"]
    assert cands["per-tensor"]["bytes"] < cands["per-channel"]["bytes"]
    keep_tensor, reason = prefer_per_tensor(pc.validation, pt.validation, cands["per-channel"]["bytes"],
                                            cands["per-tensor"]["bytes"])
    kept = "per-tensor" if keep_tensor else "per-channel"
    m = auto.manifest
    assert gran["kept"] == m["route"]["weight_scales"] == kept and gran["reason"] == reason
    assert m["artifact"]["sha256"] == cands[kept]["sha256"]
    assert auto.tflite_path.stat().st_size == cands[kept]["bytes"]
    assert auto.validation["mean_abs_diff"] == (pt if keep_tensor else pc).validation["mean_abs_diff"]
    assert m["timing"]["candidates"] == 2
    assert m["timing"]["convert_s"] == pytest.approx(cands["per-channel"]["convert_s"] + cands["per-tensor"]["convert_s"],
                                                     abs=2e-3)
    assert f"kept {kept} scales (auto: per-channel" in _summary(auto)


def test_auto_granularity_keeps_per_channel_when_per_tensor_crashes(tmp_path, monkeypatch):
    runs = _count_children(monkeypatch)
    monkeypatch.setenv("EDGESEQ_TEST_CHILD_CRASH", "per-tensor")
    path = zoo_model("transformer", tmp_path)
    out = tmp_path / "art"
    [res] = convert_model(path, ["int8"], out_dir=out, calibration=toy_dataset(), calibration_samples=32)
    assert runs == [("int8", True), ("int8", False)]
    gran = res.manifest["route"]["granularity"]
    assert gran["kept"] == res.manifest["route"]["weight_scales"] == "per-channel"
    assert "per-tensor conversion failed" in gran["reason"]
    assert "crashed (SIGABRT)" in gran["candidates"]["per-tensor"]["error"]
    assert gran["candidates"]["per-channel"]["sha256"] == res.manifest["artifact"]["sha256"]
    assert gran["candidates"]["per-channel"]["bytes"] == res.tflite_path.stat().st_size
    assert res.validation["passed"] is True
    assert any("per-tensor conversion failed" in w for w in res.warnings)
    assert sorted(p.name for p in out.iterdir()) == ["transformer-toy-int8.json", "transformer-toy-int8.tflite"]


def test_child_crash_is_one_clean_error_and_no_file(tmp_path, monkeypatch):
    path = zoo_model("gru", tmp_path)
    monkeypatch.setenv("EDGESEQ_TEST_CHILD_CRASH", "1")
    with pytest.raises(ConversionError) as exc:
        convert_model(path, ["int8"], out_dir=tmp_path / "out")
    line = exc.value.one_line()
    assert "crashed (SIGABRT)" in line and "gru-toy" in line and "int8" in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_trust_model_loads_a_lambda_model(tmp_path):
    path = lambda_model(tmp_path)
    [res] = convert_model(path, ["fp32"], out_dir=tmp_path / "out", trust_model=True)
    assert res.ok and res.validation["passed"]


def test_failed_parity_is_strict_by_default_and_kept_with_no_strict(tmp_path, monkeypatch):
    from edgeseq.quantize import recipes

    monkeypatch.setitem(recipes._TOLERANCES, "fp16", recipes.Tolerance(max_abs=0.0, mean_abs=0.0, top1=1.0))
    path = zoo_model("transformer", tmp_path)
    with pytest.raises(ValidationError, match="failed parity"):
        convert_model(path, ["fp16"], out_dir=tmp_path / "strict")
    assert not (tmp_path / "strict").exists() or not list((tmp_path / "strict").iterdir())
    [res] = convert_model(path, ["fp16"], out_dir=tmp_path / "lax", strict=False)
    assert res.tflite_path.exists() and res.manifest["validation"]["passed"] is False
    assert res.warnings


# ---------------------------------------------------------------- CLI


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeseq.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int) -> None:
    assert proc.returncode == code, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_input_errors_exit_2_with_one_line(tmp_path):
    assert_one_line_error(run_cli("convert", str(tmp_path / "nope.keras")), 2)
    assert_one_line_error(run_cli("convert", str(tmp_path / "x.keras"), "--recipe", "fp33"), 2)


def test_cli_child_crash_exits_3_with_one_line(tmp_path):
    path = zoo_model("gru", tmp_path)
    proc = run_cli("convert", str(path), "--recipe", "int8", "--calibration", "random", "--out", str(tmp_path / "o"),
                   env={"EDGESEQ_TEST_CHILD_CRASH": "1"})
    assert_one_line_error(proc, 3)
    assert "unroll" in proc.stderr or "recipe" in proc.stderr


# ---------------------------------------------------------------- the matrix (slow)

@pytest.mark.slow
@pytest.mark.parametrize("arch", ZOO)
def test_every_zoo_arch_converts_with_every_recipe(arch, shared):
    # convert_model(zoo_model(arch), matrix_recipes(arch), out_dir=art, calibration=toy_dataset(),
    #               calibration_samples=32, raise_on_error=False)
    path, art, results = shared.matrix(arch)
    assert [r.recipe.slug for r in results] == matrix_recipes(arch)
    from edgeseq.quantize.capabilities import families_of, refusal
    from edgeseq.quantize.loading import load_keras_model

    families = families_of(load_keras_model(path))
    for res in results:
        expected = refusal(families, res.recipe.mode, "batch")  # the refusals come from the declared table
        if expected:
            assert isinstance(res.error, ConversionError) and expected.why in res.error.one_line()
            assert not (art / f"{arch}-toy-{res.recipe.slug}.tflite").exists()
            continue
        assert res.ok, res.error and res.error.one_line()
        assert res.validation["passed"], res.validation["failures"]
        assert res.tflite_path.exists() and res.manifest["flex_ops"] == []
    for io8 in (r for r in results if r.recipe.slug == "int8-io8"):
        assert io8.manifest["signature"]["inputs"][0]["dtype"] == "int8"
        assert "scale" in io8.manifest["signature"]["outputs"][0]


def user_models(tmp: Path) -> dict[str, tuple[Path, int | None]]:
    """Models built the way users build them, not by the zoo: (path, --seq-len)."""
    import keras

    keras.utils.set_random_seed(1)
    L = keras.layers
    norm = L.Normalization()
    norm.adapt(toy_dataset().X_train)
    out = {}
    inp = keras.Input((T, F))
    x = L.GRU(8, return_sequences=True)(norm(inp))
    x = L.GRU(8)(x)
    out["stacked_gru"] = (save(keras.Model(inp, L.Dense(CLASSES, activation="softmax")(x)), tmp / "sg.keras"), None)
    inp = keras.Input((None, F))
    x = L.Bidirectional(L.LSTM(6, return_sequences=True))(inp)
    x = L.Bidirectional(L.LSTM(6))(x)
    out["bilstm_varlen"] = (save(keras.Model(inp, L.Dense(CLASSES, activation="softmax")(x)), tmp / "bl.keras"), T)
    inp = keras.Input((T, F))
    x = L.Conv1D(8, 3, padding="same", activation="relu")(inp)
    x = L.GRU(8)(x)
    out["conv_gru"] = (save(keras.Model(inp, L.Dense(CLASSES, activation="softmax")(x)), tmp / "cg.keras"), None)
    inp = keras.Input((T, F))
    x = L.Dense(16)(inp)
    a = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    x = L.LayerNormalization()(x + a)
    x = keras.ops.mean(x, axis=1)
    out["mha"] = (save(keras.Model(inp, L.Dense(CLASSES, activation="softmax")(x)), tmp / "mha.keras"), None)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", USER_KINDS)
def test_user_models_convert_to_fp32_and_int8(kind, shared):
    # convert_model(user_models()[kind], ["fp32", "int8"], seq_len=, calibration=toy_dataset(), calibration_samples=32)
    results = shared.user(kind)
    assert [r.recipe.slug for r in results] == ["fp32", "int8"]
    for res in results:
        assert res.ok and res.validation["passed"], res.validation.get("failures")


def test_cli_failed_parity_exits_4_with_one_line_and_no_file(tmp_path, monkeypatch, capsys):
    from edgeseq.cli import main
    from edgeseq.quantize import recipes

    monkeypatch.setitem(recipes._TOLERANCES, "fp32", recipes.Tolerance(max_abs=-1.0, mean_abs=-1.0, top1=1.1))
    path = zoo_model("transformer", tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(path), "--recipe", "fp32", "--out", str(tmp_path / "o")])
    assert exc.value.code == 4
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert len(err) == 1 and err[0].startswith("error: ") and "failed parity" in err[0]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
