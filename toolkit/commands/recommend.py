"""`edgeseq recommend`: the stored models that meet a latency, memory, real-time and accuracy budget on a target."""

from __future__ import annotations

import json

import click

from edgeseq.commands._options import budget_options, db_option, json_option
from edgeseq.core.errors import NothingFound


@click.command()
@click.option("--target", required=True, help="The target the models were profiled on (e.g. local, pi4).")
@budget_options()
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
