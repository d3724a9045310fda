"""The SSH target against a real OpenSSH server (Debian's sshd on 127.0.0.1, throwaway keys, strict known_hosts)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import _armroot
import _sshd
import pytest
from click.testing import CliRunner

from edgeseq.core.errors import EdgeseqError, TargetError
from edgeseq.targets import config
from edgeseq.targets.base import TargetSpec
from edgeseq.targets.ssh import SshTarget

_REASON = _sshd.unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"no sshd: {_REASON}")
AWKWARD = "dir with space; $(touch PWNED) `touch PWNED2` 'q' \"d\" & *"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with _sshd.sshd(tmp_path_factory.mktemp("sshd")) as srv:
        yield srv


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _armroot.tiny_model(tmp_path_factory.mktemp("model") / "gru tiny (b1).tflite")


def spec(server, name="box", **kw) -> TargetSpec:
    base = {
        "key_file": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "python": sys.executable,
    }
    return TargetSpec(name=name, url=kw.pop("url", server.url), **{**base, **kw})


@pytest.fixture
def targets_file(tmp_path, monkeypatch):
    path = tmp_path / "targets.toml"
    monkeypatch.setenv("EDGESEQ_TARGETS_FILE", str(path))
    return path


def test_every_word_arrives_intact_with_exit_status_and_stderr(server):
    t = SshTarget(spec(server))
    words = ["a b", "$HOME", "$(id)", "`id`", "'q'", '"d"', ";", "&&", "*", "\\", "ü"]
    r = t.run(["printf", "%s|", *words], timeout=20)
    assert r.returncode == 0 and r.stdout == "|".join(words) + "|"
    r = t.run(["sh", "-c", 'echo out; echo "err $1" >&2; exit 7', "sh", "x y"], timeout=20)
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err x y\n")


def test_push_pull_workdir_cleanup_with_shell_metacharacters(server, tmp_path):
    base = tmp_path / AWKWARD
    t = SshTarget(spec(server, workdir=str(base)))
    wd = t.workdir()
    assert wd.startswith(str(base) + "/run-")
    src = tmp_path / "in put;$x.bin"
    src.write_bytes(os.urandom(300_000))
    remote = f"{wd}/it's a $(file) `x`.bin"
    t.push(src, remote)
    t.pull(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    t.cleanup(wd)
    assert not Path(wd).exists() and base.is_dir()
    assert not list(Path.home().glob("PWNED*")) and not list(tmp_path.glob("PWNED*"))
    with pytest.raises(TargetError, match="refusing to delete"):
        t.cleanup(str(base))


def test_unknown_host_key_is_refused_with_fingerprint_and_never_added(server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(TargetError) as exc:
        SshTarget(spec(server, known_hosts=str(empty))).run(["true"], 10)
    fp = subprocess.run(
        ["ssh-keygen", "-lf", str(server.host_key)], capture_output=True, text=True
    ).stdout.split()[1]
    msg = exc.value.one_line()
    assert "not in" in msg and fp in msg and "edgeseq targets trust box" in msg
    assert empty.read_text() == ""


def test_changed_host_key_is_refused(server, tmp_path):
    other = _sshd.keygen(tmp_path / "other_host")
    kind, b64 = other.with_suffix(".pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{server.port} {kind} {b64}\n")
    with pytest.raises(TargetError, match="CHANGED") as exc:
        SshTarget(spec(server, known_hosts=str(kh))).run(["true"], 10)
    assert "targets trust box" in exc.value.one_line()
    assert kh.read_text() == f"[127.0.0.1]:{server.port} {kind} {b64}\n"


def test_trust_records_the_key_only_on_request(server, tmp_path, targets_file):
    from edgeseq.cli import cli

    kh = tmp_path / "kh" / "known_hosts"
    config.add(spec(server, name="pi4", known_hosts=str(kh)))
    runner = CliRunner()
    r = runner.invoke(cli, ["targets", "trust", "pi4", "--fingerprint", "SHA256:" + "A" * 43])
    assert (
        isinstance(r.exception, TargetError) and "no host key matches" in str(r.exception) and not kh.exists()
    )
    r = runner.invoke(cli, ["targets", "trust", "pi4"], input="n\n")
    assert r.exit_code != 0 and not kh.exists()
    r = runner.invoke(cli, ["targets", "trust", "pi4", "--yes"])
    assert r.exit_code == 0, r.output
    assert "SHA256:" in r.output and kh.read_text().startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")
    assert SshTarget(config.get("pi4")).run(["echo", "ok"], 10).stdout == "ok\n"


def test_refused_authentication(server, tmp_path):
    stranger = _sshd.keygen(tmp_path / "stranger")
    with pytest.raises(TargetError, match="authentication refused"):
        SshTarget(spec(server, key_file=str(stranger))).run(["true"], 10)


def test_unreachable_host(server):
    port = _sshd.free_port()
    with pytest.raises(TargetError, match="cannot reach"):
        SshTarget(spec(server, url=f"ssh://{server.user}@127.0.0.1:{port}")).run(["true"], 10)


def test_timeout_stops_the_command(server):
    started = time.monotonic()
    with pytest.raises(TargetError, match="did not finish within 1 s"):
        SshTarget(spec(server)).run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 15


def test_one_retry_after_a_dropped_connection(server, tmp_path):
    for drop, ok in ((1, True), (2, False)):
        proxy = _sshd.DroppingProxy(server.port, drop=drop)
        try:
            kh = tmp_path / f"kh{drop}"
            kh.write_text(server.host_key_line().replace(f":{server.port} ", f":{proxy.port} ") + "\n")
            t = SshTarget(
                spec(server, url=f"ssh://{server.user}@127.0.0.1:{proxy.port}", known_hosts=str(kh))
            )
            if ok:
                assert t.run(["echo", "ok"], 10).stdout == "ok\n"
                assert proxy.accepted == 2
            else:
                with pytest.raises(TargetError, match="dropped twice"):
                    t.run(["echo", "ok"], 10)
        finally:
            proxy.close()


def test_deploy_verifies_runs_and_cleans_up_or_keeps(server, model, tmp_path):
    from edgeseq.targets.deploy import deploy

    base = tmp_path / AWKWARD
    t = SshTarget(spec(server, workdir=str(base)))
    data = deploy(t, model, runs=5, warmup=1)
    assert data["ok"] and data["model"]["sha256_verified"] and len(data["timings_ns"]["invoke"]) == 5
    assert list(base.iterdir()) == []
    kept = deploy(t, model, runs=2, warmup=0, keep=True)
    remote = Path(kept["remote_dir"])
    assert remote.is_dir() and sorted(p.name for p in remote.iterdir()) == [
        "edgeseq_agent.pyz",
        "gru_tiny__b1_.tflite",
    ]
    t.cleanup(str(remote))


def test_missing_python_or_runtime_names_targets_setup(server, model, tmp_path):
    from edgeseq.targets.deploy import deploy

    with pytest.raises(TargetError, match="no Python at") as exc:
        deploy(SshTarget(spec(server, python="/nonexistent/python3")), model)
    assert "edgeseq targets setup box" in exc.value.one_line()
    bare = tmp_path / "bare python"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')  # no site-packages: no numpy, no runtime
    bare.chmod(0o755)
    with pytest.raises(TargetError, match="numpy is missing") as exc:
        deploy(SshTarget(spec(server, python=str(bare))), model)
    assert "targets setup box" in exc.value.one_line()


def _killing_python(tmp_path: Path) -> Path:
    """A device python that is SIGKILLed (as the OOM killer would) when asked to run a model named *killme*."""
    path = tmp_path / "python-oom"
    path.write_text(
        "#!/bin/sh\n"
        'case "$*" in *killme*) echo "edgeseq-agent: stage=load" >&2; kill -9 $$ ;; esac\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    path.chmod(0o755)
    return path


def test_agent_killed_mid_run_is_clear_and_the_store_keeps_completed_runs(
    server, model, tmp_path, targets_file
):
    from edgeseq.profiling.run import profile_models
    from edgeseq.store.results import ResultsStore
    from edgeseq.targets.deploy import deploy

    python = _killing_python(tmp_path)
    killme = tmp_path / "killme.tflite"
    killme.write_bytes(model.read_bytes())
    config.add(spec(server, name="box", python=str(python)))
    with pytest.raises(TargetError, match="SIGKILL"):
        deploy(SshTarget(config.get("box")), killme, runs=2)
    db = tmp_path / "results.db"
    with pytest.raises(EdgeseqError) as exc:
        profile_models([model, killme], target="box", runs=5, warmup=1, db=db)
    assert "137" in exc.value.one_line() or "killed" in exc.value.one_line().lower()
    with ResultsStore(db) as store:
        assert store.count() == 1  # the run that completed before the kill


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_disk_full_on_the_device_is_a_clear_error(server, model, tmp_path):
    from edgeseq.targets.deploy import deploy

    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(full)], check=True)
    try:
        with pytest.raises(TargetError, match="disk is full"):
            deploy(SshTarget(spec(server, workdir=str(full))), model)
        assert [p for p in full.rglob("*") if p.is_file()] == []
    finally:
        subprocess.run(["umount", "-l", str(full)])


def test_fleet_one_unreachable_target_does_not_stop_the_other(server, model, tmp_path, targets_file):
    from edgeseq.profiling.fleet import profile_fleet
    from edgeseq.store.results import ResultsStore

    bare = tmp_path / "bare python"  # no site-packages: no numpy, no runtime
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    config.add(spec(server, name="box"))
    config.add(spec(server, name="gone", url=f"ssh://{server.user}@127.0.0.1:{_sshd.free_port()}"))
    config.add(spec(server, name="bare", python=str(bare)))
    db = tmp_path / "results.db"
    result = profile_fleet([str(model)], ["gone", "box", "bare"], runs=5, warmup=1, db=db)
    assert [r["target"] for r in result.rows] == ["box"]
    assert list(result.failures) == ["gone", "bare"]
    assert "cannot reach" in result.failures["gone"].one_line()
    assert "edgeseq targets setup bare" in result.failures["bare"].one_line()
    assert "2 of 3 targets failed (gone, bare)" in result.error().one_line()
    with ResultsStore(db) as store:
        assert store.count() == 1


def test_cli_errors_are_one_line_with_a_nonzero_exit(server, model, tmp_path):
    env = {**os.environ, "EDGESEQ_TARGETS_FILE": str(tmp_path / "t.toml")}
    url = f"ssh://{server.user}@127.0.0.1:{_sshd.free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq.cli", "deploy", str(model), "--target", url],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 5
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "cannot reach" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_setup_installs_the_runtime_into_a_venv_on_the_device(server, tmp_path, targets_file):
    """`targets setup --find-links`: wheels pushed, a venv made and filled on the device, its python recorded."""
    from edgeseq.cli import cli

    wheels = _armroot.cache_root().parent / "wheels-x86_64"
    if not list(wheels.glob("ai_edge_litert-*.whl")):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), "--only-binary=:all:",
             "ai-edge-litert>=2.3,<2.4", "numpy>=1.26,<3"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot fetch wheels for the setup test: {proc.stderr.strip()[-200:]}")
    config.add(spec(server, name="box", python=sys._base_executable))  # the interpreter behind our venv
    venv = tmp_path / "device venv"
    r = CliRunner().invoke(cli, ["targets", "setup", "box", "--find-links", str(wheels), "--venv", str(venv)])
    assert r.exception is None, r.output
    assert config.get("box").python == f"{venv}/bin/python"
    facts = SshTarget(config.get("box")).require_runtime()
    assert facts["runtime"].startswith("ai_edge_litert")


def test_cli_profile_fleet_reports_each_failure_and_exits_nonzero(server, model, tmp_path):
    from edgeseq.store.results import ResultsStore

    env = {**os.environ, "EDGESEQ_TARGETS_FILE": str(tmp_path / "t.toml")}
    config.add(spec(server, name="box"), tmp_path / "t.toml")
    config.add(
        spec(server, name="gone", url=f"ssh://{server.user}@127.0.0.1:{_sshd.free_port()}"),
        tmp_path / "t.toml",
    )
    db = tmp_path / "results.db"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseq.cli", "profile", str(model), "--all", "--runs", "5", "--warmup", "1",
         "--db", str(db)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert "== box" in proc.stdout and "gone" not in proc.stdout
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors[0].startswith("error: gone: ") and "cannot reach" in errors[0]
    assert "1 of 2 targets failed (gone)" in errors[-1]
    with ResultsStore(db) as store:
        assert [r["target"] for r in store.runs()] == ["box"]
