"""targets.toml, URL parsing and target resolution: no device needed."""

from __future__ import annotations

import shlex
import sys

import pytest
from click.testing import CliRunner

from edgeseq.errors import InputError
from edgeseq.targets import config
from edgeseq.targets.base import TargetSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture
def targets_file(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "targets.toml"
    monkeypatch.setenv("EDGESEQ_TARGETS_FILE", str(path))
    return path


def test_add_load_remove_round_trip_keeps_awkward_strings(targets_file):
    spec = TargetSpec(
        name="pi-4.lab_1",
        url="ssh://pi@raspberrypi.local:2222",
        key_file='/keys/my "lab" key\\x ü.pem',
        known_hosts="/tmp/known hosts\tfile",
        python="/opt/py 3/bin/python3",
        workdir="~/edge seq; rm -rf /",
        options={"connect_timeout": 7, "flag": True},
    )
    config.add(spec)
    config.add(
        TargetSpec(
            name="pixel7", url="adb://38021FDH200A1X", runner="benchmark_model", benchmark_binary="/b m"
        )
    )
    loaded = config.load()
    assert list(loaded) == ["pi-4.lab_1", "pixel7"]
    assert loaded["pi-4.lab_1"] == spec
    assert loaded["pixel7"].runner == "benchmark_model"
    tomllib.loads(targets_file.read_text())  # what we write by hand is valid TOML
    config.remove("pi-4.lab_1")
    assert list(config.load()) == ["pixel7"]


def test_add_refuses_duplicates_unless_replace(targets_file):
    config.add(TargetSpec(name="pi", url="ssh://pi@a"))
    with pytest.raises(InputError, match="already exists"):
        config.add(TargetSpec(name="pi", url="ssh://pi@b"))
    config.add(TargetSpec(name="pi", url="ssh://pi@b"), replace=True)
    assert config.get("pi").url == "ssh://pi@b"


@pytest.mark.parametrize("name", ["local", "all", "-x", "a b", "", "x/y", "a" * 65])
def test_bad_names_are_refused(targets_file, name):
    with pytest.raises(InputError, match="invalid target name"):
        config.add(TargetSpec(name=name, url="ssh://pi@a"))


def test_bad_specs_are_refused(targets_file):
    with pytest.raises(InputError, match="unsupported URL"):
        config.add(TargetSpec(name="x", url="http://a"))
    with pytest.raises(InputError, match="unknown runner"):
        config.add(TargetSpec(name="x", url="ssh://a", runner="magic"))
    with pytest.raises(InputError, match="needs a binary"):
        config.add(TargetSpec(name="x", url="adb://S", runner="benchmark_model"))


def test_malformed_file_is_an_input_error(targets_file):
    targets_file.parent.mkdir(parents=True)
    targets_file.write_text("[targets.pi\nurl = 1")
    with pytest.raises(InputError, match="cannot parse"):
        config.load()
    targets_file.write_text('[targets.pi]\nurl = "ssh://a"\nport = 22\n')
    with pytest.raises(InputError, match="unknown keys"):
        config.load()


def test_lookup_order_env_then_cwd_then_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGESEQ_TARGETS_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert config.default_path() == tmp_path / "xdg" / "edgeseq" / "targets.toml"
    (tmp_path / "targets.toml").write_text("")
    assert config.default_path() == tmp_path / "targets.toml"
    monkeypatch.setenv("EDGESEQ_TARGETS_FILE", str(tmp_path / "elsewhere.toml"))
    assert config.default_path() == tmp_path / "elsewhere.toml"


def test_resolve_urls_and_names(targets_file):
    from edgeseq.targets.adb import AdbTarget
    from edgeseq.targets.resolve import open_target
    from edgeseq.targets.ssh import SshTarget

    t = open_target("ssh://pi@10.0.0.2:2200")
    assert isinstance(t, SshTarget) and (t.user, t.host, t.port) == ("pi", "10.0.0.2", 2200)
    a = open_target("adb://192.168.1.20:5555")
    assert isinstance(a, AdbTarget) and a.serial == "192.168.1.20:5555" and a.network
    assert not open_target("adb://emulator-5554").network
    config.add(TargetSpec(name="pi4", url="ssh://pi@raspberrypi.local", key_file="/k"))
    named = open_target("pi4")
    assert isinstance(named, SshTarget) and named.spec.name == "pi4" and named.port == 22
    with pytest.raises(InputError, match="no target named"):
        open_target("nope")
    with pytest.raises(InputError, match="unknown target"):
        open_target("ftp://x")


@pytest.mark.parametrize(
    "url",
    ["ssh://", "ssh://pi@host/path", "ssh://pi@host:notaport", "ssh://-oProxyCommand=x@host", "ssh://-host"],
)
def test_bad_ssh_urls(url):
    from edgeseq.targets.ssh import parse_url

    with pytest.raises(InputError):
        parse_url(url)


def test_ssh_argv_is_strict_and_quotes_every_word():
    from edgeseq.targets.ssh import SshTarget

    t = SshTarget(TargetSpec(name="pi", url="ssh://pi@[fe80::1]:2222", key_file="/k k", known_hosts="/kh"))
    argv = t.ssh_argv("true")
    joined = " ".join(argv)
    assert "StrictHostKeyChecking=yes" in joined and "BatchMode=yes" in joined
    assert "UserKnownHostsFile=/kh" in joined and "GlobalKnownHostsFile=/dev/null" in joined
    assert "accept-new" not in joined and "StrictHostKeyChecking=no" not in joined
    assert argv[argv.index("-i") + 1] == "/k k" and argv[argv.index("-p") + 1] == "2222"
    assert argv[-3:] == ["--", "fe80::1", "true"]
    words = ["a b", "$(touch x)", "`id`", "'q'", '"d"', ";", "*", "\\", "\n"]
    assert shlex.split(t._remote_command(words)) == words


def test_cli_add_list_remove(tmp_path):
    from edgeseq.cli import cli

    f = tmp_path / "t.toml"
    runner = CliRunner()
    r = runner.invoke(
        cli, ["targets", "add", "pi4", "ssh://pi@raspberrypi.local", "--key", "~/.ssh/id", "--file", str(f)]
    )
    assert r.exit_code == 0, r.output
    assert "targets trust pi4" in r.output
    r = runner.invoke(cli, ["targets", "list", "--file", str(f)])
    assert "pi4" in r.output and "ssh://pi@raspberrypi.local" in r.output
    r = runner.invoke(cli, ["targets", "remove", "pi4", "--file", str(f)])
    assert r.exit_code == 0 and config.load(f) == {}


def test_remote_targets_implement_the_target_protocol():
    from edgeseq.targets.adb import AdbTarget
    from edgeseq.targets.base import Target
    from edgeseq.targets.ssh import SshTarget

    assert isinstance(SshTarget(TargetSpec(name="pi", url="ssh://pi@h")), Target)
    assert isinstance(AdbTarget(TargetSpec(name="px", url="adb://SERIAL")), Target)
