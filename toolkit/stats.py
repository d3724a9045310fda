"""Latency statistics, computed on the host from the agent's raw samples (nanoseconds in, microseconds out).

The device only records what happened; every figure a report shows is derived here, the same way for every target,
so two devices are compared on one definition of "p99". Percentiles use numpy's default (linear interpolation);
`std_us` is the sample standard deviation (ddof=1), as benchmark_model and optimum report it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_stats(samples_ns: Sequence[int]) -> dict:
    """mean/std/min/p50/p90/p99/max in microseconds, plus count, CV and throughput (inferences per second)."""
    a = np.asarray(samples_ns, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    us = a / 1e3
    mean = float(us.mean())
    std = float(us.std(ddof=1)) if us.size > 1 else 0.0
    out = {
        "count": int(us.size),
        "mean_us": mean,
        "std_us": std,
        "min_us": float(us.min()),
        "max_us": float(us.max()),
        "cv": std / mean if mean > 0 else 0.0,
        "throughput_per_s": 1e6 / mean if mean > 0 else 0.0,
    }
    for p, v in zip(PERCENTILES, np.percentile(us, PERCENTILES), strict=True):
        out[f"p{p}_us"] = float(v)
    return out


def summarize_agent(data: dict) -> dict:
    """The flat figures a table shows for one agent result (schema edgeseq.agent/1)."""
    t = data["timings_ns"]
    stats = latency_stats(t["invoke"])
    warm = t.get("warmup") or []
    mem = data.get("memory") or {}
    return {
        **stats,
        "init_ms": (t["load"] + t["allocate"]) / 1e6,
        "load_ms": t["load"] / 1e6,
        "allocate_ms": t["allocate"] / 1e6,
        "first_inference_ms": t["first_inference"] / 1e6,
        "warmup_mean_us": float(np.mean(warm)) / 1e3 if warm else None,
        "peak_rss_kb": mem.get("vm_hwm_kb"),
        "model_size_bytes": data["model"]["size_bytes"],
    }


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample std / mean) of repeated figures, e.g. p50 over repeated runs."""
    a = np.asarray(values, dtype=np.float64)
    if a.size < 2 or a.mean() == 0:
        return 0.0
    return float(a.std(ddof=1) / a.mean())


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (latency, accuracy) points that no other point beats on both (lower latency, higher accuracy).

    Ties: a point equal to another on both axes stays on the front; one equal on one axis and worse on the other
    does not.
    """
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(
            (lat2 <= lat and acc2 >= acc) and (lat2 < lat or acc2 > acc)
            for j, (lat2, acc2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front
