"""`edgeseq train`: train a zoo model on a data set and write model.keras + training.json."""

from __future__ import annotations

import json
import sys

import click

from edgeseq.commands._types import FiniteFloat
from edgeseq.models.backend import BACKENDS
from edgeseq.models.config import PRESET_CONFIGS, parse_overrides
from edgeseq.models.run_dir import TrainOptions, check_model_fits, check_zoo_data, prepare_run_dir


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
@click.option("--model", "arch", required=True,
              help=f"Architecture from `edgeseq models` ({', '.join(PRESET_CONFIGS)}).")
@click.option("--preset", default="small", show_default=True,
              help=f"Size preset: {', '.join(dict.fromkeys(p for presets in PRESET_CONFIGS.values() for p in presets))}.")
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
@click.option("--backend", default=None, metavar="|".join(BACKENDS),
              help="Keras backend that trains (and its GPU when present) [default: $KERAS_BACKEND, else tensorflow]; "
                   "the .keras file converts the same way whichever trained it.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field, e.g. units=64.")
@click.option("--data-dir", default=None, help="Local copy of downloadable data sets (or EDGESEQ_DATA_DIR).")
@click.option("--overwrite", is_flag=True, help="Replace a model already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print training.json to stdout.")
def train(arch, preset, dataset, out_dir, epochs, batch_size, learning_rate, patience, validation_split, seed,
          mixed_precision, backend, overrides, data_dir, overwrite, as_json) -> None:
    """Train a zoo model; writes model.keras and training.json to the run directory."""
    from edgeseq.datasets import load_dataset
    from edgeseq.models.backend import require_installed, resolve_backend
    from edgeseq.models.zoo import get_config

    # Every cheap check runs before TensorFlow is imported, so a typo costs milliseconds, not seconds.
    backend = resolve_backend(backend)
    require_installed(backend)
    extra = parse_overrides(overrides)
    cfg = get_config(arch, preset, **extra)
    options = TrainOptions(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, validation_split=validation_split,
        patience=patience, seed=seed, mixed_precision=mixed_precision,
    )
    options.check()
    if out_dir is not None:
        prepare_run_dir(out_dir, overwrite)  # before loading data: a bad --out costs nothing
    data = load_dataset(dataset, data_dir=data_dir)
    out_dir = out_dir or f"runs/{arch}-{_slug(data.name)}"
    prepare_run_dir(out_dir, overwrite)  # checks only; the run directory appears when the model is written
    check_zoo_data(data)
    check_model_fits(cfg, seq_len=data.seq_len, num_features=data.num_features, num_outputs=data.output_dim)
    from edgeseq.models.backend_run import train_on_backend

    with EpochPrinter(f"{arch}-{preset}", epochs) as printer:
        result = train_on_backend(arch, data, out_dir, backend=backend, preset=preset, options=options,
                                  overrides=extra, overwrite=overwrite, progress=printer)
    rec = result.record
    if as_json:
        click.echo(json.dumps(rec, indent=2))
        return
    metric = ", ".join(f"{k} {v:.4f}" for k, v in rec["test_metrics"].items() if k != "n")
    click.echo(
        f"{arch}-{preset} on {data.name}: test {metric}; {rec['parameters']:,} parameters; "
        f"{rec['epochs_run']} epochs in {rec['wall_time_s']:.1f} s on {_where(rec)}"
    )
    click.echo(f"wrote {result.model_path} and {result.out_dir / 'training.json'}")


def _where(rec: dict) -> str:
    """'tensorflow cpu', 'jax gpu (DataParallel over 2 devices)', 'torch cpu (one device: ...)'."""
    b = rec.get("backend") or {}
    where = f"{b.get('name', 'tensorflow')} {rec['device']['kind']}"
    return f"{where} ({b['note']})" if b.get("note") else where


def _slug(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].removesuffix(".npz")
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-") or "data"
