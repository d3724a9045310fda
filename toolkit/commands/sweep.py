"""`edgeseq sweep`: a grid of models x lengths x recipes x forms x targets, built, converted, profiled, resumable."""

from __future__ import annotations

import sys

import click

from edgeseq.commands._types import FiniteFloat


@click.command()
@click.argument("sweep_file", required=False, type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(["cost", "full"]), default=None,
              help="full: train, convert, validate, profile; cost: untrained seeded weights (scaling studies) "
                   "[cost].")
@click.option("--dataset", default=None, help="Data set, resampled to each length (full mode: trained on it; "
                                              "cost mode: its shape).")
@click.option("--data-dir", default=None, help="Local copy of downloadable data sets (or EDGESEQ_DATA_DIR).")
@click.option("--arch", default=None, metavar="gru,lstm,transformer",
              help="Architectures: rnn, lstm, gru, transformer, transformer-causal [gru,transformer].")
@click.option("--preset", default=None, metavar="tiny,small", help="Size presets [small].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Explicit size, e.g. --set units=64.")
@click.option("--seq-len", default=None, metavar="16,32,...,2048", help="Sequence lengths [16,64,256].")
@click.option("--recipe", default=None, metavar="fp32,int8", help="Conversion recipes [fp32].")
@click.option("--stream/--no-stream", default=None,
              help="Also the stream form: one step per invoke (RNN state, causal Transformer KV cache).")
@click.option("--target", "targets", multiple=True, help="Where to profile; repeat for several [local].")
@click.option("--out", default=None, help="The sweep's folder: models and converted files [sweep-out].")
@click.option("--db", default=None, type=click.Path(dir_okay=False),
              help="Results store (default .edgeseq/results.db in the working directory).")
@click.option("--jobs", type=int, default=None, help="Build/convert worker processes [1].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="ray: build and convert on an existing Ray cluster (pip install 'edgeseq[ray]').")
@click.option("--ray-address", default=None, metavar="HOST:PORT", help="--executor ray: the cluster's head.")
@click.option("--epochs", type=int, default=None, help="Full mode: epochs per model [10].")
@click.option("--runs", type=int, default=None, help="Timed invokes per cell [50].")
@click.option("--warmup", type=int, default=None, help="Untimed invokes per cell [5].")
@click.option("--hop-ms", type=FiniteFloat(0, 1e6, min_open=True, example="20"), default=None,
              help="Stream cells: the input period (real-time factor = per-step p99 / hop).")
@click.option("--features", type=int, default=None, help="Cost mode without --dataset: input features [16].")
@click.option("--classes", type=int, default=None, help="Cost mode without --dataset: classes [10].")
@click.option("--seed", type=int, default=None, help="Weights' (and training's) seed [0].")
@click.option("--retry-failed", is_flag=True, default=None, help="Run cells recorded as failed again.")
@click.option("--dry-run", is_flag=True, help="Print the grid and its size; build nothing.")
def sweep(sweep_file, sets, targets, dry_run, **options):
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
        click.echo(res)
        return
    click.echo(f"sweep: {res.ok} cells measured, {res.failed} failed, {res.skipped} recorded earlier, "
               f"in {res.wall_s:.1f} s; results in {res.db} (see `edgeseq report`, `edgeseq recommend`)")
    for line in res.failures[:20]:
        click.echo(f"  failed: {line}")
