"""`edgeseq report` and `edgeseq compare`: read the results store, print or write tables and plots."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help="Results store (default .edgeseq/results.db in the working directory).",
)
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
    help="Write report.<fmt> and the PNG plots here (html defaults to ./report).",
)
@click.option("--target", default=None, help="Only runs on this target.")
def report(db, fmt, out_dir, target) -> None:
    """Tables and plots of everything in the results store, grouped by target/device."""
    from edgeseq.report import load_report, print_table, render_csv, render_json, render_md, write_report

    if out_dir is None and fmt == "html":
        out_dir = "report"
    if out_dir is not None:
        path = write_report(db, out_dir, fmt=fmt, target=target, warn=_warn)
        click.echo(f"report written to {path} (plots in {path.parent})")
        return
    rows = load_report(db, target=target, warn=_warn)
    if fmt == "table":
        print_table(rows)
        from edgeseq.stream_profile import streaming_section

        streaming = streaming_section(db, None, "table", target)
        if streaming:
            click.echo(streaming, nl=False)
    else:
        click.echo({"md": render_md, "csv": render_csv, "json": render_json}[fmt](rows), nl=False)
        if fmt == "md":
            from edgeseq.stream_profile import streaming_section

            click.echo(streaming_section(db, None, "md", target), nl=False)
        if fmt == "json":
            click.echo()


@click.command()
@click.argument("a")
@click.argument("b")
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    help="Results store (default .edgeseq/results.db in the working directory).",
)
@click.option("--target", default=None, help="Only consider runs on this target.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(a, b, db, target, as_json) -> None:
    """Two models or runs side by side, with ratios B/A.

    A and B are run ids (12 or #12), model names (file stem, e.g. gru-int8) or sha256 prefixes; a model means its
    latest run.
    """
    from edgeseq.report import compare_runs, print_compare

    result = compare_runs(db, a, b, target=target, warn=_warn)
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        print_compare(result, sys.stdout)


def _warn(message: str) -> None:
    """Damaged rows skipped: one line on stderr; the report itself still goes to stdout."""
    click.echo(f"warning: {message}", err=True)
