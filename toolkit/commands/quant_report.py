"""`edgeseq quant-report FILE.tflite --dataset D [--json]`: every op's error against the float model, ranked."""

from __future__ import annotations

import click

from edgeseq.commands._options import data_dir_option, dataset_option, echo_json, json_option


@click.command("quant-report")
@click.argument("path", type=click.Path())
@dataset_option(aliases=("--calibration",), help="Registered name, NAME:key=value, or a .npz: the test split is run through both models "
                     "[default: the data set named by the manifest beside the file].")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="The float reference (the same model converted fp32 by the same route) [default: an fp32 file "
                   "beside FILE with the same source, else the manifest's source model converted fp32].")
@click.option("--samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Test samples compared.")
@click.option("--top", type=click.IntRange(min=0), default=None,
              help="Print only the N worst ops [default: every op].")
@click.option("--trust-model", is_flag=True, help="Load the source model with safe_mode off (to convert the reference).")
@data_dir_option()
@json_option("the report")
def quant_report(path, dataset, reference, samples, top, trust_model, data_dir, as_json) -> None:
    """Run a quantized .tflite and its float reference side by side on data and list every op with its error (MSE,
    cosine, SNR: end to end, and the op's own with float inputs), worst first, with the Keras layer it came from;
    saves the report beside the file (<stem>.quant.json), which `edgeseq report` shows."""
    from edgeseq.api import quant_report as run_report
    from edgeseq.core.progress import Progress
    from edgeseq.report.views import quant_report_lines

    r = run_report(path, dataset, reference=reference, samples=samples, data_dir=data_dir, trust_model=trust_model,
                   progress=None if as_json else Progress(1).note)
    if as_json:
        echo_json("quant-report", {k: v for k, v in r.items() if k != "schema"})
    else:
        for line in quant_report_lines(r, top):
            click.echo(line)
