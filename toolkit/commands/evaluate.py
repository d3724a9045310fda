"""`edgeseq evaluate FILE.tflite --dataset D`: accuracy (or MSE) of any .tflite on LiteRT. No TensorFlow."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("path", type=click.Path())  # the checked reader names a directory, FIFO or device itself
@click.option("--dataset", required=True, help="Registered name (see `edgeseq datasets`), NAME:key=value, or a .npz.")
@click.option("--data-dir", default=None, help="Local copy of downloadable data sets (or EDGESEQ_DATA_DIR).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate(path: str, dataset: str, data_dir: str | None, as_json: bool) -> None:
    """Run a .tflite over the test split of a data set, sample by sample, and report accuracy or MSE."""
    from edgeseq.api import evaluate as run_evaluate
    from edgeseq.report.views import evaluation_line

    e = run_evaluate(path, dataset, data_dir=data_dir)
    click.echo(json.dumps(e.raw, indent=2) if as_json else evaluation_line(e))
