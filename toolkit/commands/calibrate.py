"""`edgeseq calibrate --target NAME`: time a grid of small generated models op by op, for `edgeseq estimate`."""

from __future__ import annotations

import click

from edgeseq.commands._options import db_option, echo_json, json_option, runs_option
from edgeseq.estimate.calibrate import CAL_PASSES, CAL_RUNS


@click.command()
@click.option("--target", required=True, help="Where the calibration models run (local, a name, ssh://, adb://).")
@click.option("--quick", is_flag=True, help="A four-model grid (tests, a first look) instead of the full one.")
@click.option("--no-xnnpack-pass", "no_off", is_flag=True,
              help="Time with XNNPACK on only (half the runs; estimates with --no-xnnpack then fall back).")
@runs_option(default=CAL_RUNS, why="Fewer than profile's: each op is timed again on its own, as many times.",
             minimum=20)
@click.option("--passes", type=click.IntRange(1, 10), default=CAL_PASSES, show_default=True,
              help="Time every file this many times, a pass over the grid apart; estimates average each op's "
                   "quickest two thirds of them (a burst of load on a shared machine slows one pass).")
@db_option()
@json_option("the summary")
def calibrate(target, quick, no_off, runs, passes, db, as_json) -> None:
    """Build single-op and small-block models (fp32 and int8, the real converter) and time each op on TARGET,
    XNNPACK on and off; the runs land in the store beside any `profile --ops` runs.

    Resumable: files already built are not rebuilt, and a (file, XNNPACK) pair already timed --passes times on
    TARGET is not timed again.
    """
    from edgeseq.api import calibrate as run_calibrate
    from edgeseq.report.views import calibrate_line

    r = run_calibrate(target, db=db, quick=quick, runs=runs, passes=passes,
                      xnnpack=(True,) if no_off else (True, False))
    if as_json:
        echo_json("calibrate", r)
        return
    click.echo(calibrate_line(r))
