"""`edgeseq targets`: named devices in targets.toml (list, add, remove), host-key trust, checks and setup."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgeseq.errors import InputError, TargetError


def _file_option(f):
    return click.option(
        "--file",
        "path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The targets file (default: $EDGESEQ_TARGETS_FILE, else ./targets.toml if present, else the user config "
        "directory). One found in the working directory may not name programs to run (options.ssh/adb, "
        "benchmark_binary, a local python).",
    )(f)


@click.group()
def targets() -> None:
    """Manage named devices: list, add, remove, trust, check, setup."""


@targets.command("list")
@_file_option
@click.option("--json", "as_json", is_flag=True, help="Print the targets as JSON.")
def list_(path: Path | None, as_json: bool) -> None:
    """List the named targets and where they are stored."""
    from dataclasses import asdict

    from edgeseq.targets import config

    path = path or config.default_path()
    specs = config.load(path)
    if as_json:
        click.echo(json.dumps({"file": str(path), "targets": [asdict(s) for s in specs.values()]}, indent=2))
        return
    click.echo(f"# {path}" + ("" if path.is_file() else " (not created yet)"))
    if not specs:
        click.echo("no targets; add one with `edgeseq targets add NAME URL`")
        return
    rows = [("name", "url", "runner", "key", "known_hosts")]
    for s in specs.values():
        runner = s.runner if s.runner == "agent" else f"{s.runner} ({s.benchmark_binary})"
        rows.append((s.name, s.url, runner, s.key_file or "-", s.known_hosts or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@targets.command()
@click.argument("name")
@click.argument("url")
@click.option("--key", "key_file", help="SSH private key for this device (ssh://).")
@click.option(
    "--known-hosts", help="known_hosts file to check the host key against (default ~/.ssh/known_hosts)."
)
@click.option("--python", default="python3", show_default=True, help="Python on the device (agent runner).")
@click.option("--workdir", help="Where per-run directories go on the device.")
@click.option(
    "--runner", type=click.Choice(["agent", "benchmark_model"]), default=None, help="What runs the model."
)
@click.option("--benchmark-binary", help="Host path of LiteRT's benchmark_model built for the device.")
@click.option(
    "--adb-server-port", type=int, help="Port of the adb server to use (adb -P), for adb:// targets."
)
@click.option("--replace", is_flag=True, help="Overwrite a target of the same name.")
@_file_option
def add(
    name,
    url,
    key_file,
    known_hosts,
    python,
    workdir,
    runner,
    benchmark_binary,
    adb_server_port,
    replace,
    path,
):
    """Add NAME for URL: ssh://user@host[:port], adb://SERIAL or adb://host:port.

    Adding never contacts the device and never trusts a host key: run `edgeseq targets trust NAME` for that.
    """
    from edgeseq.targets import config
    from edgeseq.targets.base import TargetSpec

    if runner is None:
        runner = "benchmark_model" if benchmark_binary else "agent"
    if url.startswith("ssh://"):
        from edgeseq.targets.ssh import parse_url

        parse_url(url)
    elif url.startswith("adb://"):
        from edgeseq.targets.adb import parse_url as parse_adb

        parse_adb(url)
        if key_file or known_hosts:
            raise InputError(
                "--key and --known-hosts are for ssh:// targets", "adb uses its own keys (~/.android)"
            )
    options = {"adb_server_port": adb_server_port} if adb_server_port is not None else {}  # range: config
    spec = TargetSpec(
        name=name,
        url=url,
        key_file=key_file,
        known_hosts=known_hosts,
        runner=runner,
        benchmark_binary=str(Path(benchmark_binary).expanduser().resolve()) if benchmark_binary else None,
        python=python,
        workdir=workdir,
        options=options,
    )
    written = config.add(spec, path, replace=replace)
    click.echo(f"added {name} ({url}) to {written}")
    if url.startswith("ssh://"):
        click.echo(f"next: `edgeseq targets trust {name}` to check and record its host key")


@targets.command()
@click.argument("name")
@_file_option
def remove(name, path):
    """Remove NAME from the targets file (its known_hosts entry is left alone)."""
    from edgeseq.targets import config

    written = config.remove(name, path)
    click.echo(f"removed {name} from {written}")


@targets.command()
@click.argument("name")
@click.option(
    "--fingerprint", help="Expected SHA256:... fingerprint (from the device's console); refuse others."
)
@click.option("--yes", "-y", is_flag=True, help="Record without asking (after showing the fingerprints).")
@_file_option
def trust(name, fingerprint, yes, path):
    """Show NAME's SSH host key fingerprints and record them in its known_hosts file.

    The only command that writes a host key. Compare the fingerprint with the one the device prints
    (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it) before you accept.
    """
    from edgeseq.targets import config, trust
    from edgeseq.targets.ssh import parse_url

    spec = config.get(name, path)
    if not spec.url.startswith("ssh://"):
        raise InputError(
            f"{name} is not an SSH target ({spec.url})", "host keys apply to ssh:// targets only"
        )
    _user, host, port = parse_url(spec.url)
    known_hosts = trust.known_hosts_path(spec.known_hosts)
    keys = trust.scan(host, port)
    old = {(k.key_type, k.key_b64) for k in trust.recorded(known_hosts, host, port)}
    click.echo(f"{name} ({trust.host_pattern(host, port)}) offers:")
    for k in keys:
        click.echo(f"  {k.key_type:<22} {k.fingerprint}")
    if fingerprint:
        if fingerprint not in {k.fingerprint for k in keys}:
            raise TargetError(
                f"{name}: no host key matches {fingerprint} (offered: {trust.fingerprints_text(keys)})",
                "the device is not the one you expect, or the fingerprint was mistyped; nothing was recorded",
            )
        keys = [k for k in keys if k.fingerprint == fingerprint]
    if old and {(k.key_type, k.key_b64) for k in keys} <= old:
        click.echo(f"already trusted in {known_hosts}")
        return
    if old:
        click.echo(f"WARNING: {known_hosts} holds a DIFFERENT key for this host; it will be replaced.")
    if not yes and not fingerprint and not click.confirm(f"Record in {known_hosts}?", default=False):
        raise click.exceptions.Abort()
    trust.record(known_hosts, host, port, keys)
    click.echo(f"recorded {len(keys)} key(s) for {trust.host_pattern(host, port)} in {known_hosts}")


@targets.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def check(name, as_json):
    """Reachable? Python, runtime, CPU, RAM, free disk. NAME is a target name or a URL."""
    from edgeseq.targets.resolve import open_target

    target = open_target(name)
    facts = target.info()
    runner = target.spec.runner
    problem = None
    if runner == "agent" and hasattr(target, "require_runtime"):
        try:
            target.require_runtime(facts)
        except TargetError as exc:
            problem = exc
    if as_json:
        click.echo(json.dumps({**facts, "ok": problem is None}, indent=2, default=str))
    else:
        click.echo(f"{target.spec.name}: reachable ({facts.get('transport', 'local')})")
        for key in (
            "model",
            "manufacturer",
            "android",
            "sdk",
            "soc",
            "abi",
            "machine",
            "cpu",
            "cpus",
            "mem_total_kb",
            "mem_available_kb",
            "disk_free_kb",
            "os",
            "python",
            "numpy",
            "runtime",
        ):
            if facts.get(key) not in (None, ""):
                click.echo(f"  {key:<17} {facts[key]}")
        if runner == "benchmark_model":
            click.echo(f"  runner            benchmark_model ({target.spec.benchmark_binary})")
    if problem is not None:
        raise problem


@targets.command()
@click.argument("name")
@click.option("--find-links", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Install from these "
              "wheels (pushed to the device) instead of PyPI, for devices without internet.")  # fmt: skip
@click.option(
    "--venv",
    "venv_dir",
    default="~/.cache/edgeseq/venv",
    show_default=True,
    help="Virtual env on the device.",
)
@_file_option
def setup(name, find_links, venv_dir, path):
    """Install numpy and ai-edge-litert on the device (in a venv), and point the target's python at it.

    Runs `python3 -m venv` and pip on the device; it is the one command that installs anything, and only when asked.
    """
    from dataclasses import replace

    from edgeseq.targets import config
    from edgeseq.targets.resolve import open_spec

    spec = config.get(name, path)
    if spec.runner != "agent":
        raise InputError(f"{name} uses the {spec.runner} runner, which needs no Python packages", None)
    target = open_spec(spec)
    base_python = spec.python
    click.echo(f"{name}: creating {venv_dir} with {base_python}")
    venv = _remote_path(target, venv_dir)
    r = target.run([base_python, "-m", "venv", venv], timeout=300)
    if r.returncode != 0:
        raise TargetError(
            f"{name}: cannot create a venv on the device ({_tail(r)})",
            "install python3-venv there (Debian/Raspberry Pi OS: sudo apt install python3-venv)",
        )
    pip = [f"{venv}/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--upgrade"]
    wd = None
    if find_links:
        wd = target.workdir()
        for wheel in sorted(find_links.glob("*.whl")):
            target.push(wheel, f"{wd}/{wheel.name}")
        pip += ["--no-index", "--find-links", wd]
    click.echo(f"{name}: pip install numpy ai-edge-litert (this can take minutes on a Pi)")
    try:
        r = target.run([*pip, "numpy", "ai-edge-litert"], timeout=1800)
    finally:
        if wd:
            target.cleanup(wd)
    if r.returncode != 0:
        raise TargetError(
            f"{name}: pip install failed on the device ({_tail(r)})",
            "check the device's internet access, or pass --find-links",
        )
    new = replace(spec, python=f"{venv}/bin/python")
    config.add(new, path, replace=True)
    open_spec(new).require_runtime()
    click.echo(f"{name}: ready; python = {venv}/bin/python recorded in {path or config.default_path()}")


def _remote_path(target, path: str) -> str:
    if path.startswith("~/"):
        home = target.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30).stdout.strip()
        return f"{home}/{path[2:]}"
    return path


def _tail(result) -> str:
    from edgeseq.targets.device_shell import last_line

    return last_line(result.stderr) or last_line(result.stdout) or f"exit {result.returncode}"
