"""End to end on an emulated Raspberry Pi: a Debian arm64 userland under qemu-user-static with sshd inside and the
aarch64 ai-edge-litert wheel; a converted zoo model is trusted, checked, deployed and profiled through the CLI.

Emulated figures are meaningless (every instruction is emulated); this checks that deploy/profile/parse are correct
on a real aarch64 Python and runtime, reached over a real SSH connection with strict host keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import _armroot
import _sshd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pi(tmp_path_factory):
    reason = _armroot.unavailable_reason() or _sshd.unavailable_reason()
    if reason:
        pytest.skip(f"emulated Pi unavailable: {reason}")
    started = time.monotonic()
    root = _armroot.ensure_rootfs(log=lambda msg: print(msg, file=sys.stderr))
    print(f"armroot ready in {time.monotonic() - started:.1f} s: {root}", file=sys.stderr)
    with (
        _armroot.mounted_proc(root),
        _sshd.sshd_in_rootfs(root, tmp_path_factory.mktemp("pi-sshd")) as server,
    ):
        yield server


def edgeseq(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgeseq.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_trust_check_deploy_and_profile_a_zoo_model_on_the_emulated_pi(pi, tmp_path):
    from edgeseq.store.results import ResultsStore

    model = _armroot.tiny_model(tmp_path / "artifacts" / "gru-tiny fp32.tflite")
    known_hosts = tmp_path / "known_hosts"
    env = {**os.environ, "EDGESEQ_TARGETS_FILE": str(tmp_path / "targets.toml")}
    add = edgeseq(
        "targets",
        "add",
        "pi4",
        pi.url,
        "--key",
        str(pi.client_key),
        "--known-hosts",
        str(known_hosts),
        env=env,
    )
    assert add.returncode == 0, add.stderr

    refused = edgeseq("deploy", str(model), "--target", "pi4", env=env)
    assert (
        refused.returncode == 5
        and "edgeseq targets trust pi4" in refused.stderr
        and "SHA256:" in refused.stderr
    )
    assert not known_hosts.exists()

    trusted = edgeseq("targets", "trust", "pi4", "--yes", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert known_hosts.read_text().startswith(f"[127.0.0.1]:{pi.port} ssh-ed25519 ")

    check = edgeseq("targets", "check", "pi4", "--json", env=env)
    assert check.returncode == 0, check.stderr
    facts = json.loads(check.stdout)["facts"]
    assert facts["machine"] == "aarch64" and facts["runtime"].startswith("ai_edge_litert 2.3")

    deployed = edgeseq("deploy", str(model), "--target", "pi4", "--runs", "3", "--warmup", "1", env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert (
        "sha256 verified on the device" in deployed.stdout and "removed the run directory" in deployed.stdout
    )

    db = tmp_path / "results.db"
    profiled = edgeseq(
        "profile", str(model), "--target", "pi4", "--runs", "10", "--warmup", "2", "--db", str(db), env=env
    )
    assert profiled.returncode == 0, profiled.stderr
    with ResultsStore(db) as store:
        (run,) = store.runs(with_samples=True)
    assert run["target"] == "pi4" and run["device"]["machine"] == "aarch64"
    assert run["runtime_name"] == "ai_edge_litert" and len(run["samples"]) == 10
    assert run["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
