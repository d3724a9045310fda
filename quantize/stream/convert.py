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

The children (conversion with TensorFlow; parity runs on LiteRT only) are in `edgeseq.quantize.stream.child`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import ConversionError, EdgeseqError, InputError, ModelError, ValidationError
from edgeseq.models.streamkind import StreamKind
from edgeseq.quantize.capabilities import families_of, refusal
from edgeseq.quantize.multi_input import count
from edgeseq.quantize.stream.child import CALIBRATION_SEQUENCES, fit_windows
from edgeseq.quantize.stream.jobs import _convert_items, run_stream_tflite

PARITY_SEQUENCES = 256  # validation sequences stepped through each .tflite (accuracy too, where labelled)
DEFAULT_PARITY_STEPS = 64  # for a variable-length RNN without --seq-len


# ------------------------------------------------------------------------------------------------ export specs
def _export_list(kind: StreamKind, kv_capacity: int | None, window: int | None, steps: int,
                 contexts: list[int] | None = None, windows: bool = False, states: tuple = ("external",),
                 stride: int = 1) -> list[dict]:
    """What to export: the step model (recurrent), KV models per capacity, window models per size; each step model
    in every state form asked for (carried by the host, or inside), K frames per invoke with `stride`."""
    if window is not None or kind == StreamKind.WINDOW:
        return [{"kind": StreamKind.WINDOW.value, "size": int(w)} for w in (contexts or [window or steps])]
    if kind == StreamKind.RECURRENT_STEP:
        out = [{"kind": kind.value, "size": None}]
    else:
        out = [{"kind": StreamKind.KV_CACHE.value, "size": int(c)} for c in (contexts or [kv_capacity or steps])]
    out = [{**e, "state": st, "stride": stride} for e in out for st in states]
    if windows:
        out += [{"kind": StreamKind.WINDOW.value, "size": int(w)} for w in (contexts or [steps])]
    return out


def _file_part(export: dict) -> str:
    """'step', 'kv<C>', 'win<W>'; '-s<K>' for K frames per invoke; '-internal' for the state inside."""
    part = StreamKind(export["kind"]).file_part(export["size"])
    if int(export.get("stride") or 1) > 1:
        part += f"-s{int(export['stride'])}"
    return part + ("-internal" if export.get("state") == "internal" else "")


def _length(export: dict, steps: int) -> int:
    """Frames a parity sequence runs: the model's length (a KV cache's capacity when shorter), whole invokes only."""
    k = int(export.get("stride") or 1)
    return min(steps, export["size"] or steps) // k * k


def _reference(model: Any, export: dict, X: Any, steps: int) -> tuple[Any, np.ndarray]:
    """(inputs for the .tflite, Keras reference outputs) for one export. A dict X is the sequence ("x") and held
    static inputs (models with several inputs)."""
    from edgeseq.models.streaming import build_window_model

    if isinstance(X, dict):
        length = min(steps, export["size"] or steps)
        feed = dict(X, x=np.ascontiguousarray(X["x"][:, :length]))
        seq = next(t for t in model.inputs if str(t.name) not in X)
        ordered = [feed["x"] if t is seq else feed[str(t.name)] for t in model.inputs]
        return feed, np.asarray(model.predict(ordered, batch_size=64, verbose=0), np.float32)
    if export["kind"] == StreamKind.WINDOW:
        Xw = fit_windows(X, export["size"])
        win = build_window_model(model, export["size"], batch_size=None)
        return Xw, np.asarray(win.predict(Xw, batch_size=64, verbose=0), np.float32)
    length = _length(export, steps)
    Xs = np.ascontiguousarray(X[:, :length])
    ref_model = model
    if model.inputs[0].shape[1] is not None and length != model.inputs[0].shape[1]:
        ref_model = build_window_model(model, length, batch_size=None)
    ref = np.asarray(ref_model.predict(Xs, batch_size=64, verbose=0), np.float32)
    return Xs, ref


def _as_stream(model: Any, X: dict, n: int | None) -> dict:
    """{input name: array} of a model with several inputs as the stream takes it: the sequence as "x", the held
    static inputs by name."""
    from edgeseq.models.streaming import held_inputs

    held = {name for name, _ in held_inputs(model)}
    seq = next(str(t.name) for t in model.inputs if str(t.name) not in held)
    return {("x" if k == seq else k): np.ascontiguousarray(v[:n]) for k, v in X.items()}


def _stream_record(model: Any, export: dict, parity_steps: int, inside: dict | None = None) -> dict:
    from edgeseq.models.streaming import state_specs, stream_delay

    rec: dict[str, Any] = {"kind": StreamKind(export["kind"]).value,
                           "contract": "inputs named like outputs are state (fed back each step); x = step features; "
                                       "pos = step index from 0; y = output",
                           "parity_steps": parity_steps}
    if export["kind"] != StreamKind.WINDOW:
        rec["frames_per_invoke"] = int(export.get("stride") or 1)
    if inside is not None:  # the state lives in resource variables: the device writes x, invokes, reads y
        rec.update(kind=StreamKind.INTERNAL_STATE.value, form=StreamKind(export["kind"]).value,
                   contract="x = the next frames_per_invoke frames; y = output; the state (recurrent state, KV "
                            "caches, conv ring buffers, the position) lives in resource variables, set to zero by "
                            "CALL_ONCE on the first invoke", state_inside=inside, reset=inside["reset"])
    if export["kind"] in (StreamKind.RECURRENT_STEP, StreamKind.KV_CACHE):
        from edgeseq.models.streaming import held_inputs

        held = held_inputs(model)
        if held:
            rec["held"] = [{"name": n, "shape": [1, *s]} for n, s in held]
            rec["held_note"] = "static inputs: set once per stream (StreamStepper.hold), the same at every step"
        specs = state_specs(model, export["size"])  # carried state (RNN cells, conv buffers), then KV caches
        rec["state"] = [{"name": n, "shape": [1, *s]} for n, s in specs]
        rec["state_floats"] = int(sum(int(np.prod(s)) for _, s in specs))
        if export["kind"] == StreamKind.KV_CACHE:
            rec["kv_capacity"] = export["size"]
            rec["positions"] = f"0..{export['size'] - 1}"
        delay = stream_delay(model)
        if delay:
            rec["delay_steps"] = delay
            rec["delay_note"] = (f"'valid' convolutions: y is meaningful from step {delay} on, and the step at t gives "
                                 f"the sequence model's output {delay} positions earlier (t - {delay})")
    else:
        rec["window"] = export["size"]
        per_step_values = 1 if len(model.inputs[0].shape) == 2 else int(model.inputs[0].shape[-1])  # token id: 1
        rec["state_floats"] = int(export["size"] * per_step_values)
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
    state: str = "external",
    stride: int = 1,
) -> list[Any]:
    """Export the step model of a recurrent or causal Transformer model (or, with `window`, the window baseline).

    `contexts` exports one model per context (KV capacities, or windows when `window` is set); a recurrent step
    model does not depend on the context and is exported once. `windows` adds the window baseline at each context
    (or at the model's length) to the step exports. `state` "internal" keeps the step model's state inside it
    (resource variables, CALL_ONCE, a reset signature), "both" writes both forms; `stride` K > 1 takes K frames per
    invoke (recurrent and conv models). Returns ConversionResults (one per recipe x export), each with a
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
    items, calibrations, refused, records = [], [], {}, {}
    for k, plan in enumerate(plans):
        calibrations.append(plan["X_cal"])
        for r in plan["recipes"]:
            for e in plan["exports"]:
                limit = refusal(plan["families"], r.capability, e["kind"])
                if limit is not None:  # declared up front: nothing is sent to the converter
                    refused[len(items)] = ConversionError(
                        f"{plan['path'].name} with recipe {r.slug} ({e['kind']}): {limit.why}", limit.fix)
                items.append({"model_path": str(plan["path"].resolve()), "recipe": r.to_dict(), "export": e,
                              "cal": k})
    say(f"converting {len(items)} streaming export(s): "
        + "; ".join(f"{p['base_name']}: {', '.join(r.slug for r in p['recipes'])} x "
                    f"{', '.join(_file_part(e) for e in p['exports'])}" for p in plans))
    started = time.perf_counter()
    label = ", ".join(p["path"].name for p in plans) + " --stream"
    todo = [i for i in range(len(items)) if i not in refused]
    done = iter(_convert_items([items[i] for i in todo], calibrations, trust_model, label, records) if todo else [])
    converted = [refused[i] if i in refused else next(done) for i in range(len(items))]
    inside = [None] * len(items)
    for k, record in records.items():
        inside[todo[k]] = record
    convert_s = (time.perf_counter() - started) / max(1, len(items))
    out, at = [], 0
    for plan in plans:
        n = len(plan["recipes"]) * len(plan["exports"])
        out.append(_complete(plan, converted[at : at + n], convert_s, say, inside[at : at + n]))
        at += n
    return out


def _plan(*, model_path, recipes, out_dir, name, kv_capacity, window, contexts, seq_len, calibration,
          calibration_samples, validate, strict, windows, say, trust_model, state="external", stride=1) -> dict:
    """Load and check the model, decide the exports, prepare calibration, references and provenance."""
    from edgeseq.models.streaming import analyze_streaming
    from edgeseq.quantize.calibration import prepare_inputs
    from edgeseq.quantize.convert import _guess_task, default_name
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.recipes import get_recipe, parse_recipes

    recipe_list = (parse_recipes(recipes, calibration_samples=calibration_samples) if isinstance(recipes, str)
                   else [get_recipe(r, calibration_samples=calibration_samples) for r in recipes])
    if state not in ("external", "internal", "both"):
        raise InputError(f"--state must be external, internal or both, got {state!r}")
    for label, v in (("--kv-capacity", kv_capacity), ("--window", window), ("--stride", stride)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InputError(f"{label} must be a positive integer, got {v!r}")
    from edgeseq.core.fsio import check_file_name, check_output_dir

    check_output_dir(out_dir, "out_dir")
    if name is not None:
        check_file_name(name, "name")  # it becomes <name>-<export>-<slug>.tflite inside out_dir, never a path
    if contexts is not None and (not contexts or any(int(c) < 1 for c in contexts)):
        raise InputError(f"contexts must be positive integers, got {contexts!r}")
    path = Path(model_path)
    model = load_keras_model(path, trust_model=trust_model)
    if (getattr(model, "edgeseq_source", None) or {}).get("format") == "saved_model":
        raise ModelError(f"{path.name} is a SavedModel: its graph holds no Keras layers to build a step (or window) "
                         "model from", "stream the .keras or .h5 file of the same model")
    kind = analyze_streaming(model).kind if window is None else StreamKind.WINDOW  # refusals come from here
    if state != "external" and kind == StreamKind.WINDOW:
        raise InputError(f"--state {state} moves a step model's state inside it; the window baseline of "
                         f"{path.name} has no state (it re-runs the window)", "drop --state, or drop --window")
    if stride != 1 and kind != StreamKind.RECURRENT_STEP:
        why = "the window baseline re-runs the window per step" if kind == StreamKind.WINDOW else \
            "its step reads a position (a KV cache or a position table)"
        raise InputError(f"--stride {stride} takes several frames per invoke of recurrent and conv models; "
                         f"{path.name} cannot: {why}", "drop --stride")
    t = model.inputs[0].shape[1]
    if t is None and seq_len is None:
        steps = DEFAULT_PARITY_STEPS
    elif t is not None and seq_len is not None and int(seq_len) != int(t):
        raise ModelError(f"--seq-len {seq_len} does not match the model's fixed time axis ({t})",
                         f"drop --seq-len or pass --seq-len {t}")
    else:
        steps = int(seq_len or t)
    from edgeseq.quantize.convert import model_input_record, source_record
    from edgeseq.quantize.rebuild import is_token_input

    several = len(model.inputs) > 1  # one sequence beside static inputs, held for the whole stream
    if several:
        from edgeseq.quantize.multi_input import several_inputs

        if kind == StreamKind.WINDOW or windows:
            raise InputError(f"{path.name} has several inputs: the sliding-window baseline re-runs one input",
                             "stream its step model (convert --stream), which holds the static inputs")
        _, features, input_record, inputs = several_inputs(model, steps, calibration)
    else:
        input_record = model_input_record(model)
        features = None if is_token_input(model) else int(model.inputs[0].shape[-1])  # None: one token id per step
    states = ("external", "internal") if state == "both" else (state,)
    exports = _export_list(kind, kv_capacity, window, steps, list(contexts) if contexts else None, windows, states,
                           stride)
    if stride > steps:
        raise InputError(f"--stride {stride} is longer than the {steps}-step sequences parity runs",
                         f"use --stride <= {steps}")
    if len(model.outputs[0].shape) == 3:
        # One output per time step (return_sequences=True heads): the step model emits y_t at every step, and
        # parity compares every step's y with the sequence model's output at that step.
        for e in exports:
            if e["kind"] != StreamKind.WINDOW:
                e["collect"] = True
    if not several:
        inputs = prepare_inputs(calibration, seq_len=steps, num_features=features,
                                vocab=input_record.get("vocab_size"))
    task = inputs.task or _guess_task(model)
    X_val = _as_stream(model, inputs.X_val, PARITY_SEQUENCES) if several else inputs.X_val[:PARITY_SEQUENCES]
    refs = {}
    if validate:
        say(f"Keras references on {count(X_val)} sequences")
        refs = {j: _reference(model, e, X_val, steps) for j, e in enumerate(exports)}
        from edgeseq.quantize.source_check import refuse_nonfinite_source

        for j, (feed, ref) in refs.items():
            same = isinstance(feed, np.ndarray) and exports[j]["kind"] != StreamKind.WINDOW and len(feed) == len(ref)
            refuse_nonfinite_source(model, feed if same else None, ref, str(path), "validation sequences")
    from edgeseq.quantize.training_reference import load_reference

    train_ref = load_reference(path, steps, features, model) if validate and not several else None  # a training run's
    calibrated = [r for r in recipe_list if r.calibrated]
    X_cal, cal_record = (None, None)
    if calibrated:
        X_cal, cal_record = inputs.calibration(max(CALIBRATION_SEQUENCES, *(r.calibration_samples for r in calibrated)))
        if several:
            X_cal = _as_stream(model, X_cal, None)
    return {"path": path, "model": model, "recipes": recipe_list, "exports": exports, "inputs": inputs, "task": task,
            "families": families_of(model),
            "steps": steps, "refs": refs, "X_val": X_val, "X_cal": X_cal, "cal_record": cal_record,
            "base_name": name or default_name(path), "out_dir": Path(out_dir), "strict": strict,
            "validate": validate, "training_reference": train_ref,
            "source": source_record(path, model, task, input_record)}


def _complete(plan: dict, converted: list, convert_s: float, say: Callable[[str], None],
              inside: list | None = None) -> list[Any]:
    """Parity on LiteRT for what converted, then manifests and files."""
    from edgeseq.quantize.convert import ConversionResult

    exports, refs = plan["exports"], plan["refs"]
    items = [(r, e) for r in plan["recipes"] for e in exports]
    ok = [(j, d) for j, d in enumerate(converted) if isinstance(d, bytes)]
    outputs: dict[int, Any] = {}
    started = time.perf_counter()
    if plan["validate"] and ok:
        say(f"parity on LiteRT: {count(plan['X_val'])} sequences through {len(ok)} model(s)")
        ran = run_stream_tflite([(d, items[j][1], refs[j % len(exports)][0]) for j, d in ok],
                                f"{plan['path'].name} --stream")
        outputs = {j: r for (j, _), r in zip(ok, ran, strict=True)}
    timing = {"convert_s": round(convert_s, 3),
              "validate_s": round((time.perf_counter() - started) / max(1, len(items)), 3),
              "note": "per export: one child converted all of them"}
    return [_finish(recipe, export, converted[j], outputs.get(j), refs.get(j % len(exports)), plan["inputs"],
                    plan["task"], plan["model"], plan["steps"], plan["base_name"], plan["source"],
                    plan["cal_record"] if recipe.calibrated else None, plan["out_dir"], plan["strict"], timing,
                    ConversionResult, plan["training_reference"], (inside or [None] * len(items))[j])
            for j, (recipe, export) in enumerate(items)]


def _finish(recipe, export, data, output, ref, inputs, task, model, steps, base_name, source, cal_record, out_dir,
            strict, timing, ConversionResult, train_ref=None, inside=None) -> Any:
    from edgeseq.core.fsio import atomic_write_bytes, atomic_write_json
    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.manifest import build_manifest, manifest_path_for
    from edgeseq.quantize.runtime import interpreter_class
    from edgeseq.quantize.tflite.reader import parse_bytes
    from edgeseq.quantize.validate import parity, task_metric

    result = ConversionResult(recipe)
    if not isinstance(data, bytes):
        result.error = data
        return result
    name = f"{base_name}-{_file_part(export)}"
    tflite_path = out_dir / f"{name}-{recipe.slug}.tflite"
    parity_steps = export["size"] if export["kind"] == StreamKind.WINDOW else _length(export, steps)
    if ref is None:
        validation = {"skipped": True, "passed": None, "reason": "--no-validate"}
    elif isinstance(output, EdgeseqError):
        result.error = ConversionError(f"converted, but the runtime cannot run it: {output.message}")
        return result
    else:
        _, runtime, version = interpreter_class()
        per_step = bool(export.get("collect"))
        if per_step and output.ndim == ref[1].ndim and output.shape[1] > ref[1].shape[1]:
            # 'valid' convolutions: the step at t gives the sequence output at t - delay; steps before it are warm-up
            output = output[:, output.shape[1] - ref[1].shape[1]:]
        head = source.get("head")
        validation = parity(ref[1], output, task, recipe.tolerance, head)
        how = ("T steps through the .tflite (state carried, int8 state requantized) vs the Keras sequence model"
               if export["kind"] != StreamKind.WINDOW else "window model vs Keras on windows")
        if inside is not None:
            how = ("T frames through the .tflite (state inside; every sequence in one interpreter, reset by its "
                   "'reset' signature in between) vs the Keras sequence model")
        if per_step:
            how += ": every step's y against the sequence model's output at that step"
        validation.update(runtime=runtime, runtime_version=version, data=inputs.validation_record,
                          sequences=len(output), steps_per_sequence=parity_steps, per_step=per_step, how=how)
        full = export["kind"] != StreamKind.WINDOW and parity_steps == steps
        y = inputs.y_val[: len(output)] if inputs.y_val is not None else None
        if y is not None and full and task and (output.shape[:-1] == y.shape or task == "regression"):
            try:
                validation["tflite_metrics"] = task_metric(output, y, task, head)
                validation["keras_metrics"] = task_metric(ref[1], y, task, head)
            except InputError:  # labels of another shape than the outputs (a delayed per-step model): parity only
                validation.pop("tflite_metrics", None)
        from edgeseq.quantize.training_reference import check_keras_reference

        check_keras_reference(validation, train_ref)
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
               "rnn": "none (one step, no loop)" if export["kind"] != StreamKind.WINDOW else "window",
               "stream": export["kind"], "state": "inside (resource variables)" if inside is not None else "host"},
        calibration=cal_record, validation=validation, timing=timing,
    )
    manifest["stream"] = _stream_record(model, export, parity_steps, inside)
    atomic_write_bytes(tflite_path, data)
    result.manifest_path = atomic_write_json(manifest_path_for(tflite_path), manifest)
    result.manifest, result.validation, result.tflite_path = manifest, validation, tflite_path
    return result


def streaming_kind(model_path: str | os.PathLike, *, trust_model: bool = False) -> StreamKind:
    """How the model streams: RECURRENT_STEP, KV_CACHE (causal attention), or WINDOW (only the window baseline)."""
    from edgeseq.models.streaming import analyze_streaming
    from edgeseq.quantize.loading import load_keras_model

    model = load_keras_model(model_path, trust_model=trust_model)
    try:
        return analyze_streaming(model).kind
    except InputError:
        return StreamKind.WINDOW
