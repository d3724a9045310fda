"""The report's first section, "What to ship": per target, the answer before the data.

    answer = ship_answer(db, target=None, budgets={"latency_ms": 5, ...})   # JSON-ready, one entry per target
    text = answer_markdown(answer)                                          # "## What to ship" (md and table)
    page = answer_html(answer)                                              # the same, first on the HTML page

With budgets (report's --latency-budget-ms, --memory-budget-mb, --hop-ms, --min-accuracy, as on `recommend`), each
target's answer is what `edgeseq.recommend.recommend` picks: the first model meeting every budget, how many others
also do, or, when none does, the closest and by how much it misses. Without budgets it is the Pareto set of the
target's models (nothing else both faster, smaller and at least as accurate; latency is the p99 per invoke, memory
the model's own, as recommend reads them, whole-sequence and per-step runs apart), one sentence each. Then, from the
sweeps stored for the target: the crossover lengths measured, and which textbook claims held.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from edgeseq.core.errors import StoreError
from edgeseq.recommend import budgets_text, candidate, check_budgets, latest_runs, recommend
from edgeseq.store.results import ResultsStore
from edgeseq.streams.profile import UnreadableStreamRun

BUDGET_KEYS = ("latency_ms", "memory_mb", "hop_ms", "min_accuracy")


def _given(budgets: dict | None) -> dict | None:
    """The budgets checked as recommend checks them, or None when none is given."""
    if not budgets or all(budgets.get(k) is None for k in BUDGET_KEYS):
        return None
    b = {k: budgets.get(k) for k in BUDGET_KEYS}
    return check_budgets(b["latency_ms"], b["memory_mb"], b["hop_ms"], b["min_accuracy"])


def _figs(c: dict) -> str:
    parts = []
    if c.get("p99_ms") is not None:
        parts.append(f"p99 {c['p99_ms']:.3g} ms per {c['latency_per']}")
    if c.get("memory_mb") is not None:
        parts.append(f"{c['memory_mb']:.3g} MiB" + (" model memory" if c.get("memory_basis") == "model"
                                                   else " peak RSS"))
    parts.append("accuracy unknown" if c.get("accuracy") is None else f"accuracy {c['accuracy']:.3f}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------------ Pareto
TOLERANCE = 0.05  # p99 and memory within 5 % of each other count as equal: run-to-run noise, not a trade-off
ACCURACY_TOLERANCE = 0.001


def _dominates(a: dict, b: dict) -> bool:
    """a is no worse than b on p99, memory and accuracy (within the tolerances), and clearly better on one (a
    missing figure is the worst)."""
    inf = math.inf
    lower = [(a["p99_ms"], b["p99_ms"])] + [(
        a["memory_mb"] if a["memory_mb"] is not None else inf, b["memory_mb"] if b["memory_mb"] is not None else inf)]
    acc_a = a["accuracy"] if a["accuracy"] is not None else -inf
    acc_b = b["accuracy"] if b["accuracy"] is not None else -inf
    no_worse = all(x <= y * (1 + TOLERANCE) or x == y for x, y in lower) and acc_a >= acc_b - ACCURACY_TOLERANCE
    better = any(x < y * (1 - TOLERANCE) for x, y in lower) or acc_a > acc_b + ACCURACY_TOLERANCE
    return no_worse and better


def pareto_sentences(cands: list[dict]) -> list[dict]:
    """The Pareto set of `cands` (those with a p99), per latency basis (sequence, step), fastest first; each with
    one sentence saying what it is best at or what it trades."""
    out = []
    for per in ("sequence", "step"):
        group = [c for c in cands if c["latency_per"] == per and c["p99_ms"] is not None]
        front = [c for c in group if not any(_dominates(o, c) for o in group)]
        front.sort(key=lambda c: (c["p99_ms"], c["model"]))
        if not front:
            continue
        fastest = front[0]
        mems = [c["memory_mb"] for c in front if c["memory_mb"] is not None]
        accs = [c["accuracy"] for c in front if c["accuracy"] is not None]
        for c in front:
            best = []
            if c is fastest:
                best.append(f"the fastest per {per}")
            if mems and c["memory_mb"] == min(mems):
                best.append("the smallest")
            if accs and c["accuracy"] == max(accs):
                best.append("the most accurate")
            if best:
                why = " and ".join(best)
            else:
                slower = c["p99_ms"] / fastest["p99_ms"]
                why = f"a trade-off: {slower:.2f}x the fastest's p99 for " + (
                    "higher accuracy" if c["accuracy"] is not None and (fastest["accuracy"] is None
                                                                        or c["accuracy"] > fastest["accuracy"])
                    else "less memory")
            out.append({**c, "why": why, "sentence": f"{c['model']}: {why} ({_figs(c)})."})
    return out


# ------------------------------------------------------------------------------------------------ per target
def _with_budgets(db, target: str, budgets: dict) -> dict:
    result = recommend(db, target, latency_budget_ms=budgets["latency_ms"], memory_budget_mb=budgets["memory_mb"],
                       hop_ms=budgets["hop_ms"], min_accuracy=budgets["min_accuracy"])
    meets, closest = result["meets"], result["closest"]
    if meets:
        pick = meets[0]
        also = f" {len(meets) - 1} other model{'s' if len(meets) != 2 else ''} also meet{'s' if len(meets) == 2 else ''}" \
               " every budget." if len(meets) > 1 else " No other model meets every budget."
        text = f"Ship {pick['model']} ({_figs(pick)}; served: {pick['served']}).{also}"
    elif closest is not None:
        pick = None
        text = (f"No model meets every budget; the closest is {closest['model']}, worst overshoot "
                f"{closest['worst_ratio']:.2f}x ({'; '.join(b['text'] for b in closest['breaches'])}).")
    else:
        pick = None
        text = "No model meets every budget, and none has every figure the budgets need."
    return {"pick": pick, "closest": closest, "meets": len(meets), "sentence": text, "notes": result["notes"]}


def _sweep_facts(db, target: str) -> tuple[list[dict], list[dict]]:
    """(crossovers measured on target, claims that held on it), from the stored sweep cells."""
    from edgeseq.sweep.claims import textbook_claims
    from edgeseq.sweep.rows import sweep_rows
    from edgeseq.sweep.scaling import crossovers

    try:
        rows = sweep_rows(db, target)
    except StoreError:
        return [], []
    if not rows:
        return [], []
    xs = []
    for x in crossovers(rows):
        if x["crossover_n"] is None:
            continue
        where = f"{x['recipe']} {x['size']}, {x['form']}"
        xs.append({**x, "sentence": f"{x['cheaper_below']} is cheaper below n ≈ {x['crossover_n']:.0f}, "
                                    f"{x['cheaper_above']} above ({where}, p50 per invoke)."})
    held = [{"claim": c["claim"], "measured": c["measured"]} for c in textbook_claims(rows) if c.get("holds")]
    return xs, held


def ship_answer(db: str | Path | None, target: str | None = None, budgets: dict | None = None) -> list[dict]:
    """Per target in the store (or just `target`): {target, budgets, answer (sentence), pick / closest with
    budgets, pareto without, crossovers, claims_held}."""
    given = _given(budgets)
    with ResultsStore(db, create=False) as store:
        runs = store.runs(target=target)
    out = []
    for name in sorted({r["target"] for r in runs}):
        entry: dict = {"target": name, "budgets": given}
        if given is not None:
            entry.update(_with_budgets(db, name, given))
        else:
            cands = []
            for run in latest_runs([r for r in runs if r["target"] == name]):
                try:
                    cands.append(candidate(run))
                except UnreadableStreamRun:
                    continue
            front = pareto_sentences(cands)
            entry["pareto"] = front
            entry["sentence"] = (f"No budget given: {len(front)} model{'s are' if len(front) != 1 else ' is'} "
                                 "Pareto-optimal (nothing else both faster, smaller and at least as accurate); "
                                 "pass --latency-budget-ms, --memory-budget-mb, --hop-ms or --min-accuracy for "
                                 "one pick.") if front else "No run has a p99 to compare."
        entry["crossovers"], entry["claims_held"] = _sweep_facts(db, name)
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------------ rendering
def _lines(entry: dict) -> list[str]:
    lines = [entry["sentence"]]
    if entry.get("budgets"):
        lines[0] = f"Budgets: {budgets_text(entry['budgets'])}. " + lines[0]
    lines += [f"- {p['sentence']}" for p in entry.get("pareto") or ()]
    lines += [f"- Crossover: {x['sentence']}" for x in entry["crossovers"]]
    if entry["claims_held"]:
        lines.append("- Claims that held here: " + "; ".join(c["claim"] for c in entry["claims_held"]) + ".")
    return lines


def answer_markdown(answer: list[dict]) -> str:
    """'## What to ship' with one '### target' per target (the text report prints the same lines)."""
    if not answer:
        return ""
    out = ["## What to ship", ""]
    for entry in answer:
        out += [f"### {entry['target']}", ""] + _lines(entry) + [""]
    return "\n".join(out) + "\n"


def answer_html(answer: list[dict]) -> str:
    """The section as HTML, id 'answer': the first thing after the page's title."""
    if not answer:
        return ""
    esc = html.escape
    out = ["<section id='answer'><h2>What to ship</h2>"]
    for entry in answer:
        lines = _lines(entry)
        out.append(f"<h3>{esc(entry['target'])}</h3><p class='answer'><b>{esc(lines[0])}</b></p>")
        bullets = [line[2:] for line in lines[1:]]
        if bullets:
            out.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in bullets) + "</ul>")
    out.append("</section>")
    return "\n".join(out)
