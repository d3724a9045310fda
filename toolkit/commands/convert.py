"""`edgeseq convert MODEL.keras --recipe fp32,int8`: convert, validate on LiteRT, write .tflite + manifest."""

from __future__ import annotations

import click

from edgeseq.commands._options import data_dir_option, dataset_option, db_option, echo_json, json_option
from edgeseq.commands._types import CUSTOM_OBJECTS_HELP

# The rules these options state are read from the code that applies them (no TensorFlow, no numpy: `--help` stays
# fast; tests/test_one_source.py holds both).
from edgeseq.quantize.granularity import auto_granularity_summary
from edgeseq.quantize.recipes import (
    DEFAULT_CALIBRATION_SAMPLES,
    GRANULARITIES,
    IO_DTYPES,
    RNN_STRATEGIES,
    recipe_help,
)
from edgeseq.quantize.rnn_routes import auto_rule_summary


@click.command()
@click.argument("model_path", type=click.Path())  # a .keras or .h5 file, or a SavedModel directory
@click.option("--recipe", "recipes", default="fp32", show_default=True,
              help=recipe_help())
@click.option("--io", type=click.Choice(IO_DTYPES), default=None, help="int8 recipe: input/output dtype.")
@click.option("--float-ops", default=None, metavar="OPS|auto",
              help="int8 recipe: TFLite op types kept float (comma-separated, e.g. BATCH_MATMUL,SOFTMAX), or auto: "
                   "those whose int8 kernel is slower than float on --target, from its stored `profile --ops` runs "
                   "in --db, else the default table for its CPU (README: selective int8).")
@click.option("--target", default="local", show_default=True,
              help="--float-ops auto: the target whose per-op profiles decide.")
@db_option()
@dataset_option(aliases=("--calibration",),
                help="Data set (name, NAME:key=value or .npz) for calibration and validation; int8 and int16x8 need "
                     "one, or `random` to calibrate on N(0,1) inputs on purpose (said in the manifest and summary).")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=DEFAULT_CALIBRATION_SAMPLES,
              show_default=True, help="Representative samples.")
@click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Fixed sequence length; required for a variable time axis.")
@click.option("--rnn-strategy", type=click.Choice(RNN_STRATEGIES), default=None, help=auto_rule_summary())
@click.option("--granularity", type=click.Choice(GRANULARITIES), default=None,
              help=f"Weight scales per channel or per tensor (one conversion). auto: {auto_granularity_summary()}.")
@click.option("--allow-flex", is_flag=True, help="Permit Flex (Select TF) ops; stock device runtimes cannot run them.")
@click.option("--out", "out_dir", default="artifacts", show_default=True, help="Output folder.")
@click.option("--name", default=None, help="Artifact name [default: run directory or model file name].")
@click.option("--validate/--no-validate", default=True, show_default=True, help="Check parity on LiteRT.")
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="--no-strict keeps a file that failed parity (the manifest records the failure).")
@click.option("--trust-model", is_flag=True, help="Load with safe_mode off (lets the file run Python code).")
@click.option("--custom-objects", "custom_objects", multiple=True, metavar="PATH.py|MODULE", help=CUSTOM_OBJECTS_HELP)
@data_dir_option()
@json_option("the manifests")
@click.option("--stream", is_flag=True,
              help="Export the step model: RNN/LSTM/GRU state or a causal Transformer's KV cache (see README Streaming).")
@click.option("--kv-capacity", type=click.IntRange(min=1), default=None,
              help="--stream, causal Transformer: KV cache positions [default: the sequence length].")
@click.option("--window", type=click.IntRange(min=1), default=None, help="--stream: the sliding-window baseline, W steps re-run per step.")
@click.option("--state", type=click.Choice(["external", "internal", "both"]), default="external", show_default=True,
              help="--stream: where the step model keeps its state: carried by the host (external) or inside the model "
                   "in resource variables initialised by CALL_ONCE, with a 'reset' signature (internal).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="--stream, recurrent and conv models: K new frames per invoke (input [1, K, F]).")
def convert(model_path, recipes, io, dataset, calibration_samples, seq_len, rnn_strategy, granularity, allow_flex,
            out_dir, name, validate, strict, trust_model, custom_objects, data_dir, as_json, stream, kv_capacity,
            window, state, stride, float_ops, target, db) -> None:
    """Convert a .keras/.h5 model or a SavedModel directory to TFLite with one or more recipes, validate each on
    LiteRT, write file + manifest."""
    from edgeseq.api import convert as run_convert
    from edgeseq.core.progress import Progress
    from edgeseq.report.views import conversion_failed, convert_summary, recipes_summary

    progress = Progress(1).note  # each phase as it starts, flushed, on a terminal or piped
    results = run_convert(model_path, recipes, dataset=dataset, out=out_dir, name=name, seq_len=seq_len, io=io,
                          calibration_samples=calibration_samples, rnn_strategy=rnn_strategy,
                          granularity=granularity, allow_flex=allow_flex, validate=validate, strict=strict,
                          trust_model=trust_model, data_dir=data_dir, stream=stream, kv_capacity=kv_capacity,
                          window=window, state=state, stride=stride, float_ops=float_ops, target=target, db=db,
                          custom_objects=custom_objects, raise_on_error=False, progress=progress)
    lines, error = recipes_summary(results)  # the worst failed recipe's exit code (README: several recipes)
    if as_json:
        echo_json("convert", {"results": [{"recipe": r.recipe.slug, "written": r.ok, "manifest": r.manifest or None,
                                          "error": None if r.ok else r.error.one_line(),
                                          "exit_code": None if r.ok else r.error.exit_code} for r in results],
                              "exit_code": 0 if error is None else error.exit_code})
    for r in results:
        for warning in r.warnings:
            click.echo(f"warning: {r.recipe.slug}: {warning}", err=True)
        if not as_json:
            click.echo(convert_summary(r) if r.ok else conversion_failed(r))
    if not as_json and len(results) > 1:
        click.echo("\n".join(lines))
    if error is not None:
        raise error
