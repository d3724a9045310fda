"""Hostile results stores, targets files and option values, through every verb that reads them.

The corpus is generated here at test time (no checked-in binaries): damaged SQLite stores made with sqlite3 and byte
edits, wrongly typed targets.toml files, non-finite or absurd option values. Each case goes through `run_hostile`
(tests/robustness/_harness.py): one `error:` line naming the problem, the documented exit code (2 bad input, 7 results
store), no traceback, bounded time and memory, and nothing new or changed in the working directory: a damaged store
kept there must be byte-identical afterwards (a refused file is never modified). HOME, XDG_CONFIG_HOME and
EDGESEQ_TARGETS_FILE point into the test's folder, so the user's real config is never read.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from _harness import run, run_hostile
from _harness import snapshot as _snapshot

from edgeseq.store.results import ResultsStore

# ------------------------------------------------------------------------------------------------ corpus makers


def tiny_tflite(path: Path) -> Path:
    """A valid one-op model (RELU on a [1, 4] float tensor), written with the schema that ships in ai-edge-litert."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version, model.description = 3, "edgeseq hostile-input test"
    model.buffers = [s.BufferT(), s.BufferT(), s.BufferT()]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.RELU
    code.version = 1
    model.operatorCodes = [code]
    sg = s.SubGraphT()
    sg.name, sg.tensors = "main", []
    for i, name in enumerate(("x", "y")):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, [1, 4], s.TensorType.FLOAT32, i + 1
        sg.tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg.operators, sg.inputs, sg.outputs = [op], [0], [1]
    model.subgraphs = [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def record(i: int) -> dict:
    from edgeseq.core.stats import latency_stats

    samples = [20_000 + 37 * i + k for k in range(0, 4000, 7)]
    stats = {**latency_stats(samples), "init_ms": 1.5, "first_inference_ms": 0.04, "peak_rss_kb": 40_000 + i,
             "model_size_bytes": 1234}  # fmt: skip
    return {
        "target": "local",
        "device_key": "host/x86_64/cpu",
        "device_json": {"hostname": "host", "machine": "x86_64", "mem_total_kb": 8 << 20},
        "model_path": f"/m/model{i % 3}.tflite",
        "model_name": f"model{i % 3}",
        "model_sha256": f"{i % 3:064x}",
        "model_size_bytes": 1234,
        "recipe": "int8",
        "options_json": {"runs": 50, "threads": 1, "xnnpack": True},
        "stats_json": stats,
        "p50_us": stats["p50_us"],
        "mean_us": stats["mean_us"],
        "peak_rss_kb": stats["peak_rss_kb"],
        "samples": samples,
        "warmup": [5000, 4000],
    }


def good_store(path: Path, n: int = 30) -> Path:
    with ResultsStore(path) as s:
        for i in range(n):
            s.add_run(record(i))
    return path


def _sql(path: Path, *statements: str) -> Path:
    conn = sqlite3.connect(path)
    for q in statements:
        conn.execute(q)
    conn.commit()
    conn.close()
    return path


def _edit(path: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


def _runs_root(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)  # not mode=ro: on a WAL store that leaves -wal/-shm files behind
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return root, page


def make_store(kind: str, path: Path) -> Path:
    """One damaged (or foreign) store; the good one is built first where the damage needs real rows."""
    if kind == "foreign":  # another application's database, in rollback-journal mode as most are
        return _sql(path, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)", "INSERT INTO notes VALUES (1, 'x')")
    if kind == "runs-lookalike":
        return _sql(path, "CREATE TABLE runs(id INTEGER PRIMARY KEY, x)", "PRAGMA user_version = 1")
    if kind == "newer-schema":
        return _sql(path, "CREATE TABLE t(x)", "PRAGMA user_version = 99")
    if kind == "not-sqlite":
        path.write_bytes(b"SQLite format 2\x00 but not really; " * 300)
        return path
    good_store(path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    if kind == "btree":  # the runs table's root page header overwritten
        root, page = _runs_root(path)
        return _edit(path, (root - 1) * page, b"\xff" * 12)
    if kind == "header":
        return _edit(path, 16, b"\x00\x03\x07")  # page size 3: not a power of two
    damage = {
        "json": "UPDATE runs SET stats_json = '{not json'",
        "json-null": "UPDATE runs SET stats_json = 'null'",
        "json-deep": "UPDATE runs SET stats_json = '" + "[" * 200_000 + "'",
        "json-types": "UPDATE runs SET options_json = '{\"threads\": [1], \"input\": {}}'",
        "json-huge-int": "UPDATE runs SET stats_json = '{\"p50_us\": 1" + "0" * 400 + "}'",
        "samples": "UPDATE runs SET samples = x'789c00112233'",
        "samples-bomb": "UPDATE runs SET samples = zeroblob(10)",
        "utf8": "UPDATE runs SET model_name = CAST(x'c328ff' AS TEXT)",
        "types": "UPDATE runs SET target = 5, model_name = x'00'",
        "empty": "UPDATE runs SET stats_json = ''",
    }[kind]
    return _sql(path, damage)


STRUCTURAL = ("foreign", "runs-lookalike", "newer-schema", "not-sqlite", "truncated", "btree", "header")
ROWS_ALL_DAMAGED = ("json", "json-null", "json-deep", "json-types", "json-huge-int", "samples", "samples-bomb",
                    "utf8", "types", "empty")  # fmt: skip
NEEDLE = {
    "foreign": "not an edgeseq results store",
    "runs-lookalike": "not an edgeseq results store",
    "newer-schema": "newer edgeseq",
    "not-sqlite": "results store",
    "truncated": "results store",
    "btree": "results store",
    "header": "results store",
}


def snapshot(work: Path, *more: Path) -> dict:
    """Every file under the folders with size and mtime, minus the harness's private TMPDIR (work/.tmp)."""
    tmp = str(work / ".tmp")
    return {p: v for p, v in _snapshot(work, *more).items() if not p.startswith(tmp)}


@pytest.fixture
def box(tmp_path):
    """A working directory, a private HOME with an empty config, and the env that keeps the real one out."""
    work, home = tmp_path / "work", tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    work.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "EDGESEQ_TARGETS_FILE": str(home / "targets.toml"),
        "PYTHONDONTWRITEBYTECODE": "1",
        # a report that succeeds draws plots: matplotlib's font cache goes here, not into the watched HOME
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return work, home, env


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_tflite(tmp_path_factory.mktemp("model") / "tiny.tflite")


READERS = {
    "report": ["report", "--db", "store.db"],
    "report-json": ["report", "--db", "store.db", "--format", "json"],
    "report-html": ["report", "--db", "store.db", "--format", "html", "--out", "out"],
    "compare": ["compare", "1", "2", "--db", "store.db"],
}


# ------------------------------------------------------------------------------------------------ stores
@pytest.mark.parametrize("kind", STRUCTURAL)
def test_a_foreign_newer_or_damaged_store_is_refused_by_every_verb_and_left_untouched(box, model, kind):
    work, home, env = box
    make_store(kind, work / "store.db")
    shutil.copy(model, work / "tiny.tflite")
    verbs = [*READERS.values(), ["profile", "tiny.tflite", "--target", "local", "--runs", "3", "--db", "store.db"]]
    for args in verbs:
        run_hostile(args, cwd=work, code=7, contains=NEEDLE[kind], env=env, watch=(home,))


@pytest.mark.parametrize("kind", ROWS_ALL_DAMAGED)
def test_a_store_whose_every_row_is_damaged_is_refused_by_report_and_compare(box, kind):
    work, home, env = box
    make_store(kind, work / "store.db")
    for args in READERS.values():
        run_hostile(args, cwd=work, code=7, contains=("store.db", "damaged", "backup"), env=env, watch=(home,))


@pytest.mark.parametrize("kind", ["json", "samples", "utf8", "types"])
def test_one_damaged_row_is_skipped_with_one_warning_line(box, kind):
    work, home, env = box
    store = good_store(work / "store.db")
    sql = {  # only run #2
        "json": "UPDATE runs SET stats_json = '{not json' WHERE id = 2",
        "samples": "UPDATE runs SET samples = x'00' WHERE id = 2",
        "utf8": "UPDATE runs SET recipe = CAST(x'ff' AS TEXT) WHERE id = 2",
        "types": "UPDATE runs SET model_sha256 = x'03' WHERE id = 2",  # a number would become text (affinity)
    }[kind]
    _sql(store, sql)
    before = snapshot(work, home)
    for args in (["report", "--db", "store.db", "--format", "csv"], ["compare", "model0", "model2", "--db", "store.db"]):
        res = run(args, cwd=work, env=env)  # compare by name reads every row; by id only the two it names
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr_lines) == 1, res.stderr
        assert res.stderr_lines[0].startswith("warning: 1 damaged row skipped in store.db (run #2"), res.stderr
    assert snapshot(work, home) == before  # read, never written
    res = run(["compare", "2", "3", "--db", "store.db"], cwd=work, env=env)
    assert res.returncode == 7 and res.stderr_lines[-1].startswith("error: run #2 in store.db is damaged")


@pytest.mark.parametrize("seed", range(4))
def test_bytes_overwritten_mid_file_never_give_a_traceback_or_a_write(box, model, seed):
    """Whatever the damage hits (a row's bytes, a b-tree page, free space), the outcome is a report with a warning,
    or a one-line refusal; never a traceback, never a changed file."""
    import random

    work, home, env = box
    store = good_store(work / "store.db", 60)
    rng = random.Random(seed)
    size = store.stat().st_size
    for _ in range(3):
        _edit(store, rng.randrange(4096, size - 64), bytes(rng.randrange(256) for _ in range(48)))
    shutil.copy(model, work / "tiny.tflite")
    before = snapshot(work, home)
    for args in (*READERS.values(), ["profile", "tiny.tflite", "--runs", "3", "--db", "store.db"]):
        res = run(args, cwd=work, env=env)
        assert "Traceback" not in res.stderr + res.stdout, res.stderr
        assert res.returncode in (0, 7) and len(res.stderr_lines) <= 1, res.stderr
        if res.stderr_lines:
            assert res.stderr_lines[0].startswith(("warning: ", "error: ")), res.stderr
        if args[0] == "profile" and res.returncode == 0:
            before = snapshot(work, home)  # a store quick_check accepts gets the new run: that is its job
        elif args[0] == "report" and "html" in args and res.returncode == 0:
            shutil.rmtree(work / "out")
    assert snapshot(work, home) == before


def test_the_default_store_in_the_working_directory_is_read_not_written(box):
    work, home, env = box
    (work / ".edgeseq").mkdir()
    make_store("foreign", work / ".edgeseq" / "results.db")
    for args in (["report"], ["compare", "1", "2"], ["report", "--format", "md"]):
        run_hostile(args, cwd=work, code=7, contains=(".edgeseq/results.db", "not an edgeseq"), env=env)


def test_a_store_path_that_is_a_folder_or_absent(box, model):
    work, home, env = box
    (work / "dir.db").mkdir()
    shutil.copy(model, work / "tiny.tflite")
    run_hostile(["report", "--db", "dir.db"], cwd=work, code=(2, 7), contains="dir.db", env=env)
    run_hostile(["compare", "1", "2", "--db", "absent.db"], cwd=work, code=7, contains="no results store", env=env)
    (work / "afile").write_text("x")
    run_hostile(["profile", "tiny.tflite", "--db", "afile/r.db"], cwd=work, code=7, contains="not a folder",
                env=env)  # fmt: skip


def test_a_failed_profile_creates_no_store(box, model):
    work, home, env = box
    (work / "broken.tflite").write_bytes(model.read_bytes()[:40])  # TFL3 header, truncated tables
    run_hostile(["profile", "broken.tflite", "--target", "local"], cwd=work, code=2, contains="broken.tflite",
                env=env)  # fmt: skip
    assert not (work / ".edgeseq").exists()


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--max-secs", "inf"], "--max-secs"),
        (["--max-secs", "nan"], "--max-secs"),
        (["--max-secs", "1e10"], "--max-secs"),
        (["--max-secs", "1e300"], "--max-secs"),
        (["--max-secs", "-1"], "--max-secs"),
        (["--cpu-quota", "nan"], "--cpu-quota"),
        (["--cpu-quota", "1e300"], "--cpu-quota"),
        (["--memory-limit", "inf"], "--memory-limit"),
        (["--memory-limit", "nan"], "--memory-limit"),
        (["--memory-limit", "1e300"], "--memory-limit"),
        (["--runs", "0"], "--runs"),
        (["--runs", "9" * 40], "--runs"),
        (["--warmup", "-1"], "--warmup"),
        (["--threads", "100000"], "--threads"),
        (["--repeat", "0"], "--repeat"),
        (["--cpus", "0"], "--cpus"),
        (["--stream", "--steps", "0"], "--steps"),
        (["--stream", "--hop-ms", "inf"], "--hop-ms"),
        (["--runs", "abc"], "--runs"),
    ],
)
def test_profile_refuses_non_finite_or_absurd_numbers_before_anything_runs(box, model, args, needle):
    work, home, env = box
    shutil.copy(model, work / "tiny.tflite")
    run_hostile(["profile", "tiny.tflite", "--target", "local", *args], cwd=work, code=2, contains=needle, env=env,
                watch=(home,))  # fmt: skip


@pytest.mark.parametrize(
    "args, needle",
    [
        (["deploy", "tiny.tflite", "--target", "local", "--timeout", "inf"], "--timeout"),
        (["deploy", "tiny.tflite", "--target", "local", "--timeout", "nan"], "--timeout"),
        (["deploy", "tiny.tflite", "--target", "local", "--timeout", "0"], "--timeout"),
        (["deploy", "tiny.tflite", "--target", "local", "--timeout", "1e300"], "--timeout"),
        (["deploy", "tiny.tflite", "--target", "local", "--runs", "0"], "--runs"),
        (["deploy", "tiny.tflite", "--target", "local", "--threads", "-3"], "--threads"),
        (["targets", "add", "px", "adb://S", "--adb-server-port", "70000", "--file", "t.toml"], "adb_server_port"),
        (["targets", "add", "px", "adb://S", "--adb-server-port", "0", "--file", "t.toml"], "adb_server_port"),
        (["compare", "#" + "9" * 30, "#1", "--db", "store.db"], "no run with id"),
        (["compare", "#" + "9" * 5000, "#1", "--db", "store.db"], "no run with id"),
    ],
)
def test_deploy_targets_and_compare_refuse_bad_numbers(box, model, args, needle):
    work, home, env = box
    shutil.copy(model, work / "tiny.tflite")
    good_store(work / "store.db", 2)
    run_hostile(args, cwd=work, code=2, contains=needle, env=env, watch=(home,))


# ------------------------------------------------------------------------------------------------ targets.toml
TYPED_WRONG = {
    "url-int": ("url = 5", "url"),
    "options-str": ('url = "ssh://pi@127.0.0.1:1"\noptions = "str"', "options"),
    "timeout-str": ('url = "ssh://pi@127.0.0.1:1"\noptions = { connect_timeout = "abc" }', "connect_timeout"),
    "timeout-inf": ('url = "ssh://pi@127.0.0.1:1"\noptions = { connect_timeout = inf }', "connect_timeout"),
    "timeout-nan": ('url = "ssh://pi@127.0.0.1:1"\noptions = { connect_timeout = nan }', "connect_timeout"),
    "key-int": ('url = "ssh://pi@127.0.0.1:1"\nkey_file = 7', "key_file"),
    "known-hosts-list": ('url = "ssh://pi@127.0.0.1:1"\nknown_hosts = ["a"]', "known_hosts"),
    "python-bool": ('url = "ssh://pi@127.0.0.1:1"\npython = true', "python"),
    "runner-int": ('url = "ssh://pi@127.0.0.1:1"\nrunner = 1', "runner"),
    "port-big": ('url = "adb://S"\noptions = { adb_server_port = 70000 }', "adb_server_port"),
    "unknown-option": ('url = "ssh://pi@127.0.0.1:1"\noptions = { sshh = "/usr/bin/ssh" }', "unknown option"),
    "relative-ssh": ('url = "ssh://pi@127.0.0.1:1"\noptions = { ssh = "./fake-ssh" }', "options.ssh"),
    "no-url": ('key_file = "/k"', "no url"),
    "not-a-table": (None, "must be a table"),
    "not-toml": ("url = = =", "cannot parse"),
}


def _targets_text(body: str | None) -> str:
    if body is None:
        return "targets = 5\n"
    return f'[targets.good]\nurl = "ssh://pi@127.0.0.1:1"\n\n[targets.pi]\n{body}\n'


@pytest.mark.parametrize("where", ["cwd", "named"])
@pytest.mark.parametrize("case", sorted(TYPED_WRONG))
def test_a_wrongly_typed_targets_file_is_one_line_for_list_and_profile(box, model, case, where):
    work, home, env = box
    body, needle = TYPED_WRONG[case]
    if where == "cwd":  # picked up implicitly
        path, env = work / "targets.toml", {**env, "EDGESEQ_TARGETS_FILE": ""}
    else:
        path = home / "targets.toml"
    path.write_text(_targets_text(body))
    shutil.copy(model, work / "tiny.tflite")
    contains = (needle,) if case == "not-toml" else (needle, "targets.toml")
    for args in (["targets", "list"], ["profile", "tiny.tflite", "--target", "pi"]):
        run_hostile(args, cwd=work, code=2, contains=contains, env=env, watch=(home,))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["url-int", "timeout-inf", "key-int", "relative-ssh"])
def test_a_wrongly_typed_targets_file_is_one_line_for_check_deploy_and_all(box, model, case):
    work, home, env = box
    (home / "targets.toml").write_text(_targets_text(TYPED_WRONG[case][0]))
    shutil.copy(model, work / "tiny.tflite")
    for args in (["targets", "check", "pi"], ["deploy", "tiny.tflite", "--target", "pi"],
                 ["profile", "tiny.tflite", "--all"], ["targets", "remove", "good"]):  # fmt: skip
        run_hostile(args, cwd=work, code=2, contains=TYPED_WRONG[case][1], env=env, watch=(home,))


def _fake_program(folder: Path, name: str, marker: Path) -> Path:
    fake = folder / name
    fake.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{marker}'\nexit 255\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return fake


PROGRAM_ENTRIES = {
    "ssh-relative": 'url = "ssh://pi@127.0.0.1:1"\noptions = {{ ssh = "./fake-ssh" }}',
    "ssh-absolute": 'url = "ssh://pi@127.0.0.1:1"\noptions = {{ ssh = "{fake}" }}',
    "adb-absolute": 'url = "adb://SERIAL"\noptions = {{ adb = "{fake}" }}',
    "local-python": 'url = "local"\npython = "{fake}"',
    "benchmark-binary": 'url = "local"\nrunner = "benchmark_model"\nbenchmark_binary = "{fake}"',
}


@pytest.mark.parametrize("entry", sorted(PROGRAM_ENTRIES))
def test_a_targets_file_in_the_working_directory_never_runs_its_programs(box, model, entry):
    """An untrusted folder plants ./fake-ssh and a targets.toml naming it: profile, check and deploy refuse, and the
    fake never runs (its marker file never appears)."""
    work, home, env = box
    env = {**env, "EDGESEQ_TARGETS_FILE": ""}  # the working directory's file is the one found
    marker = home / "MARKER"
    fake = _fake_program(work, "fake-ssh", marker)
    (work / "targets.toml").write_text(f"[targets.pi]\n{PROGRAM_ENTRIES[entry].format(fake=fake)}\n")
    shutil.copy(model, work / "tiny.tflite")
    for args in (["profile", "tiny.tflite", "--target", "pi"], ["targets", "check", "pi"],
                 ["deploy", "tiny.tflite", "--target", "pi"]):  # fmt: skip
        run_hostile(args, cwd=work, code=2, contains="targets.toml", env=env, watch=(home,))
        assert not marker.exists(), f"{args}: the planted program ran"


def test_the_same_program_named_in_the_users_own_file_does_run(box, model):
    """The positive control: the marker mechanism works, and a trusted file may name an absolute program."""
    work, home, env = box
    marker = home / "MARKER"
    fake = _fake_program(home, "my-ssh", marker)
    (home / "targets.toml").write_text(f'[targets.pi]\nurl = "ssh://pi@127.0.0.1:1"\noptions = {{ ssh = "{fake}" }}\n')
    shutil.copy(model, work / "tiny.tflite")
    res = run(["profile", "tiny.tflite", "--target", "pi"], cwd=work, env=env)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert marker.is_file() and "BatchMode=yes" in marker.read_text()


def test_a_dot_on_path_does_not_find_a_planted_ssh(box, model):
    work, home, env = box
    marker = home / "MARKER"
    _fake_program(work, "ssh", marker)
    real = os.environ.get("PATH", "")
    shutil.copy(model, work / "tiny.tflite")
    if shutil.which("ssh", path=real) is None:
        pytest.skip("no OpenSSH client installed")
    res = run(["profile", "tiny.tflite", "--target", "ssh://pi@127.0.0.1:1"], cwd=work,
              env={**env, "PATH": f".::{real}"})  # fmt: skip
    assert res.returncode == 5 and "Traceback" not in res.stderr and len(res.stderr_lines) == 1, res.stderr
    assert not marker.exists()
