"""`edgeseq estimate`: a file's p50 per invoke (per step for a step model) and its memory, predicted without running.

The predictor is fitted afresh from the store (edgeseq.estimate.fit) on the target's per-op runs of one toolchain
(the runtime and version of the newest per-op run there): fitting takes milliseconds, so there is no second copy of
the data to go stale. Memory is the existing prediction from the file (edgeseq.profiling.memory_need).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeseq.core.errors import NothingFound
from edgeseq.estimate.fit import CalRun, Predictor, cal_run, fit, quickest
from edgeseq.estimate.work import ModelWork, OpWork, model_work

_WORK_CACHE: dict[tuple[str, float, int], ModelWork] = {}


def work_of_file(path: str | os.PathLike) -> ModelWork:
    """The file's work with which ops XNNPACK takes (asked of the host runtime), cached by path, mtime and size."""
    from edgeseq.core.fsio import sha256_file
    from edgeseq.estimate.delegation import cached_delegated_ops, with_delegation
    from edgeseq.quantize.tflite.reader import read_tflite

    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    if key not in _WORK_CACHE:
        f = read_tflite(p)
        _WORK_CACHE[key] = with_delegation(model_work(f), cached_delegated_ops(f, sha256_file(p)))
    return _WORK_CACHE[key]


def _work(path: Path) -> ModelWork | None:
    try:
        return work_of_file(path)
    except Exception:  # noqa: BLE001 - a stored run whose file changed or is unreadable is left out of the fit
        return None


def toolchain_of(row: dict) -> str:
    return f"{row.get('runtime_name')} {row.get('runtime_version')}"


def calibration_runs(db: str | os.PathLike | None, target: str,
                     where: Callable[[dict], bool] = lambda _r: True) -> tuple[list[CalRun], str]:
    """The target's per-op runs of its newest toolchain whose files are still on disk, joined with their work."""
    from edgeseq.profiling.ops import op_fields
    from edgeseq.store.results import ResultsStore, default_db_path

    path = Path(db) if db is not None else default_db_path()
    rows = []
    if path.exists():
        with ResultsStore(path, create=False) as store:
            rows = [r for r in store.runs(target=target) if ((r.get("agent") or {}).get("ops") or {}).get("route")]
    if not rows:
        raise NothingFound(f"no per-op runs on target {target!r} in {path}",
                           f"run `edgeseq calibrate --target {target}` (or `edgeseq profile --ops`) first")
    toolchain = toolchain_of(rows[-1])
    out = []
    for r in rows:
        if toolchain_of(r) != toolchain or not where(r):
            continue
        work = _work(Path(r["model_path"]))
        if work is None:
            continue
        fields = op_fields(r["agent"]["ops"], r.get("p50_us"))
        run = cal_run(r, fields.get("ops") or [], work)
        if run is not None:
            out.append(run)
    if not out:
        raise NothingFound(f"the per-op runs on {target!r} name files that are no longer on disk",
                           f"run `edgeseq calibrate --target {target}` again: it rebuilds its files")
    return quickest(out), toolchain


def load_predictor(db: str | os.PathLike | None, target: str, keep: Callable[[OpWork], bool] = lambda _op: True,
                   where: Callable[[dict], bool] = lambda _r: True) -> Predictor:
    runs, toolchain = calibration_runs(db, target, where)
    return fit(runs, target, toolchain, keep)


def _per(path: Path) -> str:
    from edgeseq.quantize.manifest import manifest_path_for, read_manifest

    stream = (read_manifest(manifest_path_for(path), strict=False) or {}).get("stream")
    return "step" if isinstance(stream, dict) and stream.get("kind") else "invoke"


def estimate_file(pred: Predictor, path: str | os.PathLike, xnnpack: bool = True) -> dict:
    """One row: model_path, p50_us, p50_us_range, per (invoke|step), model_kb, fallbacks, seconds."""
    from edgeseq.profiling.memory_need import predicted_need_kb

    t0 = time.perf_counter()
    p = Path(path)
    work = work_of_file(p)
    est = pred.predict(work, xnnpack)
    mem = predicted_need_kb(p, 0.0, xnnpack=xnnpack)
    return {"model_path": str(p), "model": p.stem, "target": pred.target, "toolchain": pred.toolchain,
            "xnnpack": xnnpack, "per": _per(p), "p50_us": round(est["p50_us"], 3),
            "p50_us_range": [round(v, 3) for v in est["p50_us_range"]], "model_kb": round(mem["model_kb"], 1),
            "fallbacks": est["fallbacks"], "notes": work.notes, "estimated": True,
            "seconds": round(time.perf_counter() - t0, 4)}


def estimate_files(paths: Sequence[str | os.PathLike], target: str, *, db: str | os.PathLike | None = None,
                   xnnpack: bool = True, predictor: Predictor | None = None) -> list[dict]:
    from edgeseq.quantize.tflite.reader import read_tflite

    for p in paths:  # every file checked before the store is read: a bad path is the user's first error
        read_tflite(p)
    pred = predictor or load_predictor(db, target)
    return [estimate_file(pred, p, xnnpack) for p in paths]
