"""`edgeseq demo`: train, convert, validate, profile and report on bundled data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Where runs, artifacts, the results store and the report go.")
@click.option("--dataset", default="japanese_vowels", show_default=True, help="A bundled or registered data set.")
@click.option("--preset", default="small", show_default=True, help="Zoo preset for every architecture.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Training epochs at most (early stopping applies).")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed invokes per model.")
@click.option("--fresh", is_flag=True, help="Retrain even if the demo's runs already exist.")
@click.option("--no-stream", is_flag=True, help="Skip the streaming comparison.")
def demo(out_dir, dataset, preset, epochs, runs, fresh, no_stream) -> None:
    """Run the whole line on bundled data and end by saying where the report is."""
    from edgeseq.demo import DemoOptions, run_demo
    from edgeseq.report.dispatch import print_table

    opts = DemoOptions(out_dir=Path(out_dir), dataset=dataset, preset=preset, epochs=epochs, runs=runs,
                       fresh=fresh, stream=not no_stream)
    result = run_demo(opts, say=lambda msg: click.echo(msg, err=True))
    click.echo("")
    print_table(result.rows)
    if result.stream_rows:
        click.echo("\nstreaming, one step at a time (p50 of a whole step; x GRU = ratio to the GRU step):")
        click.echo(f"{'model':<28}{'kind':>18}{'context':>9}{'p50 µs':>10}{'state bytes':>13}{'model MB':>10}"
                   f"{'x GRU':>8}")
        for r in result.stream_rows:
            mem = "-" if r.get("model_peak_kb") is None else f"{r['model_peak_kb'] / 1024:.1f}"
            click.echo(f"{r['model']:<28}{r['kind'].label:>18}{r['context']:>9}{r['p50_us']:>10.1f}"
                       f"{r['state_bytes']:>13,}{mem:>10}{r['x_rnn']:>8.1f}")
    for problem in result.problems:
        click.echo(f"note: {problem}", err=True)
    click.echo(f"\nreport: {result.report}")
    click.echo(f"results store: {result.db} (try `edgeseq report --db {result.db}`)")
