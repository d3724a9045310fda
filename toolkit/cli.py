"""The `edgeseq` command line: parse, call one library function, print. Nothing else lives here.

Subcommands are imported only when invoked, so `edgeseq --help` (and `inspect`, `profile`, `report`) never pay for
TensorFlow. Each command lives in `edgeseq.commands.<module>`; typed `EdgeseqError`s become one line on stderr and the
error's exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys

import click

from edgeseq import __version__
from edgeseq.core.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, DiskError, EdgeseqError, exit_code_summary
from edgeseq.core.fsio import childproc, oserrors

# name -> (module under edgeseq.commands, attribute, one-line help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": ("models", "models", "List the model zoo: architectures, presets and parameter counts."),
    "datasets": ("datasets", "datasets", "List data sets (shapes, classes, source, license); download FSDD."),
    "train": ("train", "train", "Train a zoo model on a data set; writes model.keras and training.json."),
    "convert": ("convert", "convert", "Convert a .keras model to TFLite with one or more recipes, then validate."),
    "inspect": ("inspect", "inspect", "Describe any .tflite: signature, ops, dtypes, size, MACs, memory."),
    "evaluate": ("evaluate", "evaluate", "Accuracy (or MSE) of a .tflite on a data set, on the LiteRT runtime."),
    "quant-report": ("quant_report", "quant_report", "Where a quantized .tflite loses accuracy: every op's error "
                     "against the float model, ranked."),
    "calibrate": ("calibrate", "calibrate", "Time generated single-op and block models on a target, for estimate."),
    "estimate": ("estimate", "estimate", "Predict a .tflite's p50 latency and memory on a target without running it."),
    "profile": ("profile", "profile", "Measure latency and memory of .tflite models on a target."),
    "report": ("report", "report", "Tables and plots of everything in the results store."),
    "compare": ("report", "compare", "Two models or runs side by side, with ratios."),
    "recommend": ("recommend", "recommend", "The stored models that meet a latency, memory and accuracy budget."),
    "deploy": ("deploy", "deploy", "Push a .tflite (and the agent) to a target and check it runs."),
    "targets": ("targets", "targets", "Manage named devices: list, add, remove, trust, check, setup."),
    "sweep": ("sweep", "sweep", "Build, convert and profile a grid of models, lengths, recipes and targets."),
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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=exit_code_summary())
@click.version_option(__version__, prog_name="edgeseq")
def cli() -> None:
    """edgeseq: RNN or compact Transformer, and which numeric format, for your data, device and latency budget."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point. Every failure is one line on stderr and an exit code, never a traceback: typed errors
    exit with their code, usage errors with click's (InputError's), Ctrl-C and SIGTERM with theirs (children killed,
    temporary files removed), anything unforeseen as an internal error (EDGESEQ_DEBUG=1 shows its traceback). The
    codes: edgeseq.core.errors.exit_codes()."""
    childproc.install_signal_handlers()
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # bare `edgeseq`: the help, on stdout, and success (not a usage error)
        with click.Context(cli, info_name="edgeseq") as ctx:
            click.echo(cli.get_help(ctx))
        sys.exit(0)
    oserrors.forget_created()  # what this command creates is what a failure takes away, nothing from before
    try:
        cli.main(args=args, prog_name="edgeseq", standalone_mode=False)
    except (EdgeseqError, OSError, sqlite3.Error) as exc:  # the file system refusing a write: one DiskError line
        typed = oserrors.disk_error(exc) or exc
        if not isinstance(typed, EdgeseqError):
            _internal(typed)
        _fail(typed.one_line(), typed.exit_code, disk=isinstance(typed, DiskError))
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns Ctrl-C into Abort, cause kept
        if childproc.terminating():
            _terminated()
        if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
            _fail("interrupted; child processes stopped, nothing half-written kept", EXIT_INTERRUPTED)
        _fail("aborted", EXIT_INTERRUPTED)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "edgeseq"
        _fail(f"{exc.format_message()} (see '{command} --help')", exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for the one-line contract
        if childproc.terminating():  # a library's bare `except:` turned Terminated into its own error
            _terminated()
        typed = oserrors.disk_error(exc)  # e.g. Keras's own error raised from ENOSPC while saving
        if typed is not None:
            _fail(typed.one_line(), typed.exit_code, disk=True)
        _internal(exc)
    oserrors.forget_created()
    sys.exit(0)


def _internal(exc: BaseException) -> None:
    if os.environ.get("EDGESEQ_DEBUG"):
        raise exc
    _fail(f"internal error: {type(exc).__name__}: {exc} (a bug in edgeseq: please report it with the command; "
          "EDGESEQ_DEBUG=1 shows the traceback)", EXIT_INTERNAL)


def _terminated() -> None:
    _fail("terminated by SIGTERM; child processes stopped, nothing half-written kept", childproc.Terminated.exit_code)


def _fail(message: str, code: int, *, disk: bool = False) -> None:
    """One line on stderr and the exit code. The empty folders this command created are taken away first; when the
    file system refused a write (`disk`), the files it created too: nothing partial is left."""
    oserrors.remove_created(files=disk)
    click.echo(f"error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
