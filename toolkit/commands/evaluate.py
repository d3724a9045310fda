"""`edgeseq evaluate FILE.tflite --dataset D`: accuracy (or MSE) of any .tflite on LiteRT. No TensorFlow."""

from __future__ import annotations

import click

from edgeseq.commands._options import data_dir_option, dataset_option, echo_json, json_option


@click.command()
@click.argument("path", type=click.Path())  # the checked reader names a directory, FIFO or device itself
@dataset_option(help="Registered name (see `edgeseq datasets`), NAME:key=value, or a .npz [default: the data set "
                     "named by the manifest beside the file].")
@data_dir_option()
@json_option()
def evaluate(path: str, dataset: str | None, data_dir: str | None, as_json: bool) -> None:
    """Run a .tflite over the test split of a data set, sample by sample, and report accuracy or MSE."""
    from edgeseq.api import evaluate as run_evaluate
    from edgeseq.report.views import evaluation_line

    e = run_evaluate(path, dataset, data_dir=data_dir)
    if as_json:
        echo_json("evaluate", {k: v for k, v in e.raw.items() if k != "schema"})
    else:
        click.echo(evaluation_line(e))
