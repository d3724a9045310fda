"""The adb target: the real adb client and server (`adb -P PORT nodaemon server`) against a device-side ADB TEST
DOUBLE speaking the ADB protocol over TCP (tests/_adb_double.py). No Android emulator can run here, so the "phone"
is the double; everything on the host side (adb, edgeseq) is the real thing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import _adb_double
import _armroot
import pytest

from edgeseq.core.errors import TargetError
from edgeseq.targets import config
from edgeseq.targets.adb import AdbTarget
from edgeseq.targets.base import TargetSpec

pytestmark = pytest.mark.skipif(
    shutil.which("adb") is None, reason="adb is not installed (run .ci/setup-system.sh)"
)


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    server = _adb_double.AdbServer(tmp_path_factory.mktemp("adb-server"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    double = _adb_double.AdbDeviceDouble(tmp_path_factory.mktemp("phone"))
    yield double
    double.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _armroot.tiny_model(tmp_path_factory.mktemp("model") / "gru tiny.tflite")


@pytest.fixture
def targets_file(tmp_path, monkeypatch):
    path = tmp_path / "targets.toml"
    monkeypatch.setenv("EDGESEQ_TARGETS_FILE", str(path))
    return path


def spec(phone, adb_server, base: Path, name="pixel", **kw) -> TargetSpec:
    return TargetSpec(
        name=name,
        url=f"adb://{phone.serial}",
        workdir=str(base / "data/local/tmp/edgeseq"),
        options={"adb_server_port": adb_server.port},
        **kw,
    )


def test_real_adb_lists_the_double_and_runs_commands_with_exit_status(phone, adb_server, tmp_path):
    t = AdbTarget(spec(phone, adb_server, tmp_path))
    words = ["a b", "$HOME", "$(id)", "`id`", "'q'", '"d"', ";", "*", "\\"]
    r = t.run(["printf", "%s|", *words], timeout=20)
    assert r.returncode == 0 and r.stdout == "|".join(words) + "|"
    r = t.run(["sh", "-c", 'echo out; echo "err $1" >&2; exit 3', "sh", "x y"], timeout=20)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err x y\n")
    listing = adb_server.client("devices", "-l").stdout
    assert phone.serial in listing and "device product:panther" in listing
    # every call went through `adb -P PORT -s SERIAL shell ...`; the double saw one quoted string each time
    assert any("EXIT=" in c and "printf" in c for c in phone.commands)


def test_push_pull_workdir_cleanup_and_device_facts(phone, adb_server, tmp_path):
    t = AdbTarget(spec(phone, adb_server, tmp_path))
    wd = t.workdir()
    src = tmp_path / "in put;$x.bin"
    src.write_bytes(os.urandom(200_000))
    t.push(src, f"{wd}/it's a $(file).bin")
    t.pull(f"{wd}/it's a $(file).bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    t.cleanup(wd)
    assert not Path(wd).exists()
    facts = t.info()
    assert facts["model"] == "Pixel 7 (adb test double)" and facts["android"] == "14" and facts["sdk"] == 34
    assert facts["abi"] == "arm64-v8a" and facts["soc"] == "GS201"
    assert isinstance(facts["mem_total_kb"], int) and isinstance(facts["cpus"], int)


def test_agent_runner_when_the_device_has_python(phone, adb_server, model, tmp_path):
    from edgeseq.targets.deploy import deploy

    data = deploy(
        AdbTarget(spec(phone, adb_server, tmp_path, python=sys.executable)), model, runs=5, warmup=1
    )
    assert (
        data["ok"] and data["runtime"]["name"] == "ai_edge_litert" and len(data["timings_ns"]["invoke"]) == 5
    )


def test_benchmark_model_runner_deploy_and_profile(phone, adb_server, model, tmp_path, targets_file):
    from edgeseq.profiling.run import profile_models
    from edgeseq.store.results import ResultsStore
    from edgeseq.targets.deploy import deploy

    binary = _adb_double.write_benchmark_model_double(tmp_path / "benchmark_model", sys.executable)
    s = spec(phone, adb_server, tmp_path, runner="benchmark_model", benchmark_binary=str(binary))
    data = deploy(AdbTarget(s), model, runs=20, warmup=2)
    assert data["runner"] == "benchmark_model" and data["aggregate_us"]["count"] == 20
    assert data["memory"]["approximate"] and data["model"]["sha256_verified"]
    assert data["device"]["board"] == "Google Pixel 7 (adb test double)"
    assert any("--num_runs=20" in c for c in phone.commands)
    config.add(s)
    db = tmp_path / "results.db"
    rows = profile_models([model], target="pixel", runs=30, warmup=3, db=db)
    assert rows[0]["count"] == 30 and rows[0]["p99_us"] is None and rows[0]["memory_approximate"]
    with ResultsStore(db) as store:
        (run,) = store.runs()
    assert run["runtime_name"] == "benchmark_model" and run["device"]["os"] == "Android 14"


def test_device_going_offline_mid_run_is_clear_and_nothing_is_stored(
    adb_server, model, tmp_path, targets_file
):
    from edgeseq.profiling.run import profile_models
    from edgeseq.store.results import ResultsStore

    phone = _adb_double.AdbDeviceDouble(tmp_path / "flaky")
    try:
        phone.offline_when(lambda command: "edgeseq_agent.pyz" in command and "--model" in command)
        config.add(spec(phone, adb_server, tmp_path, name="flaky", python=sys.executable))
        db = tmp_path / "results.db"
        with pytest.raises(TargetError, match="ended before|offline or gone"):
            profile_models([model], target="flaky", runs=5, warmup=1, db=db)
        with ResultsStore(db) as store:
            assert store.count() == 0
        with pytest.raises(TargetError, match="offline or gone|cannot reach"):
            AdbTarget(config.get("flaky")).run(["true"], 10)
    finally:
        phone.close()


def test_unreachable_network_device(adb_server, tmp_path):
    from _sshd import free_port

    s = TargetSpec(
        name="gone", url=f"adb://127.0.0.1:{free_port()}", options={"adb_server_port": adb_server.port}
    )
    with pytest.raises(TargetError, match="cannot reach adb device"):
        AdbTarget(s).run(["true"], 10)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_disk_full_on_the_device_is_a_clear_error(phone, adb_server, model, tmp_path):
    from edgeseq.targets.deploy import deploy

    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(full)], check=True)
    try:
        t = AdbTarget(TargetSpec(name="pixel", url=f"adb://{phone.serial}", workdir=str(full), python=sys.executable,
                                 options={"adb_server_port": adb_server.port}))  # fmt: skip
        with pytest.raises(TargetError, match="disk is full"):
            deploy(t, model)
    finally:
        subprocess.run(["umount", "-l", str(full)])
