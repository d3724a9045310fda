"""`edgeseq recommend` on a store with known runs: ranking, exclusions with reasons, what came closest, JSON, errors."""

from __future__ import annotations

import json

import pytest

from edgeseq.cli import main
from edgeseq.core.errors import InputError
from edgeseq.core.progress import is_progress_line
from edgeseq.recommend import SCHEMA, check_budgets, recommend, render_text
from edgeseq.store.results import ResultsStore


def run(i: int, name: str, p99_us: float, *, target: str = "pi4", model_kb: float | None = 1024.0,
        rss_kb: float = 40_000.0, accuracy: float | None = 0.9, recipe: str = "fp32", steps: int | None = None,
        kind: str = "recurrent-step") -> dict:
    stats = {"p50_us": p99_us / 2, "p99_us": p99_us, "peak_rss_kb": rss_kb}
    if model_kb is not None:
        stats["model_peak_kb"] = model_kb
    rec = {
        "target": target, "device_key": "pi/aarch64/cpu", "model_path": f"/m/{name}.tflite", "model_name": name,
        "model_sha256": f"{i:064x}", "recipe": recipe, "accuracy": accuracy,
        "options_json": {"runs": 50, "threads": 1}, "stats_json": stats, "p50_us": p99_us / 2,
        "samples": [int(p99_us * 500)] * 5,
    }
    if steps is not None:
        rec["options_json"] = {"runs": 50, "threads": 1, "stream": True, "steps": steps}
        rec["agent_json"] = {"stream": {"kind": kind, "steps": steps, "state_bytes": 256}}
    return rec


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.db"
    with ResultsStore(path) as s:
        s.add_run(run(1, "gru-int8", 90_000.0, accuracy=0.96, recipe="int8"))  # superseded by its latest run below
        s.add_run(run(1, "gru-int8", 2_000.0, accuracy=0.96, recipe="int8"))
        s.add_run(run(2, "gru-fp32", 3_000.0, model_kb=2048.0, accuracy=0.97))
        s.add_run(run(3, "tf-fp32", 7_200.0, model_kb=4096.0, accuracy=0.98))
        s.add_run(run(4, "tf-int8", 4_000.0, model_kb=10_240.0, accuracy=0.93, recipe="int8"))
        s.add_run(run(5, "gru-step-fp32", 30.0, model_kb=None, rss_kb=3072.0, accuracy=None, steps=100))
        s.add_run(run(6, "elsewhere", 10.0, target="local"))
    return path


def test_ranking_exclusions_and_reasons(db):
    res = recommend(db, "pi4", latency_budget_ms=5, memory_budget_mb=8, min_accuracy=0.95)
    assert [c["model"] for c in res["meets"]] == ["gru-fp32", "gru-int8"]  # by accuracy
    assert res["meets"][1]["p99_ms"] == pytest.approx(2.0) and res["meets"][1]["memory_mb"] == pytest.approx(1.0)
    assert res["closest"] is None
    excluded = {c["model"]: c for c in res["excluded"]}
    assert list(excluded) == ["tf-int8", "tf-fp32", "gru-step-fp32 [stream 100]"]  # by worst overshoot
    (lat,) = excluded["tf-fp32"]["breaches"]
    assert lat["budget"] == "latency" and lat["over_by"] == pytest.approx(2.2) and lat["ratio"] == pytest.approx(1.44)
    assert lat["text"] == "p99 per sequence 7.2 ms > 5 ms (+2.2 ms, 1.44x)"
    mem, acc = excluded["tf-int8"]["breaches"]
    assert (mem["budget"], acc["budget"]) == ("memory", "accuracy") and mem["ratio"] == pytest.approx(1.25)
    assert acc["text"] == "accuracy 0.9300 < 0.9500 (-0.0200, 1.02x)"
    step = excluded["gru-step-fp32 [stream 100]"]
    assert step["form"] == "stream" and step["kind"] == "recurrent-step" and step["latency_per"] == "step"
    assert step["memory_basis"] == "peak RSS (model memory not measured)" and step["memory_mb"] == 3.0
    assert [b["text"] for b in step["breaches"]] == ["accuracy unknown (untrained or not validated)"]
    assert step["worst_ratio"] is None
    text = render_text(res)
    assert "1. gru-fp32" in text and "2. gru-int8" in text and "elsewhere" not in text
    assert "tf-fp32: p99 per sequence 7.2 ms > 5 ms" in text


def test_hop_checks_a_step_or_a_whole_window_recompute(db):
    res = recommend(db, "pi4", hop_ms=2.5)
    served = {c["model"]: c["served"] for c in res["meets"]}
    assert list(served) == ["gru-int8", "gru-step-fp32 [stream 100]"]  # known accuracy first
    assert served["gru-int8"].startswith("window recompute")
    assert served["gru-step-fp32 [stream 100]"] == "stream, one step per invoke (recurrent state, context 100)"
    assert res["meets"][1]["real_time_factor"] == pytest.approx(0.012)
    (hop,) = next(c for c in res["excluded"] if c["model"] == "gru-fp32")["breaches"]
    assert hop["budget"] == "hop" and "window recompute every hop" in hop["text"] and hop["ratio"] == 1.2


def test_nothing_meets_the_budget_names_the_closest(db):
    res = recommend(db, "pi4", min_accuracy=0.99)
    assert res["meets"] == [] and res["closest"]["model"] == "tf-fp32"
    assert res["closest"]["worst_ratio"] == pytest.approx(0.99 / 0.98)
    text = render_text(res)
    assert "no model meets every budget" in text and "closest: tf-fp32" in text and "1.01x the budget" in text


def test_json_object_from_the_cli(db, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--target", "pi4", "--latency-budget-ms", "5", "--memory-budget-mb", "8", "--db",
              str(db), "--json"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    data = json.loads(out)
    assert data["schema"] == SCHEMA == "edgeseq.recommend/1" and data["target"] == "pi4"
    assert data["budgets"] == {"latency_ms": 5.0, "memory_mb": 8.0, "hop_ms": None, "min_accuracy": None}
    assert {"meets", "excluded", "closest"} <= set(data)
    assert [c["model"] for c in data["meets"]] == ["gru-fp32", "gru-int8", "gru-step-fp32 [stream 100]"]
    assert [c["model"] for c in data["excluded"]] == ["tf-int8", "tf-fp32"] and data["closest"] is None


def test_budget_checks():
    with pytest.raises(InputError, match="no budget given"):
        check_budgets()
    with pytest.raises(InputError, match="--latency-budget-ms"):
        check_budgets(latency_budget_ms=float("nan"))
    with pytest.raises(InputError, match="--min-accuracy"):
        check_budgets(min_accuracy=1.5)
    assert check_budgets(memory_budget_mb=8)["memory_mb"] == 8.0


@pytest.mark.parametrize("args,code,words", [
    (["--target", "pi4"], 2, "no budget given"),
    (["--target", "pi4", "--latency-budget-ms", "nan"], 2, "--latency-budget-ms must be a finite number > 0"),
    (["--target", "pi4", "--latency-budget-ms", "-1"], 2, "--latency-budget-ms must be"),
    (["--target", "pi4", "--memory-budget-mb", "inf"], 2, "--memory-budget-mb must be"),
    (["--target", "pi5", "--latency-budget-ms", "5"], 2, "no runs on target 'pi5'"),
    (["--latency-budget-ms", "5"], 2, "Missing option '--target'"),
])
def test_cli_errors_are_one_line(db, capsys, args, code, words):
    with pytest.raises(SystemExit) as exc:
        main(["recommend", *args, "--db", str(db)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert exc.value.code == code and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    if "pi5" in args:
        assert "targets with runs: local, pi4" in lines[0] and "did you mean 'pi4'" in lines[0]


def test_a_missing_store_is_one_store_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--target", "pi4", "--latency-budget-ms", "5", "--db", str(tmp_path / "none.db")])
    err = capsys.readouterr().err
    assert exc.value.code == 7 and err.count("\n") == 1 and "no results store" in err


def test_zero_accuracy_has_no_infinite_ratio_in_json(tmp_path):
    path = tmp_path / "z.db"
    with ResultsStore(path) as s:
        s.add_run(run(1, "broken", 1_000.0, accuracy=0.0))
    res = recommend(path, "pi4", min_accuracy=0.5)
    (breach,) = res["excluded"][0]["breaches"]
    assert breach["ratio"] is None and breach["text"] == "accuracy 0.0000 < 0.5000 (-0.5000)"
    assert res["closest"] is None and res["notes"]
    json.dumps(res, allow_nan=False)
