"""`edgeseq demo` end to end at the tiny preset: every stage leaves what the matching CLI verb would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _zoo_cache import planner, prefetch_session, selected

DEMO = "test_demo_runs_the_whole_line_and_says_where_the_report_is"
FIRST_SCREEN = "test_the_demo_reports_first_screen_states_the_answer"


def _run_demo(folder):
    out = folder / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq.cli", "demo", "--out", str(out), "--preset", "tiny", "--epochs", "2",
         "--runs", "10", "--no-stream"],
        capture_output=True, text=True, timeout=900,
    )
    return out, proc


_run_demo.cost = 60


@planner
def _plan(cache, items) -> dict:
    """The demo is one child process that trains and converts: it runs in the session cache's pool with the other
    conversions (tests/_zoo_cache.py), so both cores work; its profile rows are only checked for memory, which
    other work on the machine does not change."""
    return {("demo",): _run_demo} if selected(items, __name__, {DEMO, FIRST_SCREEN}) else {}


@pytest.mark.slow
def test_demo_runs_the_whole_line_and_says_where_the_report_is(conversions, request, tmp_path):
    prefetch_session(conversions, request)
    out, proc = conversions.get(("demo",), _run_demo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for arch in ("rnn", "lstm", "gru", "transformer"):
        assert (out / "runs" / f"{arch}-tiny" / "model.keras").exists()
        for recipe in ("fp32", "int8"):
            manifest = json.loads((out / "artifacts" / f"{arch}-tiny-{recipe}.json").read_text())
            assert manifest["artifact"]["bytes"] == (out / "artifacts" / f"{arch}-tiny-{recipe}.tflite").stat().st_size
            assert f"{arch}-tiny-{recipe}" in proc.stdout  # one profiled row per artifact
    report = out / "report" / "report.html"
    assert report.exists() and "data:image/png;base64" in report.read_text()
    assert f"report: {report}" in proc.stdout
    # the demo and `edgeseq profile` measure a file alike: the same model memory, within the estimate's promise
    from edgeseq.profiling.run import profile_models
    from edgeseq.report.dispatch import load_report

    demo = {r["model"]: r for r in load_report(out / "results.db")}
    for name in ("gru-tiny-fp32", "gru-tiny-int8"):
        (row,) = profile_models([out / "artifacts" / f"{name}.tflite"], runs=10, warmup=2, db=tmp_path / "p.db")
        a, b = demo[name]["model_peak_kb"], row["model_peak_kb"]
        assert a and b and abs(a - b) <= max(0.2 * b, 256), (name, a, b)


@pytest.mark.slow
def test_the_demo_reports_first_screen_states_the_answer(conversions, request):
    """The demo's report.html in headless Chromium at 1300x900: What to ship (the Pareto set of the demo's models,
    one line each) lies wholly on the first screen. Skips without a Chromium (`apt-get install chromium`)."""
    from test_report_answer import FIRST_SCREEN as SCREEN
    from test_report_answer import answer_box, headless_browser

    browser = headless_browser()
    if browser is None:
        pytest.skip("no headless Chromium on this machine (apt-get install chromium)")
    prefetch_session(conversions, request)
    out, proc = conversions.get(("demo",), _run_demo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    box = answer_box(browser, out / "report" / "report.html")
    assert 0 <= box["top"] < box["bottom"] <= SCREEN[1], box
    assert "What to ship" in box["text"] and "Pareto-optimal" in box["text"] and "-tiny-" in box["text"], box


@pytest.mark.parametrize("args, needle", [(["--preset", "huge"], "huge"), (["--epochs", "0"], "--epochs")])
def test_demo_bad_options_fail_in_one_line_before_writing_anything(tmp_path, args, needle):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "demo", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert not out.exists()
