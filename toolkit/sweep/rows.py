"""The sweep's measurements read back: one row per finished cell (its configuration joined with its stored run),
the input of the scaling analysis (`edgeseq.sweep.scaling`), the report's sweep sections and the benchmark.

Read-only, like every report: a store from before sweeps simply has no rows.
"""

from __future__ import annotations

from pathlib import Path

from edgeseq.core.stats import memory_figures
from edgeseq.sweep.grid import stream_kind

_POINT = ("target", "arch", "size", "recipe", "form", "seq_len", "mode", "dataset")  # what one measurement is of


def _num(v):
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def row_of(cell: dict, run: dict) -> dict:
    """One finished cell + its run -> a sweep row (see edgeseq.sweep.scaling for the keys it reads)."""
    cfg = cell["config"]
    stats = run.get("stats") or {}
    agent = run.get("agent") or {}
    stream = agent.get("stream") if isinstance(agent.get("stream"), dict) else {}
    model_kb = stats.get("model_peak_kb") if "model_peak_kb" in stats else memory_figures(agent.get("memory"))[
        "model_peak_kb"]
    built = cell.get("result") or {}
    metrics = built.get("model", {}).get("test_metrics") or {}
    metric_name = next((k for k in ("accuracy", "mse", "mae") if k in metrics), None)
    kind = stream_kind(cfg["arch"]).value if cfg["form"] == "stream" else None
    return {
        "key": cell["key"], "run_id": run["id"], "target": run["target"], "device": run.get("device_key"),
        "arch": cfg["arch"], "size": cfg["size"], "recipe": cfg["recipe"], "form": cfg["form"], "kind": kind,
        "seq_len": int(cfg["seq_len"]), "mode": cfg["mode"], "dataset": cfg.get("dataset"),
        "p50_us": _num(stats.get("p50_us")), "p99_us": _num(stats.get("p99_us")), "model_peak_kb": _num(model_kb),
        "process_peak_kb": _num(stats.get("peak_rss_kb")), "state_bytes": _num(stream.get("state_bytes")),
        "model_size_bytes": run.get("model_size_bytes"),
        "accuracy": _num(run.get("accuracy")) if cfg["mode"] == "full" else None,
        "metric_name": metric_name, "metric": _num(metrics.get(metric_name)) if metric_name else None,
        "hop_ms": cfg.get("hop_ms"), "parity_passed": built.get("parity_passed"),
    }


def sweep_rows(db: str | Path | None, target: str | None = None) -> list[dict]:
    """The latest finished cell's row per measured point (cells whose run is gone or damaged are left out), oldest
    run first."""
    from edgeseq.store.results import ResultsStore

    with ResultsStore(db, create=False) as store:
        cells = store.cells()
        if not cells:
            return []
        runs = {r["id"]: r for r in store.runs(target=target)}
    rows = [row_of(c, runs[c["run_id"]]) for c in cells.values() if c["status"] == "ok" and c["run_id"] in runs]
    latest: dict[tuple, dict] = {}  # one row per measured point: a later sweep of the same point (more runs, another
    for r in sorted(rows, key=lambda r: r["run_id"]):  # toolchain) supersedes an earlier one
        latest[tuple(r[k] for k in _POINT)] = r
    return sorted(latest.values(), key=lambda r: r["run_id"])


def failed_cells(db: str | Path | None) -> list[dict]:
    """The failed cells whose point has not been measured since: the latest failure per point, unless a cell of the
    same point (another agent, toolchain or number of runs) finished at or after it."""
    from edgeseq.store.results import ResultsStore

    with ResultsStore(db, create=False) as store:
        cells = sorted(store.cells().values(), key=lambda c: (c["created_at"], c["status"] == "ok"))
    latest: dict[tuple, dict] = {}
    for c in cells:
        latest[tuple(c["config"].get(k) for k in _POINT)] = c
    return [c for c in latest.values() if c["status"] == "failed"]
