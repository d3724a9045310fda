"""`edgeseq convert MODEL.keras --recipe fp32,int8`: convert, validate on LiteRT, write .tflite + manifest."""

from __future__ import annotations

import json
import sys

import click

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


def _summary(r) -> str:
    m, v = r.manifest, r.validation
    size = m["artifact"]["bytes"] / 1024
    route = m["route"]["rnn"]
    parts = [f"{r.tflite_path}", f"{size:.1f} KB", f"route {route}" if route != "none" else "no RNN"]
    if v.get("skipped"):
        parts.append(f"not validated ({v['reason']})")
    else:
        parity = f"parity {'ok' if v['passed'] else 'FAILED'} max|d| {v['max_abs_diff']:.2g}"
        if "top1_agreement" in v:
            parity += f" top-1 {v['top1_agreement']:.1%}"
        if v.get("data", {}).get("source") in ("random-normal", "random-ids"):
            parity += " on random inputs (no --calibration data)"
        parts.append(parity)
        ref = v.get("training_reference")
        if ref:  # the outputs of the backend that trained the model, stored in its run directory
            keras_only = "max_abs_diff" not in ref  # --stream: TF's Keras is checked against them
            diff = ref["keras_tensorflow_vs_training"]["max_abs_diff"] if keras_only else ref.get("max_abs_diff")
            parts.append(f"{'keras ' if keras_only else ''}vs the {ref['backend']}-trained reference: " + (
                f"not checked ({ref['skipped']})" if "skipped" in ref else
                f"{'ok' if ref['passed'] else 'FAILED'} max|d| {diff:.2g} on {ref.get('samples', 0)} samples"))
        tm, km = v.get("tflite_metrics"), v.get("keras_metrics")
        if tm and km:
            key = "accuracy" if "accuracy" in tm else "mse"
            parts.append(f"{key} {tm[key]:.4f} (keras {km[key]:.4f})")
    gran = m["route"].get("granularity") or {}
    if "candidates" in gran:
        sizes = " / ".join(f"{k} {c['bytes'] / 1024:.1f} KB" for k, c in gran["candidates"].items() if "bytes" in c)
        parts.append(f"kept {gran['kept']} scales (auto: {sizes or 'per-tensor failed'})")
    parts.append(f"{m['timing']['convert_s'] + m['timing']['validate_s']:.1f} s")
    return "  ".join(parts)


@click.command()
@click.argument("model_path", type=click.Path())  # a .keras or .h5 file, or a SavedModel directory
@click.option("--recipe", "recipes", default="fp32", show_default=True,
              help=recipe_help())
@click.option("--io", type=click.Choice(IO_DTYPES), default=None, help="int8 recipe: input/output dtype.")
@click.option("--calibration", default=None,
              help="Data set name or .npz for calibration and validation [default: random inputs, said so].")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=None, help=f"Representative samples (default {DEFAULT_CALIBRATION_SAMPLES}).")
@click.option("--seq-len", type=click.IntRange(min=1), default=None, help="Fixed sequence length; required for a variable time axis.")
@click.option("--rnn-strategy", type=click.Choice(RNN_STRATEGIES), default=None, help=auto_rule_summary())
@click.option("--granularity", type=click.Choice(GRANULARITIES), default=None,
              help=f"Weight scales per channel or per tensor (one conversion). auto: {auto_granularity_summary()}.")
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
def convert(model_path, recipes, io, calibration, calibration_samples, seq_len, rnn_strategy, granularity, allow_flex,
            out_dir, name, validate, strict, trust_model, data_dir, as_json, stream, kv_capacity, window) -> None:
    """Convert a .keras/.h5 model or a SavedModel directory to TFLite with one or more recipes, validate each on
    LiteRT, write file + manifest."""
    from edgeseq.core.fsio import check_file_name, check_output_dir
    from edgeseq.quantize.recipes import parse_recipes

    # Every cheap check runs before TensorFlow is imported and before any conversion: a bad --out, --name or data
    # file costs milliseconds and writes nothing.
    recipe_list = parse_recipes(recipes, io=io, calibration_samples=calibration_samples,
                                rnn_strategy=rnn_strategy, granularity=granularity, allow_flex=allow_flex or None)
    check_output_dir(out_dir)
    if name is not None:
        check_file_name(name)
    if calibration is not None:
        from edgeseq.datasets import load_dataset

        calibration = load_dataset(calibration, data_dir=data_dir)
    from edgeseq.quantize.convert import convert_model

    progress = (lambda msg: click.echo(msg, err=True)) if sys.stderr.isatty() else None
    if stream or kv_capacity is not None or window is not None:
        from edgeseq.quantize.stream.convert import convert_stream

        results = convert_stream(model_path, recipe_list, out_dir=out_dir, name=name, kv_capacity=kv_capacity,
                                 window=window, seq_len=seq_len, calibration=calibration, validate=validate,
                                 strict=strict, trust_model=trust_model, raise_on_error=False, progress=progress)
    else:
        results = convert_model(model_path, recipe_list, out_dir=out_dir, name=name, seq_len=seq_len,
                                calibration=calibration, validate=validate, strict=strict, trust_model=trust_model,
                                raise_on_error=False, progress=progress)
    if as_json:
        click.echo(json.dumps([r.manifest for r in results if r.ok], indent=2))
    for r in results:
        for warning in r.warnings:
            click.echo(f"warning: {r.recipe.slug}: {warning}", err=True)
        if not as_json:
            click.echo(_summary(r) if r.ok else f"FAILED {r.recipe.slug}: {r.error.one_line()}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise failed[0].error
