"""`edgeseq sweep`: build, convert and profile every cell of a grid (`edgeseq.sweep.grid`), resumably.

    result = run_sweep(spec_from_options({"arch": "gru,transformer", "seq_len": "16,...,1024"}))

The line, per cell: its model is built (trained in `full` mode, seeded and untrained in `cost` mode) and converted by
worker processes (`--jobs N`; or Ray tasks on an existing cluster, `--executor ray`), each working in a folder of
its own under `<out>/.work/`; finished files are moved into `<out>/models/<model>/<file>/` in one rename, so a file
there is whole. Profiling runs on the head: serialised per target (two measurements never share a device's cores)
and concurrent across targets. Each cell's outcome is one row of the store's `sweep_cells` ledger, written when it
ends: `ok` with its run, or `failed` with its one-line reason. A rerun skips every recorded cell (failed ones too,
unless `retry_failed`), so `kill -9` loses at most the cells in flight, and a sweep with nothing left to do only
reads the ledger.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq.core.errors import DiskError, EdgeseqError, InputError, TargetError
from edgeseq.core.fsio import atomic_write_text
from edgeseq.core.progress import Progress
from edgeseq.sweep.grid import Cell, SweepSpec, describe, expand

BUILD_TIMEOUT_S = 6 * 3600.0
MARKER = "artifact.json"  # written inside a file's folder before the folder is moved into place


@dataclass
class SweepResult:
    cells: int = 0
    skipped: int = 0  # recorded by an earlier run
    ok: int = 0
    failed: int = 0
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    db: Path | None = None


# ------------------------------------------------------------------------------------------ folders
def model_dir(out: Path, model_key: str) -> Path:
    return out / "models" / model_key


def finished_artifact(out: Path, cell: Cell) -> dict | None:
    """The marker of a file already made for `cell` (by this or an earlier run), else None."""
    marker = model_dir(out, cell.model_key) / cell.artifact_key / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and (marker.parent / str(info.get("tflite"))).is_file() else None


def adopt(out: Path, work: Path, result: dict) -> None:
    """Move what a worker made in `work` into place: the model folder, then each file's folder (marker inside)."""
    final = model_dir(out, result["model_key"])
    from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
    make_dirs(final)
    src = work / "run" if (work / "run").is_dir() else work
    if "error" not in result and not (final / "model" / "model.keras").exists():
        staging = work / ".model"
        staging.mkdir(exist_ok=True)
        for name in ("model.keras", "training.json"):
            if (src / name).exists():
                os.replace(src / name, staging / name)
        atomic_write_text(staging / "model.json", json.dumps(result.get("model") or {}, default=str))
        if (staging / "model.keras").exists():
            _replace_dir(staging, final / "model")
    for key, res in result.get("artifacts", {}).items():
        if res.get("ok") and (work / key).is_dir():
            atomic_write_text(work / key / MARKER, json.dumps(res, default=str))
            _replace_dir(work / key, final / key)


def _replace_dir(src: Path, dst: Path) -> None:
    try:
        os.rename(src, dst)  # atomic; refuses a non-empty dst (a finished copy from another worker: keep it)
    except OSError:
        shutil.rmtree(src, ignore_errors=True)


# ------------------------------------------------------------------------------------------ executors
def _job_for(out: Path, cells: list[Cell], data_dir: str | None = None, db: Any = None) -> dict:
    first = cells[0]
    model = {k: v for k, v in first.config.items()
             if k not in ("recipe", "form", "target", "runs", "warmup", "threads", "hop_ms")}
    wanted, seen = [], set()
    for c in cells:
        if c.artifact_key not in seen:
            seen.add(c.artifact_key)
            wanted.append({"artifact_key": c.artifact_key, "recipe": c.recipe, "form": c.form})
            if "float+auto" in c.recipe:  # --float-ops auto: decided by the cell's target's stored per-op runs
                from edgeseq.profiling.ops import stored_op_evidence

                wanted[-1]["op_evidence"] = stored_op_evidence(db, c.config.get("target") or "local")
    existing = model_dir(out, first.model_key) / "model"
    job = {"model_key": first.model_key, "model": model, "artifacts": wanted, "data_dir": data_dir}
    if (existing / "model.keras").is_file():
        job["model_path"] = str((existing / "model.keras").resolve())
        try:
            job["model_info"] = json.loads((existing / "model.json").read_text())
        except (OSError, ValueError):
            job["model_info"] = {}
    return job


def _run_local(out: Path, job: dict) -> dict:
    """One worker process (`python -m edgeseq.sweep.build`) for one model."""
    from edgeseq.core.fsio import childproc, oserrors

    work = out / ".work" / f"{job['model_key']}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    oserrors.make_dirs(work)
    try:
        job = {**job, "work": str(work.resolve())}
        atomic_write_text(work / "job.json", json.dumps(job))
        # the sweep builds and converts on TensorFlow, whatever KERAS_BACKEND the user's shell sets
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        proc = childproc.run([sys.executable, "-m", "edgeseq.sweep.build", str(work / "job.json"),
                              str(work / "result.json")], timeout=BUILD_TIMEOUT_S, scratch=work, env=env)
        try:
            result = json.loads((work / "result.json").read_text())
        except (OSError, ValueError):
            full = oserrors.full_disk_error(work)  # it could not even write its result: the sweep stops here
            if full is not None:
                raise full from None
            tail = (proc.stderr or "").strip().splitlines()
            why = tail[-1] if tail else f"exit status {proc.returncode}"
            return {"model_key": job["model_key"], "error": {"reason": f"the sweep worker failed: {why}"}}
        for record in [(result.get("error") or {}).get("record"),
                       *((a.get("error") if isinstance(a, dict) else None) for a in result.get("artifacts", {}).values())]:
            if isinstance(record, dict) and record.get("kind") == "DiskError":  # a full disk stops the whole sweep
                raise childproc.error_from_record(record)
        adopt(out, work, result)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


class LocalExecutor:
    def __init__(self, jobs: int):
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep-build")

    def submit(self, out: Path, job: dict) -> Future:
        return self.pool.submit(_run_local, out, job)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# ------------------------------------------------------------------------------------------ profiling
def _profile_cell(cell: Cell, tflite: Path, db: Path) -> dict:
    from edgeseq.profiling.run import profile_models

    stream = cell.form == "stream"
    n = int(cell.seq_len)
    rows = profile_models([tflite], target=cell.target, runs=max(cell.runs, n) if stream else cell.runs,
                          warmup=cell.warmup, threads=cell.threads, db=db, stream=stream,
                          steps=n if stream else None, hop_ms=cell.hop_ms if stream else None)
    return rows[0]


class TargetWorker(threading.Thread):
    """Profiles the cells of one target, one at a time, as their files arrive. A target on this machine waits for
    `quiet` (no build or conversion running here) before each measurement: they would share its cores."""

    def __init__(self, target: str, db: Path, out: Path, record: Callable, stop: threading.Event,
                 quiet: threading.Event | None = None):
        super().__init__(name=f"sweep-profile-{target}", daemon=True)
        self.target, self.db, self.out, self.record, self.stop = target, db, out, record, stop
        self.quiet = quiet
        self.queue: queue.Queue = queue.Queue()
        self.dropped: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                item = self.queue.get()
                if item is None:
                    return
                cell, info = item
                if self.dropped:
                    self.record(cell, "failed", why=f"target {self.target} dropped earlier in this sweep: "
                                f"{self.dropped}")
                    continue
                if cell.config.get("estimate"):
                    self._estimate(cell, info)
                    continue
                while self.quiet is not None and not self.quiet.wait(0.5):
                    if self.stop.is_set():
                        return
                started = time.perf_counter()
                try:
                    folder = model_dir(self.out, cell.model_key) / cell.artifact_key
                    row = _profile_cell(cell, folder / info["tflite"], self.db)
                except TargetError as exc:
                    self.dropped = exc.one_line()
                    self.record(cell, "failed", why=exc.one_line())
                    continue
                except EdgeseqError as exc:
                    self.record(cell, "failed", why=exc.one_line())
                    continue
                self.record(cell, "ok", run_id=row["run_id"],
                            info={**info, "profile_s": round(time.perf_counter() - started, 3),
                                    "p50_us": row.get("p50_us")})
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which re-raises it
            self.error = exc

    def _estimate(self, cell: Cell, info: dict) -> None:
        """`--mode estimate`: the cell's figures from `edgeseq estimate` (the target's per-op runs), nothing run."""
        from edgeseq.estimate.predict import estimate_file, load_predictor

        try:
            if getattr(self, "predictor", None) is None:
                self.predictor = load_predictor(self.db, self.target)
            folder = model_dir(self.out, cell.model_key) / cell.artifact_key
            est = estimate_file(self.predictor, folder / info["tflite"])
        except EdgeseqError as exc:
            self.record(cell, "failed", why=exc.one_line())
            return
        self.record(cell, "ok", info={**info, "estimated": True, "p50_us": est["p50_us"],
                                      "p50_us_range": est["p50_us_range"], "model_kb": est["model_kb"],
                                      "fallbacks": est["fallbacks"], "toolchain": est["toolchain"]})


# ------------------------------------------------------------------------------------------ the sweep
def plan(spec: SweepSpec) -> tuple[list[Cell], str]:
    spec.check()
    cells = expand(spec)
    return cells, describe(spec, cells)


def run_sweep(spec: SweepSpec, say: Callable[[str], None] = print, tty: bool = False,
              executor: object | None = None) -> SweepResult:
    """Run every cell the store does not hold yet; see the module docstring."""
    from edgeseq.store.results import ResultsStore, preflight

    cells, text = plan(spec)
    check_out(spec)
    out = Path(spec.out)
    db = preflight(spec.db)
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.resolve import open_target

    here = {t for t in spec.targets if isinstance(open_target(t), LocalTarget)}  # an unknown name is refused here
    started = time.monotonic()
    recorded = {}
    if db.exists():
        with ResultsStore(db, create=False) as store:
            recorded = store.cells()
    done = {k for k, c in recorded.items() if c["status"] == "ok" or not spec.retry_failed}
    todo = [c for c in cells if c.key not in done]
    result = SweepResult(cells=len(cells), skipped=len(cells) - len(todo), db=db)
    say(text)
    if not todo:
        say(f"nothing left to do: all {len(cells)} cells are recorded in {db}")
        result.wall_s = time.monotonic() - started
        return result
    pool = executor or (_ray_executor(spec) if spec.executor == "ray" else LocalExecutor(spec.jobs))
    stop = threading.Event()  # tells the profiling threads to end
    try:
        say(f"{len(todo)} cells to run ({result.skipped} recorded earlier)")
        from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
        make_dirs(out)
        clear_stale_work(out)
        progress = Progress(len(todo), tty=tty, say=say)
        lock = threading.Lock()

        def record(cell: Cell, status: str, *, run_id=None, why=None, info=None) -> None:
            with lock, ResultsStore(db) as st:
                st.put_cell(cell.key, str(out), status, cell.config, run_id=run_id, why=why, result=info)
            if status == "ok":
                outcome = f"p50 {info.get('p50_us') or 0:.0f} µs"
                result.ok += 1
            else:
                outcome = f"failed: {why}"
                result.failed += 1
                result.failures.append(f"{cell.label}: {why}")
            progress.step(cell.label, outcome)

        quiet = threading.Event()  # set once nothing is being built on this machine
        if spec.executor == "ray" and not str(spec.ray_address).replace("ray://", "").startswith(
                ("127.", "localhost", "[::1]")):
            quiet.set()  # a remote cluster builds on other machines
        workers = {t: TargetWorker(t, db, out, record, stop, quiet if t in here else None) for t in spec.targets}
        for w in workers.values():
            w.start()

        def ready(cell: Cell, info: dict) -> None:
            workers[cell.target].queue.put((cell, info))

        by_model: dict[str, list[Cell]] = {}
        for c in todo:
            info = finished_artifact(out, c)
            if info is not None:
                ready(c, info)  # made by an earlier run: only its measurement is missing
            else:
                by_model.setdefault(c.model_key, []).append(c)
        futures = {pool.submit(out, _job_for(out, group, spec.data_dir, db)): group for group in by_model.values()}
        if not futures:
            quiet.set()
        while futures:
            finished, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                group = futures.pop(fut)
                try:
                    built = fut.result()
                except DiskError:  # a full disk fails every cell after it too: the sweep stops, in one line
                    raise
                except Exception as exc:  # noqa: BLE001 - a worker or Ray task that dies fails its cells, not the sweep
                    why = exc.one_line() if isinstance(exc, EdgeseqError) else f"{type(exc).__name__}: {exc}"
                    built = {"error": {"reason": f"building failed: {str(why).splitlines()[0][:300]}"}}
                if "error" not in built:  # piped output shows work as it happens, not only measurements
                    progress.note(f"built {group[0].model_key}: {len(group)} file(s) to measure")
                for c in group:
                    art = (built.get("artifacts") or {}).get(c.artifact_key)
                    if "error" in built:
                        record(c, "failed", why=built["error"]["reason"])
                    elif art is None or not art.get("ok"):
                        record(c, "failed", why=(art or {}).get("reason") or "the worker made no file")
                    else:
                        ready(c, {**art, "model": built.get("model") or {}})
            if not futures:
                quiet.set()
            _raise_from(workers)
        for w in workers.values():
            w.queue.put(None)
        while any(w.is_alive() for w in workers.values()):
            for w in workers.values():
                w.join(timeout=0.5)
            _raise_from(workers)
    finally:
        stop.set()
        pool.close()
    result.wall_s = time.monotonic() - started
    return result


def _raise_from(workers: dict) -> None:
    for w in workers.values():
        if w.error is not None:
            raise w.error


def clear_stale_work(out: Path) -> None:
    """Remove worker folders left by a sweep that was killed (their owner process is gone)."""
    for folder in (out / ".work").glob("*-*-*") if (out / ".work").is_dir() else ():
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _ray_executor(spec: SweepSpec):
    from edgeseq.sweep.executors import RayExecutor

    return RayExecutor(spec.ray_address, spec.jobs)


def check_out(spec: SweepSpec) -> None:
    """Refuse an output folder that is a file (before anything is built)."""
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", "point --out at a folder (created when missing)")
