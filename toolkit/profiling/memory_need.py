"""Will a model fit under `--memory-limit`? Checked before anything runs, from the file and one short agent call.

The limit caps the agent's whole process: Python, numpy and the runtime (the baseline, read from `agent --facts` on
this machine, ~42 MB on x86_64) plus what the model adds (`edgeseq.quantize.memory_estimate`, the prediction of the
agent's `memory.model_peak_kb`) plus the runtime's machine code a first model pages in (its `code_kb`). Below that sum the kernel would OOM-kill the agent partway; the user gets one line
saying what the model needs instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgeseq.core.errors import EdgeseqError, InputError
from edgeseq.core.finite import is_number, within


def _mb(kb: float) -> str:
    return f"{kb / 1024:.0f}" if kb >= 10 * 1024 else f"{kb / 1024:.1f}"


def predicted_need_kb(model: Path, baseline_kb: float, runtime: str = "ai_edge_litert", xnnpack: bool = True) -> dict:
    """{"baseline_kb", "model_kb", "code_kb", "need_kb"}: the agent's predicted peak for `model` on `runtime`: the
    baseline, the model's own memory and the runtime's code a first model pages in (resident too, under the limit)."""
    from edgeseq.quantize.memory_estimate import CALIBRATIONS, estimate_memory
    from edgeseq.quantize.tflite.reader import read_tflite

    est = estimate_memory(read_tflite(model), runtime if runtime in CALIBRATIONS else "ai_edge_litert", xnnpack)
    return {"baseline_kb": baseline_kb, "model_kb": est["total_kb"], "code_kb": est["code_kb"],
            "need_kb": baseline_kb + est["total_kb"] + est["code_kb"]}


def runtime_baseline(python: str | None) -> tuple[float, str] | None:
    """(VmRSS kB once Python, numpy and the runtime are imported, the runtime's name) on this machine, from the
    agent's --facts; None where it cannot say (no runtime, no /proc): the run then meets its own error."""
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.runner import agent_facts

    try:
        facts = agent_facts(LocalTarget(python=python))
    except EdgeseqError:
        return None
    rss = (facts.get("memory") or {}).get("vm_rss_kb")
    name = (facts.get("runtime") or {}).get("name")
    return (float(rss), name) if isinstance(rss, int | float) and name else None


def check_memory_limit(models: Sequence[Path], memory_limit: str | int, targets: Sequence[str] = ("local",),
                       xnnpack: bool = True) -> None:
    """InputError (exit 2, one line) naming what the largest model needs when `memory_limit` is below it. Only
    local targets take the limit (others are refused elsewhere); their Python is the one asked."""
    from edgeseq.targets.limits import memory_limit_bytes
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.resolve import open_target

    limit_kb = memory_limit_bytes(memory_limit) / 1024
    local = [t for t in (open_target(n) for n in targets) if isinstance(t, LocalTarget)]
    if not local:
        return
    base = runtime_baseline(local[0].python)
    if base is None:
        return
    baseline_kb, runtime = base
    worst = max((predicted_need_kb(m, baseline_kb, runtime, xnnpack) | {"model": m} for m in models),
                key=lambda n: n["need_kb"])
    if is_number(worst["need_kb"]) and not within(worst["need_kb"], limit_kb):  # no prediction: no refusal
        raise InputError(
            f"{worst['model'].name} needs about {_mb(worst['need_kb'])} MiB, over --memory-limit {memory_limit}: "
            f"{_mb(baseline_kb)} MiB for Python, numpy and {runtime}, {_mb(worst['model_kb'])} MiB the model "
            f"adds and {_mb(worst['code_kb'])} MiB of the runtime's code it pages in (predicted from the file, see "
            "edgeseq inspect)",
            f"raise --memory-limit to at least {int(-(-worst['need_kb'] // 1024))}M",
        )
