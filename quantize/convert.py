"""Host side of `edgeseq convert`: prepare data, run each recipe in a child process, validate on LiteRT, write files.

Nothing reaches `out_dir` until a conversion has succeeded and (by default) passed parity; then the .tflite and its
manifest are written atomically. A child that crashes becomes a one-line ConversionError naming model and recipe.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import ConversionError, EdgeseqError, ModelError, ValidationError
from edgeseq.fsio import atomic_write_bytes, atomic_write_json, sha256_file
from edgeseq.quantize.calibration import Inputs, prepare_inputs
from edgeseq.quantize.inspect import analyze
from edgeseq.quantize.manifest import build_manifest, manifest_path_for
from edgeseq.quantize.recipes import Recipe, get_recipe
from edgeseq.quantize.slim import compact
from edgeseq.quantize.tflite_file import parse_bytes

CHILD_TIMEOUT_S = 900
_GENERIC_STEMS = {"model", "best", "final", "last", "checkpoint"}


@dataclass
class ConversionResult:
    """One recipe's outcome. `error` is set (and no file written, unless --no-strict) when it failed."""

    recipe: Recipe
    tflite_path: Path | None = None
    manifest_path: Path | None = None
    manifest: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    error: EdgeseqError | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def default_name(model_path: str | os.PathLike) -> str:
    """runs/gru-jv/model.keras -> 'gru-jv'; their_model.keras -> 'their_model'."""
    p = Path(model_path)
    stem = p.parent.name if p.stem.lower() in _GENERIC_STEMS and p.parent.name else p.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "model"


def _guess_task(model: Any) -> str | None:
    """Classification when the model ends in a softmax (a Softmax layer or a Dense with softmax activation)."""
    last = model.layers[-1] if model.layers else None
    if last is None:
        return None
    if type(last).__name__ == "Softmax" or getattr(last, "get_config", dict)().get("activation") == "softmax":
        return "classification"
    return None


def _run_child(job_dir: Path, label: str, hint: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "edgeseq.quantize._child", str(job_dir)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"converting {label} took longer than {CHILD_TIMEOUT_S} s", hint) from exc
    report_path = job_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if proc.returncode == 0 and report.get("ok") and (job_dir / "model.tflite").exists():
        return report
    if report.get("error"):
        err = report["error"]
        cls = ModelError if err.get("kind") == "ModelError" else ConversionError
        raise cls(f"{label}: {err['message']}", err.get("hint"))
    if proc.returncode < 0:
        try:
            how = signal.Signals(-proc.returncode).name
        except ValueError:
            how = f"signal {-proc.returncode}"
        raise ConversionError(f"the converter crashed ({how}) on {label}; no file written", hint)
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
    raise ConversionError(f"the converter failed on {label} (exit {proc.returncode}: {tail[0][:160]})", hint)


def _validate(data: bytes, recipe: Recipe, inputs: Inputs, reference: np.ndarray, keras_metric: dict | None) -> dict:
    from edgeseq.quantize.isolated import run_tflite_isolated
    from edgeseq.quantize.runtime import interpreter_class
    from edgeseq.quantize.validate import parity, task_metric

    _, runtime, version = interpreter_class()
    try:
        outputs = run_tflite_isolated(data, inputs.X_val, f"the {recipe.slug} model")
    except ModelError as exc:
        raise ConversionError(f"converted, but the runtime cannot run it: {exc.message}") from exc
    result = parity(reference, outputs, inputs.task, recipe.tolerance)
    result.update(runtime=runtime, runtime_version=version, data=inputs.validation_record)
    if inputs.y_val is not None:
        result["tflite_metrics"] = task_metric(outputs, inputs.y_val, inputs.task)
        result["keras_metrics"] = keras_metric
    return result


def _convert_one(recipe: Recipe, ctx: dict, looped_fp32_bytes: int | None) -> ConversionResult:
    result = ConversionResult(recipe)
    strategy = recipe.strategy_for(ctx["recurrent"])
    label = f"{ctx['name']} ({ctx['model_path'].name}) with recipe {recipe.slug}"
    hint = ("retry with --rnn-strategy unroll" if strategy == "loop" and recipe.calibrated
            else "try another recipe or --rnn-strategy" if ctx["recurrent"] else "try another recipe")
    started = time.perf_counter()
    calibration = None
    with tempfile.TemporaryDirectory(prefix="edgeseq-convert-") as tmp:
        job_dir = Path(tmp)
        if recipe.calibrated:
            X_cal, calibration = ctx["inputs"].calibration(recipe.calibration_samples)
            np.save(job_dir / "calibration.npy", X_cal)
        job = {"model_path": str(ctx["model_path"]), "recipe": recipe.to_dict(), "seq_len": ctx["seq_len"],
               "strategy": strategy, "trust_model": ctx["trust_model"],
               "measure_looped_fp32": strategy == "unroll" and looped_fp32_bytes is None}
        (job_dir / "job.json").write_text(json.dumps(job))
        report = _run_child(job_dir, label, hint)
        data = (job_dir / "model.tflite").read_bytes()
    converted_bytes = len(data)
    try:  # same math, fewer bytes: short names, one empty buffer, shared vectors (see quantize/slim.py)
        data = compact(data)
    except Exception as exc:  # the re-pack is only about size: keep the converter's bytes
        result.warnings.append(f"kept the converter's file as written ({type(exc).__name__} while compacting it)")
    convert_s = time.perf_counter() - started
    info = analyze(parse_bytes(data, f"{ctx['name']}-{recipe.slug}.tflite"))
    if info["flex_ops"]:
        if not recipe.allow_flex:
            raise ConversionError(f"{label} needs Flex ops ({', '.join(info['flex_ops'][:3])})",
                                  "pass --allow-flex, knowing stock device runtimes cannot run them")
        result.warnings.append("the model uses Flex (Select TF) ops: stock LiteRT/TFLite device runtimes cannot run it")
    looped = report.get("looped_fp32_bytes") or looped_fp32_bytes
    route = {"converter": "tf.lite.TFLiteConverter.from_keras_model", "batch": 1, "seq_len": ctx["seq_len"],
             "ops": "builtins+flex" if info["flex_ops"] else "builtins", "rnn": strategy,
             "compacted": {"converter_bytes": converted_bytes, "bytes_saved": converted_bytes - len(data)}}
    if recipe.mode != "fp32":
        route["weight_scales"] = report.get("weight_scales")
    if strategy == "unroll":
        route["size_cost"] = {"looped_fp32_bytes": looped, "ratio_to_looped_fp32":
                              round(len(data) / looped, 3) if looped else None,
                              "note": "unrolled for the fixed length: one copy of the cell's ops per time step"}
    started = time.perf_counter()
    if ctx["validate"] and not info["flex_ops"]:
        validation = _validate(data, recipe, ctx["inputs"], ctx["reference"], ctx["keras_metric"])
    else:
        validation = {"skipped": True, "passed": None,
                      "reason": "Flex ops cannot run on LiteRT" if info["flex_ops"] else "--no-validate"}
    validate_s = time.perf_counter() - started
    result.validation = validation
    if validation.get("passed") is False:
        err = ValidationError(f"{label} failed parity on {validation['runtime']}: {'; '.join(validation['failures'])}",
                              "inspect the model, try another recipe, or keep the file with --no-strict")
        if ctx["strict"]:
            raise err
        result.warnings.append(f"kept despite failed parity (--no-strict): {'; '.join(validation['failures'])}")
    tflite_path = ctx["out_dir"] / f"{ctx['name']}-{recipe.slug}.tflite"
    result.manifest = build_manifest(
        name=ctx["name"], tflite_path=tflite_path, report=info, recipe=recipe.to_dict(), source=ctx["source"],
        route=route, calibration=calibration, validation=validation,
        timing={"convert_s": round(convert_s, 3), "child": {k: v for k, v in report.items() if k.endswith("_s")},
                "validate_s": round(validate_s, 3)},
    )
    atomic_write_bytes(tflite_path, data)
    result.manifest_path = atomic_write_json(manifest_path_for(tflite_path), result.manifest)
    result.tflite_path = tflite_path
    return result


def convert_model(
    model_path: str | os.PathLike,
    recipes: list[Recipe | str],
    *,
    out_dir: str | os.PathLike,
    name: str | None = None,
    seq_len: int | None = None,
    calibration: Any = None,
    calibration_samples: int | None = None,
    validate: bool = True,
    strict: bool = True,
    trust_model: bool = False,
    raise_on_error: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[ConversionResult]:
    """Convert one .keras model with each recipe; see the module docstring for what is written when.

    `calibration`: a data set spec, an .npz path, a loaded Dataset, or None (random inputs, said so in the manifest).
    Every recipe is attempted; with `raise_on_error` the first failure is raised afterwards (its `.results` attribute
    holds all outcomes), otherwise failures are in each result's `error`.
    """
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.rebuild import has_recurrent, resolve_seq_len

    say = progress or (lambda _msg: None)
    recipe_list = [get_recipe(r, calibration_samples=calibration_samples) for r in recipes]
    path = Path(model_path)
    model = load_keras_model(path, trust_model=trust_model)
    steps, features = resolve_seq_len(model, seq_len)
    if len(model.outputs) != 1:
        raise ModelError(f"{path} has {len(model.outputs)} outputs; edgeseq converts single-output models")
    inputs = prepare_inputs(calibration, seq_len=steps, num_features=features)
    if inputs.task is None:
        inputs = Inputs(None, inputs.name, _guess_task(model), inputs.X_val, None, inputs.validation_record)
    say(f"reference outputs from Keras on {len(inputs.X_val)} {inputs.validation_record['source']} samples")
    reference = np.asarray(model.predict(inputs.X_val, batch_size=64, verbose=0), dtype=np.float32)
    keras_metric = None
    if inputs.y_val is not None:
        from edgeseq.quantize.validate import task_metric

        keras_metric = task_metric(reference, inputs.y_val, inputs.task)
    ctx = {
        "model_path": path.resolve(), "name": name or default_name(path), "seq_len": steps,
        "recurrent": has_recurrent(model), "trust_model": trust_model, "inputs": inputs, "reference": reference,
        "keras_metric": keras_metric, "validate": validate, "strict": strict, "out_dir": Path(out_dir),
        "source": {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size,
                   "parameters": int(model.count_params()), "task": inputs.task},
    }
    del model
    results: list[ConversionResult] = []
    looped_fp32: int | None = None
    # Looped fp32 first: its size is the yardstick for what an unrolled route costs.
    order = sorted(recipe_list, key=lambda r: r.strategy_for(ctx["recurrent"]) == "unroll")
    for recipe in order:
        say(f"converting {ctx['name']} with {recipe.slug} ({recipe.description})")
        try:
            res = _convert_one(recipe, ctx, looped_fp32)
        except EdgeseqError as exc:
            res = ConversionResult(recipe, error=exc)
        if res.ok and recipe.mode == "fp32" and res.manifest.get("route", {}).get("rnn") == "loop":
            looped_fp32 = res.manifest["artifact"]["bytes"]
        results.append(res)
    results.sort(key=lambda r: recipe_list.index(r.recipe))
    failed = [r for r in results if r.error is not None]
    if failed and raise_on_error:
        err = failed[0].error
        err.results = results  # type: ignore[attr-defined]
        raise err
    return results
