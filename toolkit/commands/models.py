"""`edgeseq models`: the zoo, one row per architecture x preset, with parameter counts at the reference shape."""

from __future__ import annotations

import sys

import click

from edgeseq.commands._options import echo_json, json_option


@click.command()
@json_option("the table (with each full config)")
@click.option("--capabilities", is_flag=True,
              help="What each layer family can do with each recipe, batch and streaming (declared limits).")
def models(as_json: bool, capabilities: bool) -> None:
    """List the model zoo: architectures, presets and parameter counts."""
    if capabilities:
        from edgeseq.quantize.capabilities import render_rows, rows

        if as_json:
            echo_json("models", {"capabilities": rows()})
        else:
            click.echo(render_rows(rows()))
        return
    from edgeseq.models.config import REFERENCE_SHAPE
    from edgeseq.models.zoo import zoo_table

    rows = zoo_table()  # parameters from the configs by formula: no Keras
    if as_json:
        echo_json("models", {"models": rows})
        return
    seq_len, num_features, num_classes = REFERENCE_SHAPE
    caption = f"parameters at T={seq_len}, F={num_features}, {num_classes} classes"
    header = ("preset", "arch", "params", "hyperparameters")
    cells = [(r["preset"], r["arch"], f"{r['params']:,}", r["hyperparameters"]) for r in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, title="edgeseq model zoo", caption=caption)
        table.columns[2].justify = "right"
        for i, row in enumerate(cells):
            table.add_row(*row, end_section=i + 1 < len(cells) and cells[i + 1][0] != row[0])
        Console().print(table)
        return
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(row: tuple[str, ...]) -> str:
        parts = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3]]
        return "  ".join(parts).rstrip()

    click.echo(line(header))
    for row in cells:
        click.echo(line(row))
    click.echo(f"({caption})")
