"""`edgeseq train`: train a zoo model on a data set and write model.keras + training.json."""

from __future__ import annotations

import click

from edgeseq.commands._options import EPOCHS, data_dir_option, dataset_option, echo_json, json_option
from edgeseq.commands._types import FiniteFloat
from edgeseq.core.progress import Progress
from edgeseq.models.backend import BACKENDS
from edgeseq.models.config import PRESET_CONFIGS
from edgeseq.models.zoo import ARCH_NAMES


class EpochPrinter:
    """One line per epoch: live on a terminal, one flushed line each when piped (logs, CI), with n/N and an ETA (an
    upper bound: early stopping usually ends sooner)."""

    def __init__(self, title: str, epochs: int):
        self.title = title
        self.progress = Progress(epochs)

    def __enter__(self) -> EpochPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.tty and 0 < self.progress.done < self.progress.total:
            click.echo("", err=True)  # early stopping ended the live line before N

    def __call__(self, logs: dict) -> None:
        shown = " ".join(f"{k}={v:.3g}" for k, v in logs.items() if k not in ("epoch", "epochs", "learning_rate"))
        self.progress.total = int(logs.get("epochs") or self.progress.total)
        self.progress.done = int(logs["epoch"]) - 1
        self.progress.step(f"{self.title} epoch", shown)


@click.command()
@click.option("--arch", "--model", "arch", required=True, type=click.Choice(ARCH_NAMES),
              help="Architecture from `edgeseq models`.")
@click.option("--preset", default="small", show_default=True,
              help=f"Size preset: {', '.join(dict.fromkeys(p for presets in PRESET_CONFIGS.values() for p in presets))}.")
@dataset_option(required=True)
@click.option("--out", "out_dir", default=None, help="Run folder [default: runs/<arch>-<dataset>].")
@click.option("--epochs", type=click.IntRange(min=1), default=EPOCHS, show_default=True,
              help="Upper bound; early stopping usually ends sooner.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", "learning_rate", type=FiniteFloat(min=0, min_open=True, example="0.002"), default=2e-3,
              show_default=True, help="Adam learning rate.")
@click.option("--patience", default=12, show_default=True, help="Early-stopping patience in epochs.")
@click.option("--validation-split", type=FiniteFloat(min=0, max=0.9, max_open=True, example="0.15"), default=0.15,
              show_default=True, help="Share of the training split held out for early stopping, in [0, 0.9).")
@click.option("--seed", default=0, show_default=True)
@click.option("--mixed-precision", is_flag=True, help="float16 compute (worth it on GPUs with tensor cores).")
@click.option("--backend", default=None, metavar="|".join(BACKENDS),
              help="Keras backend that trains (and its GPU when present) [default: $KERAS_BACKEND, else tensorflow]; "
                   "the .keras file converts the same way whichever trained it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field, e.g. units=64.")
@data_dir_option()
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@json_option("training.json")
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
        echo_json("train", {"model_path": str(result.model_path), "record": result.record})
        return
    for line in trained_lines(result, arch, preset, result.record["dataset"]["name"]):
        click.echo(line)
