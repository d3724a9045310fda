"""`edgeseq train`: train a zoo model on a data set and write model.keras + training.json."""

from __future__ import annotations

import json
import sys

import click

from edgeseq.commands._types import FiniteFloat


class EpochPrinter:
    """A rich progress bar on a terminal, one plain line per epoch otherwise (logs, CI)."""

    def __init__(self, title: str, epochs: int):
        self.title = title
        self.tty = sys.stderr.isatty()
        self._progress = None
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(), transient=False,
            )
            self._task = self._progress.add_task(title, total=epochs, info="")

    def __enter__(self) -> EpochPrinter:
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress:
            self._progress.stop()

    def __call__(self, logs: dict) -> None:
        shown = " ".join(f"{k}={v:.4g}" for k, v in logs.items() if k not in ("epoch", "epochs", "learning_rate"))
        if self._progress:
            self._progress.update(self._task, completed=logs["epoch"], info=shown)
        else:
            click.echo(f"{self.title} epoch {logs['epoch']}/{logs['epochs']} {shown}", err=True)


@click.command()
@click.option("--model", "arch", required=True, help="Architecture from `edgeseq models` (rnn, lstm, gru, transformer).")
@click.option("--preset", default="small", show_default=True, help="Size preset: tiny, small, base.")
@click.option("--dataset", required=True, help="Registered name (see `edgeseq datasets`), NAME:key=value, or a .npz.")
@click.option("--out", "out_dir", default=None, help="Run directory [default: runs/<model>-<dataset>].")
@click.option("--epochs", default=60, show_default=True, help="Upper bound; early stopping usually ends sooner.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", "learning_rate", type=FiniteFloat(min=0, min_open=True, example="0.002"), default=2e-3,
              show_default=True, help="Adam learning rate.")
@click.option("--patience", default=12, show_default=True, help="Early-stopping patience in epochs.")
@click.option("--validation-split", type=FiniteFloat(min=0, max=0.9, max_open=True, example="0.15"), default=0.15,
              show_default=True, help="Share of the training split held out for early stopping, in [0, 0.9).")
@click.option("--seed", default=0, show_default=True)
@click.option("--mixed-precision", is_flag=True, help="float16 compute (worth it on GPUs with tensor cores).")
@click.option("--backend", default=None, metavar="tensorflow|jax|torch",
              help="Keras backend that trains (and its GPU when present) [default: $KERAS_BACKEND, else tensorflow]; "
                   "the .keras file converts the same way whichever trained it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field, e.g. units=64.")
@click.option("--data-dir", default=None, help="Local copy of downloadable data sets (or EDGESEQ_DATA_DIR).")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print training.json to stdout.")
def train(arch, preset, dataset, out_dir, epochs, batch_size, learning_rate, patience, validation_split, seed,
          mixed_precision, backend, overrides, data_dir, overwrite, as_json) -> None:
    """Train a zoo model; writes model.keras and training.json to the run directory."""
    from edgeseq.api import train as run_train
    from edgeseq.report.views import trained_lines

    with EpochPrinter(f"{arch}-{preset}", epochs) as printer:
        result = run_train(arch, dataset, preset=preset, out=out_dir, epochs=epochs, batch_size=batch_size,
                           learning_rate=learning_rate, patience=patience, validation_split=validation_split,
                           seed=seed, mixed_precision=mixed_precision, backend=backend, overrides=overrides,
                           data_dir=data_dir, overwrite=overwrite, progress=printer)
    if as_json:
        click.echo(json.dumps(result.record, indent=2))
        return
    for line in trained_lines(result, arch, preset, result.record["dataset"]["name"]):
        click.echo(line)
