"""`edgeseq deploy`: push a .tflite (and the agent or benchmark_model) to a target, verify it, run it, clean up."""

from __future__ import annotations

import click

from edgeseq.commands._options import echo_json, json_option, runs_option, warmup_option
from edgeseq.commands._types import FiniteFloat


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--target", "target_name", required=True, help="A named target, or an ssh:// / adb:// URL, or local."
)
@runs_option(10, "A check that the model runs there, not a measurement (that is `edgeseq profile`, 200).")
@warmup_option(2, "A check, not a measurement (profile: 20).")
@click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads.")
@click.option("--runner", type=click.Choice(["agent", "benchmark_model"]), default=None,
              help="What runs the model (default: the target's runner).")  # fmt: skip
@click.option(
    "--benchmark-binary", type=click.Path(dir_okay=False), help="LiteRT's benchmark_model for the device."
)
@click.option("--timeout", type=FiniteFloat(0, 86_400, min_open=True, example="600"), default=600.0,
              show_default=True, help="Seconds allowed for the run.")
@click.option("--keep", is_flag=True, help="Leave the per-run directory on the device (its path is printed).")
@json_option("the full result")
def deploy(
    model, target_name, runs, warmup, threads, runner, benchmark_binary, timeout, keep, as_json
) -> None:
    """Push MODEL to a target and check it runs there: fresh directory, sha256 verified on the device, one short
    run, result collected, directory removed (unless --keep). Writes nothing to the results store."""
    from pathlib import Path

    from edgeseq.targets.deploy import deploy_to

    data = deploy_to(
        target_name,
        Path(model),
        runs=runs,
        warmup=warmup,
        threads=threads,
        keep=keep,
        timeout=timeout,
        runner=runner,
        benchmark_binary=benchmark_binary,
        log=(lambda msg: None) if as_json else (lambda msg: click.echo(f"  {msg}", err=True)),
    )
    if as_json:
        echo_json("deploy", {"result": data})
        return
    from edgeseq.core.stats import summarize

    stats = summarize(data)
    rt = data.get("runtime") or {}
    dev = data.get("device") or {}
    name = data["deploy"]["target"]
    where = dev.get("board") or dev.get("hostname") or name  # device fields: edgeseq.targets.facts
    mem, model_mem = stats.get("peak_rss_kb"), stats.get("model_peak_kb")
    approx = " (approximate)" if stats.get("memory_approximate") else ""
    model_text = f"model memory {model_mem} KiB, " if model_mem is not None else ""
    click.echo(
        f"deployed {Path(model).name} to {name} [{where}, {dev.get('machine') or '?'}]: "
        f"sha256 verified on the device; {rt.get('name')} {rt.get('version') or ''}".rstrip()
    )
    click.echo(
        f"  {stats['count']} invokes: mean {stats['mean_us']:.1f} µs, p50 {stats['p50_us']:.1f} µs; "
        f"init {stats['init_ms']:.1f} ms; first inference {stats['first_inference_ms']:.2f} ms; "
        f"{model_text}process peak {mem if mem is not None else '?'} KiB{approx}"
    )
    if keep:
        click.echo(f"  kept {data.get('remote_dir')} on the device")
    else:
        click.echo("  removed the run directory from the device")
