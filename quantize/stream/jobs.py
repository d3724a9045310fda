"""The host's side of the `convert --stream` children: job folders in, converted bytes or typed errors out.

`_convert_items` runs every (model, recipe, export) item in one conversion child (TensorFlow imported once); a child
that dies costs only the item in flight and a fresh child goes on after it. `run_stream_tflite` runs parity in a
throwaway LiteRT process. The children themselves are in edgeseq.quantize.stream.child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeseq.core.errors import ConversionError, EdgeseqError, ModelError
from edgeseq.core.fsio import childproc

CHILD_TIMEOUT_S = 900


def _run(mode: str, job_dir: Path, label: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "edgeseq.quantize.stream.child", mode, str(job_dir)]
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
                   label: str, records: dict | None = None) -> list[bytes | EdgeseqError]:
    """Convert every item (model_path, recipe, export, cal: index into `calibrations`) in one child (TensorFlow
    imported once); bytes or the error per item. `records` (when given) gets {item index: what the child said of a
    file whose state it moved inside} (edgeseq.quantize.stream.internal).

    A child that dies (the converter can SIGSEGV) costs only the item in flight: a fresh child goes on after it.
    """
    results: dict[int, bytes | EdgeseqError] = {}
    with tempfile.TemporaryDirectory(prefix="edgeseq-stream-") as tmp:
        job_dir = Path(tmp)
        for k, X_cal in enumerate(calibrations):
            if isinstance(X_cal, dict):  # a sequence ("x") and held static inputs
                np.savez(job_dir / f"calibration_{k}.npz", **X_cal)
            elif X_cal is not None:
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
                    if records is not None and entry.get("state_inside") is not None:
                        records[i] = entry["state_inside"]
                else:
                    results[i] = childproc.error_from_record(entry["error"], f"{what}: ", default=ConversionError)
            else:
                start = len(items)
    return [results[i] for i in range(len(items))]


def run_stream_tflite(items: list[tuple[bytes, dict, np.ndarray]], label: str) -> list[np.ndarray | EdgeseqError]:
    """Outputs of each (.tflite bytes, export, inputs) on LiteRT, in a throwaway process (a runtime crash is an error)."""
    with tempfile.TemporaryDirectory(prefix="edgeseq-stream-run-") as tmp:
        job_dir = Path(tmp)
        for i, (data, _, X) in enumerate(items):
            (job_dir / f"m_{i}.tflite").write_bytes(data)
            if isinstance(X, dict):  # a sequence ("x") and held static inputs
                np.savez(job_dir / f"in_{i}.npz", **X)
                continue
            X = np.asarray(X)
            np.save(job_dir / f"in_{i}.npy", X if np.issubdtype(X.dtype, np.integer) else X.astype(np.float32))
        (job_dir / "run.json").write_text(json.dumps({"exports": [e for _, e, _ in items]}))
        proc = _run("run", job_dir, label)
        out: list[np.ndarray | EdgeseqError] = []
        for i in range(len(items)):
            if (job_dir / f"out_{i}.npy").exists():
                out.append(np.load(job_dir / f"out_{i}.npy"))
            elif (job_dir / f"err_{i}.json").exists():
                record = json.loads((job_dir / f"err_{i}.json").read_text())
                out.append(childproc.error_from_record(record, f"{label}: ", default=ModelError))
            else:
                out.append(ModelError(f"{_died(proc, 'the LiteRT runtime')} running {label}"))
        return out
