"""`edgeseq recommend`: the stored models that meet a latency, memory, real-time and accuracy budget on a target."""

from __future__ import annotations

import json

import click

from edgeseq.commands._options import db_option, json_option
from edgeseq.commands._types import FiniteFloat
from edgeseq.core.errors import NothingFound


@click.command()
@click.option("--target", required=True, help="The target the models were profiled on (e.g. local, pi4).")
@click.option("--latency-budget-ms", type=FiniteFloat(0, min_open=True, example="5"), default=None,
              help="Largest p99 latency: per sequence (whole models) or per step (stream runs).")
@click.option("--memory-budget-mb", type=FiniteFloat(0, min_open=True, example="8"), default=None,
              help="Largest model memory (what the model adds to the runtime; peak RSS when not measured).")
@click.option("--hop-ms", type=FiniteFloat(0, min_open=True, example="20"), default=None,
              help="Input period of a stream: a step (or a whole-window recompute) must finish within it.")
@click.option("--min-accuracy", type=FiniteFloat(0, 1, example="0.95"), default=None,
              help="Smallest accuracy (a fraction); a model of unknown accuracy fails it.")
@click.option("--estimate", "estimate_paths", multiple=True, type=click.Path(),
              help="A .tflite with no run on TARGET, ranked from `edgeseq estimate` (marked estimated); repeatable.")
@db_option()
@json_option()
def recommend(target, latency_budget_ms, memory_budget_mb, hop_ms, min_accuracy, estimate_paths, db, as_json) -> None:
    """The models in the results store that meet every budget given on TARGET, ranked by accuracy then p99.

    Every other model is listed with each budget it broke and by how much; when none meets them all, the one that
    came closest is named. Give at least one budget.
    """
    from edgeseq.api import recommend as run_recommend
    from edgeseq.recommend import render_text

    result = run_recommend(target, latency_budget_ms=latency_budget_ms, memory_budget_mb=memory_budget_mb,
                           hop_ms=hop_ms, min_accuracy=min_accuracy, db=db,
                           estimate_paths=tuple(estimate_paths)).raw
    click.echo(json.dumps(result, indent=2) if as_json else render_text(result), nl=as_json)
    if not result["meets"]:
        raise NothingFound(f"no stored model on {target} meets every budget given",
                           "loosen a budget, or profile more models (the closest is named above)")
