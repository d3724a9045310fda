"""`edgeseq convert --stream`: export step models (and the sliding-window baseline) to TFLite with any recipe.

    convert_stream("runs/gru-jv/model.keras", ["fp32", "int8"], out_dir="artifacts/")          # gru-jv-step-int8.tflite
    convert_stream("runs/tf-causal/model.keras", ["fp32"], out_dir="a/", kv_capacity=128)      # tf-causal-kv128-fp32
    convert_stream("runs/tf/model.keras", ["fp32"], out_dir="a/", window=64)                   # tf-win64-fp32

What is reused from the conversion engine: recipes and tolerances, the converter set-up (`_child._converter`, with
a multi-input representative data set on top), calibration/validation inputs, parity, inspect, the manifest and the
atomic writes. What is specific here: the step model is built in the child from the trained .keras (the weights are
shared through each layer's cell or the attention layer's pieces, see edgeseq.models.streaming), int8 calibration
feeds (x_t, state) pairs recorded while stepping the calibration sequences through Keras, and parity steps every
validation sequence through the .tflite on LiteRT with the device agent's own StreamStepper (state carried by
signature name, int8 state requantized between steps), in a throwaway process.

Parity, recorded in the manifest: T steps through the .tflite reproduce the sequence model's output within the
recipe's tolerance (T = the model's length, or the KV capacity when that is shorter: then the reference is the
sequence model run on the first T steps).

The child: `python -m edgeseq.quantize.stream convert JOBDIR` (imports TensorFlow) and
`python -m edgeseq.quantize.stream run JOBDIR` (numpy and LiteRT only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq import childproc
from edgeseq.errors import ConversionError, EdgeseqError, InputError, ModelError, ValidationError

CHILD_TIMEOUT_S = 900
PARITY_SEQUENCES = 256  # validation sequences stepped through each .tflite (accuracy too, where labelled)
CALIBRATION_SEQUENCES = 64  # calibration sequences stepped through Keras to record (x_t, state) samples
DEFAULT_PARITY_STEPS = 64  # for a variable-length RNN without --seq-len


# ------------------------------------------------------------------------------------------------ export specs
def export_suffix(kind: str, size: int | None) -> str:
    """File-name part: 'step' (recurrent), 'kv<capacity>' (Transformer KV cache), 'win<W>' (window baseline)."""
    return {"step": "step", "kv": f"kv{size}", "window": f"win{size}"}[kind]


def _export_list(info_kind: str, kv_capacity: int | None, window: int | None, steps: int,
                 contexts: list[int] | None = None, windows: bool = False) -> list[dict]:
    """What to export: the step model (recurrent), KV models per capacity, window models per size."""
    if window is not None or info_kind == "window":
        return [{"kind": "window", "size": int(w)} for w in (contexts or [window or steps])]
    if info_kind == "recurrent":
        out = [{"kind": "step", "size": None}]
    else:
        out = [{"kind": "kv", "size": int(c)} for c in (contexts or [kv_capacity or steps])]
    if windows:
        out += [{"kind": "window", "size": int(w)} for w in (contexts or [steps])]
    return out


# ------------------------------------------------------------------------------------------------ child: convert
def _build(model: Any, export: dict, batch_size: int | None) -> Any:
    from edgeseq.models.streaming import build_step_model, build_window_model

    if export["kind"] == "window":
        return build_window_model(model, export["size"], batch_size=batch_size)
    return build_step_model(model, kv_capacity=export["size"], batch_size=batch_size)


def _step_calibration(model: Any, export: dict, X: np.ndarray, samples: int, seed: int) -> list[dict]:
    """Representative (x_t, state) samples: the calibration sequences stepped through the Keras step model."""
    from edgeseq.models.streaming import run_steps

    step = _build(model, export, None)
    X = X[:CALIBRATION_SEQUENCES]
    if export["kind"] == "kv":
        X = X[:, : export["size"]]
    every = max(1, X.shape[1] // max(1, -(-samples // len(X))))
    _, seen = run_steps(step, X, record_every=every)
    pool = [{k: v[i : i + 1] for k, v in feed.items()} for feed in seen for i in range(len(X))]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=min(samples, len(pool)), replace=False)
    return [pool[int(i)] for i in sorted(pick)]


def _window_calibration(X: np.ndarray, size: int, samples: int) -> list[np.ndarray]:
    return [w[None] for w in fit_windows(X[:samples], size)]


def fit_windows(X: np.ndarray, size: int) -> np.ndarray:
    """Sequences cut (last `size` steps) or left-padded with zeros (a fresh stream's window) to `size` steps."""
    X = np.asarray(X, np.float32)
    if X.shape[1] >= size:
        return np.ascontiguousarray(X[:, -size:])
    pad = np.zeros((len(X), size - X.shape[1], X.shape[2]), np.float32)
    return np.concatenate([pad, X], axis=1)


def _convert_child(job_dir: Path) -> int:
    """Convert job["items"][start:] (each a recipe and an export) one after the other; report after each item."""
    from edgeseq.quantize._child import _converter, _reason
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.rebuild import fixed_shape_model, has_recurrent
    from edgeseq.quantize.recipes import Recipe

    job = json.loads((job_dir / "job.json").read_text())
    report_path = job_dir / "report.json"
    report: dict[str, Any] = json.loads(report_path.read_text()) if report_path.exists() else {"items": {}}
    models: dict[str, Any] = {}
    for i in range(job["start"], len(job["items"])):
        item = job["items"][i]
        recipe, export = Recipe.from_dict(item["recipe"]), item["export"]
        report["items"][str(i)] = {"ok": False, "in_flight": True}
        report_path.write_text(json.dumps(report))
        started = time.perf_counter()
        entry: dict[str, Any] = {}
        try:
            if item["model_path"] not in models:
                models[item["model_path"]] = load_keras_model(item["model_path"], trust_model=job["trust_model"])
            model = models[item["model_path"]]
            calib_path = job_dir / f"calibration_{item['cal']}.npy"
            X_cal = np.load(calib_path) if calib_path.exists() else None
            if export["kind"] == "kv" and recipe.mode == "int16x8":
                raise ConversionError(
                    "int16x8 cannot quantize the KV-cache step model on TF 2.21 (its int32 position input gets no "
                    "calibrated range, and LayerNorm's NEG has no 16x8 kernel, as for the batch Transformer)",
                    "use int8 or dynamic")
            built = _build(model, export, 1)
            if export["kind"] == "window" and recipe.calibrated and has_recurrent(built):
                # a looped RNN's int8 calibration crashes the converter: unroll the window model (same weights)
                built = fixed_shape_model(built, export["size"], unroll=True)
                entry["rnn"] = "unroll"
            rep = None
            if recipe.calibrated:
                if export["kind"] == "window":
                    rep = _window_calibration(X_cal, export["size"], recipe.calibration_samples)
                else:
                    rep = _step_calibration(model, export, X_cal, recipe.calibration_samples, job.get("seed", 0))
            per_channel = recipe.per_channel_for("unroll" if entry.get("rnn") == "unroll" else "none")
            conv = _converter(built, recipe, rep, per_channel)
            if rep is not None:  # multi-input samples are dicts keyed by signature name
                conv.representative_dataset = lambda rep=rep: (r if isinstance(r, dict) else [r] for r in rep)
            data = conv.convert()
            (job_dir / f"out_{i}.tflite").write_bytes(data)
            entry.update(ok=True, convert_s=round(time.perf_counter() - started, 3))
        except EdgeseqError as exc:
            entry.update(ok=False, error={"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint})
        except Exception as exc:  # noqa: BLE001 - the converter raises many types; its reason is the message
            reason = _reason(exc)
            hint = ("this recipe does not support the model's ops on TF 2.21; use int8 or dynamic"
                    if "not supported" in reason else "try another recipe")
            entry.update(ok=False, error={"kind": "ConversionError", "message": f"the converter refused: {reason}",
                                          "hint": hint})
        report["items"][str(i)] = entry
        report_path.write_text(json.dumps(report))  # after each item: a later crash keeps the earlier ones
    return 0


# ------------------------------------------------------------------------------------------------ child: run
def _run_child_main(job_dir: Path) -> int:
    """Step every validation sequence through each .tflite (StreamStepper), or run window models on windows."""
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.validate import run_tflite
    from edgeseq.targets.agent import AgentError, StreamStepper

    job = json.loads((job_dir / "run.json").read_text())
    for i, export in enumerate(job["exports"]):
        X = np.load(job_dir / f"in_{i}.npy")
        try:
            interp = load_interpreter(job_dir / f"m_{i}.tflite")
            if export["kind"] == "window":
                out = run_tflite(interp, X)
            else:
                stepper = StreamStepper(np, interp)
                out = np.stack([stepper.run(seq, collect=export.get("collect", False)) for seq in X])
            np.save(job_dir / f"out_{i}.npy", out)
        except (EdgeseqError, AgentError) as exc:
            (job_dir / f"err_{i}.txt").write_text(exc.message)
    return 0


# ------------------------------------------------------------------------------------------------ host
def _run(mode: str, job_dir: Path, label: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "edgeseq.quantize.stream", mode, str(job_dir)]
    try:
        return childproc.run(cmd, env=env, timeout=CHILD_TIMEOUT_S, scratch=job_dir)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"{mode} for {label} took longer than {CHILD_TIMEOUT_S} s") from exc


def _died(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode < 0:
        return f"{what} crashed ({childproc.signal_name(proc.returncode)})"
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
    return f"{what} failed (exit {proc.returncode}: {tail[0][:160]})"


def _convert_items(items: list[dict], calibrations: list[np.ndarray | None], trust: bool,
                   label: str) -> list[bytes | EdgeseqError]:
    """Convert every item (model_path, recipe, export, cal: index into `calibrations`) in one child (TensorFlow
    imported once); bytes or the error per item.

    A child that dies (the converter can SIGSEGV) costs only the item in flight: a fresh child goes on after it.
    """
    results: dict[int, bytes | EdgeseqError] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseq-stream-") as tmp:
        job_dir = Path(tmp)
        for k, X_cal in enumerate(calibrations):
            if X_cal is not None:
                np.save(job_dir / f"calibration_{k}.npy", X_cal)
        start = 0
        while start < len(items):
            job = {"items": items, "start": start, "trust_model": trust}
            (job_dir / "job.json").write_text(json.dumps(job))
            proc = _run("convert", job_dir, label)
            report = json.loads((job_dir / "report.json").read_text()) if (job_dir / "report.json").exists() else {}
            for i in range(start, len(items)):
                entry = report.get("items", {}).get(str(i))
                what = f"{label} with recipe {items[i]['recipe']['slug']} ({items[i]['export']['kind']})"
                if entry is None or entry.get("in_flight"):
                    results[i] = ConversionError(f"{_died(proc, 'the converter')} on {what}; no file written",
                                                 "try another recipe")
                    start = i + 1
                    break
                if entry.get("ok"):
                    results[i] = (job_dir / f"out_{i}.tflite").read_bytes()
                else:
                    err = entry["error"]
                    cls = InputError if err.get("kind") in ("InputError", "ModelError") else ConversionError
                    results[i] = cls(f"{what}: {err['message']}", err.get("hint"))
            else:
                start = len(items)
    return [results[i] for i in range(len(items))]


def run_stream_tflite(items: list[tuple[bytes, dict, np.ndarray]], label: str) -> list[np.ndarray | EdgeseqError]:
    """Outputs of each (.tflite bytes, export, inputs) on LiteRT, in a throwaway process (a runtime crash is an error)."""
    with tempfile.TemporaryDirectory(prefix="edgeseq-stream-run-") as tmp:
        job_dir = Path(tmp)
        for i, (data, _, X) in enumerate(items):
            (job_dir / f"m_{i}.tflite").write_bytes(data)
            np.save(job_dir / f"in_{i}.npy", np.asarray(X, np.float32))
        (job_dir / "run.json").write_text(json.dumps({"exports": [e for _, e, _ in items]}))
        proc = _run("run", job_dir, label)
        out: list[np.ndarray | EdgeseqError] = []
        for i in range(len(items)):
            if (job_dir / f"out_{i}.npy").exists():
                out.append(np.load(job_dir / f"out_{i}.npy"))
            elif (job_dir / f"err_{i}.txt").exists():
                out.append(ModelError(f"{label}: {(job_dir / f'err_{i}.txt').read_text()}"))
            else:
                out.append(ModelError(f"{_died(proc, 'the LiteRT runtime')} running {label}"))
        return out


def _reference(model: Any, export: dict, X: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs for the .tflite, Keras reference outputs) for one export."""
    from edgeseq.models.streaming import build_window_model

    if export["kind"] == "window":
        Xw = fit_windows(X, export["size"])
        win = build_window_model(model, export["size"], batch_size=None)
        return Xw, np.asarray(win.predict(Xw, batch_size=64, verbose=0), np.float32)
    length = min(steps, export["size"] or steps)
    Xs = np.ascontiguousarray(X[:, :length])
    ref_model = model
    if model.inputs[0].shape[1] is not None and length != model.inputs[0].shape[1]:
        ref_model = build_window_model(model, length, batch_size=None)
    ref = np.asarray(ref_model.predict(Xs, batch_size=64, verbose=0), np.float32)
    return Xs, ref


def _stream_record(model: Any, export: dict, parity_steps: int) -> dict:
    from edgeseq.models.streaming import kv_cache_specs, recurrent_state_specs

    rec: dict[str, Any] = {"kind": {"step": "recurrent-step", "kv": "kv-cache", "window": "window"}[export["kind"]],
                           "contract": "inputs named like outputs are state (fed back each step); x = step features; "
                                       "pos = step index from 0; y = output",
                           "parity_steps": parity_steps}
    if export["kind"] == "step":
        specs = recurrent_state_specs(model)
        rec["state"] = [{"name": n, "shape": [1, s]} for n, s in specs]
        rec["state_floats"] = int(sum(s for _, s in specs))
    elif export["kind"] == "kv":
        specs = kv_cache_specs(model, export["size"])
        rec["kv_capacity"] = export["size"]
        rec["state"] = [{"name": n, "shape": [1, *s]} for n, s in specs]
        rec["state_floats"] = int(sum(int(np.prod(s)) for _, s in specs))
        rec["positions"] = f"0..{export['size'] - 1}"
    else:
        rec["window"] = export["size"]
        rec["state_floats"] = int(export["size"] * int(model.inputs[0].shape[-1]))
        rec["note"] = "the batch model re-run on the last W steps for every new step"
    return rec


def convert_stream(
    model_path: str | os.PathLike,
    recipes: list[Any] | str = ("fp32",),
    *,
    out_dir: str | os.PathLike,
    name: str | None = None,
    kv_capacity: int | None = None,
    window: int | None = None,
    contexts: list[int] | None = None,
    seq_len: int | None = None,
    calibration: Any = None,
    calibration_samples: int | None = None,
    validate: bool = True,
    strict: bool = True,
    trust_model: bool = False,
    raise_on_error: bool = True,
    progress: Callable[[str], None] | None = None,
    windows: bool = False,
) -> list[Any]:
    """Export the step model of a recurrent or causal Transformer model (or, with `window`, the window baseline).

    `contexts` exports one model per context (KV capacities, or windows when `window` is set); a recurrent step
    model does not depend on the context and is exported once. `windows` adds the window baseline at each context
    (or at the model's length) to the step exports. Returns ConversionResults (one per recipe x export), each with a
    manifest holding a "stream" section and parity of T steps through the .tflite.
    """
    spec = {k: v for k, v in locals().items() if k not in ("raise_on_error", "progress", "trust_model")}
    (results,) = convert_stream_many([spec], trust_model=trust_model, progress=progress)
    failed = [r for r in results if r.error is not None]
    if failed and raise_on_error:
        err = failed[0].error
        err.results = results  # type: ignore[attr-defined]
        raise err
    return results


def convert_stream_many(specs: list[dict], *, trust_model: bool = False,
                        progress: Callable[[str], None] | None = None) -> list[list[Any]]:
    """convert_stream for several models (each spec: convert_stream's arguments) with one conversion child: one
    TensorFlow start-up for all of them. Errors are in each result's `error`; nothing is raised for them."""
    say = progress or (lambda _m: None)
    plans = [_plan(say=say, trust_model=trust_model, **spec) for spec in specs]
    items, calibrations = [], []
    for k, plan in enumerate(plans):
        calibrations.append(plan["X_cal"])
        items += [{"model_path": str(plan["path"].resolve()), "recipe": r.to_dict(), "export": e, "cal": k}
                  for r in plan["recipes"] for e in plan["exports"]]
    say(f"converting {len(items)} streaming export(s): "
        + "; ".join(f"{p['base_name']}: {', '.join(r.slug for r in p['recipes'])} x "
                    f"{', '.join(export_suffix(e['kind'], e['size']) for e in p['exports'])}" for p in plans))
    started = time.perf_counter()
    label = ", ".join(p["path"].name for p in plans) + " --stream"
    converted = _convert_items(items, calibrations, trust_model, label)
    convert_s = (time.perf_counter() - started) / max(1, len(items))
    out, at = [], 0
    for plan in plans:
        n = len(plan["recipes"]) * len(plan["exports"])
        out.append(_complete(plan, converted[at : at + n], convert_s, say))
        at += n
    return out


def _plan(*, model_path, recipes, out_dir, name, kv_capacity, window, contexts, seq_len, calibration,
          calibration_samples, validate, strict, windows, say, trust_model) -> dict:
    """Load and check the model, decide the exports, prepare calibration, references and provenance."""
    from edgeseq.fsio import sha256_file
    from edgeseq.models.streaming import analyze_streaming
    from edgeseq.quantize.calibration import prepare_inputs
    from edgeseq.quantize.convert import _guess_task, default_name
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.recipes import get_recipe, parse_recipes

    recipe_list = (parse_recipes(recipes, calibration_samples=calibration_samples) if isinstance(recipes, str)
                   else [get_recipe(r, calibration_samples=calibration_samples) for r in recipes])
    for label, v in (("--kv-capacity", kv_capacity), ("--window", window)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InputError(f"{label} must be a positive integer, got {v!r}")
    from edgeseq.fsio import check_file_name, check_output_dir

    check_output_dir(out_dir, "out_dir")
    if name is not None:
        check_file_name(name, "name")  # it becomes <name>-<export>-<slug>.tflite inside out_dir, never a path
    if contexts is not None and (not contexts or any(int(c) < 1 for c in contexts)):
        raise InputError(f"contexts must be positive integers, got {contexts!r}")
    path = Path(model_path)
    model = load_keras_model(path, trust_model=trust_model)
    kind = analyze_streaming(model).kind if window is None else "window"  # refusals come from here
    t = model.inputs[0].shape[1]
    if t is None and seq_len is None:
        steps = DEFAULT_PARITY_STEPS
    elif t is not None and seq_len is not None and int(seq_len) != int(t):
        raise ModelError(f"--seq-len {seq_len} does not match the model's fixed time axis ({t})",
                         f"drop --seq-len or pass --seq-len {t}")
    else:
        steps = int(seq_len or t)
    features = int(model.inputs[0].shape[-1])
    exports = _export_list(kind, kv_capacity, window, steps, list(contexts) if contexts else None, windows)
    out_shape = list(model.outputs[0].shape)
    if len(out_shape) > 2 and any(e["kind"] != "window" for e in exports):
        # The step model would emit one output per step, while parity and metrics compare one per sequence.
        raise InputError(f"{path.name} outputs one value per time step (shape {out_shape}): per-step outputs are "
                         "not supported by --stream yet",
                         "convert it without --stream, or measure the sliding-window baseline with --window W")
    inputs = prepare_inputs(calibration, seq_len=steps, num_features=features)
    task = inputs.task or _guess_task(model)
    X_val = inputs.X_val[:PARITY_SEQUENCES]
    refs = {}
    if validate:
        say(f"Keras references on {len(X_val)} sequences")
        refs = {j: _reference(model, e, X_val, steps) for j, e in enumerate(exports)}
    calibrated = [r for r in recipe_list if r.calibrated]
    X_cal, cal_record = (None, None)
    if calibrated:
        X_cal, cal_record = inputs.calibration(max(CALIBRATION_SEQUENCES, *(r.calibration_samples for r in calibrated)))
    return {"path": path, "model": model, "recipes": recipe_list, "exports": exports, "inputs": inputs, "task": task,
            "steps": steps, "refs": refs, "X_val": X_val, "X_cal": X_cal, "cal_record": cal_record,
            "base_name": name or default_name(path), "out_dir": Path(out_dir), "strict": strict,
            "validate": validate,
            "source": {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size,
                       "parameters": int(model.count_params()), "task": task}}


def _complete(plan: dict, converted: list, convert_s: float, say: Callable[[str], None]) -> list[Any]:
    """Parity on LiteRT for what converted, then manifests and files."""
    from edgeseq.quantize.convert import ConversionResult

    exports, refs = plan["exports"], plan["refs"]
    items = [(r, e) for r in plan["recipes"] for e in exports]
    ok = [(j, d) for j, d in enumerate(converted) if isinstance(d, bytes)]
    outputs: dict[int, Any] = {}
    started = time.perf_counter()
    if plan["validate"] and ok:
        say(f"parity on LiteRT: {len(plan['X_val'])} sequences through {len(ok)} model(s)")
        ran = run_stream_tflite([(d, items[j][1], refs[j % len(exports)][0]) for j, d in ok],
                                f"{plan['path'].name} --stream")
        outputs = {j: r for (j, _), r in zip(ok, ran, strict=True)}
    timing = {"convert_s": round(convert_s, 3),
              "validate_s": round((time.perf_counter() - started) / max(1, len(items)), 3),
              "note": "per export: one child converted all of them"}
    return [_finish(recipe, export, converted[j], outputs.get(j), refs.get(j % len(exports)), plan["inputs"],
                    plan["task"], plan["model"], plan["steps"], plan["base_name"], plan["source"],
                    plan["cal_record"] if recipe.calibrated else None, plan["out_dir"], plan["strict"], timing,
                    ConversionResult)
            for j, (recipe, export) in enumerate(items)]


def _finish(recipe, export, data, output, ref, inputs, task, model, steps, base_name, source, cal_record, out_dir,
            strict, timing, ConversionResult) -> Any:
    from edgeseq.fsio import atomic_write_bytes, atomic_write_json
    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.manifest import build_manifest, manifest_path_for
    from edgeseq.quantize.runtime import interpreter_class
    from edgeseq.quantize.tflite_file import parse_bytes
    from edgeseq.quantize.validate import parity, task_metric

    result = ConversionResult(recipe)
    if not isinstance(data, bytes):
        result.error = data
        return result
    name = f"{base_name}-{export_suffix(export['kind'], export['size'])}"
    tflite_path = out_dir / f"{name}-{recipe.slug}.tflite"
    parity_steps = export["size"] if export["kind"] == "window" else min(steps, export["size"] or steps)
    if ref is None:
        validation = {"skipped": True, "passed": None, "reason": "--no-validate"}
    elif isinstance(output, EdgeseqError):
        result.error = ConversionError(f"converted, but the runtime cannot run it: {output.message}")
        return result
    else:
        _, runtime, version = interpreter_class()
        validation = parity(ref[1], output, task, recipe.tolerance)
        validation.update(runtime=runtime, runtime_version=version, data=inputs.validation_record,
                          sequences=len(output), steps_per_sequence=parity_steps,
                          how="T steps through the .tflite (state carried, int8 state requantized) vs the Keras "
                              "sequence model" if export["kind"] != "window" else "window model vs Keras on windows")
        full = export["kind"] != "window" and parity_steps == steps
        if inputs.y_val is not None and full and task:
            y = inputs.y_val[: len(output)]
            validation["tflite_metrics"] = task_metric(output, y, task)
            validation["keras_metrics"] = task_metric(ref[1], y, task)
        if validation.get("passed") is False:
            err = ValidationError(f"{tflite_path.name} failed streaming parity on {runtime}: "
                                  f"{'; '.join(validation['failures'])}",
                                  "try another recipe, or keep the file with --no-strict")
            if strict:
                result.error = err
                result.validation = validation
                return result
            result.warnings.append(f"kept despite failed parity (--no-strict): {'; '.join(validation['failures'])}")
    info = analyze(parse_bytes(data, tflite_path.name))
    manifest = build_manifest(
        name=name, tflite_path=tflite_path, report=info, recipe=recipe.to_dict(), source=source,
        route={"converter": "tf.lite.TFLiteConverter.from_keras_model", "batch": 1, "ops": "builtins",
               "rnn": "none (one step, no loop)" if export["kind"] != "window" else "window",
               "stream": export["kind"]},
        calibration=cal_record, validation=validation, timing=timing,
    )
    manifest["stream"] = _stream_record(model, export, parity_steps)
    atomic_write_bytes(tflite_path, data)
    result.manifest_path = atomic_write_json(manifest_path_for(tflite_path), manifest)
    result.manifest, result.validation, result.tflite_path = manifest, validation, tflite_path
    return result


# ------------------------------------------------------------------------------------------------ comparisons
def streaming_kind(model_path: str | os.PathLike, *, trust_model: bool = False) -> str:
    """'recurrent', 'transformer' (causal: KV cache) or 'window' (cannot stream: only the window baseline)."""
    from edgeseq.models.streaming import analyze_streaming
    from edgeseq.quantize.loading import load_keras_model

    model = load_keras_model(model_path, trust_model=trust_model)
    try:
        return analyze_streaming(model).kind
    except InputError:
        return "window"


def _causal_twin(rnn_path: Path, out_dir: Path, max_len: int) -> Path:
    """An (untrained) causal zoo Transformer with the RNN's input and output shape: latency does not need training."""
    import keras

    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.loading import load_keras_model

    rnn = load_keras_model(rnn_path)
    _, t, f = rnn.inputs[0].shape
    outputs = int(rnn.outputs[0].shape[-1])
    task = "classification" if outputs >= 2 and type(rnn.layers[-1]).__name__ == "Softmax" else "regression"
    keras.utils.set_random_seed(0)
    model = build_model("transformer", "small", seq_len=int(t or 64), num_features=int(f), task=task,
                        num_outputs=outputs, causal=True, max_len=max(max_len, int(t or 64)),
                        name="transformer-causal")
    path = out_dir / "transformer-causal.keras"
    model.save(path)
    return path


def stream_compare(
    rnn_model_path: str | os.PathLike,
    transformer_model_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    contexts: tuple[int, ...] | list[int] = (16, 64, 256),
    *,
    recipe: str = "fp32",
    runs: int = 100,
    hop_ms: float | None = 10.0,
    db: str | os.PathLike | None = None,
    target: str = "local",
) -> list[dict]:
    """The streaming trade-off on one RNN and one causal Transformer: export the RNN step model, the Transformer's
    KV-cache and window models per context, profile each in stream mode, and return one row per (kind, context):
    model, kind, context, p50_us, state_bytes, peak_rss_kb, deadline_met_share, x_rnn (p50 / the RNN's p50 at
    that context). `transformer_model_path=None` builds an untrained causal twin of the RNN's shape (latency does
    not depend on the weights). Runs go to `db` (default: out_dir/stream-results.db)."""
    from edgeseq.stream_profile import parse_contexts, profile_contexts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = parse_contexts(list(contexts))
    tf_path = Path(transformer_model_path) if transformer_model_path else _causal_twin(Path(rnn_model_path), out,
                                                                                       max(ctx))
    common = {"recipes": [recipe], "out_dir": out, "name": None, "kv_capacity": None, "window": None,
              "seq_len": None, "calibration": None, "calibration_samples": None, "validate": False, "strict": True}
    done = convert_stream_many([{**common, "model_path": rnn_model_path, "contexts": None, "windows": False},
                                {**common, "model_path": tf_path, "contexts": ctx, "windows": True}])
    if not done[0] or not done[0][0].ok:
        raise done[0][0].error
    files = [res.tflite_path for group in done for res in group if res.ok]
    rows = profile_contexts(files, ctx, runs=runs, warmup=10, hop_ms=hop_ms, target=target,
                            db=db if db is not None else out / "stream-results.db")
    rnn = {r["context"]: r["p50_us"] for r in rows if r["kind"] == "recurrent state"}
    for r in rows:
        base = rnn.get(r["context"])
        r["x_rnn"] = (r["p50_us"] / base) if base and r["p50_us"] else None
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("convert", "run"):
        print("usage: python -m edgeseq.quantize.stream convert|run JOBDIR", file=sys.stderr)
        sys.exit(2)
    job = Path(sys.argv[2])
    sys.exit(_convert_child(job) if sys.argv[1] == "convert" else _run_child_main(job))
