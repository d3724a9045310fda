"""`edgeseq sweep`: a grid of models x lengths x recipes x forms x targets, built, converted, profiled, resumable."""

from __future__ import annotations

import sys

import click

from edgeseq.commands._options import data_dir_option, db_option, echo_json, json_option
from edgeseq.commands._types import FiniteFloat


@click.command()
@click.argument("sweep_file", required=False, type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(["cost", "full", "estimate"]), default=None,
              show_default="cost",
              help="full: train, convert, validate, profile; cost: untrained seeded weights (scaling studies); "
                   "estimate: cost's files, latency from `edgeseq estimate` on each target (no run; needs "
                   "`edgeseq calibrate` there).")
@click.option("--dataset", default=None, help="Data set, resampled to each length (full mode: trained on it; "
                                              "cost mode: its shape).")
@data_dir_option()
@click.option("--arch", default=None, metavar="gru,lstm,transformer",
              show_default="gru,transformer",
              help="Architectures: rnn, lstm, gru, transformer, transformer-causal.")
@click.option("--preset", default=None, metavar="tiny,small", show_default="small",
              help="Size presets.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Explicit size, e.g. --set units=64.")
@click.option("--seq-len", default=None, metavar="16,32,...,2048", show_default="16,64,256",
              help="Sequence lengths.")
@click.option("--recipe", default=None, metavar="fp32,int8", show_default="fp32",
              help="Conversion recipes.")
@click.option("--stream/--no-stream", default=None,
              help="Also the stream form: one step per invoke (RNN state, causal Transformer KV cache).")
@click.option("--target", "targets", multiple=True, show_default="local",
              help="Where to profile; repeat for several.")
@click.option("--out", default=None, show_default="sweep-out",
              help="The sweep's folder: models and converted files.")
@db_option()
@click.option("--jobs", type=int, default=None, show_default="1",
              help="Build/convert worker processes.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="ray: build and convert on an existing Ray cluster (pip install 'edgeseq[ray]').")
@click.option("--ray-address", default=None, metavar="HOST:PORT", help="--executor ray: the cluster's head.")
@click.option("--epochs", type=int, default=None, show_default="10",
              help="Full mode: epochs per model (fewer than train's 60: a grid trains many models).")
@click.option("--runs", type=int, default=None, show_default="50",
              help="Timed invokes per cell (fewer than profile's 200: a grid measures many cells).")
@click.option("--warmup", type=int, default=None, show_default="5",
              help="Untimed invokes per cell (fewer than profile's 20, as --runs).")
@click.option("--hop-ms", type=FiniteFloat(0, 1e6, min_open=True, example="20"), default=None,
              help="Stream cells: the input period (real-time factor = per-step p99 / hop).")
@click.option("--features", type=int, default=None, show_default="16",
              help="Cost mode without --dataset: input features.")
@click.option("--classes", type=int, default=None, show_default="10",
              help="Cost mode without --dataset: classes.")
@click.option("--seed", type=int, default=None, show_default="0",
              help="Weights' (and training's) seed.")
@click.option("--retry-failed", is_flag=True, default=None, help="Run cells recorded as failed again.")
@click.option("--dry-run", is_flag=True, help="Print the grid and its size; build nothing.")
@json_option("the counts, failures and store (with --dry-run: the grid)")
def sweep(sweep_file, sets, targets, dry_run, as_json, **options):
    """Measure a grid of models on your data, lengths, recipes and devices; finished cells are skipped on rerun.

    \b
      edgeseq sweep --arch gru,transformer --seq-len 16,32,...,2048 --recipe fp32,int8 --mode cost
      edgeseq sweep --dataset fsdd --arch gru,lstm,transformer --preset tiny,small --seq-len 25,49,98 --mode full
      edgeseq sweep sweep.toml          # the same settings from a file (flags given here win)
    """
    from edgeseq.api import sweep as run_sweep

    options.update(set=sets or None, target=targets or None)
    res = run_sweep(sweep_file, say=lambda m: click.echo(m, err=True), tty=sys.stderr.isatty(), dry_run=dry_run,
                    **options)
    if dry_run:
        if as_json:
            echo_json("sweep", {"dry_run": True, "grid": res})
        else:
            click.echo(res)
        return
    if as_json:
        echo_json("sweep", {"cells": res.cells, "ok": res.ok, "failed": res.failed, "skipped": res.skipped,
                            "wall_s": round(res.wall_s, 3), "failures": res.failures, "db": str(res.db)})
        return
    click.echo(f"sweep: {res.ok} cells measured, {res.failed} failed, {res.skipped} recorded earlier, "
               f"in {res.wall_s:.1f} s; results in {res.db} (see `edgeseq report`, `edgeseq recommend`)")
    for line in res.failures[:20]:
        click.echo(f"  failed: {line}")
