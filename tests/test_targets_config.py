"""targets.toml, URL parsing and target resolution: no device needed."""

from __future__ import annotations

import shlex
import sys

import pytest
from click.testing import CliRunner

from edgeseq.core.errors import InputError
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
        options={"connect_timeout": 7, "ssh": "/opt/open ssh/bin/ssh"},
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


# ------------------------------------------------------------------------------------------ typed fields, trust
@pytest.mark.parametrize(
    "body, field",
    [
        ("url = 5", "url must be a string"),
        ('url = "ssh://pi@h"\noptions = "str"', "options must be a table"),
        ('url = "ssh://pi@h"\noptions = { connect_timeout = "abc" }', "options.connect_timeout must be a number"),
        ('url = "ssh://pi@h"\noptions = { connect_timeout = inf }', "options.connect_timeout must be a number"),
        ('url = "ssh://pi@h"\noptions = { connect_timeout = 1e300 }', "options.connect_timeout must be a number"),
        ('url = "ssh://pi@h"\nkey_file = 7', "key_file must be a path"),
        ('url = "ssh://pi@h"\nknown_hosts = ["a"]', "known_hosts must be a path"),
        ('url = "ssh://pi@h"\nrunner = 3', "runner must be one of"),
        ('url = "ssh://pi@h"\npython = false', "python must be"),
        ('url = "ssh://pi@h"\noptions = { ssh = "./fake-ssh" }', "options.ssh must be an absolute path"),
        ('url = "adb://S"\noptions = { adb_server_port = 70000 }', "options.adb_server_port must be a port"),
        ('url = "adb://S"\noptions = { adb_server_port = true }', "options.adb_server_port must be a port"),
        ('url = "adb://S"\nrunner = "benchmark_model"\nbenchmark_binary = "bm"', "benchmark_binary must be an absolute"),
        ('url = "local"\npython = "venv/bin/python"', "python must be an absolute path for a local target"),
        ('url = "ssh://pi@h"\noptions = { flag = true }', "unknown option 'flag'"),
    ],
)
def test_a_wrongly_typed_field_is_one_line_naming_file_target_and_field(targets_file, body, field):
    targets_file.parent.mkdir(parents=True)
    targets_file.write_text(f"[targets.good]\nurl = \"ssh://pi@ok\"\n\n[targets.pi]\n{body}\n")
    with pytest.raises(InputError) as exc:
        config.load()
    line = exc.value.one_line()
    assert str(targets_file) in line and "target 'pi'" in line and field in line and "\n" not in line
    with pytest.raises(InputError, match=field.split()[0]):  # every verb that reads the file says the same
        config.get("good")


def test_an_invalid_name_in_the_file_names_the_file(targets_file):
    targets_file.parent.mkdir(parents=True)
    targets_file.write_text('[targets."-x"]\nurl = "ssh://a"\n')
    with pytest.raises(InputError, match=f"{targets_file}: invalid target name"):
        config.load()


def _plant_fake_ssh(folder, marker):
    fake = folder / "fake-ssh"
    fake.write_text(f"#!/bin/sh\necho ran > '{marker}'\nexit 255\n")
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize("entry", [
    'url = "ssh://pi@127.0.0.1:1"\noptions = {{ ssh = "{fake}" }}',
    'url = "local"\npython = "{fake}"',
    'url = "adb://S"\nrunner = "benchmark_model"\nbenchmark_binary = "{fake}"',
    'url = "adb://S"\noptions = {{ adb = "{fake}" }}',
])  # fmt: skip
def test_a_targets_file_found_in_the_working_directory_names_no_program(tmp_path, monkeypatch, entry):
    from edgeseq.targets.resolve import open_target

    monkeypatch.delenv("EDGESEQ_TARGETS_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "untrusted"
    work.mkdir()
    marker = tmp_path / "MARKER"
    fake = _plant_fake_ssh(work, marker)
    (work / "targets.toml").write_text(f"[targets.pi]\n{entry.format(fake=fake)}\n")
    monkeypatch.chdir(work)
    assert config.find() == (work / "targets.toml", True)
    assert list(config.load()) == ["pi"]  # listing is fine: it runs nothing
    with pytest.raises(InputError, match="found in the working directory and names a program"):
        open_target("pi")
    assert not marker.exists()
    monkeypatch.setenv("EDGESEQ_TARGETS_FILE", str(work / "targets.toml"))  # named by the user: trusted
    assert config.find() == (work / "targets.toml", False) and config.get("pi").name == "pi"


def test_default_programs_come_from_absolute_path_entries_only(tmp_path, monkeypatch):
    from edgeseq.targets.trust import system_program

    fake = _plant_fake_ssh(tmp_path, tmp_path / "MARKER")
    fake.rename(tmp_path / "ssh")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f".:{tmp_path.name}:")
    assert system_program("ssh") is None  # "." and relative entries would find ./ssh
    monkeypatch.setenv("PATH", f".:{tmp_path}")
    assert system_program("ssh") == str(tmp_path / "ssh")

