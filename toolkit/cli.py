"""The `edgeseq` command line: parse, call one library function, print. Nothing else lives here.

Subcommands are imported only when invoked, so `edgeseq --help` (and `inspect`, `profile`, `report`) never pay for
TensorFlow. Each command lives in `edgeseq.commands.<module>`; typed `EdgeseqError`s become one line on stderr and the
error's exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from edgeseq import __version__
from edgeseq.errors import EdgeseqError

# name -> (module under edgeseq.commands, attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": ("models", "models", "List the model zoo: architectures, presets and parameter counts."),
    "datasets": ("datasets", "datasets", "List data sets (shapes, classes, source, license); download FSDD."),
    "train": ("train", "train", "Train a zoo model on a data set; writes model.keras and training.json."),
    "convert": ("convert", "convert", "Convert a .keras model to TFLite with one or more recipes, then validate."),
    "inspect": ("inspect", "inspect", "Describe any .tflite: signature, ops, dtypes, size, MACs, memory."),
    "evaluate": ("evaluate", "evaluate", "Accuracy (or MSE) of a .tflite on a data set, on the LiteRT runtime."),
    "profile": ("profile", "profile", "Measure latency and memory of .tflite models on a target."),
    "report": ("report", "report", "Tables and plots of everything in the results store."),
    "compare": ("report", "compare", "Two models or runs side by side, with ratios."),
    "deploy": ("deploy", "deploy", "Push a .tflite (and the agent) to a target and check it runs."),
    "targets": ("targets", "targets", "Manage named devices: list, add, remove, trust, check, setup."),
    "demo": ("demo", "demo", "Run the whole line on bundled data."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"edgeseq.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeseq")
def cli() -> None:
    """edgeseq: RNN or compact Transformer, and which numeric format, for your data, device and latency budget."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: typed errors become one line and an exit code; Ctrl-C exits 130 without a traceback."""
    try:
        cli.main(args=argv, prog_name="edgeseq", standalone_mode=False)
    except EdgeseqError as exc:
        click.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
