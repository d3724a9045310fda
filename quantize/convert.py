"""Host side of `edgeseq convert`: prepare data, run each recipe in a child process, validate on LiteRT, write files.

Nothing reaches `out_dir` until a conversion has succeeded and (by default) passed parity; then the .tflite and its
manifest are written atomically. A child that crashes becomes a one-line ConversionError naming model and recipe.
With `--granularity auto`, int8 / int16x8 on a graph that is not unrolled are converted twice (per-channel and
per-tensor weight scales), both validated, and one file kept by GRANULARITY_RULE; `route.granularity` says why.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import ConversionError, EdgeseqError, ModelError, ValidationError
from edgeseq.core.fsio import (
    atomic_write_bytes,
    atomic_write_json,
    check_file_name,
    check_output_dir,
    childproc,
)
from edgeseq.quantize import rnn_routes
from edgeseq.quantize.calibration import Inputs, prepare_inputs
from edgeseq.quantize.capabilities import families_of, refusal
from edgeseq.quantize.converter_log import layer_names, log_path_for
from edgeseq.quantize.float_ops import float_in_file
from edgeseq.quantize.float_ops import resolve as resolve_float_ops
from edgeseq.quantize.granularity import GRANULARITY_RULE, granularity_figure, prefer_per_tensor
from edgeseq.quantize.inspect import analyze
from edgeseq.quantize.manifest import build_manifest, manifest_path_for
from edgeseq.quantize.multi_input import as_list, count, several_inputs
from edgeseq.quantize.quant_match import op_layers
from edgeseq.quantize.recipes import Recipe, get_recipe
from edgeseq.quantize.slim import compact
from edgeseq.quantize.source import _guess_task, default_name, head_record, model_input_record, source_record
from edgeseq.quantize.tflite.reader import parse_bytes
from edgeseq.quantize.training_reference import check_reference, load_reference

CHILD_TIMEOUT_S = 900


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


def _run_child(job_dir: Path, label: str, hint: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "edgeseq.quantize._child", str(job_dir)]
    try:
        proc = childproc.run(cmd, env=env, timeout=CHILD_TIMEOUT_S, scratch=job_dir)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"converting {label} took longer than {CHILD_TIMEOUT_S} s", hint) from exc
    report_path = job_dir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if proc.returncode == 0 and report.get("ok") and (job_dir / "model.tflite").exists():
        return report
    if report.get("error"):
        raise childproc.error_from_record(report["error"], f"{label}: ", default=ConversionError)
    if proc.returncode < 0:
        raise ConversionError(f"the converter crashed ({childproc.signal_name(proc.returncode)}) on {label}; "
                              "no file written", hint)
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
    raise ConversionError(f"the converter failed on {label} (exit {proc.returncode}: {tail[0][:160]})", hint)


def _validate(data: bytes, recipe: Recipe, inputs: Inputs, reference: np.ndarray, keras_metric: dict | None,
              label: str, head: dict | None = None) -> dict:
    from edgeseq.quantize.isolated import run_tflite_isolated
    from edgeseq.quantize.runtime import interpreter_class
    from edgeseq.quantize.validate import parity, task_metric

    _, runtime, version = interpreter_class()
    try:
        outputs = run_tflite_isolated(data, inputs.X_val, f"the {recipe.slug} model")
    except ModelError as exc:
        raise ConversionError(f"{label}: converted, but the runtime cannot run it: {exc.message}") from exc
    result = parity(reference, outputs, inputs.task, recipe.tolerance, head)
    result.update(runtime=runtime, runtime_version=version, data=inputs.validation_record)
    if inputs.y_val is not None:
        result["tflite_metrics"] = task_metric(outputs, inputs.y_val, inputs.task, head)
        result["keras_metrics"] = keras_metric
    return result


@dataclass
class _Candidate:
    """One converted and validated file, not yet written anywhere."""

    per_channel: bool
    data: bytes
    report: dict
    info: dict
    converted_bytes: int
    convert_s: float
    validation: dict
    validate_s: float
    warnings: list[str] = field(default_factory=list)
    layers: list | None = None  # per main-graph op, its Keras layer (quant_match.op_layers)

    @property
    def scales(self) -> str:
        return "per-channel" if self.per_channel else "per-tensor"

    def record(self) -> dict:
        v = self.validation
        out: dict[str, Any] = {"bytes": len(self.data), "sha256": self.info["sha256"], "passed": v.get("passed")}
        if not v.get("skipped"):
            name, value, _ = granularity_figure(v)
            out |= {"figure": name, "value": value, "mean_abs_diff": v["mean_abs_diff"],
                    "max_abs_diff": v["max_abs_diff"], "failures": v["failures"]}
            for key in ("top1_agreement", "tflite_metrics"):
                if key in v:
                    out[key] = v[key]
        return out | {"convert_s": round(self.convert_s, 3), "validate_s": round(self.validate_s, 3)}


def _make_candidate(recipe: Recipe, ctx: dict, strategy: str, per_channel: bool, X_cal: np.ndarray | None,
                    looped_fp32_bytes: int | None, label: str, hint: str) -> _Candidate:
    """Convert in a child, compact, inspect and validate; nothing is written outside a temporary directory."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseq-convert-") as tmp:
        job_dir = Path(tmp)
        if isinstance(X_cal, dict):  # several inputs: one array per input name
            np.savez(job_dir / "calibration.npz", **X_cal)
        elif X_cal is not None:
            np.save(job_dir / "calibration.npy", X_cal)
        job = {"model_path": str(ctx["model_path"]), "recipe": recipe.to_dict(), "seq_len": ctx["seq_len"],
               "strategy": strategy, "trust_model": ctx["trust_model"], "per_channel": per_channel,
               "measure_looped_fp32": strategy == "unroll" and looped_fp32_bytes is None,
               "float_ops": ctx["float_ops"].get(recipe.slug, {}).get("ops", []),
               "log_path": str(log_path_for(ctx["name"], recipe.slug))}
        (job_dir / "job.json").write_text(json.dumps(job))
        report = _run_child(job_dir, label, hint)
        data = (job_dir / "model.tflite").read_bytes()
    converted_bytes = len(data)
    warnings = []
    try:  # which Keras layer each op came from, while the converter's names are still there
        layers = op_layers(data, ctx["layer_names"])
    except Exception:  # noqa: BLE001 - the names only label quant-report's rows; the file stands without them
        layers = None
    try:  # same math, fewer bytes: short names, one empty buffer, shared vectors (see quantize/slim.py)
        data = compact(data)
    except Exception as exc:  # noqa: BLE001 - the re-pack is only about size: keep the converter's bytes
        warnings.append(f"kept the converter's file as written ({type(exc).__name__} while compacting it)")
    convert_s = time.perf_counter() - started
    info = analyze(parse_bytes(data, f"{ctx['name']}-{recipe.slug}.tflite"))
    if info["flex_ops"]:
        if not recipe.allow_flex:
            raise ConversionError(f"{label} needs Flex ops ({', '.join(info['flex_ops'][:3])})",
                                  "pass --allow-flex, knowing stock device runtimes cannot run them")
        warnings.append("the model uses Flex (Select TF) ops: stock LiteRT/TFLite device runtimes cannot run it")
    started = time.perf_counter()
    if ctx["validate"] and not info["flex_ops"]:
        validation = _validate(data, recipe, ctx["inputs"], ctx["reference"], ctx["keras_metric"], label,
                               ctx["source"].get("head"))
        validation["reference"] = ctx["reference_from"]
        check_reference(validation, data, recipe, ctx["inputs"].task, ctx["training_reference"])
    else:
        validation = {"skipped": True, "passed": None,
                      "reason": "Flex ops cannot run on LiteRT" if info["flex_ops"] else "--no-validate"}
    return _Candidate(per_channel, data, report, info, converted_bytes, convert_s, validation,
                      time.perf_counter() - started, warnings, layers)


def _where_it_failed(kept: _Candidate, recipe: Recipe, ctx: dict, strategy: str) -> str:
    """The per-op report's summary line for a quantized file that failed parity (quantize/quant_report.py)."""
    if recipe.mode in ("fp32", "fp16"):
        return "a float recipe: no quantized op to blame"
    from edgeseq.quantize.quant_report import failure_summary

    try:
        return failure_summary(kept.data, ctx["model_path"], strategy, ctx["seq_len"], ctx["inputs"].X_val,
                               kept.layers, ctx["trust_model"])
    except EdgeseqError as exc:
        return f"no per-op report ({exc.one_line()[:200]})"


def _choose_route(recipe: Recipe, ctx: dict, X_cal: np.ndarray | None, looped_fp32_bytes: int | None,
                  label: str) -> tuple[_Candidate, str, dict]:
    """The RNN route's candidate: each route of the plan converted in its own child and validated, in order, until
    one passes (rules: quantize/rnn_routes.py `choose`)."""
    route_plan = rnn_routes.plan(recipe.mode, recipe.rnn_strategy, ctx["recurrent"], ctx.get("rnn_survey"))

    def attempt(route: str) -> _Candidate:
        hint = ("retry with --rnn-strategy unroll" if route in ("loop", "fused") and recipe.calibrated
                else "try another recipe or --rnn-strategy" if ctx["recurrent"] else "try another recipe")
        suffix = f", route {route}" if len(route_plan.routes) > 1 else ""
        return _make_candidate(recipe, ctx, route, recipe.per_channel_for(route), X_cal, looped_fp32_bytes,
                               label + suffix, hint)

    return rnn_routes.choose(route_plan, attempt, label)


PLAIN_CONVERTER = "tf.lite.TFLiteConverter.from_keras_model on the model as saved (TF's plain route)"


def _plain_fallback(recipe: Recipe, ctx: dict, X_cal: np.ndarray | None, label: str,
                    failed: ConversionError) -> tuple[_Candidate, str, dict, dict]:
    """edgeseq's own route (batch-1 rebuild, fixed time axis, RNN routes) failed to convert: convert the model as
    saved, as TF's plain converter does, with the free batch (and time axis) then fixed to the data's shape in the
    file where that runs; validated the same way. The original error stands when this fails too."""
    if ctx["source"]["format"] == "saved_model":
        raise failed
    plain_label = f"{label}, TF's plain converter route"
    try:
        cand = _make_candidate(recipe, ctx, "plain", recipe.per_channel_for("plain"), X_cal, None, plain_label,
                               failed.hint or "try another recipe")
    except ConversionError as exc:
        why = exc.message.removeprefix(f"{plain_label}: ")
        raise ConversionError(f"{failed.message}; TF's plain converter route failed too: {why}", failed.hint) from exc
    info = {"rnn": "plain" if ctx["recurrent"] else "none",
            "rnn_reason": "TF's plain converter route (edgeseq's own route failed to convert)"}
    fallback = {"from": "edgeseq's batch-1 rebuild" + (" and RNN routes" if ctx["recurrent"] else ""),
                "why": failed.one_line()[:400], "to": "plain"}
    return cand, "plain", info, fallback


def _convert_one(recipe: Recipe, ctx: dict, looped_fp32_bytes: int | None) -> ConversionResult:
    result = ConversionResult(recipe)
    label = f"{ctx['name']} ({ctx['model_path'].name}) with recipe {recipe.slug}"
    calibration = X_cal = None
    if recipe.float_ops:  # which op types stay float, decided once per recipe (quantize/float_ops.py)
        ctx["float_ops"][recipe.slug] = resolve_float_ops(recipe.float_ops, ctx["op_evidence"], platform.machine())
    if recipe.calibrated:
        X_cal, calibration = ctx["inputs"].calibration(recipe.calibration_samples)
    fallback = None
    try:
        first, strategy, rnn_info = _choose_route(recipe, ctx, X_cal, looped_fp32_bytes, label)
    except ConversionError as exc:  # never worse than TF's plain converter
        first, strategy, rnn_info, fallback = _plain_fallback(recipe, ctx, X_cal, label, exc)
        result.warnings.append("edgeseq's own route failed to convert; TF's plain converter route converted it "
                               "(the manifest's route.fallback says why)")
    hint = ("retry with --rnn-strategy unroll" if strategy in ("loop", "fused") and recipe.calibrated
            else "try another recipe or --rnn-strategy" if ctx["recurrent"] else "try another recipe")
    kept, candidates = first, [first]
    granularity: dict[str, Any] = {"requested": recipe.granularity}
    if recipe.granularity != "auto":
        granularity["reason"] = f"--granularity {recipe.granularity}: one conversion"
    elif not recipe.compares_granularity(strategy):
        granularity["reason"] = ("unrolled graph: per-tensor (per-channel scales on every step's bias double the file)"
                                 if strategy == "unroll" else "not a calibrated recipe: per-channel")
    elif first.validation.get("skipped"):
        granularity["reason"] = f"per-channel, not compared with per-tensor: {first.validation['reason']}"
    else:
        granularity["rule"] = GRANULARITY_RULE
        records = {first.scales: first.record()}
        try:
            second = _make_candidate(recipe, ctx, strategy, False, X_cal, looped_fp32_bytes, label, hint)
        except Exception as exc:  # noqa: BLE001 - the per-channel file stands; a failed alternative only costs time
            why = exc.one_line() if isinstance(exc, EdgeseqError) else f"{type(exc).__name__}: {exc}"
            records["per-tensor"] = {"error": why[:300]}
            granularity["reason"] = "per-tensor conversion failed; kept per-channel"
            result.warnings.append(f"--granularity auto: the per-tensor conversion failed ({why[:160]}); "
                                   "kept per-channel")
        else:
            candidates.append(second)
            records[second.scales] = second.record()
            keep_tensor, granularity["reason"] = prefer_per_tensor(
                first.validation, second.validation, len(first.data), len(second.data))
            kept = second if keep_tensor else first
        granularity["candidates"] = records
    granularity["kept"] = kept.scales
    result.warnings.extend(kept.warnings)
    report, info, validation, data = kept.report, kept.info, kept.validation, kept.data
    looped = report.get("looped_fp32_bytes") or looped_fp32_bytes
    route = {"converter": ("tf.lite.TFLiteConverter.from_keras_model over the SavedModel's serving signature "
                           "(keras.layers.TFSMLayer)" if ctx["source"]["format"] == "saved_model"
                           else PLAIN_CONVERTER if fallback else "tf.lite.TFLiteConverter.from_keras_model"),
             "batch": 1, "seq_len": ctx["seq_len"],
             "ops": "builtins+flex" if info["flex_ops"] else "builtins", **rnn_info,
             "compacted": {"converter_bytes": kept.converted_bytes, "bytes_saved": kept.converted_bytes - len(data)}}
    if recipe.mode != "fp32":
        route["weight_scales"] = report.get("weight_scales")
        route["granularity"] = granularity
    if recipe.float_ops:  # what was asked, what stayed float and why, and what is float in the file
        route["float_ops"] = ctx["float_ops"][recipe.slug] | {"float_in_file": float_in_file(info)}
    if fallback:
        fixed = report.get("fixed_signature")
        route["batch"] = 1 if fixed is not None else "free (the plain converter's signature; runs at batch 1)"
        route["fallback"] = fallback | {"fixed_signature": fixed}
    for key in ("fused_ops", "while_calibration", "splat_bytes_to_fill", "loop_quantize_hoisted", "norms_as_beta",
                "int4"):
        if report.get(key):  # what the route needed: fused ops, the calibrator workaround, zero buffers as FILL,
            # the int8 loop's input quantized once outside the loop, LayerNorms over one element as their beta
            route[key] = report[key]
    if strategy == "unroll":
        route["size_cost"] = {"looped_fp32_bytes": looped, "ratio_to_looped_fp32":
                              round(len(data) / looped, 3) if looped else None,
                              "note": "unrolled for the fixed length: one copy of the cell's ops per time step"}
    result.validation = validation
    if validation.get("passed") is False:
        validation["where"] = _where_it_failed(kept, recipe, ctx, strategy)
        err = ValidationError(f"{label} failed parity on {validation['runtime']}: {'; '.join(validation['failures'])}"
                              f"; {validation['where']}", "try another recipe (or --float-ops for the ops named), "
                              "or keep the file with --no-strict and run edgeseq quant-report on it")
        if ctx["strict"]:
            raise err
        result.warnings.append(f"kept despite failed parity (--no-strict): {'; '.join(validation['failures'])}; "
                               f"{validation['where']}")
    tflite_path = ctx["out_dir"] / f"{ctx['name']}-{recipe.slug}.tflite"
    # Totals over every candidate made, so the timings say what this recipe cost; per-candidate in route.granularity.
    result.manifest = build_manifest(
        name=ctx["name"], tflite_path=tflite_path, report=info, recipe=recipe.to_dict(), source=ctx["source"],
        route=route, calibration=calibration, validation=validation,
        timing={"convert_s": round(sum(c.convert_s for c in candidates), 3),
                "rnn_fallback_s": round(sum(a.get("seconds", 0.0) for a in rnn_info.get("rnn_candidates", [])
                                            if not a["outcome"].startswith(("kept", "not tried"))), 3),
                "child": {k: v for k, v in report.items() if k.endswith("_s")},
                "validate_s": round(sum(c.validate_s for c in candidates), 3), "candidates": len(candidates)},
    )
    result.manifest["op_layers"] = kept.layers
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
    op_evidence: dict | None = None,
) -> list[ConversionResult]:
    """Convert one .keras model with each recipe; see the module docstring for what is written when.

    `calibration`: a data set spec, an .npz path, a loaded Dataset, or None (random inputs, said so in the manifest).
    Every recipe is attempted; with `raise_on_error` the first failure is raised afterwards (its `.results` attribute
    holds all outcomes), otherwise failures are in each result's `error`. `op_evidence`: the profiling target's
    stored per-op rows for `--float-ops auto` (quantize/float_ops.py; None: this host's default table).
    """
    from edgeseq.quantize.fused_lstm import survey
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.rebuild import has_recurrent, resolve_seq_len

    say = progress or (lambda _msg: None)
    recipe_list = [get_recipe(r, calibration_samples=calibration_samples) for r in recipes]
    check_output_dir(out_dir, "out_dir")  # before any work: converting for minutes to fail on --out is no use
    if name is not None:
        check_file_name(name, "name")  # it becomes <name>-<slug>.tflite inside out_dir, never a path
    path = Path(model_path)
    model = load_keras_model(path, trust_model=trust_model)
    if len(model.outputs) != 1:
        raise ModelError(f"{path} has {len(model.outputs)} outputs; edgeseq converts single-output models")
    if len(model.inputs) > 1:  # several inputs, each by its name (quantize/multi_input.py)
        steps, features, input_record, inputs = several_inputs(model, seq_len, calibration)
    else:
        steps, features = resolve_seq_len(model, seq_len)
        input_record = model_input_record(model)
        inputs = prepare_inputs(calibration, seq_len=steps, num_features=features,
                                vocab=input_record.get("vocab_size"))
    if inputs.task is None:
        inputs = dataclasses.replace(inputs, dataset=None, task=_guess_task(model), y_val=None)
    say(f"reference outputs from Keras on {count(inputs.X_val)} {inputs.validation_record['source']} samples")
    from edgeseq.quantize.keras_fixes import batch1_safe_add

    with batch1_safe_add():  # a last batch of one sample would meet Keras's batch-1 `add` trap
        reference = np.asarray(model.predict(as_list(inputs.X_val, inputs.specs), batch_size=64, verbose=0),
                               dtype=np.float32)
        from edgeseq.quantize.source_check import refuse_nonfinite_source

        refuse_nonfinite_source(model, as_list(inputs.X_val, inputs.specs), reference, str(path),
                                f"{inputs.validation_record['source']} validation inputs")
    keras_metric = None
    if inputs.y_val is not None:
        from edgeseq.quantize.validate import task_metric

        keras_metric = task_metric(reference, inputs.y_val, inputs.task, head_record(model))
    families = families_of(model)
    ctx = {
        "model_path": path.resolve(), "name": name or default_name(path), "seq_len": steps,
        "recurrent": has_recurrent(model), "rnn_survey": survey(model), "layer_names": layer_names(model),
        "trust_model": trust_model, "inputs": inputs, "reference": reference,
        "keras_metric": keras_metric, "op_evidence": op_evidence, "float_ops": {}, "validate": validate, "strict": strict, "out_dir": Path(out_dir),
        "source": source_record(path, model, inputs.task, input_record),
        "reference_from": ("the SavedModel's serving signature (TensorFlow)"
                           if (getattr(model, "edgeseq_source", None) or {}).get("format") == "saved_model"
                           else "the Keras model"),
    }
    # A training run's own file is also checked against the outputs of the backend that trained it.
    ctx["training_reference"] = (load_reference(path, steps, features, model) if validate and inputs.specs is None
                                 else None)
    del model
    results: list[ConversionResult] = []
    looped_fp32: int | None = None
    # Looped fp32 first: its size is the yardstick for what an unrolled route costs.
    order = sorted(recipe_list, key=lambda r: r.calibrated)
    for recipe in order:
        limit = refusal(families, recipe.capability, "batch")
        if limit is not None:  # declared up front: no child is started for what cannot work
            results.append(ConversionResult(recipe, error=ConversionError(
                f"{ctx['name']} with recipe {recipe.slug}: {limit.why}", limit.fix)))
            continue
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
