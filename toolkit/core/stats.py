"""Latency statistics, computed on the host from the agent's raw samples (nanoseconds in, microseconds out).

The device only records what happened; every figure a report shows is derived here, the same way for every target,
so two devices are compared on one definition of "p99". Percentiles use numpy's default (linear interpolation);
`std_us` is the sample standard deviation (ddof=1), as benchmark_model and optimum report it.

`summarize(result)` gives the flat figures of one run for either runner: the Python agent (raw samples) or LiteRT's
benchmark_model (aggregates only: what its log does not print, such as p90/p99, is None, never invented).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def latency_stats(samples_ns: Sequence[int]) -> dict:
    """mean/std/min/p50/p90/p99/max in microseconds, plus count, CV and throughput (inferences per second).

    A NaN or infinite sample is not dropped: every figure is then NaN and `nonfinite_samples` says how many there
    were, so a table shows NaN instead of a clean-looking figure computed over what was left."""
    from edgeseq.core.finite import nonfinite_count

    a = np.asarray(samples_ns, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    bad = nonfinite_count(a)
    if bad:
        nan = float("nan")
        return {"count": int(a.size), "nonfinite_samples": bad, "mean_us": nan, "std_us": nan, "min_us": nan,
                "max_us": nan, "cv": nan, "throughput_per_s": nan, **{f"p{p}_us": nan for p in PERCENTILES}}
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


def memory_figures(memory: dict | None) -> dict:
    """The model's memory from an agent result's `memory` section, kB: `model_peak_kb` (peak minus the runtime's
    baseline), `baseline_kb`, `memory_method`. Schema edgeseq.agent/2 states them; for an edgeseq.agent/1 result
    they are inferred from its stages as the agent/2 does without clear_refs: the lifetime VmHWM is the model's when
    it rose past its value once the runtime was imported ("hwm-inferred"), else unknown (None)."""
    mem = memory if isinstance(memory, dict) else {}
    if "model_peak_kb" in mem:
        return {"model_peak_kb": mem.get("model_peak_kb"), "baseline_kb": mem.get("baseline_kb"),
                "memory_method": mem.get("method")}
    out = {"model_peak_kb": None, "baseline_kb": None, "memory_method": None}
    stages = mem.get("stages") if isinstance(mem.get("stages"), dict) else {}
    base = stages.get("import") if isinstance(stages.get("import"), dict) else {}
    rss, hwm0, hwm = base.get("vm_rss_kb"), base.get("vm_hwm_kb"), mem.get("vm_hwm_kb")
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (rss, hwm0, hwm)):
        out["baseline_kb"] = rss
        if hwm > hwm0:
            out["model_peak_kb"], out["memory_method"] = hwm - rss, "hwm-inferred"
    return out


def summarize_agent(data: dict) -> dict:
    """The flat figures a table shows for one agent result (schema edgeseq.agent/2, or /1)."""
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
        **memory_figures(mem),
        "model_size_bytes": data["model"]["size_bytes"],
    }


def summarize_aggregate(result: dict) -> dict:
    """The flat figures of a runner that reports aggregates only (benchmark_model: `aggregate_us`), with the keys
    `summarize_agent` gives; what it does not report (p90, p99, allocate time) is None."""
    agg = result["aggregate_us"]
    t = result["timings_ns"]
    mean, std = agg["mean_us"], agg["std_us"]
    return {
        "count": agg["count"],
        "mean_us": mean,
        "std_us": std,
        "min_us": agg["min_us"],
        "max_us": agg["max_us"],
        "cv": (std / mean) if (std is not None and mean) else None,
        "throughput_per_s": 1e6 / mean if mean else 0.0,
        "p5_us": agg["p5_us"],
        "p50_us": agg["p50_us"],
        "p90_us": None,
        "p95_us": agg["p95_us"],
        "p99_us": None,
        "init_ms": t["load"] / 1e6,
        "load_ms": t["load"] / 1e6,
        "allocate_ms": None,
        "first_inference_ms": t["first_inference"] / 1e6,
        "warmup_mean_us": agg["warmup_mean_us"],
        "peak_rss_kb": (result.get("memory") or {}).get("vm_hwm_kb"),
        "model_peak_kb": None,  # its log gives no baseline to take off
        "baseline_kb": None,
        "memory_method": None,
        "memory_approximate": True,
        "model_size_bytes": result["model"]["size_bytes"],
        "runner": result.get("runner"),
    }


def summarize(result: dict) -> dict:
    """The flat figures of one run (schema edgeseq.agent/2 or /1), whichever runner produced it."""
    if result.get("aggregate_us") is not None:  # benchmark_model: aggregates only, no raw samples
        return summarize_aggregate(result)
    return summarize_agent(result)


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
    from edgeseq.core.finite import is_number

    front = []
    for i, (lat, acc) in enumerate(points):
        if not (is_number(lat) and is_number(acc)):  # a NaN is never dominated (every comparison is False)
            continue
        dominated = any(
            (lat2 <= lat and acc2 >= acc) and (lat2 < lat or acc2 > acc)
            for j, (lat2, acc2) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front
