"""`edgeseq profile`: measure .tflite models on one or more targets, store every run, print the figures."""

from __future__ import annotations

import json
import sys

import click

from edgeseq.commands._options import db_option, json_option, runs_option, warmup_option
from edgeseq.commands._types import CUSTOM_OBJECTS_HELP, FiniteFloat
from edgeseq.profiling.fleet import profile_targets
from edgeseq.profiling.run import profile_models  # re-exported for `edgeseq demo`
from edgeseq.targets.limits import FLOAT_LIMITS, check_profile_options


def _float_option(name: str) -> FiniteFloat:
    low, high, example = FLOAT_LIMITS[name]
    return FiniteFloat(low, high, min_open=True, example=example)


__all__ = ["profile", "profile_models"]


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--target",
    "targets",
    multiple=True,
    default=("local",),
    show_default=True,
    help="Where to run: local, an ssh:// or adb:// URL, or a named target. Repeat for several.",
)
@click.option("--all", "all_targets", is_flag=True, help="Every target in targets.toml, concurrently.")
@click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads.")
@runs_option()
@warmup_option()
@click.option("--max-secs", type=_float_option("max_secs"), default=None, help="Stop the timed loop after this many seconds.")
@click.option("--no-xnnpack", is_flag=True, help="Build the interpreter without default delegates (XNNPACK).")
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False),
    help="A .npy (or .npz by input name) to feed instead of random data.",
)
@click.option("--cpus", type=int, default=None, help="Local only: pin the agent to N CPUs (affinity).")
@click.option(
    "--memory-limit",
    default=None,
    help="Local only: cgroup memory limit for the agent, e.g. 256M (the kernel OOM-kills at it).",
)
@click.option(
    "--cpu-quota",
    type=_float_option("cpu_quota"),
    default=None,
    help="Local only: CFS quota as a fraction of one CPU, e.g. 0.5. Bursty: p99 grows, not p50.",
)
@click.option("--repeat", type=int, default=1, show_default=True, help="Measure each model K times (K runs).")
@db_option()
@json_option("the runs")
@click.option("--wide", is_flag=True, help="Every column (the table shows the main ones, piped or not).")
@click.option("--stream", is_flag=True, help="Stream mode: one step per invoke, state carried (step/window models).")
@click.option("--steps", type=int, default=None, help="--stream: steps per stream [the input's length].")
@click.option("--hop-ms", type=_float_option("hop_ms"), default=None, help="--stream: input period; report the share of steps in time.")
@click.option("--ops", "ops", is_flag=True,
              help="Also time every op on its own (one-op models cut from the file, fed real tensors): tables "
                   "per op and per op type.")
@click.option("--contexts", default=None, metavar="16,32,...,1024",
              help="--stream: per-step latency and memory at each context; .keras models are exported to --out first.")
@click.option("--out", "out_dir", default="artifacts", show_default=True, type=click.Path(file_okay=False),
              help="--contexts: where .keras models' step, KV-cache and window exports are written.")
@click.option("--custom-objects", "custom_objects", multiple=True, metavar="PATH.py|MODULE",
              help="--contexts with a .keras model: " + CUSTOM_OBJECTS_HELP)
def profile(
    models,
    targets,
    all_targets,
    threads,
    runs,
    warmup,
    max_secs,
    no_xnnpack,
    input_path,
    cpus,
    memory_limit,
    cpu_quota,
    repeat,
    db,
    as_json,
    stream=False,
    steps=None,
    hop_ms=None,
    contexts=None,
    ops=False,
    out_dir="artifacts",
    wide=False,
    custom_objects=(),
) -> None:
    """Measure latency and memory of .tflite models on a target.

    Each run starts a fresh agent process on the target, which times N invokes and reports raw samples; the
    statistics are computed here and every run is stored with its provenance (model sha256, manifest, device,
    runtime, options).
    """
    from edgeseq.profiling.ops import print_ops
    from edgeseq.report.dispatch import print_table
    from edgeseq.report.views import run_rows, stale_manifest_notes, stream_run_lines

    check_profile_options(runs, warmup, threads, max_secs, cpus, memory_limit, cpu_quota, repeat, steps, hop_ms)
    live = sys.stderr.isatty() and not as_json
    if contexts is not None:
        from edgeseq.api import stream as run_stream
        from edgeseq.report.views import stream_output

        def said(row: dict) -> None:
            if live:
                click.echo(f"  {row['file']} @ context {row['context']}: p50 {row['p50_us']:.1f} µs/step", err=True)

        rows = run_stream(models, contexts, target=targets[0], runs=runs, warmup=warmup, threads=threads,
                          hop_ms=hop_ms, db=db, input=input_path, on_result=said, out=out_dir,
                          custom_objects=custom_objects,
                          say=(lambda m: click.echo(m, err=True)) if live else None)
        click.echo(stream_output(rows, as_json), nl=False)
        return

    def progress(row: dict) -> None:
        if live:
            click.echo(
                f"  {row['model']} @ {row['target']}: p50 {row['p50_us']:.1f} µs (run #{row['run_id']})",
                err=True,
            )

    def failed(name, exc) -> None:
        click.echo(f"error: {name}: {exc.one_line()}", err=True)

    fleet = profile_targets(
        models,
        targets,
        all_targets,
        on_error=failed,
        runs=runs,
        warmup=warmup,
        threads=threads,
        db=db,
        max_secs=max_secs,
        xnnpack=not no_xnnpack,
        input=input_path,
        cpus=cpus,
        memory_limit=memory_limit,
        cpu_quota=cpu_quota,
        repeat=repeat,
        on_result=progress,
        stream=stream,
        steps=steps,
        hop_ms=hop_ms,
        ops=ops,
    )
    rows, fleet_error = fleet.rows, fleet.error()
    if as_json:
        click.echo(json.dumps({"schema": "edgeseq.profile/1", "runs": rows}, indent=2, default=str))
        if fleet_error is not None:
            raise fleet_error
        return
    shown = run_rows(rows, repeat)
    print_table(shown, wide=wide)
    for line in stream_run_lines(rows):
        sys.stdout.flush()  # a note (stderr) after the table lines it follows, also when both go to one pipe
        click.echo(line, err=line.startswith("note:"))
    if ops:
        print_ops(shown, warn=lambda line: click.echo(line, err=True))
    for note in stale_manifest_notes(rows):
        click.echo(note, err=True)
    if fleet_error is not None:
        raise fleet_error
