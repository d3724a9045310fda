"""`edgeseq targets`: named devices in targets.toml (list, add, remove), host-key trust, checks and setup."""

from __future__ import annotations

from pathlib import Path

import click

from edgeseq.commands._options import echo_json, json_option


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
@json_option("the targets")
def list_(path: Path | None, as_json: bool) -> None:
    """List the named targets and where they are stored."""
    from dataclasses import asdict

    from edgeseq.targets import config

    path = path or config.default_path()
    specs = config.load(path)
    if as_json:
        echo_json("targets", {"file": str(path), "targets": [asdict(s) for s in specs.values()]})
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
@json_option("what was recorded")
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
    as_json,
):
    """Add NAME for URL: ssh://user@host[:port], adb://SERIAL or adb://host:port.

    Adding never contacts the device and never trusts a host key: run `edgeseq targets trust NAME` for that.
    """
    from edgeseq.targets import config

    written = config.add_target(
        name,
        url,
        key_file=key_file,
        known_hosts=known_hosts,
        python=python,
        workdir=workdir,
        runner=runner,
        benchmark_binary=benchmark_binary,
        adb_server_port=adb_server_port,
        replace=replace,
        path=path,
    )
    if as_json:
        echo_json("targets", {"added": name, "url": url, "file": str(written)})
        return
    click.echo(f"added {name} ({url}) to {written}")
    if url.startswith("ssh://"):
        click.echo(f"next: `edgeseq targets trust {name}` to check and record its host key")


@targets.command()
@click.argument("name")
@_file_option
@json_option("what was removed")
def remove(name, path, as_json):
    """Remove NAME from the targets file (its known_hosts entry is left alone)."""
    from edgeseq.targets import config

    written = config.remove(name, path)
    if as_json:
        echo_json("targets", {"removed": name, "file": str(written)})
        return
    click.echo(f"removed {name} from {written}")


@targets.command()
@click.argument("name")
@click.option(
    "--fingerprint", help="Expected SHA256:... fingerprint (from the device's console); refuse others."
)
@click.option("--yes", "-y", is_flag=True, help="Record without asking (after showing the fingerprints).")
@_file_option
@json_option("the offered keys and what was recorded (needs --yes or --fingerprint: no prompt)")
def trust(name, fingerprint, yes, path, as_json):
    """Show NAME's SSH host key fingerprints and record them in its known_hosts file.

    The only command that writes a host key. Compare the fingerprint with the one the device prints
    (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it) before you accept.
    """
    from edgeseq.targets.trust import trust_target

    if as_json and not (yes or fingerprint):
        raise click.UsageError("--json cannot ask: pass --fingerprint SHA256:... (or --yes after checking it)")

    def show(plan) -> None:
        if as_json:
            return
        click.echo(f"{name} ({plan.host}) offers:")
        for k in plan.offered:
            click.echo(f"  {k.key_type:<22} {k.fingerprint}")

    def confirm(plan) -> bool:
        if plan.replaces:
            click.echo(f"WARNING: {plan.known_hosts} holds a DIFFERENT key for this host; it will be replaced.")
        return yes or bool(fingerprint) or click.confirm(f"Record in {plan.known_hosts}?", default=False)

    plan = trust_target(name, fingerprint, path, show=show, confirm=confirm)
    if as_json:
        echo_json("targets", {"trusted": name, "host": plan.host, "known_hosts": str(plan.known_hosts),
                              "offered": [{"type": k.key_type, "fingerprint": k.fingerprint} for k in plan.offered],
                              "already_trusted": bool(plan.already_trusted), "recorded": bool(plan.recorded)})
        if not plan.recorded and not plan.already_trusted:
            raise click.exceptions.Abort()
        return
    if plan.already_trusted:
        click.echo(f"already trusted in {plan.known_hosts}")
        return
    if not plan.recorded:
        raise click.exceptions.Abort()
    click.echo(f"recorded {len(plan.keys)} key(s) for {plan.host} in {plan.known_hosts}")


@targets.command()
@click.argument("name")
@json_option("the facts")
def check(name, as_json):
    """Reachable? Python, runtime, CPU, RAM, free disk. NAME is a target name or a URL."""
    from edgeseq.targets.setup import check_target

    result = check_target(name)
    target, facts, problem = result.target, result.facts, result.problem
    if as_json:
        echo_json("targets", {"target": name, "facts": facts, "ok": problem is None})
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
        if target.spec.runner == "benchmark_model":
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
    default="~/.cache/edgeseq/venv",  # edgeseq.targets.setup.DEFAULT_VENV
    show_default=True,
    help="Virtual env on the device.",
)
@_file_option
@json_option("where the runtime was installed")
def setup(name, find_links, venv_dir, path, as_json):
    """Install numpy and ai-edge-litert on the device (in a venv), and point the target's python at it.

    Runs `python3 -m venv` and pip on the device; it is the one command that installs anything, and only when asked.
    """
    from edgeseq.targets.setup import setup_target

    python, written = setup_target(name, find_links, venv_dir, path,
                                   log=(lambda m: click.echo(m, err=True)) if as_json else click.echo)
    if as_json:
        echo_json("targets", {"ready": name, "python": python, "file": str(written)})
        return
    click.echo(f"{name}: ready; python = {python} recorded in {written}")
