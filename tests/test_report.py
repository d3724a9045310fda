"""`edgeseq report` and `edgeseq compare`: formats, plots, the self-contained HTML, grouping, ratios."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from pathlib import Path

import pytest
from _tiny_tflite import build_tiny_models

from edgeseq.cli import main
from edgeseq.core.errors import InputError, StoreError
from edgeseq.core.stats import pareto_front
from edgeseq.profiling.run import profile_models
from edgeseq.report.dispatch import compare_runs, write_report
from edgeseq.store.results import ResultsStore

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("latency_distribution.png", "latency_vs_size.png", "memory_per_model.png", "accuracy_vs_latency.png")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny-tflite")


@pytest.fixture(scope="module")
def db(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "results.db"
    profile_models([tiny["dense-fp32"], tiny["dense-int8"], tiny["gru-fp32"]], runs=30, warmup=3, db=path)
    profile_models([tiny["dense-fp32"]], runs=30, warmup=3, db=path, repeat=2)
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_terminal_table_groups_repeated_runs(db, capsys):
    code, out, _ = cli(capsys, "report", "--db", str(db))
    assert code == 0
    assert out.startswith("## What to ship")  # the answer first (tests/test_report_answer.py), then the table
    out = out[out.index("== local"):]  # one section per target/device
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(("dense-", "gru-"))}
    assert set(lines) == {"dense-fp32", "dense-int8", "gru-fp32"}
    assert lines["dense-fp32"].split()[-1] == "3"  # three runs of the same file and options: one row
    assert "0.9100" in lines["dense-fp32"] and "fp32" in lines["dense-fp32"]


def test_md_csv_json_formats(db, capsys):
    _, md, _ = cli(capsys, "report", "--db", str(db), "--format", "md")
    assert md.startswith("# edgeseq profile report") and "| model | recipe |" in md and "---:" in md
    _, text, _ = cli(capsys, "report", "--db", str(db), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3 and {"p50_us", "p99_us", "peak_rss_kb", "sha256", "recipe"} <= set(rows[0])
    _, js, _ = cli(capsys, "report", "--db", str(db), "--format", "json")
    doc = json.loads(js)
    assert doc["schema"] == "edgeseq.report/1" and len(doc["groups"]) == 3
    fp32 = next(g for g in doc["groups"] if g["model"] == "dense-fp32")
    assert fp32["runs"] == 3 and fp32["p50_cv"] is not None and fp32["accuracy"] == 0.91


def test_html_is_one_self_contained_file_with_the_plots(db, tmp_path, capsys):
    out = tmp_path / "rep"
    code, text, _ = cli(capsys, "report", "--db", str(db), "--format", "html", "--out", str(out))
    assert code == 0 and "report.html" in text
    page = (out / "report.html").read_text()
    assert "<table>" in page and "dense-int8" in page
    assert not re.search(r"""src=['"](?!data:)""", page)  # nothing fetched from elsewhere
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 4
    assert all(base64.b64decode(img).startswith(PNG) for img in images)
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name


def test_write_report_library_api(db, tmp_path):
    path = write_report(db, tmp_path / "r", fmt="md")
    assert path.name == "report.md" and path.read_text().startswith("# edgeseq")
    assert all((tmp_path / "r" / name).is_file() for name in PLOTS)
    with pytest.raises(InputError):
        write_report(db, tmp_path / "r", fmt="pdf")


def test_compare_by_name_and_by_run_id(db, capsys):
    res = compare_runs(db, "dense-fp32", "dense-int8")
    p50 = next(r for r in res["rows"] if r["key"] == "p50_us")
    assert p50["ratio"] == pytest.approx(p50["b"] / p50["a"])
    size = next(r for r in res["rows"] if r["key"] == "model_size_bytes")
    assert size["ratio"] < 1  # int8 is the smaller file
    assert res["a"]["run_id"] == 5  # a model name means its latest run
    code, out, _ = cli(capsys, "compare", "1", "#2", "--db", str(db))
    assert code == 0 and "B/A" in out and "p50 µs" in out and "dense-int8 #2" in out
    with ResultsStore(db) as s:
        sha = s.get_run(3)["model_sha256"]
    assert compare_runs(db, sha[:10], "gru-fp32")["a"]["model"] == "gru-fp32"
    code, out, _ = cli(capsys, "compare", "dense-fp32", "gru-fp32", "--db", str(db), "--json")
    assert code == 0 and json.loads(out)["b"]["model"] == "gru-fp32"


def test_compare_unknown_or_ambiguous_refs(db, capsys):
    code, _, err = cli(capsys, "compare", "nothing-like-it", "dense-fp32", "--db", str(db))
    assert code == 2 and err.startswith("error: no stored run matches 'nothing-like-it'")
    with pytest.raises(InputError, match="matches 2 models"):
        compare_runs(db, "dense", "gru-fp32")


def test_report_without_a_store_is_one_line(tmp_path, capsys):
    code, _, err = cli(capsys, "report", "--db", str(tmp_path / "none.db"))
    assert code == 7 and err.count("\n") == 1 and "no results store" in err
    with pytest.raises(StoreError):
        write_report(tmp_path / "none.db", tmp_path / "out")


def test_pareto_front():
    pts = [(10, 0.90), (20, 0.95), (15, 0.85), (30, 0.95), (5, 0.80)]
    assert sorted(pareto_front(pts)) == [0, 1, 4]  # (15, .85) and (30, .95) are beaten
    assert pareto_front([(1, 1), (1, 1)]) == [0, 1]


def test_a_narrow_terminal_keeps_the_key_columns(db):
    from edgeseq.report.dispatch import COLUMNS, fit_columns, load_groups

    with ResultsStore(db) as s:
        rows = load_groups(s)
    keys = [k for k, _, _ in fit_columns(rows, 80)]
    assert {"label", "p50_us", "p99_us", "model_peak_kb"} <= set(keys) and len(keys) < len(COLUMNS)
    assert len(fit_columns(rows, 400)) == len(COLUMNS)


def _damaged_copy(db: Path, folder: Path, *statements: str) -> Path:
    import shutil
    import sqlite3

    copy = folder / "damaged.db"
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    for q in statements:
        conn.execute(q)
    conn.commit()
    conn.close()
    return copy


def test_a_damaged_row_is_skipped_with_one_warning_line(db, tmp_path, capsys):
    bad = _damaged_copy(db, tmp_path, "UPDATE runs SET stats_json = '{nope' WHERE id = 2")
    before = bad.read_bytes()
    code, out, err = cli(capsys, "report", "--db", str(bad), "--format", "csv")
    assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 2  # dense-int8 had one run: gone
    assert err.count("\n") == 1 and err.startswith("warning: 1 damaged row skipped in ") and "run #2" in err
    code, out, err = cli(capsys, "compare", "dense-fp32", "gru-fp32", "--db", str(bad))
    assert code == 0 and "B/A" in out and err.startswith("warning: 1 damaged row skipped")
    code, _, err = cli(capsys, "compare", "#2", "gru-fp32", "--db", str(bad))
    assert code == 7 and err.count("\n") == 1 and "run #2" in err and "damaged" in err
    code, _, err = cli(capsys, "report", "--db", str(bad), "--format", "md", "--out", str(tmp_path / "out"))
    assert code == 0 and err.startswith("warning: 1 damaged row") and (tmp_path / "out" / "report.md").is_file()
    assert bad.read_bytes() == before  # a read never writes


def test_every_row_damaged_refuses_with_exit_7(db, tmp_path, capsys):
    bad = _damaged_copy(db, tmp_path, "UPDATE runs SET samples = x'0011'")
    code, _, err = cli(capsys, "report", "--db", str(bad))
    assert code == 7 and err.count("\n") == 1 and "every stored run" in err and "backup" in err
    code, _, err = cli(capsys, "report", "--db", str(bad), "--format", "html", "--out", str(tmp_path / "html"))
    assert code == 7 and not (tmp_path / "html").exists()


def test_compare_with_a_run_id_past_sqlite_integers(db, capsys):
    for digits in (30, 5000):  # int() refuses over 4300 digits
        code, _, err = cli(capsys, "compare", "#" + "9" * digits, "dense-fp32", "--db", str(db))
        assert code == 2 and err.startswith("error: no run with id #999") and err.count("\n") == 1


def test_runs_stored_before_agent_2_still_read_and_their_model_memory_is_inferred(tmp_path, capsys):
    # An edgeseq.agent/1 run: stats without model_peak_kb, memory as VmHWM plus stages (no clear_refs then). Its
    # model memory is the lifetime peak less the RSS once the runtime was imported, when the peak came later.
    db = tmp_path / "old.db"

    def old_run(i: int, name: str, hwm: int, import_hwm: int) -> dict:
        memory = {"vm_hwm_kb": hwm, "vm_rss_kb": hwm - 10, "stages": {
            "start": {"vm_rss_kb": 14_000, "vm_hwm_kb": 14_000},
            "import": {"vm_rss_kb": 40_000, "vm_hwm_kb": import_hwm}, "end": {"vm_rss_kb": hwm - 10, "vm_hwm_kb": hwm}}}
        return {"target": "local", "device_key": "host/x86_64/cpu", "model_path": f"/m/{name}.tflite",
                "model_name": name, "model_sha256": f"{i:064x}", "options_json": {"runs": 10, "threads": 1},
                "agent_schema": "edgeseq.agent/1", "agent_version": "1.0.0",
                "stats_json": {"p50_us": 10.0 * i, "p99_us": 20.0, "peak_rss_kb": float(hwm)}, "p50_us": 10.0 * i,
                "peak_rss_kb": hwm, "agent_json": {"memory": memory}, "samples": [10_000] * 10}

    with ResultsStore(db) as s:
        s.add_run(old_run(1, "old-a", 44_096, 40_000))  # peak after the import: 4,096 kB is the model's
        s.add_run(old_run(2, "old-b", 41_000, 41_500))  # an earlier peak hides it: unknown
    code, out, err = cli(capsys, "report", "--db", str(db), "--format", "csv")
    assert code == 0 and not err
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["old-a"]["model_peak_kb"] == "4096" and rows["old-a"]["memory_method"] == "hwm-inferred"
    assert rows["old-b"]["model_peak_kb"] == "" and rows["old-b"]["peak_rss_kb"] == "41000.0"
    code, out, _ = cli(capsys, "report", "--db", str(db))
    table = out[out.index("== "):]  # after What to ship
    assert code == 0 and "model MiB" in table and "4.0" in table.split("old-a")[1].splitlines()[0]
    res = compare_runs(db, "old-a", "old-b")
    by = {r["key"]: r for r in res["rows"]}
    assert by["model_peak_kb"]["a"] == 4096 and by["model_peak_kb"]["b"] is None
    assert by["peak_rss_kb"]["a"] == 44_096


# ----------------------------------------------------------------------------------------------- streaming section
def _stream_run(i: int, stream: dict, steps: int, model_name: str, source: str | None, p50: float = 5.0) -> dict:
    return {
        "target": "local",
        "device_key": "host/x86_64/cpu",
        "model_path": f"/m/{model_name}.tflite",
        "model_name": model_name,
        "model_sha256": f"{i:064x}",
        "manifest_json": {"source": {"path": source}} if source else None,
        "options_json": {"stream": True, "steps": steps, "runs": 10, "threads": 1},
        "stats_json": {"p50_us": p50, "p99_us": p50 * 2, "peak_rss_kb": 2048.0},
        "p50_us": p50,
        "agent_json": {"stream": {**stream, "steps": steps, "state_bytes": 64, "invoke_ns": [1000, 3000]}},
        "samples": [int(p50 * 1000)] * 10,
    }


def test_streaming_rows_read_kind_and_model_from_the_stored_run(tmp_path):
    from edgeseq.models.streamkind import StreamKind
    from edgeseq.streams.profile import rows_from_store
    from edgeseq.streams.report import streaming_section

    db = tmp_path / "s.db"
    with ResultsStore(db) as s:
        s.add_run(_stream_run(1, {"kind": "recurrent-step"}, 16, "mine-step-fp32", "/w/runs/gru/model.keras"))
        # stored before the agent named the kind: read from its mode and position input
        s.add_run(_stream_run(2, {"mode": "step", "position_input": True}, 16, "tf-kv16-fp32", "/w/tf.keras", 9.0))
        s.add_run(_stream_run(3, {"mode": "window"}, 16, "tf-win16-fp32", None, 90.0))  # no manifest: the file stem
    rows = rows_from_store(db)
    assert [(r["model"], r["kind"]) for r in rows] == [
        ("gru", StreamKind.RECURRENT_STEP), ("tf", StreamKind.KV_CACHE), ("tf-win16-fp32", StreamKind.WINDOW)]
    md = streaming_section(db, tmp_path / "out", "md")
    assert "| gru | recurrent state | 16 |" in md and "| tf | kv cache | 16 |" in md and "window recompute" in md
    assert (tmp_path / "out" / "streaming.png").read_bytes().startswith(PNG)


def test_unreadable_stream_runs_are_named_in_the_section(tmp_path, capsys):
    from edgeseq.streams.report import streaming_section

    db = tmp_path / "s.db"
    with ResultsStore(db) as s:
        s.add_run(_stream_run(1, {"kind": "recurrent-step"}, 16, "gru-step-fp32", "/w/gru.keras"))
        s.add_run(_stream_run(2, {"kind": "sideways"}, 16, "odd-fp32", "/w/odd.keras"))
        bad = _stream_run(3, {"kind": "window"}, 16, "w-fp32", "/w/w.keras")
        bad["agent_json"]["stream"]["invoke_ns"] = "lots"
        s.add_run(bad)
    md = streaming_section(db, None, "md")
    assert "| gru | recurrent state | 16 |" in md
    assert "2 stored stream runs left out of this section" in md and "run #2: stream.kind 'sideways'" in md
    html = streaming_section(db, None, "html")
    assert html.startswith("<h2>Streaming</h2><p>2 stored stream runs left out")
    code, out, err = cli(capsys, "report", "--db", str(db), "--format", "md")
    assert code == 0 and "## Streaming" in out and "left out" in out and not err


def test_a_streaming_section_that_cannot_read_the_store_says_why(tmp_path):
    from edgeseq.streams.report import streaming_section

    md = streaming_section(tmp_path / "absent.db", None, "md")
    assert md.startswith("\n## Streaming\n\nThe streaming section cannot be shown: no results store at ")
    assert streaming_section(tmp_path / "absent.db", None, "csv") == ""
