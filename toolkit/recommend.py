"""`edgeseq recommend`: which stored models meet a latency, memory, real-time and accuracy budget on one target.

    result = recommend(db, "pi4", latency_budget_ms=5, memory_budget_mb=8, hop_ms=20, min_accuracy=0.95)

Every profiled model counts, not only sweep ones: the latest run per (model sha256, stream or not, steps) on the
target. Latency is the p99 per invoke: per sequence for a whole-sequence run, per step for a stream run. With a hop,
a stream run must also finish each step within the hop, and a whole-sequence model, served by re-running its window
on every hop, must finish the whole sequence within it. Model memory is the run's `model_peak_kb` (what the model
adds to the runtime's baseline), or its process peak RSS when that was not measured (said so). A model whose
accuracy is unknown (cost-mode sweeps are untrained; a model converted without validation) fails a minimum accuracy.

Models meeting every budget are ranked by accuracy (unknown last), then p99. Every other model is listed with each
budget it broke and by how much; when none meets them all, the one whose worst overshoot is smallest came closest.
Reads the store only (`ResultsStore(db, create=False)`).
"""

from __future__ import annotations

import math
from pathlib import Path

from edgeseq.core.errors import InputError, check_finite, did_you_mean
from edgeseq.core.finite import at_least, within
from edgeseq.core.stats import memory_figures
from edgeseq.models.streamkind import StreamKind
from edgeseq.store.results import ResultsStore
from edgeseq.streams.profile import UnreadableStreamRun, stream_kind

SCHEMA = "edgeseq.recommend/1"
UNKNOWN_ACCURACY = "accuracy unknown (untrained or not validated)"


def check_budgets(latency_budget_ms: float | None = None, memory_budget_mb: float | None = None,
                  hop_ms: float | None = None, min_accuracy: float | None = None) -> dict:
    """The budgets as floats (None where not given); InputError when none is given or one is not a finite positive
    number (a minimum accuracy is a fraction in [0, 1])."""
    given = {"latency_ms": latency_budget_ms, "memory_mb": memory_budget_mb, "hop_ms": hop_ms,
             "min_accuracy": min_accuracy}
    if all(v is None for v in given.values()):
        raise InputError("no budget given",
                         "pass at least one of --latency-budget-ms, --memory-budget-mb, --hop-ms, --min-accuracy")
    options = {"latency_ms": ("--latency-budget-ms", "5"), "memory_mb": ("--memory-budget-mb", "8"),
               "hop_ms": ("--hop-ms", "20")}
    out = {}
    for key, value in given.items():
        if value is None:
            out[key] = None
        elif key == "min_accuracy":
            out[key] = check_finite("--min-accuracy", value, min=0, max=1, example="0.95")
        else:
            name, example = options[key]
            out[key] = check_finite(name, value, min=0, min_open=True, example=example)
    return out


# ------------------------------------------------------------------------------------------------ candidates
def _figure(*values: object) -> float | None:
    """The first finite number among `values`."""
    for v in values:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def candidate(run: dict) -> dict:
    """One stored run as a candidate: what it is, how it is served, its p99 (ms, per sequence or per step), memory
    (MB) and accuracy. A stream block that cannot be read is UnreadableStreamRun."""
    opts, stats, agent = run.get("options") or {}, run.get("stats") or {}, run.get("agent") or {}
    stream = bool(opts.get("stream"))
    block = agent.get("stream") if stream else None
    kind = None
    if stream:
        if block is not None and not isinstance(block, dict):
            raise UnreadableStreamRun("stream is not an object")
        kind = stream_kind(block) if block else None
    steps = _figure((block or {}).get("steps"), opts.get("steps")) if stream else None
    model_kb = _figure(stats.get("model_peak_kb"), memory_figures(agent.get("memory"))["model_peak_kb"])
    rss_kb = _figure(stats.get("peak_rss_kb"), run.get("peak_rss_kb"))
    p99, p50 = _figure(stats.get("p99_us")), _figure(stats.get("p50_us"), run.get("p50_us"))
    memory_kb = model_kb if model_kb is not None else rss_kb
    name = run["model_name"] + (f" [stream {int(steps)}]" if stream and steps else " [stream]" if stream else "")
    return {
        "model": name, "model_name": run["model_name"], "run_id": run["id"], "sha256": run["model_sha256"],
        "recipe": run.get("recipe"), "accuracy": _figure(run.get("accuracy")),
        "form": "stream" if stream else "whole", "kind": None if kind is None else kind.value,
        "steps": None if steps is None else int(steps),
        "latency_per": "step" if stream else "sequence",
        "p99_ms": None if p99 is None else p99 / 1e3, "p50_ms": None if p50 is None else p50 / 1e3,
        "memory_mb": None if memory_kb is None else memory_kb / 1024,
        "memory_basis": "model" if model_kb is not None else None if rss_kb is None
        else "peak RSS (model memory not measured)",
    }


def _served(c: dict, hop_ms: float | None) -> str:
    if c["form"] == "whole":
        return f"window recompute: the whole sequence re-run every {hop_ms:g} ms hop" if hop_ms is not None \
            else "whole sequence per invoke"
    if c["kind"] == StreamKind.WINDOW.value:
        return "stream by window recompute, one step per invoke"
    label = StreamKind.parse(c["kind"]).label if c["kind"] else "stream"
    context = f", context {c['steps']}" if c["steps"] else ""
    return f"stream, one step per invoke ({label}{context})"


def _breach(budget: str, value: float | None, limit: float, unit: str, what: str, *, above: bool = True) -> dict | None:
    """None when `value` is within `limit`; else what broke and by how much (ratio: how far past, > 1)."""
    if value is None:
        return {"budget": budget, "limit": limit, "value": None, "over_by": None, "ratio": None,
                "text": f"{what} unknown (not measured)" if budget != "accuracy" else UNKNOWN_ACCURACY}
    if within(value, limit) if above else at_least(value, limit):
        return None
    ratio = value / limit if above else (limit / value if value > 0 else None)  # None: no finite ratio (0 accuracy)
    over = value - limit
    sign = "+" if over >= 0 else "-"
    fmt = (lambda v: f"{v:.4f}") if budget == "accuracy" else (lambda v: f"{v:.3g} {unit}")
    cmp = ">" if above else "<"
    times = "" if ratio is None else f", {ratio:.2f}x"
    return {"budget": budget, "limit": limit, "value": value, "over_by": over, "ratio": ratio,
            "text": f"{what} {fmt(value)} {cmp} {fmt(limit)} ({sign}{fmt(abs(over))}{times})"}


def judge(c: dict, budgets: dict) -> list[dict]:
    """Each budget `c` breaks, with by how much."""
    per = f"p99 per {c['latency_per']}"
    checks = []
    if budgets["latency_ms"] is not None:
        checks.append(_breach("latency", c["p99_ms"], budgets["latency_ms"], "ms", per))
    if budgets["hop_ms"] is not None:
        what = f"{per} ({'must finish within the hop' if c['form'] == 'stream' else 'window recompute every hop'})"
        checks.append(_breach("hop", c["p99_ms"], budgets["hop_ms"], "ms", what))
    if budgets["memory_mb"] is not None:
        what = "model memory" if c["memory_basis"] in (None, "model") else "peak RSS (model memory not measured)"
        checks.append(_breach("memory", c["memory_mb"], budgets["memory_mb"], "MiB", what))
    if budgets["min_accuracy"] is not None:
        checks.append(_breach("accuracy", c["accuracy"], budgets["min_accuracy"], "", "accuracy", above=False))
    return [b for b in checks if b is not None]


def _worst(breaches: list[dict]) -> float:
    return max((b["ratio"] if b["ratio"] is not None else math.inf for b in breaches), default=0.0)


# ------------------------------------------------------------------------------------------------ recommend
def latest_runs(runs: list[dict]) -> list[dict]:
    """The latest run per (model sha256, stream or not, steps); runs come oldest first."""
    from edgeseq.estimate.grid import is_calibration_file

    latest: dict[tuple, dict] = {}
    for r in runs:
        if is_calibration_file(r["model_path"]):
            continue  # `edgeseq calibrate`'s generated models: data for estimates, not candidates
        o = r.get("options") or {}
        latest[(r["model_sha256"], bool(o.get("stream")), o.get("steps") if o.get("stream") else None)] = r
    return list(latest.values())


def recommend(db: str | Path | None, target: str, *, latency_budget_ms: float | None = None,
              memory_budget_mb: float | None = None, hop_ms: float | None = None,
              min_accuracy: float | None = None, estimate_paths: tuple = ()) -> dict:
    """The `edgeseq.recommend/1` object: target, budgets, meets (ranked), excluded (each with `breaches`), closest
    (None unless nothing meets every budget), notes."""
    budgets = check_budgets(latency_budget_ms, memory_budget_mb, hop_ms, min_accuracy)
    if not isinstance(target, str) or not target.strip():
        raise InputError("--target is required", "pass the target the models were profiled on, e.g. --target pi4")
    with ResultsStore(db, create=False) as store:
        runs = store.runs(target=target)
        if not runs:
            present = sorted({r["target"] for r in store.runs()})
            if not present:
                raise InputError(f"the results store {store.path} holds no runs", "run `edgeseq profile` first")
            raise InputError(f"no runs on target {target!r} in {store.path}",
                             did_you_mean(target, present, "targets with runs"))
        path, damage = str(store.path), store.damage_note()
    notes = [damage] if damage else []
    meets, excluded = [], []
    for run in latest_runs(runs):
        try:
            c = candidate(run)
        except UnreadableStreamRun as exc:
            notes.append(f"run #{run['id']} ({run['model_name']}) left out: {exc}")
            continue
        c["served"] = _served(c, budgets["hop_ms"])
        if budgets["hop_ms"] is not None and c["p99_ms"] is not None:
            c["real_time_factor"] = c["p99_ms"] / budgets["hop_ms"]
        breaches = judge(c, budgets)
        (excluded if breaches else meets).append({**c, "breaches": breaches} if breaches else c)
    for c in estimated_candidates(db, target, estimate_paths, {x["sha256"] for x in meets + excluded}):
        c["served"] = _served(c, budgets["hop_ms"])
        breaches = judge(c, budgets)
        (excluded if breaches else meets).append({**c, "breaches": breaches} if breaches else c)
    meets.sort(key=lambda c: (c["accuracy"] is None, -(c["accuracy"] or 0.0), _p99_key(c), c["model"]))
    for c in excluded:
        c["worst_ratio"] = _worst(c["breaches"])
    excluded.sort(key=lambda c: (c["worst_ratio"], _p99_key(c), c["model"]))
    closest = None
    if not meets and excluded and math.isfinite(excluded[0]["worst_ratio"]):
        closest = excluded[0]
    if not meets and excluded and closest is None:
        notes.append("nothing came close: every model lacks a figure a budget needs (accuracy, latency or memory)")
    for c in excluded:
        if not math.isfinite(c["worst_ratio"]):
            c["worst_ratio"] = None  # JSON has no infinity
    return {"schema": SCHEMA, "target": target, "store": path, "budgets": budgets, "meets": meets,
            "excluded": excluded, "closest": closest, "notes": notes}


def estimated_candidates(db, target: str, paths: tuple, measured: set[str]) -> list[dict]:
    """Files with no run on the target, as candidates from `edgeseq estimate` (marked "estimated"): p99 is the top
    of the estimated p50 range (a budget is judged against it), memory the predicted model memory."""
    if not paths:
        return []
    from edgeseq.core.fsio import sha256_file
    from edgeseq.estimate.predict import estimate_files

    out = []
    for row in estimate_files(list(paths), target, db=db):
        sha = sha256_file(row["model_path"])
        if sha in measured:
            continue  # measured on the target: its run already stands
        out.append({"model": f"{row['model']} (estimated)", "model_name": row["model"], "run_id": None,
                    "sha256": sha, "recipe": None, "accuracy": None, "form": "whole", "kind": None, "steps": None,
                    "latency_per": row["per"] if row["per"] == "step" else "sequence",
                    "p99_ms": row["p50_us_range"][1] / 1e3, "p50_ms": row["p50_us"] / 1e3,
                    "memory_mb": row["model_kb"] / 1024, "memory_basis": "model", "estimated": True,
                    "fallbacks": row["fallbacks"]})
    return out


def _p99_key(c: dict) -> float:
    return c["p99_ms"] if c["p99_ms"] is not None else math.inf


# ------------------------------------------------------------------------------------------------ text
def budgets_text(b: dict) -> str:
    parts = []
    if b["latency_ms"] is not None:
        parts.append(f"p99 <= {b['latency_ms']:g} ms")
    if b["hop_ms"] is not None:
        parts.append(f"real time at a {b['hop_ms']:g} ms hop")
    if b["memory_mb"] is not None:
        parts.append(f"model memory <= {b['memory_mb']:g} MiB")
    if b["min_accuracy"] is not None:
        parts.append(f"accuracy >= {b['min_accuracy']:g}")
    return ", ".join(parts)


def _figures(c: dict) -> str:
    acc = "acc -" if c["accuracy"] is None else f"acc {c['accuracy']:.4f}"
    p99 = "p99 -" if c["p99_ms"] is None else f"p99 {c['p99_ms']:.3g} ms/{c['latency_per']}"
    mem = "mem -" if c["memory_mb"] is None else f"mem {c['memory_mb']:.3g} MiB" + (
        "" if c["memory_basis"] == "model" else " (peak RSS)")
    return f"{acc}  {p99}  {mem}  {c['recipe'] or '-'}"


def render_text(result: dict) -> str:
    """The terminal answer: the ranking, the exclusions with reasons, what came closest."""
    lines = [f"recommend on {result['target']}: {budgets_text(result['budgets'])}"]
    meets, excluded = result["meets"], result["excluded"]
    if meets:
        lines.append(f"meets every budget ({len(meets)}), by accuracy then p99:")
        width = max(len(c["model"]) for c in meets)
        lines += [f"  {i}. {c['model']:<{width}}  {_figures(c)}  served: {c['served']}"
                  for i, c in enumerate(meets, 1)]
    else:
        lines.append("no model meets every budget")
    if excluded:
        lines.append(f"excluded ({len(excluded)}):")
        lines += [f"  {c['model']}: {'; '.join(b['text'] for b in c['breaches'])}" for c in excluded]
    closest = result["closest"]
    if closest is not None:
        worst = max(closest["breaches"], key=lambda b: b["ratio"])
        lines.append(f"closest: {closest['model']} ({_figures(closest)}), worst overshoot {worst['budget']} "
                     f"{closest['worst_ratio']:.2f}x the budget: {'; '.join(b['text'] for b in closest['breaches'])}")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"
