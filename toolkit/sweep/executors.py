"""`edgeseq sweep --executor ray --ray-address HOST:PORT`: the build and convert cells as tasks on a Ray cluster.

An optional extra (`pip install 'edgeseq[ray]'`; every node needs edgeseq installed, the same version). Only the
model building and conversion move: each task builds one model and its files in a temporary folder on whichever
node runs it and returns them as bytes, so the nodes share no file system with the head. The head writes them under
the sweep's folder exactly as a local worker's files, and keeps the store and all profiling (a device is measured
from one place, one run at a time).
"""

from __future__ import annotations

import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from edgeseq.core.errors import InputError

MAX_RESULT_BYTES = 2 << 30


def _remote_build(job: dict) -> dict:
    """Runs on a Ray worker: build in a private folder, return the result and every file made, as bytes."""
    import tempfile

    from edgeseq.sweep.build import build

    with tempfile.TemporaryDirectory(prefix="edgeseq-sweep-") as tmp:
        work = Path(tmp)
        result = build(job, work)
        files = {str(p.relative_to(work)): p.read_bytes() for p in work.rglob("*") if p.is_file()}
    total = sum(len(b) for b in files.values())
    if total > MAX_RESULT_BYTES:
        return {"model_key": job["model_key"], "error": {"reason": f"the task made {total} bytes of files, more "
                                                                   "than a Ray result should carry"}}
    return {"result": result, "files": files}


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Ray's own client retries an unreachable head for minutes, printing C++ warnings: try the port first."""
    import socket

    host, sep, port = address.replace("ray://", "").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"cannot read the Ray address {address!r}", "pass --ray-address HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"no Ray head answers at {address} ({exc.strerror or exc})",
                         "start one with `ray start --head` and pass its address to --ray-address") from None


class RayExecutor:
    """Submits each model's job as a Ray task; at most `jobs` in flight from this head."""

    def __init__(self, address: str, jobs: int):
        try:
            import ray
        except ImportError:
            raise InputError("--executor ray needs Ray installed", "pip install 'edgeseq[ray]'") from None
        self.ray = ray
        _check_reachable(address)
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level="ERROR",
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError(f"cannot join the Ray cluster at {address}: {str(exc).splitlines()[0]}",
                             "start one with `ray start --head` and pass its address to --ray-address") from None
        self.task = ray.remote(num_cpus=1, max_retries=0,
                               runtime_env={"env_vars": {"KERAS_BACKEND": "tensorflow"}})(_remote_build)
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-ray")

    def submit(self, out: Path, job: dict) -> Future:
        return self.pool.submit(self._run, out, job)

    def _run(self, out: Path, job: dict) -> dict:
        from edgeseq.sweep.run import adopt

        job = {**job, "model_path": None} if job.get("model_path") else job  # nodes cannot read the head's files
        payload = self.ray.get(self.task.remote(job))
        if "files" not in payload:
            return payload
        work = out / ".work" / f"{job['model_key']}-{os.getpid()}-ray{uuid.uuid4().hex[:8]}"
        try:
            for rel, data in payload["files"].items():
                dest = (work / rel).resolve()
                if not dest.is_relative_to(work.resolve()):
                    continue  # a task names only paths inside its own folder
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            adopt(out, work, payload["result"])
            return payload["result"]
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.ray.shutdown()
