"""The training child: `python -m edgeseq.models.train_child JOBDIR`, started by models/backend_run.py with
`KERAS_BACKEND` set (Keras reads it once, at its first import, so another backend needs another process).

Input: JOBDIR/job.json (architecture, preset, options, overrides, run directory, backend) and the data set's arrays
(JOBDIR/data/*.npy plus JOBDIR/data.json). Output: the run directory, written by `train_model` exactly as in the
CLI's own process; JOBDIR/progress.jsonl, one line per finished epoch (the host shows them as they come); and
JOBDIR/report.json with the training record, or the typed error. On JAX and PyTorch, TensorFlow is blocked from
loading (models/backend.py `block_tensorflow`): the run is then the same here as on a GPU machine without it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DATA_ARRAYS = ("X_train", "y_train", "X_test", "y_test")


def write_job(job_dir: Path, job: dict, dataset: object) -> None:
    """The host's half: the job and the data set's arrays, as the child reads them (numpy only, no pickles)."""
    import numpy as np

    data = job_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in DATA_ARRAYS:
        np.save(data / f"{name}.npy", getattr(dataset, name), allow_pickle=False)
    meta = {"name": dataset.name, "task": dataset.task, "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names) if dataset.class_names else None, "meta": dataset.meta}
    (job_dir / "data.json").write_text(json.dumps(meta, default=str))
    (job_dir / "job.json").write_text(json.dumps(job))


def _read_dataset(job_dir: Path) -> object:
    import numpy as np

    from edgeseq.datasets.base import Dataset

    meta = json.loads((job_dir / "data.json").read_text())
    arrays = {name: np.load(job_dir / "data" / f"{name}.npy", allow_pickle=False) for name in DATA_ARRAYS}
    names = tuple(meta["class_names"]) if meta["class_names"] else None
    return Dataset(name=meta["name"], task=meta["task"], num_classes=meta["num_classes"], class_names=names,
                   meta=meta["meta"] or {}, **arrays)


def run(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text())
    from edgeseq.core.fsio import childproc
    from edgeseq.models.backend import block_tensorflow

    childproc.install_signal_handlers()  # SIGTERM from the host: unwind, so a half-written run is removed
    if job["backend"] != "tensorflow":
        block_tensorflow()
    report: dict = {"ok": False}
    progress_path = job_dir / "progress.jsonl"
    try:
        if os.environ.get("KERAS_BACKEND") != job["backend"]:
            raise RuntimeError(f"KERAS_BACKEND is {os.environ.get('KERAS_BACKEND')!r}, the job asks {job['backend']}")
        from edgeseq.models.run_dir import TrainOptions
        from edgeseq.models.train import train_model

        def progress(logs: dict) -> None:
            with progress_path.open("a") as fh:
                fh.write(json.dumps(logs) + "\n")

        result = train_model(job["arch"], _read_dataset(job_dir), job["out_dir"], preset=job["preset"],
                             options=TrainOptions(**job["options"]), overrides=job["overrides"],
                             overwrite=job["overwrite"], progress=progress)
        report = {"ok": True, "record": result.record}
    except Exception as exc:  # noqa: BLE001 - any failure goes back to the host as a typed record, not a traceback
        report["error"] = childproc.error_record(exc)
    (job_dir / "report.json").write_text(json.dumps(report))
    return 0 if report["ok"] else 3


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m edgeseq.models.train_child JOBDIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(Path(sys.argv[1])))
