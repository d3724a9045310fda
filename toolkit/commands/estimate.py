"""`edgeseq estimate FILE... --target NAME`: p50 per invoke (per step for step models) and memory, not run."""

from __future__ import annotations

import click

from edgeseq.commands._options import db_option, echo_json, json_option


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--target", required=True, help="The target whose per-op runs the predictors are fitted on.")
@click.option("--no-xnnpack", is_flag=True, help="Estimate for an interpreter without default delegates (XNNPACK).")
@db_option()
@json_option("one row per file")
def estimate(paths, target, no_xnnpack, db, as_json) -> None:
    """Predict each .tflite's p50 latency (with a range) and model memory on TARGET without running it.

    Per-op predictors are fitted on TARGET's per-op runs in the store (`edgeseq calibrate`, `profile --ops`); ops
    of a type never timed there fall back to a default, named in the output.
    """
    from edgeseq.api import estimate as run_estimate
    from edgeseq.report.views import estimate_lines

    rows = run_estimate(paths, target=target, db=db, xnnpack=not no_xnnpack)
    if as_json:
        echo_json("estimate", {"target": target, "rows": rows})
        return
    for line in estimate_lines(rows):
        click.echo(line)
