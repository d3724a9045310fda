"""Train on the backend the user chose: in this process when Keras here runs on it, else in a child process.

`train_on_backend` is what `edgeseq train` and benchmarks/gpu_train.py call. TensorFlow (the default) trains in the
caller's process, as before; JAX and PyTorch train in `models/train_child.py`, started through
`edgeseq.core.fsio.childproc` with `KERAS_BACKEND` set, while this process never imports Keras or TensorFlow for them.
Epochs are reported as the child finishes them (it appends to progress.jsonl; a thread here reads it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseq.core.errors import EdgeseqError
from edgeseq.core.fsio import childproc
from edgeseq.models.backend import ENV, keras_backend_here, require_installed, resolve_backend
from edgeseq.models.run_dir import TrainOptions, TrainResult, prepare_run_dir


def train_on_backend(
    arch: str,
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    backend: str | None = None,
    preset: str = "small",
    options: TrainOptions | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
    progress: Callable[[dict], None] | None = None,
    env: dict | None = None,
) -> TrainResult:
    """`train_model` on `backend` (None: KERAS_BACKEND when set, else tensorflow). `env` adds variables to a child's
    environment (e.g. JAX_PLATFORMS=cpu); passing it always trains in a child."""
    backend = resolve_backend(backend)
    require_installed(backend)
    options = options or TrainOptions()
    options.check()
    out = prepare_run_dir(out_dir, overwrite)
    if env is None and backend == "tensorflow" and keras_backend_here() == "tensorflow":
        os.environ.setdefault(ENV, "tensorflow")  # Keras would otherwise read ~/.keras/keras.json's choice
        from edgeseq.models.train import train_model

        return train_model(arch, dataset, out, preset=preset, options=options, overrides=overrides,
                           overwrite=overwrite, progress=progress)
    return _train_in_child(arch, dataset, out, backend, preset, options, overrides or {}, overwrite, progress, env)


def _train_in_child(arch: str, dataset: Any, out: Path, backend: str, preset: str, options: TrainOptions,
                    overrides: dict, overwrite: bool, progress: Callable[[dict], None] | None,
                    env: dict | None) -> TrainResult:
    import dataclasses

    from edgeseq.models.train_child import write_job

    with tempfile.TemporaryDirectory(prefix="edgeseq-train-") as tmp:
        job_dir = Path(tmp)
        job = {"arch": arch, "preset": preset, "options": dataclasses.asdict(options), "overrides": overrides,
               "out_dir": str(out.resolve()), "overwrite": overwrite, "backend": backend}
        write_job(job_dir, job, dataset)
        child_env = dict(os.environ, **(env or {}), PYTHONUNBUFFERED="1")
        child_env[ENV] = backend
        stop = threading.Event()
        reader = threading.Thread(target=_follow, args=(job_dir / "progress.jsonl", progress, stop), daemon=True)
        if progress is not None:
            reader.start()
        try:
            # No timeout: epochs and early stopping end a run; Ctrl-C and SIGTERM still take the child down.
            proc = childproc.run([sys.executable, "-m", "edgeseq.models.train_child", str(job_dir)], timeout=None,
                                 env=child_env, scratch=job_dir)
        finally:
            stop.set()
            if reader.is_alive():
                reader.join()
        report_path = job_dir / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    if report.get("ok"):
        return TrainResult(out_dir=out, model_path=out / "model.keras", record=report["record"])
    if report.get("error"):
        raise childproc.error_from_record(report["error"], f"training on {backend}: ")
    tail = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()][-1:] or ["no output"]
    how = (f"crashed ({childproc.signal_name(proc.returncode)})" if proc.returncode < 0
           else f"failed (exit {proc.returncode}: {tail[0][:200]})")
    raise EdgeseqError(f"training on {backend} {how}", f"check that {backend} runs on this machine: "
                       f"KERAS_BACKEND={backend} python -c 'import keras'")


def _follow(path: Path, sink: Callable[[dict], None] | None, stop: threading.Event) -> None:
    """Hand each complete line of `path` to `sink` as it appears, until `stop` is set and the file is read."""
    offset = 0
    while True:
        done = stop.is_set()
        try:
            with path.open() as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = ""
        complete = chunk[: chunk.rfind("\n") + 1]
        offset += len(complete)
        for line in complete.splitlines():
            if sink is not None:
                sink(json.loads(line))
        if done:
            return
        stop.wait(0.2)
