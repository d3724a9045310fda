"""Selective int8 (`convert --recipe int8 --float-ops OPS|auto`): op names, slugs, how auto decides from stored
per-op profiles or the default table, the capability table, and one conversion that keeps the chosen ops float."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _tiny_tflite import dense_model

from edgeseq.cli import main
from edgeseq.core.errors import InputError
from edgeseq.quantize.capabilities import refusal, rows
from edgeseq.quantize.float_ops import DEFAULT_TABLES, KEEP_INT8_BELOW, canonical, measured, resolve
from edgeseq.quantize.recipes import Recipe, get_recipe, parse_recipes


def op(kind: str, dtypes: str, us: float, shape=(1, 8)) -> dict:
    return {"type": kind, "dtypes": dtypes, "per_call_us": us, "output_shape": list(shape)}


def test_named_ops_are_tflite_builtins_sorted_and_checked():
    assert canonical("softmax, BATCH_MATMUL") == ("BATCH_MATMUL", "SOFTMAX")
    assert canonical(["Auto"]) == ("auto",)
    with pytest.raises(InputError, match="'SOFTMAXX' is not a TFLite builtin op") as exc:
        canonical("SOFTMAXX")
    assert "SOFTMAX" in exc.value.one_line()
    with pytest.raises(InputError, match="QUANTIZE has no int8 or float kernel"):
        canonical("QUANTIZE")
    with pytest.raises(InputError, match="no op names beside it"):
        canonical("auto,SOFTMAX")


def test_the_slug_names_the_float_ops_and_only_int8_takes_them():
    r = get_recipe("int8-float+softmax+batch_matmul")
    assert r.float_ops == ("BATCH_MATMUL", "SOFTMAX") and r.slug == "int8-float+batch_matmul+softmax"
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert get_recipe("int8-io8-float+auto").slug == "int8-io8-float+auto" and r.capability == "int8-float"
    assert "kept float" in r.description and r.calibrated and r.tolerance == Recipe("int8").tolerance
    with pytest.raises(InputError, match="--float-ops needs the int8 recipe, not dynamic"):
        Recipe("dynamic", float_ops=("SOFTMAX",))
    fp32, int8 = parse_recipes("fp32,int8", float_ops="auto")
    assert fp32.float_ops == () and int8.slug == "int8-float+auto"
    with pytest.raises(InputError, match="--float-ops auto needs the int8 recipe"):
        parse_recipes("fp32,dynamic", float_ops="auto")


def test_auto_keeps_float_the_op_types_measured_slower_in_int8_shape_for_shape():
    rows_ = [op("BATCH_MATMUL", "int8->int8", 18.0), op("BATCH_MATMUL", "float32->float32", 2.0),
             op("FULLY_CONNECTED", "int8->int8", 0.6), op("FULLY_CONNECTED", "float32->float32", 1.5),
             op("TRANSPOSE", "int8->int8", 0.95), op("TRANSPOSE", "float32->float32", 1.0),  # 0.95x: edges cost
             op("RESHAPE", "int8->int8", 0.04), op("RESHAPE", "float32->float32", 0.09),
             op("SOFTMAX", "int8->int8", 9.0, (1, 4)), op("SOFTMAX", "float32->float32", 1.0, (1, 5)),  # no pair
             op("QUANTIZE", "float32->int8", 5.0), op("QUANTIZE", "int8->int8", 0.1)]
    found = measured(rows_)
    assert set(found) == {"BATCH_MATMUL", "FULLY_CONNECTED", "TRANSPOSE", "RESHAPE"}
    assert found["BATCH_MATMUL"]["ratio"] == 9.0 and found["TRANSPOSE"]["ratio"] >= KEEP_INT8_BELOW
    only_measured = resolve(("auto",), {"target": "pi", "machine": "riscv64", "runs": 2, "ops": rows_})
    assert only_measured["ops"] == ["BATCH_MATMUL", "TRANSPOSE"]
    assert "in stored runs on pi" in only_measured["why"]["BATCH_MATMUL"] and "2 runs" in only_measured["source"]
    # what no run measured in both dtypes comes from the CPU's default table (SOFTMAX here); measured types don't
    with_table = resolve(("auto",), {"target": "pi", "machine": "arm64", "runs": 2, "ops": rows_})
    table = set(DEFAULT_TABLES["aarch64"][0])
    assert set(with_table["ops"]) == {"BATCH_MATMUL", "TRANSPOSE"} | (table - set(found))
    assert with_table["why"]["SOFTMAX"] == "the aarch64 default table" and "default table" in with_table["source"]
    assert resolve(("auto",), None, "x86_64")["ops"] == sorted(DEFAULT_TABLES["x86_64"][0])
    named = resolve(("SOFTMAX",))
    assert named["ops"] == ["SOFTMAX"] and named["source"] == "--float-ops"


def test_auto_with_nothing_to_decide_from_is_refused_with_the_way_out():
    with pytest.raises(InputError, match="no stored per-op profiles of pi and no default table") as exc:
        resolve(("auto",), {"target": "pi", "machine": "riscv64", "runs": 0, "ops": []})
    assert "--ops --target pi" in exc.value.one_line()


def test_the_capability_table_lists_selective_int8_and_refuses_it_for_step_models():
    assert refusal({"recurrent"}, "int8-float", "batch") is None
    assert refusal(set(), "int8-float", "kv-cache") is not None  # a plain model too: every family
    assert refusal({"layer-norm"}, "int8-float", "batch") is None  # int8's rows apply, int16x8's don't
    table = rows()
    assert any(r["family"] == "*" and r["recipe"] == "int8-float" and r["form"] == "batch" and r["supported"]
               for r in table)
    assert not any(r["family"] != "*" and "int8-float" in r["recipe"].split(",") and r["form"] == "kv-cache"
                   for r in table)


def test_stored_profile_ops_runs_are_the_evidence(tmp_path, capsys):
    from edgeseq.profiling.ops import stored_op_evidence

    model = tmp_path / "dense.tflite"
    model.write_bytes(dense_model())
    db = tmp_path / "r.db"
    assert stored_op_evidence(db, "local")["ops"] == []  # no store: no rows, no error, nothing created
    assert not db.exists()
    with pytest.raises(SystemExit) as exc:
        main(["profile", str(model), "--ops", "--runs", "20", "--warmup", "2", "--db", str(db)])
    assert exc.value.code == 0, capsys.readouterr().err
    ev = stored_op_evidence(db, "local")
    assert ev["runs"] == 1 and ev["machine"]
    assert {o["type"] for o in ev["ops"]} >= {"FULLY_CONNECTED", "SOFTMAX"}
    assert all(o["dtypes"].startswith("float32") for o in ev["ops"])


@pytest.mark.slow
def test_selective_int8_keeps_the_chosen_ops_float_and_says_why(tmp_path):
    import keras

    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.convert import convert_model

    keras.utils.set_random_seed(0)
    path = tmp_path / "tr.keras"
    build_model("transformer", "tiny", seq_len=12, num_features=3, num_outputs=4).save(path)
    evidence = {"target": "pi", "machine": "riscv64", "runs": 1,
                "ops": [op("BATCH_MATMUL", "int8->int8", 9.0), op("BATCH_MATMUL", "float32->float32", 1.0),
                        op("FULLY_CONNECTED", "int8->int8", 0.5), op("FULLY_CONNECTED", "float32->float32", 1.0)]}
    (res,) = convert_model(path, ["int8-float+auto-pc"], out_dir=tmp_path / "out", op_evidence=evidence)
    manifest = res.manifest
    by_type = manifest["ops"]["by_type"]
    assert set(by_type["BATCH_MATMUL"]["dtypes"]) == {"float32"}
    assert set(by_type["FULLY_CONNECTED"]["dtypes"]) == {"int8"}
    kept = manifest["route"]["float_ops"]
    assert kept["requested"] == "auto" and kept["ops"] == ["BATCH_MATMUL"]
    assert "BATCH_MATMUL" in kept["float_in_file"] and "FULLY_CONNECTED" not in kept["float_in_file"]
    assert "9x" in kept["why"]["BATCH_MATMUL"] and res.validation["passed"]
    assert Path(res.tflite_path).name == "tr-int8-pc-float+auto.tflite"
