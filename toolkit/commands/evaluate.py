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
    from edgeseq.quantize.evaluate import evaluate_tflite

    r = evaluate_tflite(path, dataset, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    metric = ", ".join(f"{k} {r[k]:.4f}" for k in ("accuracy", "mse", "mae") if k in r)
    if r.get("per_frame"):
        metric = f"per-frame {metric} over {r['frames']} frames"
    click.echo(f"{r['model']} on {r['dataset']} ({r['n']} test samples, {r['runtime']} {r['runtime_version']}): {metric}")
