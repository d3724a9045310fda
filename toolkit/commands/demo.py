"""`edgeseq demo`: train, convert, validate, profile and report on bundled data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import click

from edgeseq.commands._options import (
    dataset_option,
    db_option,
    echo_json,
    json_option,
    runs_option,
    warmup_option,
)
from edgeseq.demo import ARCHS


@click.command()
@click.option("--out", "out_dir", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Where runs, artifacts, the results store and the report go.")
@dataset_option(help="A bundled or registered data set [default: japanese_vowels].")
@click.option("--arch", default=",".join(ARCHS), show_default=True, help="Architectures (comma-separated).")
@click.option("--preset", default="small", show_default=True, help="Zoo preset for every architecture.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Training epochs at most (early stopping applies); fewer than train's 60 so the demo ends in "
                   "minutes.")
@runs_option(100, "Fewer than profile's 200 so the demo ends in minutes.", minimum=1)
@warmup_option(10, "Fewer than profile's 20 so the demo ends in minutes.", minimum=0)
@db_option()
@click.option("--fresh", is_flag=True, help="Retrain even if the demo's runs already exist.")
@click.option("--no-stream", is_flag=True, help="Skip the streaming comparison.")
@json_option("the runs, the streaming rows and where the report is")
def demo(out_dir, dataset, arch, preset, epochs, runs, warmup, db, fresh, no_stream, as_json) -> None:
    """Run the whole line on bundled data and end by saying where the report is."""
    from edgeseq.demo import DemoOptions, run_demo
    from edgeseq.report.dispatch import print_table
    from edgeseq.report.views import demo_stream_lines

    archs = tuple(a.strip() for a in arch.split(",") if a.strip())
    opts = DemoOptions(out_dir=Path(out_dir), dataset=dataset or "japanese_vowels", preset=preset, epochs=epochs,
                       runs=runs, warmup=warmup, fresh=fresh, stream=not no_stream, archs=archs,
                       db=Path(db) if db else None)
    result = run_demo(opts, say=lambda msg: click.echo(msg, err=True))
    for problem in result.problems:
        click.echo(f"note: {problem}", err=True)
    if as_json:
        echo_json("demo", {"runs": result.rows, "stream": [{**r, "kind": str(r["kind"].value)}
                                                            for r in result.stream_rows],
                           "report": str(result.report), "db": str(result.db), "problems": result.problems})
        return
    click.echo("")
    print_table(result.rows)
    for line in demo_stream_lines(result.stream_rows):
        click.echo(line)
    click.echo(f"\nreport: {result.report}")
    click.echo(f"results store: {result.db} (try `edgeseq report --db {result.db}`)")
