"""`edgeseq profile` end to end on the local target: figures, provenance, constraint emulation, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _tiny_tflite import build_tiny_models

from edgeseq.cli import main
from edgeseq.core.errors import InputError, ModelError, TargetError
from edgeseq.core.progress import is_progress_line
from edgeseq.core.stats import latency_stats
from edgeseq.store.results import ResultsStore
from edgeseq.targets.local import LocalTarget, _cgroup_root, parse_size
from edgeseq.targets.runner import AgentOptions, run_agent

FIGURES = (
    "init_ms",
    "first_inference_ms",
    "mean_us",
    "std_us",
    "min_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "throughput_per_s",
    "peak_rss_kb",
    "model_peak_kb",
    "baseline_kb",
    "memory_method",
    "model_size_bytes",
    "recipe",
    "params",
    "accuracy",
)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny-tflite")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_profile_json_end_to_end(tiny, tmp_path, capsys):
    db = tmp_path / "r.db"
    code, out, err = cli(
        capsys,
        "profile",
        str(tiny["dense-fp32"]),
        str(tiny["dense-int8"]),
        "--target",
        "local",
        "--threads",
        "1",
        "--runs",
        "40",
        "--warmup",
        "5",
        "--db",
        str(db),
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["schema"] == "edgeseq.profile/1" and len(doc["runs"]) == 2
    fp32, int8 = doc["runs"]
    for row in (fp32, int8):
        for key in FIGURES:
            assert key in row
        assert row["count"] == 40 and row["target"] == "local" and row["threads"] == 1
        assert row["min_us"] <= row["p50_us"] <= row["p90_us"] <= row["p99_us"] <= row["max_us"]
        assert 10_000 < row["peak_rss_kb"] < 400_000
        # the model's own memory: the process's peak less what Python, numpy and the runtime held before it loaded
        assert 0 < row["model_peak_kb"] < 30_000 and row["baseline_kb"] + row["model_peak_kb"] <= row["peak_rss_kb"]
    manifest = json.loads(tiny["dense-fp32"].with_suffix(".json").read_text())
    assert (fp32["recipe"], fp32["accuracy"], fp32["params"]) == ("fp32", 0.91, manifest["params"])
    assert int8["recipe"] == "int8" and int8["model_size_bytes"] == tiny["dense-int8"].stat().st_size
    with ResultsStore(db) as s:
        runs = s.runs(with_samples=True)
    assert [r["id"] for r in runs] == [fp32["run_id"], int8["run_id"]]
    run = runs[0]
    assert run["model_sha256"] == fp32["sha256"] and run["manifest"]["recipe"] == {"slug": "fp32"}
    assert run["runtime_name"] == "ai_edge_litert" and run["agent_schema"] == "edgeseq.agent/3"
    assert run["options"]["runs"] == 40 and run["device"]["machine"] and run["edgeseq_version"]
    assert len(run["samples"]) == 40 and len(run["warmup"]) == 5


def test_stats_are_computed_from_the_raw_samples_like_numpy(tiny, tmp_path, capsys):
    db = tmp_path / "r.db"
    cli(capsys, "profile", str(tiny["gru-fp32"]), "--runs", "60", "--warmup", "3", "--db", str(db))
    with ResultsStore(db) as s:
        run = s.runs(with_samples=True)[0]
    us = run["samples"] / 1e3
    st = run["stats"]
    assert st["p50_us"] == pytest.approx(np.percentile(us, 50))
    assert st["p90_us"] == pytest.approx(np.percentile(us, 90))
    assert st["p99_us"] == pytest.approx(np.percentile(us, 99))
    assert st["mean_us"] == pytest.approx(us.mean()) and st["std_us"] == pytest.approx(us.std(ddof=1))
    assert st["min_us"] == pytest.approx(us.min()) and st["max_us"] == pytest.approx(us.max())
    assert st["throughput_per_s"] == pytest.approx(1e6 / us.mean())


def test_latency_stats_unit():
    s = latency_stats([1000, 2000, 3000, 4000])
    assert s["p50_us"] == 2.5 and s["mean_us"] == 2.5 and s["min_us"] == 1 and s["max_us"] == 4
    assert s["std_us"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_plain_table_when_not_a_tty_and_repeat(tiny, tmp_path, capsys):
    code, out, _ = cli(
        capsys,
        "profile",
        str(tiny["dense-fp32"]),
        "--runs",
        "20",
        "--warmup",
        "2",
        "--repeat",
        "2",
        "--db",
        str(tmp_path / "r.db"),
    )
    assert code == 0
    assert "p50 µs" in out and "p99 µs" in out and "model MiB" in out and "invokes" in out and "stored" in out
    assert "process MiB" not in out  # the wide columns: --wide
    assert "dense-fp32 #1" in out
    assert "\x1b[" not in out  # no colour codes in a pipe
    with ResultsStore(tmp_path / "r.db") as s:
        assert [r["repeat_index"] for r in s.runs()] == [0, 1]
        assert len({r["session"] for r in s.runs()}) == 1


def test_library_api_profile_models(tiny, tmp_path):
    from edgeseq.commands.profile import profile_models

    seen = []
    rows = profile_models(
        [tiny["dense-fp32"]],
        target="local",
        runs=10,
        warmup=1,
        threads=1,
        db=tmp_path / "r.db",
        on_result=seen.append,
    )
    assert len(rows) == 1 and rows == seen and rows[0]["p50_us"] > 0 and rows[0]["run_id"] == 1


def test_profile_does_not_import_tensorflow(tiny, tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from edgeseq.cli import main
        try:
            main(["profile", {str(tiny["dense-fp32"])!r}, "--runs", "5", "--db", {str(tmp_path / "r.db")!r}])
        except SystemExit as e:
            assert e.code == 0, e.code
        bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        assert not bad, bad
        print("clean")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------ constraint emulation
def test_cpus_pins_the_agent_by_affinity(tiny):
    data = run_agent(LocalTarget(cpus=1), tiny["dense-fp32"], AgentOptions(runs=5, warmup=1))
    assert data["device"]["cpus_allowed"] == 1
    with pytest.raises(InputError, match="--cpus"):
        LocalTarget(cpus=os.cpu_count() + 50)


def _cgroup_or_message(kind: str):
    try:
        _cgroup_root(kind)
        return True
    except TargetError as exc:
        assert "cannot be emulated" in exc.one_line() and "\n" not in exc.one_line()
        return False


def test_memory_limit_through_cgroups_or_a_clear_message(tiny):
    if not _cgroup_or_message("memory"):
        with pytest.raises(TargetError, match="--memory-limit cannot be emulated"):
            LocalTarget(memory_limit="256M")
        return
    ok = run_agent(LocalTarget(memory_limit="256M"), tiny["dense-fp32"], AgentOptions(runs=5, warmup=1))
    assert ok["ok"]
    # a limit below what python + numpy + the runtime need: the kernel kills the agent, we say so
    with pytest.raises(TargetError, match="OOM killer at --memory-limit 8M") as exc:
        run_agent(LocalTarget(memory_limit="8M"), tiny["dense-fp32"], AgentOptions(runs=5, warmup=1))
    assert "only the agent's process was lost" in exc.value.one_line()


def test_memory_limit_below_the_predicted_need_is_refused_before_running(tiny, tmp_path, capsys):
    # Python + numpy + the runtime alone hold ~40 MB: 8M cannot hold the agent, and profile says so before any
    # cgroup is made or anything runs (so this holds on machines without a memory controller too).
    db = tmp_path / "r.db"
    code, out, err = cli(capsys, "profile", str(tiny["dense-fp32"]), "--memory-limit", "8M", "--db", str(db))
    assert code == 2 and not out and err.count("\n") == 1, err
    assert err.startswith("error: dense-fp32.tflite needs about ") and "MiB, over --memory-limit 8M" in err
    assert not db.exists()


def test_cpu_quota_through_cgroups_or_a_clear_message(tiny):
    if not _cgroup_or_message("cpu"):
        with pytest.raises(TargetError, match="--cpu-quota cannot be emulated"):
            LocalTarget(cpu_quota=0.5)
        return
    target = LocalTarget(cpu_quota=0.5)
    data = run_agent(target, tiny["dense-fp32"], AgentOptions(runs=20, warmup=1))
    assert data["ok"] and target.info()["constraints"]["cpu_quota"] == 0.5
    probe = target.run(["cat", "/proc/self/cgroup"], 10)
    assert "edgeseq-" in probe.stdout  # the child ran inside its own cgroup, which is gone again
    leftover = [p for p in Path("/sys/fs/cgroup").rglob("edgeseq-*") if str(os.getpid()) in p.name]
    assert not leftover


def test_parse_size():
    assert parse_size("256M") == 256 << 20 and parse_size("1G") == 1 << 30 and parse_size("512k") == 512 << 10
    with pytest.raises(InputError):
        parse_size("lots")


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make, code, needle",
    [
        (lambda t, d: [str(d / "missing.tflite")], 2, "model not found"),
        (lambda t, d: [str(_corrupt(d))], 2, "not a TFLite model"),
        (lambda t, d: [str(t["gru-flex"])], 2, "Flex"),
        (lambda t, d: [str(t["dense-fp32"]), "--runs", "0"], 2, "--runs must be at least 1"),
        (lambda t, d: [str(t["dense-fp32"]), "--target", "nowhere"], 2, "nowhere"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tiny, tmp_path, capsys, make, code, needle):
    db = tmp_path / "r.db"
    got, out, err = cli(capsys, "profile", *make(tiny, tmp_path), "--db", str(db))
    assert got == code
    lines = [ln for ln in err.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err
    if db.exists():
        with ResultsStore(db) as s:
            assert s.count() == 0


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--max-secs", "inf", "--max-secs must be a finite number"),
        ("--max-secs", "nan", "--max-secs must be a finite number"),
        ("--max-secs", "1e10", "<= 86400"),
        ("--max-secs", "1e300", "<= 86400"),
        ("--cpu-quota", "inf", "--cpu-quota must be"),
        ("--memory-limit", "inf", "--memory-limit must be a size"),
        ("--memory-limit", "1e300", "--memory-limit must be a size"),
        ("--runs", "99999999999999999999", "at most 1,000,000,000"),
        ("--threads", "0", "--threads must be at least 1"),
        ("--repeat", "100000", "--repeat must be"),
    ],
)
def test_non_finite_or_absurd_numbers_are_one_line_before_anything_runs(tiny, tmp_path, monkeypatch, capsys,
                                                                          option, value, needle):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "profile", str(tiny["dense-fp32"]), option, value)
    lines = [ln for ln in err.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert list(tmp_path.iterdir()) == []  # no .edgeseq/results.db


def test_a_failed_run_leaves_no_store_behind(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "profile", str(tiny["gru-flex"]), "--runs", "3")
    assert code == 2 and "Flex" in err
    assert not (tmp_path / ".edgeseq").exists()  # the store is created with the first result, not before
    code, _, _ = cli(capsys, "profile", str(tiny["dense-fp32"]), "--runs", "3")
    assert code == 0 and (tmp_path / ".edgeseq" / "results.db").is_file()


def test_errors_name_the_users_input_not_its_temporary_copy(tiny, tmp_path, capsys):
    bad = tmp_path / "my input.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    code, _, err = cli(capsys, "profile", str(tiny["dense-fp32"]), "--input", str(bad), "--db",
                       str(tmp_path / "r.db"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "edgeseq-run-" not in err and str(bad) in err


def _corrupt(d: Path) -> Path:
    p = d / "corrupt.tflite"
    p.write_bytes(b"\x00" * 64)
    return p


def test_unwritable_db_fails_before_measuring(tiny, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(capsys, "profile", str(tiny["dense-fp32"]), "--db", str(tmp_path / "afile" / "r.db"))
    assert code == 7 and err.count("\n") == 1 and "results store" in err


def test_stored_results_survive_a_later_failure(tiny, tmp_path, capsys):
    db = tmp_path / "r.db"
    cli(capsys, "profile", str(tiny["dense-fp32"]), "--runs", "5", "--db", str(db))
    code, _, err = cli(
        capsys, "profile", str(tiny["dense-int8"]), str(tiny["gru-flex"]), "--runs", "5", "--db", str(db)
    )
    assert code == 2 and "Flex" in err
    with ResultsStore(db) as s:
        assert [r["model_name"] for r in s.runs()] == ["dense-fp32", "dense-int8"]


def test_a_crashing_interpreter_kills_only_the_agent(tiny, tmp_path):
    """A stand-in 'python' runs the real agent but dereferences NULL right after the model loads: a true SIGSEGV in
    the child, the way a runtime bug would look."""
    wrapper = tmp_path / "crashing-python"
    wrapper.write_text(
        textwrap.dedent(
            f"""\
        #!{sys.executable}
        import ctypes, sys
        sys.argv = sys.argv[1:]
        sys.path.insert(0, sys.argv[0])  # the pushed zipapp: its package, imported without running main
        import edgeseq_agent, edgeseq_agent.measuring as measuring
        def _stage_hook(name, _orig=measuring._stage):
            _orig(name)
            if name == "allocate":
                ctypes.string_at(0)
        measuring._stage = _stage_hook
        sys.exit(edgeseq_agent.main(sys.argv[1:]))
        """
        )
    )
    wrapper.chmod(0o755)
    with pytest.raises(TargetError) as exc:
        run_agent(LocalTarget(python=str(wrapper)), tiny["dense-fp32"], AgentOptions(runs=5))
    msg = exc.value.one_line()
    assert "SIGSEGV" in msg and "during allocate" in msg and "only the agent's process was lost" in msg


def test_a_command_past_its_timeout_is_killed():
    with pytest.raises(TargetError, match="past its 1 s limit"):
        LocalTarget().run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)


def test_missing_model_through_the_runner(tmp_path):
    with pytest.raises(ModelError):
        run_agent(LocalTarget(), tmp_path / "nope.tflite", AgentOptions())


def test_manifest_summary_reads_the_converter_layout_and_rejects_a_stale_one(tmp_path):
    from edgeseq.profiling.run import manifest_summary

    m = {
        "schema": "edgeseq.manifest/1",
        "artifact": {"file": "gru-int8.tflite", "sha256": "ab" * 32},
        "recipe": {"mode": "int8", "slug": "int8-io8"},
        "source": {"sha256": "cd" * 32, "parameters": 1234},
        "validation": {"tflite_metrics": {"accuracy": 0.87}, "keras_metrics": {"accuracy": 0.9}},
    }
    s = manifest_summary(m, tmp_path / "gru-int8.tflite", "ab" * 32)
    assert s == {"recipe": "int8-io8", "params": 1234, "accuracy": 0.87, "manifest_stale": False}
    stale = manifest_summary(m, tmp_path / "gru-int8.tflite", "ef" * 32)
    assert stale["manifest_stale"] and stale["accuracy"] is None and stale["recipe"] == "int8"


def test_ctrl_c_keeps_the_runs_already_stored(tiny, tmp_path):
    import signal
    import sqlite3
    import time

    db = tmp_path / "r.db"
    models = [str(tiny["gru-fp32"])] * 6
    code = "import sys; from edgeseq.cli import main; main(sys.argv[1:])"
    argv = [
        sys.executable,
        "-c",
        code,
        "profile",
        *models,
        "--runs",
        "100000000",
        "--max-secs",
        "0.7",
        "--db",
        str(db),
    ]
    # A shell without job control starts background jobs with SIGINT ignored, and an ignored SIGINT is inherited
    # (Python then installs no KeyboardInterrupt handler): restore the default so Ctrl-C is what this tests.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 90
    stored = 0
    while time.time() < deadline and stored < 1:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db, timeout=5) as c:
                stored = c.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        except sqlite3.Error:
            continue
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and ("interrupted" in err or "aborted" in err) and "Traceback" not in err
    with ResultsStore(db) as s:
        runs = s.runs(with_samples=True)
        assert s.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert 1 <= len(runs) < 6 and all(len(r["samples"]) == r["stats"]["count"] > 0 for r in runs)


def test_constraints_are_stored_with_the_run(tiny, tmp_path):
    from edgeseq.profiling.run import profile_models

    profile_models([tiny["dense-fp32"]], runs=5, warmup=0, cpus=1, db=tmp_path / "r.db")
    with ResultsStore(tmp_path / "r.db") as s:
        run = s.runs()[0]
    assert run["constraints"]["cpus"] == 1 and run["device"]["cpus_allowed"] == 1
