"""One name per concept across every verb, --json/--out/--db where they belong, defaults shown one way, and the
first-hour problems a new user met (each test here failed on the code before they were fixed)."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from edgeseq.cli import COMMANDS, main
from edgeseq.commands._options import CONCEPTS, RUNS, STORES, WARMUP, WRITES
from edgeseq.core.progress import WIDTH, Progress, is_progress_line

EDGESEQ = [sys.executable, "-m", "edgeseq.cli"]


def leaves() -> dict[str, click.Command]:
    """Every runnable command by its path ("convert", "targets add", ...)."""
    out = {}

    def walk(cmd: click.Command, path: str) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")
            if not getattr(cmd, "invoke_without_command", False):
                return
        out[path] = cmd

    for name, (module, attr, _) in COMMANDS.items():
        walk(getattr(importlib.import_module(f"edgeseq.commands.{module}"), attr), name)
    return out


def options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option)]


def test_one_name_per_concept_on_every_verb():
    bad = []
    for path, cmd in leaves().items():
        for opt in options(cmd):
            names = set(opt.opts) | set(opt.secondary_opts)
            for concept, (flag, aliases, others) in CONCEPTS.items():
                allowed = set(aliases.get(path, ()))
                if names & set(others):
                    bad.append(f"{path}: {sorted(names & set(others))} names the {concept} (use {flag})")
                if flag in names and (names - {flag}) - allowed - {f"--no-{flag[2:]}"}:
                    bad.append(f"{path}: {flag} has other names {sorted(names - {flag})}")
                for old in set(sum(aliases.values(), ())) & names - allowed:
                    if flag not in names:
                        bad.append(f"{path}: {old} is the {concept}'s old name only on {sorted(aliases)}")
    assert not bad, "\n".join(bad)


def test_json_everywhere_out_where_it_writes_db_where_it_stores():
    cmds = leaves()
    verbs = {path.split()[0] for path in cmds}
    missing = [p for p, c in cmds.items() if not any("--json" in o.opts for o in options(c))]
    assert not missing, f"no --json on {missing}"
    for verb, flag in [(v, "--out") for v in WRITES] + [(v, "--db") for v in STORES]:
        assert verb in verbs
        assert any(flag in o.opts for o in options(cmds[verb])), f"{verb} has no {flag}"


def test_defaults_are_shown_one_way_and_differ_only_with_a_reason():
    bad = []
    for path, cmd in leaves().items():
        for opt in options(cmd):
            text = " ".join((opt.help or "").split())
            if re.search(r"\(default \w|\[\w[\w,.]*\]\.?$", text):
                bad.append(f"{path} {opt.opts[0]}: default written in the help text ({text!r})")
            unset = opt.default is None or type(opt.default).__name__ == "Sentinel"  # click 8.3: not given
            if not unset and opt.default not in (False, ()) and not opt.is_flag and not opt.multiple and not opt.show_default:
                bad.append(f"{path} {opt.opts[0]}: default {opt.default!r} not shown")
            for flag, value in (("--runs", RUNS), ("--warmup", WARMUP)):
                if flag in opt.opts and isinstance(opt.default, int) and opt.default != value \
                        and not re.search(r"profile'?s? ?\(?\d|than profile|not a measurement|a check", text):
                    bad.append(f"{path} {flag}: default {opt.default} (profile: {value}) without saying why")
    assert not bad, "\n".join(bad)


def test_bare_edgeseq_prints_help_on_stdout_and_succeeds():
    proc = subprocess.run(EDGESEQ, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: edgeseq") and "convert" in proc.stdout and "\n" in proc.stdout.strip()


def test_models_is_fast_because_it_imports_no_keras():
    proc = subprocess.run([*EDGESEQ[:1], "-X", "importtime", *EDGESEQ[1:], "models"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {ln.split("|")[-1].strip().split(".")[0] for ln in proc.stderr.splitlines() if "|" in ln}
    assert not imported & {"keras", "tensorflow"}, "edgeseq models imports Keras/TensorFlow"
    assert "transformer-causal" in proc.stdout and "parameters at T=" in proc.stdout


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_help_of_every_verb_imports_no_tensorflow(verb):
    proc = subprocess.run([*EDGESEQ[:1], "-X", "importtime", *EDGESEQ[1:], verb, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage:"), proc.stderr[-2000:]
    imported = {ln.split("|")[-1].strip().split(".")[0] for ln in proc.stderr.splitlines() if "|" in ln}
    assert not imported & {"keras", "tensorflow"}, f"`edgeseq {verb} --help` imports Keras/TensorFlow"


def test_int8_without_data_is_refused_unless_random_is_asked(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(tmp_path / "m.keras"), "--recipe", "fp32,int8", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "int8 needs calibration data" in err and "--dataset random" in err
    with pytest.raises(SystemExit) as exc:  # on purpose: the check passes (and the missing model is named)
        main(["convert", str(tmp_path / "m.keras"), "--recipe", "int8", "--calibration", "random"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "does not exist" in err and "calibration" not in err
    assert not (tmp_path / "o").exists()


def test_convert_of_a_tflite_names_what_convert_takes(tmp_path, capsys):
    (tmp_path / "x.tflite").write_bytes(b"TFL3" * 8)
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(tmp_path / "x.tflite")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and ".h5" in err and "SavedModel" in err and "model.save('x.keras')" not in err


def test_evaluate_takes_the_data_set_from_the_manifest(tmp_path):
    from edgeseq.api import dataset_of
    from edgeseq.core.errors import InputError

    model = tmp_path / "gru-int8.tflite"
    model.write_bytes(b"")
    with pytest.raises(InputError, match="no manifest"):
        dataset_of(model)
    manifest = {"schema": "edgeseq.manifest/1", "validation": {"data": {"source": "dataset",
                                                                         "dataset": "japanese_vowels"}}}
    (tmp_path / "gru-int8.json").write_text(json.dumps(manifest))
    assert dataset_of(model) == "japanese_vowels"


def test_files_take_the_users_umask(tmp_path):
    from edgeseq.core.fsio import atomic_write_bytes

    old = os.umask(0o022)
    try:
        assert (atomic_write_bytes(tmp_path / "a.tflite", b"x").stat().st_mode & 0o777) == 0o644
        os.umask(0o077)
        assert (atomic_write_bytes(tmp_path / "b.json", b"x").stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)


def test_progress_piped_is_one_flushed_line_per_step_within_80_columns():
    out = io.StringIO()
    p = Progress(3, stream=out, tty=False)
    for i in range(3):
        p.step(f"gru-{'x' * 90} T=16 fp32 cell {i}", "p50 12 µs")
        assert out.getvalue().count("\n") == i + 1  # written as the step ends, not at the end
    lines = out.getvalue().splitlines()
    assert all(len(ln) <= WIDTH and is_progress_line(ln) for ln in lines), lines
    assert lines[0].startswith("[1/3] ") and "ETA" in lines[0] and lines[-1].startswith("[3/3] ")
    tty = io.StringIO()
    Progress(2, stream=tty, tty=True).step("epoch", "loss=0.5")
    assert tty.getvalue().startswith("\r\033[K[1/2] epoch: loss=0.5") and "\n" not in tty.getvalue()


def test_one_unit_style_and_the_same_columns_piped_and_on_a_terminal():
    from rich.console import Console

    from edgeseq.report.rows import COLUMNS, columns, tag_legend
    from edgeseq.report.text import _rounded, render_rich, render_text

    headers = [h for _, h, _ in COLUMNS]
    assert not [h for h in headers if re.search(r"\b(MB|KB|us)\b", h)], headers
    assert "stored" in headers and "invokes" in headers and "runs" not in headers
    row = {"label": "gru-int8 [t1 no-xnnpack]", "target": "local", "where": "local", "p50_us": 7.427019999999999, "runs": 1,
           "count": 200, "device": {}}
    piped = render_text([row])
    console = Console(file=io.StringIO(), width=200)
    render_rich([row], console)
    shown = [h for _, h, _ in columns()]
    assert all(h in piped and h in console.file.getvalue() for h in shown)
    assert "process MiB" not in piped and "process MiB" in render_text([row], wide=True)
    assert "t1" in piped and tag_legend([row]).startswith("tags: ") and "threads" in tag_legend([row])
    assert "without the XNNPACK delegate" in tag_legend([row])
    assert _rounded(7.427019999999999) == 7.42702


def test_convert_summary_speaks_kib():
    from types import SimpleNamespace

    from edgeseq.report.views import convert_summary

    r = SimpleNamespace(tflite_path=Path("a.tflite"), validation={"skipped": True, "reason": "--no-validate"},
                        manifest={"artifact": {"bytes": 2048}, "route": {"rnn": "none"},
                                  "timing": {"convert_s": 1.0, "validate_s": 0.0}})
    assert "2.0 KiB" in convert_summary(r) and " KB" not in convert_summary(r)


def test_profile_stream_says_what_it_measured():
    from edgeseq.profiling.run import stream_fields
    from edgeseq.report.views import stream_run_lines

    s = stream_fields({"kind": "recurrent-step", "steps": 64, "state_bytes": 416, "hop_ms": 10.0,
                       "invoke_ns": [6000, 6400, 7000], "deadline_met_share": 1.0}, {"p50_us": 8.0, "p99_us": 20.0})
    assert s["invoke_p50_us"] == 6.4 and s["host_overhead_us"] == pytest.approx(1.6)
    assert s["real_time_factor"] == pytest.approx(0.002)
    text = "\n".join(stream_run_lines([{"model": "gru-step", "stream": s}]))
    assert "step p50" in text and "invoke p50" in text and "RTF" in text and "10 ms" in text
    window = stream_fields({"kind": "window", "steps": 64, "window": 64, "invoke_ns": [9]}, {"p50_us": 9.0})
    lines = stream_run_lines([{"model": "gru-fp32", "stream": window}])
    assert any(ln.startswith("note:") and "window recompute" in ln for ln in lines)


def test_recommend_with_nothing_meeting_the_budgets_exits_8(tmp_path, capsys):
    from test_recommend import run

    from edgeseq.store.results import ResultsStore

    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        store.add_run(run(1, "gru-fp32", 900.0))
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--target", "pi4", "--latency-budget-ms", "0.1", "--db", str(db), "--json"])
    out, err = capsys.readouterr()
    assert exc.value.code == 8 and json.loads(out)["meets"] == [] and err.startswith("error: no stored model")


def test_compare_and_report_json_carry_their_schema(tmp_path, capsys):
    from test_recommend import run

    from edgeseq.store.results import ResultsStore

    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        store.add_run(run(1, "gru-fp32", 900.0))
        store.add_run(run(2, "gru-int8", 700.0))
    for argv, schema in ((["compare", "gru-fp32", "gru-int8"], "edgeseq.compare/1"), (["report"], "edgeseq.report/1"),
                         (["report", "--format", "json"], "edgeseq.report/1")):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--db", str(db), "--json"] if argv[-1] != "json" else [*argv, "--db", str(db)])
        assert exc.value.code == 0 and json.loads(capsys.readouterr().out)["schema"] == schema
