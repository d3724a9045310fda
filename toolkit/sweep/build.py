"""One model of a sweep, built and converted: what a sweep worker process (or a Ray task) runs.

    python -m edgeseq.sweep.build JOB.json RESULT.json

A job names one model (architecture, size, length; `full` mode trains it on the data set resampled to that length,
`cost` mode builds it untrained from a fixed seed: latency and memory do not depend on the weights' values) and the
recipe x form files wanted from it. Everything is written inside the job's own folder; the sweep moves finished
files into place, so a killed worker leaves nothing half-written where the sweep looks. Each file's failure (a
recipe the converter or the capability table refuses) is reported with its one-line reason, never raised: the
other files of the model still get made.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgeseq.core.errors import EdgeseqError
from edgeseq.core.fsio import atomic_write_text
from edgeseq.core.fsio.childproc import error_record
from edgeseq.models.streamkind import StreamKind
from edgeseq.sweep.grid import stream_kind, zoo_model


def _data(model: dict, data_dir: str | None):
    if not model.get("dataset"):
        return None
    from edgeseq.datasets.lengths import at_length

    return at_length(model["dataset"], model["seq_len"], data_dir=data_dir)


def _build_untrained(model: dict, path: Path, data) -> dict:
    import keras

    from edgeseq.models.zoo import build_model

    arch, overrides = zoo_model(model)
    features = data.num_features if data is not None else model["features"]
    outputs = data.output_dim if data is not None else model["classes"]
    task = data.task if data is not None else "classification"
    keras.utils.set_random_seed(int(model["seed"]))
    net = build_model(arch, model["preset"], seq_len=model["seq_len"], num_features=features, task=task,
                      num_outputs=outputs, name=f"{model['arch']}-{model['size']}", **overrides)
    net.save(path)
    return {"params": int(net.count_params()), "trained": False}


def _train(model: dict, folder: Path, data) -> dict:
    from edgeseq.models.run_dir import TrainOptions
    from edgeseq.models.train import train_model

    arch, overrides = zoo_model(model)
    res = train_model(arch, data, folder, preset=model["preset"], overrides=overrides, overwrite=True,
                      options=TrainOptions(epochs=int(model["epochs"]), seed=int(model["seed"]), patience=5))
    metrics = dict(res.record.get("test_metrics") or {})
    return {"params": res.record.get("parameters"), "trained": True, "test_metrics": metrics}


def _convert(model_path: Path, want: dict, model: dict, out: Path, data) -> dict:
    from edgeseq.quantize.convert import convert_model
    from edgeseq.quantize.stream.convert import convert_stream

    name = f"{model['arch']}-{model['size']}-n{model['seq_len']}".replace("+", "_").replace("=", "")
    # cost mode: untrained weights on random inputs give near-uniform outputs whose top-1 flips at the least
    # rounding, so parity is recorded but does not stop the file; full mode keeps it strict
    strict = model["mode"] == "full"
    if want["form"] == "whole":
        results = convert_model(model_path, [want["recipe"]], out_dir=out, name=name, calibration=data,
                                strict=strict, raise_on_error=False, op_evidence=want.get("op_evidence"))
    else:
        kv = stream_kind(model["arch"]) is StreamKind.KV_CACHE
        results = convert_stream(model_path, [want["recipe"]], out_dir=out, name=name, calibration=data,
                                 contexts=[model["seq_len"]] if kv else None, strict=strict, raise_on_error=False)
    res = results[0]
    if not res.ok:
        return {"ok": False, "reason": res.error.one_line(), "error": error_record(res.error)}
    validation = res.validation or {}
    return {"ok": True, "tflite": res.tflite_path.name, "bytes": res.tflite_path.stat().st_size,
            "accuracy": validation.get("tflite_metrics", {}).get("accuracy")
            if isinstance(validation.get("tflite_metrics"), dict) else None,
            "parity_passed": validation.get("passed")}


def build(job: dict, work: Path) -> dict:
    """Build the job's model (or reuse job['model_path']) and every file it asks for, inside `work`."""
    started = time.perf_counter()
    model = job["model"]
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"model_key": job["model_key"], "model": {}, "artifacts": {}}
    try:
        data = _data(model, job.get("data_dir"))
        existing = job.get("model_path")
        if existing:
            model_path = Path(existing)
            out["model"] = dict(job.get("model_info") or {})
        elif model["mode"] == "full":
            out["model"] = _train(model, work / "run", data)
            model_path = work / "run" / "model.keras"
        else:
            model_path = work / "model.keras"
            out["model"] = _build_untrained(model, model_path, data)
        out["model"]["build_s"] = round(time.perf_counter() - started, 3)
    except EdgeseqError as exc:
        out["error"] = {"reason": exc.one_line(), "record": error_record(exc)}
        return out
    for want in job["artifacts"]:
        t0 = time.perf_counter()
        folder = work / want["artifact_key"]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            res = _convert(model_path, want, model, folder, data)
        except EdgeseqError as exc:
            res = {"ok": False, "reason": exc.one_line(), "error": error_record(exc)}
        res["convert_s"] = round(time.perf_counter() - t0, 3)
        out["artifacts"][want["artifact_key"]] = res
    return out


def main(argv: list[str]) -> int:
    from edgeseq.core.fsio.childproc import install_signal_handlers

    install_signal_handlers()
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    result = build(job, Path(job["work"]))
    atomic_write_text(result_path, json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
