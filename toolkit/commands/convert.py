"""`edgeseq convert MODEL.keras --recipe fp32,int8`: convert, validate on LiteRT, write .tflite + manifest."""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("model_path", type=click.Path())  # a .keras or .h5 file, or a SavedModel directory
@click.option("--recipe", "recipes", default="fp32", show_default=True,
              help="Comma-separated: fp32, fp16, dynamic, int8, int16x8 (slugs like int8-io8 work too).")
@click.option("--io", type=click.Choice(["float", "int8"]), default=None, help="int8 recipe: input/output dtype.")
@click.option("--calibration", default=None,
              help="Data set name or .npz for calibration and validation [default: random inputs, said so].")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=None, help="Representative samples (default 200).")
@click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Fixed sequence length; required for a variable time axis.")
@click.option("--rnn-strategy", type=click.Choice(["auto", "fused", "loop", "unroll"]), default=None,
              help="auto: WHILE loop for float recipes; int8 tries the fused LSTM op, then the loop, then unrolling, "
                   "and keeps the first that passes parity (manifest: route.rnn, route.rnn_reason); int16x8 unrolls.")
@click.option("--granularity", type=click.Choice(["auto", "channel", "tensor"]), default=None,
              help="Weight scales per channel or per tensor (one conversion). auto: per tensor on unrolled graphs "
                   "(half the size); int8/int16x8 elsewhere convert both and keep per tensor (smaller) only if it "
                   "passes parity and loses nothing against per channel (rule: README, Converting).")
@click.option("--allow-flex", is_flag=True, help="Permit Flex (Select TF) ops; stock device runtimes cannot run them.")
@click.option("--out", "out_dir", default="artifacts", show_default=True, help="Output directory.")
@click.option("--name", default=None, help="Artifact name [default: run directory or model file name].")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check parity on LiteRT.")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="--no-strict keeps a file that failed parity (the manifest records the failure).")
@click.option("--trust-model", is_flag=True, help="Load with safe_mode off (lets the file run Python code).")
@click.option("--data-dir", default=None, help="Local copy of downloadable data sets (or EDGESEQ_DATA_DIR).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@click.option("--stream", is_flag=True,
              help="Export the step model: RNN/LSTM/GRU state or a causal Transformer's KV cache (see README Streaming).")
@click.option("--kv-capacity", type=click.IntRange(min=1), default=None, help="--stream, causal Transformer: KV cache positions [seq_len].")
@click.option("--window", type=click.IntRange(min=1), default=None, help="--stream: the sliding-window baseline, W steps re-run per step.")
@click.option("--state", type=click.Choice(["external", "internal", "both"]), default="external", show_default=True,
              help="--stream: where the step model keeps its state: carried by the host (external) or inside the model "
                   "in resource variables initialised by CALL_ONCE, with a 'reset' signature (internal).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="--stream, recurrent and conv models: K new frames per invoke (input [1, K, F]).")
def convert(model_path, recipes, io, calibration, calibration_samples, seq_len, rnn_strategy, granularity, allow_flex,
            out_dir, name, validate, strict, trust_model, data_dir, as_json, stream, kv_capacity, window, state,
            stride) -> None:
    """Convert a .keras/.h5 model or a SavedModel directory to TFLite with one or more recipes, validate each on
    LiteRT, write file + manifest."""
    from edgeseq.api import convert as run_convert
    from edgeseq.report.views import conversion_failed, convert_summary

    progress = (lambda msg: click.echo(msg, err=True)) if sys.stderr.isatty() else None
    results = run_convert(model_path, recipes, dataset=calibration, out=out_dir, name=name, seq_len=seq_len, io=io,
                          calibration_samples=calibration_samples, rnn_strategy=rnn_strategy,
                          granularity=granularity, allow_flex=allow_flex, validate=validate, strict=strict,
                          trust_model=trust_model, data_dir=data_dir, stream=stream, kv_capacity=kv_capacity,
                          window=window, state=state, stride=stride, raise_on_error=False, progress=progress)
    if as_json:
        click.echo(json.dumps([r.manifest for r in results if r.ok], indent=2))
    for r in results:
        for warning in r.warnings:
            click.echo(f"warning: {r.recipe.slug}: {warning}", err=True)
        if not as_json:
            click.echo(convert_summary(r) if r.ok else conversion_failed(r))
    failed = [r for r in results if not r.ok]
    if failed:
        raise failed[0].error
