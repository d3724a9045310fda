"""The `edgeseq convert --stream` child processes, beside the batch converter's (`_child.py`).

    python -m edgeseq.quantize.stream.child convert JOBDIR   # imports TensorFlow: builds and converts step models
    python -m edgeseq.quantize.stream.child run JOBDIR       # numpy and LiteRT only: parity runs

`convert` converts job["items"][start:] one after the other (each a recipe and an export), writing
JOBDIR/out_<i>.tflite and JOBDIR/report.json after every item, so a crash costs only the item in flight. The step model
is built from the trained .keras (weights shared through each layer's cell or the attention layer's pieces, see
edgeseq.models.streaming); int8 calibration feeds (x_t, state) pairs recorded while stepping the calibration
sequences through Keras. `run` steps every validation sequence through each .tflite with the device agent's own
StreamStepper (state carried by signature name, int8 state requantized between steps): the one deliberate sideways
import in the tree (quantize -> targets.agent), so the host's parity check and the device run share one definition.
Errors come back as edgeseq.core.fsio.childproc error records.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import ConversionError, EdgeseqError, ModelError
from edgeseq.core.fsio import childproc
from edgeseq.models.streamkind import StreamKind

CALIBRATION_SEQUENCES = 64  # calibration sequences stepped through Keras to record (x_t, state) samples


def _build(model: Any, export: dict, batch_size: int | None) -> Any:
    from edgeseq.models.streaming import build_step_model, build_window_model

    if export["kind"] == StreamKind.WINDOW:
        return build_window_model(model, export["size"], batch_size=batch_size)
    return build_step_model(model, kv_capacity=export["size"], batch_size=batch_size,
                            stride=int(export.get("stride") or 1))


def _step_calibration(model: Any, export: dict, X: Any, samples: int, seed: int) -> list[dict]:
    """Representative (x_t, state) samples: the calibration sequences stepped through the Keras step model (a dict
    X is the sequence "x" and held static inputs, fed at every step)."""
    from edgeseq.models.streaming import run_steps

    k = int(export.get("stride") or 1)
    step = _build(model, {**export, "stride": 1}, None)
    held = None
    if isinstance(X, dict):
        held = {k: v[:CALIBRATION_SEQUENCES] for k, v in X.items() if k != "x"}
        X = X["x"]
    X = X[:CALIBRATION_SEQUENCES]
    if export["kind"] == StreamKind.KV_CACHE:
        X = X[:, : export["size"]]
    # Steps spread over the whole sequence, at least four positions: with `samples` <= the sequences, stepping every
    # T-th step recorded only step 0 (zero state), and the int8 state's range collapsed (parity 0.66 top-1).
    every = max(1, min(X.shape[1] // 4, X.shape[1] * len(X) // max(1, samples)))
    every = max(k, every // k * k)  # K frames per invoke: a sample is the state at a chunk's start and its K frames
    _, seen = run_steps(step, X, record_every=every, held=held)
    if k > 1:  # x becomes the K frames from the recorded step on (chunks that run past the end are left out)
        seen = [{**feed, "x": X[:, j * every : j * every + k]} for j, feed in enumerate(seen)
                if j * every + k <= X.shape[1]]
    pool = [{k: v[i : i + 1] for k, v in feed.items()} for feed in seen for i in range(len(X))]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=min(samples, len(pool)), replace=False)
    return [pool[int(i)] for i in sorted(pick)]


def _window_calibration(X: np.ndarray, size: int, samples: int) -> list[np.ndarray]:
    return [w[None] for w in fit_windows(X[:samples], size)]


def fit_windows(X: np.ndarray, size: int) -> np.ndarray:
    """Sequences cut (last `size` steps) or left-padded with zeros (a fresh stream's window) to `size` steps; token
    ids [N, T] stay int32 (padded with id 0)."""
    X = np.asarray(X)
    X = X.astype(np.int32) if np.issubdtype(X.dtype, np.integer) else X.astype(np.float32, copy=False)
    if X.shape[1] >= size:
        return np.ascontiguousarray(X[:, -size:])
    pad = np.zeros((len(X), size - X.shape[1], *X.shape[2:]), X.dtype)
    return np.concatenate([pad, X], axis=1)


def _state_form(data: bytes, state: str) -> tuple[bytes, dict | None]:
    """The converted step file in the form asked for: state carried by the host, an int8 state requantized in the
    graph where its output scale differs from its input's; or with the state inside (resource variables)."""
    from edgeseq.quantize.stream.internal import internalize, requantize_in_graph
    from edgeseq.quantize.tflite.edit import dump, load

    if state == "internal":
        return internalize(data)
    model = load(data)
    return (dump(model), None) if requantize_in_graph(model) else (data, None)


def _convert_child(job_dir: Path) -> int:
    """Convert job["items"][start:] (each a recipe and an export) one after the other; report after each item."""
    from edgeseq.quantize._child import _converter, _refusal
    from edgeseq.quantize.keras_fixes import install
    from edgeseq.quantize.loading import load_keras_model
    from edgeseq.quantize.rebuild import fixed_shape_model, has_recurrent
    from edgeseq.quantize.recipes import Recipe

    install()  # Keras's batch-1 `add` trap (quantize/keras_fixes.py): step models are batch 1
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
            if (job_dir / f"calibration_{item['cal']}.npz").exists():  # a sequence and held static inputs
                with np.load(job_dir / f"calibration_{item['cal']}.npz") as cal:
                    X_cal = {k: cal[k] for k in cal.files}
            built = _build(model, export, 1)
            if export["kind"] == StreamKind.WINDOW and recipe.calibrated and has_recurrent(built):
                # a looped RNN's int8 calibration crashes the converter: unroll the window model (same weights)
                built = fixed_shape_model(built, export["size"], unroll=True)
                entry["rnn"] = "unroll"
            rep = None
            if recipe.calibrated:
                if export["kind"] == StreamKind.WINDOW:
                    rep = _window_calibration(X_cal, export["size"], recipe.calibration_samples)
                else:
                    rep = _step_calibration(model, export, X_cal, recipe.calibration_samples, job.get("seed", 0))
            per_channel = recipe.per_channel_for("unroll" if entry.get("rnn") == "unroll" else "none")
            conv = _converter(built, recipe, rep, per_channel)
            if rep is not None:  # multi-input samples are dicts keyed by signature name
                conv.representative_dataset = lambda rep=rep: (r if isinstance(r, dict) else [r] for r in rep)
            data = conv.convert()
            if recipe.mode == "int4w":  # the fp32 step graph's weights to 4 bits (quantize/int4.py)
                from edgeseq.quantize.int4 import int4_weights

                data = int4_weights(data, entry)
            if export["kind"] != StreamKind.WINDOW:
                data, record = _state_form(data, export.get("state") or "external")
                if record is not None:
                    entry["state_inside"] = record
            (job_dir / f"out_{i}.tflite").write_bytes(data)
            entry.update(ok=True, convert_s=round(time.perf_counter() - started, 3))
        except EdgeseqError as exc:
            entry.update(ok=False, error=childproc.error_record(exc))
        except Exception as exc:  # noqa: BLE001 - the converter raises many types; its reason is the message
            err = ConversionError(f"the converter refused {_refusal(exc, models.get(item['model_path']), job)}",
                                  "try another recipe (edgeseq models --capabilities lists what each supports)")
            entry.update(ok=False, error=childproc.error_record(err))
        report["items"][str(i)] = entry
        report_path.write_text(json.dumps(report))  # after each item: a later crash keeps the earlier ones
    return 0


def _run_child_main(job_dir: Path) -> int:
    """Step every validation sequence through each .tflite (StreamStepper), or run window models on windows."""
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.validate import run_tflite
    from edgeseq.targets.agent import AgentError, StreamStepper

    job = json.loads((job_dir / "run.json").read_text())
    for i, export in enumerate(job["exports"]):
        held = None
        if (job_dir / f"in_{i}.npz").exists():  # a sequence ("x") and held static inputs, one row per sequence
            with np.load(job_dir / f"in_{i}.npz") as data:
                held = {k: data[k] for k in data.files if k != "x"}
                X = data["x"]
        else:
            X = np.load(job_dir / f"in_{i}.npy")
        try:
            interp = load_interpreter(job_dir / f"m_{i}.tflite")
            if export["kind"] == StreamKind.WINDOW:
                out = run_tflite(interp, X)
            else:  # one interpreter for every sequence, reset between them: parity checks the reset too
                path = job_dir / f"m_{i}.tflite"
                stepper = StreamStepper(np, interp, reload=lambda path=path: load_interpreter(path))
                out = np.stack([stepper.run(seq, collect=export.get("collect", False),
                                            held=None if held is None else {k: v[n] for k, v in held.items()})
                                for n, seq in enumerate(X)])
            np.save(job_dir / f"out_{i}.npy", out)
        except (EdgeseqError, AgentError) as exc:
            err = exc if isinstance(exc, EdgeseqError) else ModelError(exc.message, exc.hint)
            (job_dir / f"err_{i}.json").write_text(json.dumps(childproc.error_record(err)))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("convert", "run"):
        print("usage: python -m edgeseq.quantize.stream.child convert|run JOBDIR", file=sys.stderr)
        sys.exit(2)
    job = Path(sys.argv[2])
    sys.exit(_convert_child(job) if sys.argv[1] == "convert" else _run_child_main(job))
