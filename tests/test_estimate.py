"""`edgeseq estimate` and `calibrate`: op work read from files, the per-op fits, estimates from stored per-op runs,
the CLI's JSON and errors, and recommend's estimated candidates. No assertion on how fast anything is or on how close
an estimate comes (benchmarks/estimate.py measures that)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import run_cli
from _tiny_tflite import dense_model, while_model

from edgeseq.estimate.fit import fit_line, nnls_relative
from edgeseq.estimate.grid import grid, grid_key, spec_name
from edgeseq.estimate.work import file_work


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("estimate")
    out = {}
    for name, data in (("dense", dense_model()), ("loop", while_model())):
        out[name] = d / f"{name}.tflite"
        out[name].write_bytes(data)
    return out


@pytest.fixture(scope="module")
def store(files, tmp_path_factory) -> Path:
    """Per-op runs of both files on the local target, XNNPACK on: the data an estimate fits on."""
    from edgeseq.profiling.run import profile_models

    db = tmp_path_factory.mktemp("estimate-db") / "results.db"
    profile_models([files["dense"], files["loop"]], "local", runs=20, warmup=2, db=db, ops=True)
    return db


def test_work_counts_a_while_body_once_per_trip_and_its_cond_once_more(files):
    w = file_work(files["loop"])
    assert len(w.loops) == 1 and w.loops[0].trips == 6 and w.loops[0].trips_known
    calls = {(op.subgraph, op.type): op.calls for op in w.ops}
    assert calls[(1, "LESS")] == 7 and calls[(0, "RESHAPE")] == 1
    assert {op.calls for op in w.ops if op.subgraph == 2} == {6}
    fc = next(op for op in w.ops if op.type == "FULLY_CONNECTED" and op.subgraph == 0)
    assert fc.macs > 0 and fc.bytes > 0 and fc.dtype == "float32"


def test_the_host_runtime_says_which_ops_xnnpack_takes_and_partitions_are_counted_per_call(files):
    from edgeseq.estimate.delegation import delegated_ops, partitions, with_delegation
    from edgeseq.estimate.work import model_work
    from edgeseq.quantize.tflite.reader import read_tflite

    f = read_tflite(files["loop"])
    flags = delegated_ops(f)
    w = with_delegation(model_work(f), flags)
    kinds = {(op.subgraph, op.type, op.dtype): op.delegated for op in w.ops}
    assert kinds[(0, "FULLY_CONNECTED", "float32")] is True and kinds[(2, "FULLY_CONNECTED", "float32")] is True
    assert kinds[(1, "LESS", "int32")] is False and kinds[(2, "ADD", "int32")] is False  # the loop's counters
    assert kinds[(0, "WHILE", "float32")] is False
    # main: RESHAPE | WHILE | FC -> 2 partitions once; body: GATHER | RESHAPE..TANH | ADD(int32) -> 1 per trip (6)
    assert partitions(flags, 0, 3) == 2 and partitions(flags, 2, 7) == 1 and w.partition_calls == 2 + 6
    assert partitions({(0, 0): True, (0, 1): False, (0, 2): True}, 0, 3) == 2


def test_delegation_answers_are_cached_by_sha256_and_a_damaged_entry_is_asked_again(files, tmp_path, monkeypatch):
    from edgeseq.estimate import delegation
    from edgeseq.quantize.tflite.reader import read_tflite

    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(tmp_path))
    f = read_tflite(files["dense"])
    asked = []
    real = delegation.delegated_ops
    monkeypatch.setattr(delegation, "delegated_ops", lambda tfl: asked.append(1) or real(tfl))
    first = delegation.cached_delegated_ops(f, "abc")
    (entry,) = tmp_path.glob("delegation/*/abc.json")
    assert delegation.cached_delegated_ops(f, "abc") == first and len(asked) == 1  # read back, not asked again
    entry.write_text("{not json")
    assert delegation.cached_delegated_ops(f, "abc") == first and len(asked) == 2
    assert first[(0, 1)] is True  # the dense file's FULLY_CONNECTED


def test_repeated_runs_of_a_file_merge_into_their_quickest():
    from edgeseq.estimate.fit import CalRun, quickest
    from edgeseq.estimate.work import ModelWork

    w = ModelWork([], [], [])
    a = CalRun(True, 10.0, w, {(0, 0): 2.0, (0, 1): 5.0}, "s1")
    b = CalRun(True, 12.0, w, {(0, 0): 1.5, (0, 1): 6.0}, "s1")
    slowed = CalRun(True, 40.0, w, {(0, 0): 9.0, (0, 1): 4.0}, "s1")  # a pass hit by load: its slow figures drop
    off = CalRun(False, 30.0, w, {(0, 0): 9.0}, "s1")  # XNNPACK off: another kernel, never merged with on
    other = CalRun(True, 99.0, w, {(0, 0): 7.0}, "s2")
    merged = {(r.sha256, r.xnnpack): r for r in quickest([a, b, slowed, off, other])}
    assert len(merged) == 3
    assert merged[("s1", True)].p50_us == 11.0  # the mean of the quickest two of three
    assert merged[("s1", True)].op_us == {(0, 0): 1.75, (0, 1): 4.5}
    assert merged[("s1", False)] is off and merged[("s2", True)] is other


def _bmm(index: int, k: int, elems: int, dtype: str = "int8", type_: str = "BATCH_MATMUL"):
    from edgeseq.estimate.work import OpWork

    return OpWork(subgraph=0, index=index, type=type_, dtype=dtype, macs=k * elems, bytes=2 * elems, elems=elems,
                  calls=1, delegated=False)


def test_a_matmuls_inner_dimension_scales_its_line_where_calibration_saw_it_and_only_there():
    """Calibration: int8 matmuls at K = 16 on a line, at K = 12 1.5x slower than that line would say (the builtin
    kernel's tiles). An unseen K = 12 size is scaled up, K = 16 and a far K are not; a FULLY_CONNECTED follows its
    weights' reuse, not K."""
    from edgeseq.estimate.fit import CalRun, fit
    from edgeseq.estimate.work import ModelWork

    def cost(k: int, elems: int) -> float:
        return (0.2 + 0.001 * k * elems) * (1.5 if k == 12 else 1.0)

    runs = []
    for i, (k, elems) in enumerate([(16, 1000), (16, 4000), (16, 16000), (12, 1000), (12, 16000), (32, 2000),
                                    (32, 8000), (64, 4000)]):
        for op_type in ("BATCH_MATMUL", "FULLY_CONNECTED"):
            op = _bmm(0, k, elems, type_=op_type)
            runs.append(CalRun(False, cost(k, elems) + 1.0, ModelWork([op], [], []), {(0, 0): cost(k, elems)},
                               f"{op_type}{i}"))
    pred = fit(runs, "local", "test")
    bmm_line = pred.lines[("BATCH_MATMUL", "int8", "builtin")]
    unseen12, seen16, far = _bmm(0, 12, 4000), _bmm(0, 16, 8000), _bmm(0, 200, 1000)
    from edgeseq.estimate.fit import features

    line12, est12 = bmm_line.at(features(unseen12)), pred.op_us(unseen12, False)[0]
    assert est12 > 1.1 * line12  # the line alone, pooled over every K, is too low at K = 12
    assert abs(est12 - cost(12, 4000)) < 0.5 * abs(line12 - cost(12, 4000))
    assert est12 == pytest.approx(cost(12, 4000), rel=0.1)
    assert pred.op_us(seen16, False)[0] == pytest.approx(cost(16, 8000), rel=0.15)
    assert pred.shape_factor(("BATCH_MATMUL", "int8", "builtin"), far) == pytest.approx(1.0, abs=0.02)
    from dataclasses import replace

    shapeless = replace(unseen12, macs=0)  # MACs unknown (a dynamic shape): the line of bytes, no correction
    assert pred.op_us(shapeless, False)[0] == pytest.approx(bmm_line.at(features(shapeless)))
    fc = _bmm(0, 12, 4000, type_="FULLY_CONNECTED")  # K = 12, but no weights: not a K = 12 correction
    assert pred.op_us(fc, False)[0] < 1.1 * pred.lines[("FULLY_CONNECTED", "int8", "builtin")].at(features(fc))


def _fc(k: int, n: int, rows: int, dtype: str = "float32"):
    from edgeseq.estimate.work import OpWork

    size = 4 if dtype == "float32" else 1
    return OpWork(subgraph=0, index=0, type="FULLY_CONNECTED", dtype=dtype, macs=rows * k * n,
                  bytes=size * rows * (k + n), elems=rows * n, calls=1, const_bytes=size * k * n + 4 * n, channels=n)


def test_a_batch_1_fully_connected_is_corrected_towards_the_batch_1_points_only():
    """Calibration: batched FCs on a line, batch-1 ones (weights streamed once per call) 1.5x what that line says.
    A batch-1 FC at a size calibration did not hold is scaled up; a batched one at the same K and N is not."""
    from edgeseq.estimate.fit import CalRun, features, fit
    from edgeseq.estimate.work import ModelWork

    def cost(op) -> float:
        return (0.1 + 1e-5 * op.macs + 2e-6 * op.const_bytes) * (1.5 if op.elems == op.channels else 1.0)

    shapes = [(64, 256, 1), (128, 512, 1), (192, 192, 1), (40, 512, 1), (64, 256, 32), (128, 512, 16), (192, 192, 2),
              (128, 512, 2), (256, 256, 3),
              (40, 128, 64), (16, 64, 128), (32, 128, 8), (96, 384, 4), (64, 64, 256), (128, 128, 48)]
    runs = []
    for i, shape in enumerate(shapes):
        op = _fc(*shape)
        runs.append(CalRun(True, cost(op) + 1.0, ModelWork([op], [], []), {(0, 0): cost(op)}, f"fc{i}"))
    pred = fit(runs, "local", "test")
    line = pred.lines[("FULLY_CONNECTED", "float32", "xnnpack")]
    gemv, batched = _fc(90, 360, 1), _fc(90, 360, 32)
    assert line.at(features(gemv)) < 0.9 * cost(gemv)  # the pooled line misses the batch-1 cost
    assert pred.op_us(gemv, True)[0] == pytest.approx(cost(gemv), rel=0.1)
    assert pred.op_us(batched, True)[0] == pytest.approx(cost(batched), rel=0.1)


def test_a_convolution_is_corrected_by_its_output_channels():
    """Calibration: 3x3 convolutions over one input channel run as the kernel's tiles compute them (the input
    channel padded to 8, the output channels to 16), other convolutions on their line in MACs. At 8 channels and a
    size not seen the estimate follows the 8-channel point, far above the line."""
    from edgeseq.estimate.fit import CalRun, features, fit
    from edgeseq.estimate.work import ModelWork, OpWork

    def conv(k: int, n: int, pixels: int) -> OpWork:
        return OpWork(subgraph=0, index=0, type="CONV_2D", dtype="int8", macs=pixels * k * n,
                      bytes=pixels * (k + n), elems=pixels * n, calls=1, const_bytes=k * n + 4 * n, channels=n)

    def cost(op: OpWork) -> float:  # one input channel: padded to 8 per tap, and N to 16
        pixels = op.elems // op.channels
        return 0.3 + 6e-6 * (pixels * max(op.channels, 16) * 72 if op.macs // op.elems == 9 else op.macs)

    ops = [conv(9, 8, 512), conv(9, 16, 2560), conv(120, 64, 128), conv(192, 64, 128), conv(48, 32, 64),
           conv(96, 32, 64), conv(16, 16, 1280), conv(72, 32, 400)]
    runs = [CalRun(True, cost(op) + 1.0, ModelWork([op], [], []), {(0, 0): cost(op)}, f"c{i}")
            for i, op in enumerate(ops)]
    pred = fit(runs, "local", "test")
    crnn = conv(9, 8, 2560)  # half the MACs of the 16-channel point, the same pixels: the same time
    line = pred.lines[("CONV_2D", "int8", "xnnpack")].at(features(crnn))
    est = pred.op_us(crnn, True)[0]
    assert line < 0.2 * cost(crnn) and est > 3 * line  # the 8-channel point's ratio, not the line's
    assert abs(est - cost(crnn)) < abs(line - cost(crnn))
    wide = conv(9, 64, 2560)  # no point near 64 channels: the line, uncorrected
    assert pred.shape_factor(("CONV_2D", "int8", "xnnpack"), wide) < 1.2


def test_the_invoke_model_charges_the_bytes_of_the_models_inputs():
    """Runs whose p50 is their ops + 0.5 µs + 40 ns per KiB of model input: the fit finds the per-byte cost, and a
    file with a large input (a step model's KV cache) is estimated with it."""
    from dataclasses import replace

    from edgeseq.estimate.fit import CalRun, fit
    from edgeseq.estimate.work import ModelWork

    runs = []
    for i, inputs in enumerate([256, 4096, 32768, 131072, 262144, 1024, 65536]):
        op = _bmm(0, 16, 1000 + 500 * i, dtype="float32")
        op_us = 2.0 + i
        runs.append(CalRun(False, op_us + 0.5 + 40e-6 * inputs, ModelWork([op], [], [], input_bytes=inputs),
                           {(0, 0): op_us}, f"f{i}"))
    pred = fit(runs, "local", "test")
    assert pred.invoke[False][7] == pytest.approx(40e-6, rel=0.05)
    small = runs[0].work
    big = replace(small, input_bytes=512 * 1024)
    gap = pred.predict(big, False)["p50_us"] - pred.predict(small, False)["p50_us"]
    assert gap == pytest.approx(40e-6 * (512 * 1024 - 256), rel=0.05)


def test_fit_line_is_nonnegative_and_constant_without_a_slope():
    exact = fit_line([(10.0, 2.0), (20.0, 3.0), (40.0, 5.0)])
    assert exact.a_us == pytest.approx(1.0) and exact.b_us == pytest.approx(0.1)
    flat = fit_line([(10.0, 3.0), (20.0, 2.0), (30.0, 1.0)])  # time falling with work: no slope
    assert flat.coef[1] == 0.0 and 1.0 < flat.coef[0] < 3.0 and flat.n == 3  # a constant
    origin = fit_line([(10.0, 1.0), (20.0, 3.0)])  # a negative intercept: a line through the origin instead
    assert origin.a_us == 0.0 and origin.b_us > 0
    assert fit_line([(5.0, 1.0), (5.0, 3.0)]).coef == (2.0, 0.0)


def test_the_grid_names_say_what_each_file_holds_and_its_key_follows_the_grid():
    names = [g["name"] for g in grid()]
    assert len(names) == len(set(names)) and spec_name("dense", {"steps": 4, "units": 8}) == "dense-s4-u8"
    blocks = {g["block"] for g in grid()}
    assert {"rnn", "attention", "matmul", "dense", "conv2d", "embedding", "fused_lstm"} <= blocks
    assert grid_key(True) != grid_key(False) and len(grid(True)) < len(grid())


def test_estimate_json_rows_carry_the_promised_fields(files, store, capsys):
    code, out, err = run_cli(["estimate", str(files["dense"]), str(files["loop"]), "--target", "local",
                              "--db", str(store), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "edgeseq.estimate/1" and len(doc["rows"]) == 2
    for row in doc["rows"]:
        assert row["model_path"] in (str(files["dense"]), str(files["loop"]))
        lo, hi = row["p50_us_range"]
        assert 0 < lo <= row["p50_us"] <= hi and row["model_kb"] > 0 and row["estimated"] is True
        assert row["fallbacks"] == {}  # every op type of these files was timed in the store
        assert row["per"] == "invoke"


def test_estimate_text_names_ops_that_fell_back(files, store, tmp_path, capsys):
    from edgeseq.estimate.predict import load_predictor

    pred = load_predictor(store, "local", keep=lambda op: op.type != "FULLY_CONNECTED")
    est = pred.predict(file_work(files["dense"]), True)
    assert "FULLY_CONNECTED" in est["fallbacks"] and est["p50_us"] > 0
    code, out, _ = run_cli(["estimate", str(files["dense"]), "--target", "local", "--db", str(store)], capsys)
    assert code == 0 and "p50 ~" in out and "estimated" in out


def test_estimate_errors_are_one_line_with_a_fix(files, store, tmp_path, capsys):
    code, _, err = run_cli(["estimate", str(files["dense"]), "--target", "pi9", "--db", str(store)], capsys)
    assert code != 0 and "edgeseq calibrate --target pi9" in err and "Traceback" not in err
    code, _, err = run_cli(["estimate", str(tmp_path / "missing.tflite"), "--target", "local", "--db",
                            str(store)], capsys)
    assert code == 2 and "missing.tflite" in err and "Traceback" not in err


def test_recommend_ranks_a_file_without_a_run_from_its_estimate(files, tmp_path, capsys):
    from edgeseq.profiling.run import profile_models

    db = tmp_path / "results.db"
    profile_models([files["loop"]], "local", runs=20, warmup=2, db=db, ops=True)  # dense.tflite never runs
    code, out, err = run_cli(["recommend", "--target", "local", "--latency-budget-ms", "1000", "--db", str(db),
                              "--estimate", str(files["dense"]), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    est = [c for c in doc["meets"] if c.get("estimated")]
    assert [c["model"] for c in est] == ["dense (estimated)"] and est[0]["p99_ms"] > 0
    assert [c["model"] for c in doc["meets"] if not c.get("estimated")] == ["loop"]


@pytest.mark.slow
def test_calibrate_quick_builds_times_and_resumes(tmp_path, capsys):
    db = tmp_path / "results.db"
    code, out, err = run_cli(["calibrate", "--target", "local", "--quick", "--runs", "20", "--passes", "1",
                              "--db", str(db), "--json"], capsys)
    assert code == 0, err
    first = json.loads(out)
    assert first["schema"] == "edgeseq.calibrate/1" and first["files"] == 4 and first["runs_added"] == 8
    assert first["failed"] == {}
    code, out, err = run_cli(["calibrate", "--target", "local", "--quick", "--runs", "20", "--passes", "2",
                              "--db", str(db), "--json"], capsys)
    again = json.loads(out)  # a second pass: every pair once more, the first pass's runs kept
    assert code == 0 and again["runs_added"] == 8 and again["skipped"] == 8
    code, out, err = run_cli(["calibrate", "--target", "local", "--quick", "--runs", "20", "--passes", "2",
                              "--db", str(db), "--json"], capsys)
    assert code == 0 and json.loads(out)["runs_added"] == 0
    code, out, err = run_cli(["recommend", "--target", "local", "--latency-budget-ms", "1000", "--db", str(db)],
                             capsys)
    assert code == 8 and "dense-" not in out  # the generated models feed estimates; they are no candidates


def test_pairs_join_estimates_with_measurements_worst_first():
    from edgeseq.report.estimates import pairs

    rows = pairs({"a": {"p50_us": 11.0}, "b": {"p50_us": 5.0}, "c": {"p50_us": 3.0}}, {"a": 10.0, "b": 10.0})
    assert [r["key"] for r in rows] == ["b", "a"]
    assert rows[0]["error"] == pytest.approx(-0.5) and rows[1]["measured_us"] == 10.0


def test_the_report_shows_estimated_against_measured(files, store, tmp_path, capsys):
    code, out, err = run_cli(["report", "--db", str(store), "--format", "md"], capsys)
    assert code == 0, err
    section = out[out.index("## Estimated vs measured"):]
    assert "of 2 within +-10 % of measured" in section and "| local | dense |" in section


def test_an_estimate_sweep_shares_the_cost_sweeps_files_but_not_its_cells():
    from edgeseq.sweep.grid import expand, spec_from_options

    versions = {"edgeseq": "x", "tensorflow": "y", "keras": "z", "litert": "w"}
    opts = {"arch": "gru", "seq_len": "16,32", "recipe": "fp32"}
    cost = expand(spec_from_options({**opts, "mode": "cost"}).check(), versions)
    est = expand(spec_from_options({**opts, "mode": "estimate"}).check(), versions)
    assert [c.artifact_key for c in est] == [c.artifact_key for c in cost]
    assert not {c.key for c in est} & {c.key for c in cost} and all(c.config["estimate"] for c in est)


@pytest.mark.slow
def test_sweep_mode_estimate_fills_cells_without_a_run(files, store, tmp_path):
    import shutil
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "r.db"
    shutil.copy(store, db)
    res = subprocess.run([sys.executable, "-m", "edgeseq.cli", "sweep", "--arch", "gru", "--preset", "tiny",
                          "--seq-len", "8", "--mode", "estimate", "--db", str(db), "--out", str(tmp_path / "sw")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT status, run_id, result_json FROM sweep_cells").fetchall()
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    conn.close()
    assert len(rows) == 1 and rows[0][0] == "ok" and rows[0][1] is None
    result = json.loads(rows[0][2])
    assert result["estimated"] is True and result["p50_us"] > 0
    assert runs == 2  # the two per-op runs the store held: nothing was measured


def test_nnls_keeps_every_coefficient_nonnegative_and_finds_an_exact_fit():
    rows = [(1.0, 1.0, 0.0), (1.0, 2.0, 1.0), (1.0, 3.0, 4.0), (1.0, 5.0, 2.0)]
    exact = nnls_relative(rows, [1 + 2 * b + 0.5 * c for _, b, c in rows])
    assert exact == pytest.approx([1.0, 2.0, 0.5])
    falling = nnls_relative([(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)], [3.0, 2.0, 1.0])
    assert min(falling) >= 0.0 and falling[1] == 0.0


def test_calibrate_refuses_an_unknown_target_before_building(tmp_path, capsys):
    code, _, err = run_cli(["calibrate", "--target", "nosuch", "--quick", "--db", str(tmp_path / "r.db")], capsys)
    assert code == 2 and "nosuch" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # no store, no calibration folder


def test_a_step_file_is_estimated_per_step_and_a_hand_written_manifest_is_no_crash(files, store, tmp_path):
    import shutil

    from edgeseq.estimate.predict import estimate_files

    step = tmp_path / "gru-step.tflite"
    shutil.copy(files["dense"], step)
    step.with_suffix(".json").write_text(json.dumps({"stream": {"kind": "recurrent-step"}}))
    odd = tmp_path / "odd.tflite"
    shutil.copy(files["dense"], odd)
    odd.with_suffix(".json").write_text(json.dumps({"stream": "yes"}))
    rows = estimate_files([step, odd], "local", db=store)
    assert [r["per"] for r in rows] == ["step", "invoke"]
