"""Run a .tflite on LiteRT in a throwaway process: `python -m edgeseq.quantize.isolated JOBDIR`.

Why: the runtime itself can abort on a valid-looking file (XNNPACK aborted preparing an int8 graph calibrated on
zero-range tensors), and a crash must become a one-line error, not the end of `edgeseq`. The child imports only
numpy and the runtime (~0.1 s). Input: JOBDIR/model.tflite, JOBDIR/inputs.npy; output: JOBDIR/outputs.npy, or
JOBDIR/error.json (an edgeseq.core.fsio.childproc error record).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeseq.core.errors import EdgeseqError, ModelError
from edgeseq.core.fsio import childproc

RUN_TIMEOUT_S = 900


def run_tflite_isolated(data: bytes, X: np.ndarray | dict, label: str) -> np.ndarray:
    """Dequantized outputs of `data` on every sample of X; ModelError naming how the runtime died if it did."""
    with tempfile.TemporaryDirectory(prefix="edgeseq-run-") as tmp:
        job = Path(tmp)
        (job / "model.tflite").write_bytes(data)
        if isinstance(X, dict):  # several inputs, by name
            np.savez(job / "inputs.npz", **X)
        else:
            X = np.asarray(X)
            np.save(job / "inputs.npy", X if np.issubdtype(X.dtype, np.integer) else X.astype(np.float32))
        cmd = [sys.executable, "-m", "edgeseq.quantize.isolated", str(job)]
        try:
            proc = childproc.run(cmd, timeout=RUN_TIMEOUT_S, scratch=job)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"running {label} on LiteRT took longer than {RUN_TIMEOUT_S} s") from exc
        if proc.returncode == 0 and (job / "outputs.npy").exists():
            return np.load(job / "outputs.npy")
        err = job / "error.json"
        if err.exists():
            raise childproc.error_from_record(json.loads(err.read_text()), default=ModelError)
        how = childproc.signal_name(proc.returncode) if proc.returncode < 0 else f"exit {proc.returncode}"
        raise ModelError(f"the LiteRT runtime crashed ({how}) loading or running {label}")


def _main(job: Path) -> int:
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.validate import run_tflite

    try:
        interp = load_interpreter(job / "model.tflite")
        if (job / "inputs.npz").exists():
            with np.load(job / "inputs.npz") as data:
                X = {k: data[k] for k in data.files}
        else:
            X = np.load(job / "inputs.npy")
        np.save(job / "outputs.npy", run_tflite(interp, X))
    except EdgeseqError as exc:
        (job / "error.json").write_text(json.dumps(childproc.error_record(exc)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1])))
