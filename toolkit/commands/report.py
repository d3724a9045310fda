"""`edgeseq report` and `edgeseq compare`: read the results store, print or write tables and plots."""

from __future__ import annotations

import sys

import click

from edgeseq.commands._options import budget_options, db_option, json_option


@click.command()
@db_option()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "md", "csv", "json", "html"]),
    default="table",
    show_default=True,
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write report.<fmt> and the PNG plots here [default: ./report for html, else print].",
)
@click.option("--target", default=None, help="Only runs on this target.")
@json_option("the report (the same as --format json)")
@click.option("--wide", is_flag=True, help="Every column (the table shows the main ones, piped or not).")
@budget_options(" For What to ship, the report's first section.")
def report(db, fmt, out_dir, target, as_json, wide, latency_budget_ms, memory_budget_mb, hop_ms,
           min_accuracy) -> None:
    """Tables and plots of everything in the results store, grouped by target/device, opening with what to ship
    on each target (recommend's pick under the budgets given, else the Pareto set; crossovers; claims that held)."""
    from edgeseq.report.dispatch import show_report

    fmt = "json" if as_json else fmt
    budgets = {"latency_ms": latency_budget_ms, "memory_mb": memory_budget_mb, "hop_ms": hop_ms,
               "min_accuracy": min_accuracy}
    path = show_report(db, fmt, out_dir=out_dir, target=target, warn=_warn, stream=sys.stdout, wide=wide,
                       budgets=budgets)
    if path is not None:
        click.echo(f"report written to {path} (plots in {path.parent})")


@click.command()
@click.argument("a")
@click.argument("b")
@db_option()
@click.option("--target", default=None, help="Only consider runs on this target.")
@json_option("the comparison")
def compare(a, b, db, target, as_json) -> None:
    """Two models or runs side by side, with ratios B/A.

    A and B are run ids (12 or #12), model names (file stem, e.g. gru-int8) or sha256 prefixes; a model means its
    latest run.
    """
    from edgeseq.report.compare import compare_runs, print_compare

    print_compare(compare_runs(db, a, b, target=target, warn=_warn), sys.stdout, as_json=as_json)


def _warn(message: str) -> None:
    """Damaged rows skipped: one line on stderr; the report itself still goes to stdout."""
    click.echo(f"warning: {message}", err=True)
