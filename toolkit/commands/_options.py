"""One name per concept, one default per option, one JSON envelope: the options every verb shares.

`CONCEPTS` is the table `tests/test_cli_conventions.py` walks every command's options against: a concept has one
flag; the only other spellings accepted are the aliases listed here, on the verbs listed, kept for old scripts.
Defaults are shown one way (click's `[default: X]`); a verb whose default differs says why in its help.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

# concept -> (the flag, {verb: old spellings kept as aliases there}, other names that must not appear anywhere)
CONCEPTS: dict[str, tuple[str, dict[str, tuple[str, ...]], tuple[str, ...]]] = {
    "data set": ("--dataset", {"convert": ("--calibration",), "quant-report": ("--calibration",)}, ("--data", "--calib")),
    "architecture": ("--arch", {"train": ("--model",)}, ("--architecture", "--arches")),
    "output folder": ("--out", {"datasets download": ("--dest",)}, ("--output", "--out-dir", "--output-dir")),
    "results store": ("--db", {}, ("--store", "--database", "--results")),
    "machine-readable output": ("--json", {}, ("--as-json", "--format-json")),
    "timed invokes": ("--runs", {}, ("--iterations", "--invokes", "--n-runs")),
    "untimed invokes": ("--warmup", {}, ("--warmups", "--warm-up")),
    "where models run": ("--target", {}, ("--device", "--host")),
    "local data-set copies": ("--data-dir", {}, ("--datadir",)),
}

# The verbs that write files (--out), store or read runs (--db); every verb has --json.
WRITES = {"train", "convert", "profile", "report", "sweep", "demo"}
STORES = {"profile", "report", "compare", "recommend", "sweep", "demo"}

# Defaults of options more than one verb has: the value, and for a verb that differs, why (said in its help).
RUNS = 200
WARMUP = 20
EPOCHS = 60


def schema(verb: str, version: int = 1) -> str:
    return f"edgeseq.{verb}/{version}"


def echo_json(verb: str, payload: dict[str, Any], version: int = 1) -> None:
    """Every --json answer is one object: {"schema": "edgeseq.<verb>/N", ...}."""
    click.echo(json.dumps({"schema": schema(verb, version), **payload}, indent=2, default=str))


def json_option(what: str = "the result") -> Callable:
    return click.option("--json", "as_json", is_flag=True,
                        help=f"Print {what} as one JSON object (its \"schema\" names the verb and version).")


def db_option() -> Callable:
    return click.option("--db", type=click.Path(dir_okay=False), default=None,
                        help="Results store [default: .edgeseq/results.db in the working directory].")


def data_dir_option() -> Callable:
    return click.option("--data-dir", default=None,
                        help="Local copy of downloadable data sets [default: $EDGESEQ_DATA_DIR, else the cache].")


def dataset_option(*, required: bool = False, aliases: tuple[str, ...] = (), help: str | None = None) -> Callable:
    return click.option("--dataset", *aliases, "dataset", required=required, default=None,
                        help=help or "Registered name (see `edgeseq datasets`), NAME:key=value, or a .npz.")


def runs_option(default: int = RUNS, why: str = "", minimum: int | None = None) -> Callable:
    # profile and deploy check the range in the library (targets.limits); others let click refuse it
    return click.option("--runs", type=int if minimum is None else click.IntRange(min=minimum), default=default, show_default=True,
                        help="Timed invokes per run." + (f" {why}" if why else ""))


def warmup_option(default: int = WARMUP, why: str = "", minimum: int | None = None) -> Callable:
    return click.option("--warmup", type=int if minimum is None else click.IntRange(min=minimum), default=default, show_default=True,
                        help="Untimed invokes before timing." + (f" {why}" if why else ""))


def budget_options(what: str = "") -> Callable:
    """--latency-budget-ms, --memory-budget-mb, --hop-ms, --min-accuracy: `recommend`'s budgets, shared with `report`
    (whose first section is what recommend picks under them); `what` is added to each help."""
    from edgeseq.commands._types import FiniteFloat

    opts = [
        click.option("--latency-budget-ms", type=FiniteFloat(0, min_open=True, example="5"), default=None,
                     help="Largest p99 latency: per sequence (whole models) or per step (stream runs)." + what),
        click.option("--memory-budget-mb", type=FiniteFloat(0, min_open=True, example="8"), default=None,
                     help="Largest model memory (what the model adds to the runtime; peak RSS when not measured)."
                          + what),
        click.option("--hop-ms", type=FiniteFloat(0, min_open=True, example="20"), default=None,
                     help="Input period of a stream: a step (or a whole-window recompute) must finish within it."
                          + what),
        click.option("--min-accuracy", type=FiniteFloat(0, 1, example="0.95"), default=None,
                     help="Smallest accuracy (a fraction); a model of unknown accuracy fails it." + what),
    ]

    def apply(f: Callable) -> Callable:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return apply
