"""The textbook claims behind "RNN or Transformer?", each set against what a sweep measured on this device.

    claims = textbook_claims(rows)        # rows: sweep cells, as `edgeseq.sweep.scaling` reads them
    md = claims_markdown(claims)          # "## The textbook claims, measured"

Each claim says what the literature expects, what was measured (exponents with their 95% CIs, lengths, target,
recipe), whether it holds here (True / False, None when nothing measured it) under a rule stated with it, and a
verdict in words. A claim measured several times (targets, recipes, sizes) holds only when every measurement
supports it; the verdict names the ones that do not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgeseq.models.config import RECURRENT_ARCHS
from edgeseq.models.streamkind import StreamKind
from edgeseq.sweep.scaling import as_number, exponent_text, scaling_fits

COST_SWEEP = "edgeseq sweep --arch gru,transformer-causal --seq-len 16,32,...,2048 --mode cost"
ADDING_SWEEP = "edgeseq sweep --dataset adding --mode full --arch gru,transformer --seq-len 50,200,400"
LOWER_IS_BETTER = ("mse", "mae", "rmse", "loss", "error")
MAX_LISTED = 4


def is_recurrent(arch: object) -> bool:
    return str(arch) in RECURRENT_ARCHS


def is_attention(arch: object) -> bool:
    return str(arch).startswith("transformer")


def subject(fit: dict) -> str:
    """'GRU small', 'causal Transformer small'."""
    arch = str(fit["arch"])
    name = arch.upper() if is_recurrent(arch) else "causal Transformer" if arch == "transformer-causal" \
        else "Transformer" if arch == "transformer" else arch
    return f"{name} {fit['size']}"


def _where(fit: dict) -> str:
    return f"on {fit['target']} {fit['recipe']}"


def _grows(fit: dict, what: str, key: str) -> str:
    f = fit[key]
    return (f"{subject(fit)} {what} grows as n^{exponent_text(f)} over n = {f['lengths'][0]}..{f['lengths'][-1]} "
            f"{_where(fit)}")


# ------------------------------------------------------------------------------------------------ judgements
# each: fit -> (holds, words); words say why when it does not
def _linear_time(fit: dict) -> tuple[bool, str]:
    f = fit["latency"]
    lo, hi = f["ci95"]
    text = _grows(fit, "latency", "latency")
    if hi < 0.8:
        return False, text + ": slower than linear, the fixed per-invoke cost still weighs at these lengths"
    if lo > 1.2:
        return False, text + ": faster than linear"
    return True, text


def _quadratic_time(fit: dict) -> tuple[bool, str]:
    f = fit["latency"]
    k, (lo, hi) = f["exponent"], f["ci95"]
    text = _grows(fit, "latency", "latency")
    if not (hi > 1.2 and k > 1.1):
        return False, text + ": the linear parts (projections, feed-forward) dominate at these lengths"
    if k >= 1.8 or lo <= 2.0 <= hi:
        return True, text + ": quadratic"
    return True, text + (": the quadratic term is visible, but the linear parts (projections, feed-forward) still "
                         "weigh at these lengths")


def _flat(f: dict | None) -> bool | None:
    if f is None:
        return None
    lo, hi = f["ci95"]
    return abs(f["exponent"]) <= 0.1 or lo <= 0.0 <= hi


def _constant_memory(fit: dict) -> tuple[bool, str]:
    parts, oks = [], []
    for key, what in (("state", "state"), ("memory", "model memory")):
        ok = _flat(fit[key])
        if ok is not None:
            oks.append(ok)
            parts.append(f"{what} n^{exponent_text(fit[key])}")
    f = fit["state"] or fit["memory"]
    return all(oks), (f"{subject(fit)} stream: {', '.join(parts)} over n = {f['lengths'][0]}..{f['lengths'][-1]} "
                      f"{_where(fit)}")


def _linear_state(fit: dict) -> tuple[bool, str]:
    lo, hi = fit["state"]["ci95"]
    text = _grows(fit, "KV-cache state", "state")
    return lo <= 1.1 and hi >= 0.9, text


CLAIMS = [
    # claim, expected, rule, which fits measure it, judgement, the sweep that would measure it
    ("RNN time is O(n)", "exponent 1",
     "holds when the latency exponent's 95% CI overlaps 0.8..1.2",
     lambda f: is_recurrent(f["arch"]) and f["form"] == "whole" and f["latency"] is not None,
     _linear_time, COST_SWEEP),
    ("attention time is O(n^2)", "exponent up to 2",
     "holds when the latency exponent exceeds 1.1 and its 95% CI reaches above 1.2 (growth clearly faster than "
     "linear; 2 is the pure quadratic)",
     lambda f: is_attention(f["arch"]) and f["form"] == "whole" and f["latency"] is not None,
     _quadratic_time, COST_SWEEP),
    ("RNN streaming memory is constant", "exponent 0",
     "holds when the state and model-memory exponents are within 0.1 of 0 or their 95% CI contains 0",
     lambda f: f["kind"] == StreamKind.RECURRENT_STEP.value and (f["state"] or f["memory"]) is not None,
     _constant_memory, COST_SWEEP + " --stream"),
    ("KV-cache memory is O(n)", "exponent 1",
     "holds when the state-bytes exponent's 95% CI overlaps 0.9..1.1",
     lambda f: f["kind"] == StreamKind.KV_CACHE.value and f["state"] is not None,
     _linear_state, COST_SWEEP + " --stream"),
]


def _measured_claim(claim: str, expected: str, rule: str, fits: list[dict],
                    judge: Callable[[dict], tuple[bool, str]], command: str) -> dict:
    if not fits:
        return {"claim": claim, "expected": expected, "rule": rule, "measured": "not measured", "holds": None,
                "verdict": f"not measured: run `{command}`", "details": []}
    judged = [(fit, *judge(fit)) for fit in fits]
    details = [{"target": f["target"], "recipe": f["recipe"], "arch": f["arch"], "size": f["size"], "holds": ok,
                "text": text} for f, ok, text in judged]
    failing = [d for d in details if not d["holds"]]
    shown = failing[:MAX_LISTED] if failing else details[:MAX_LISTED]
    more = len(failing or details) - len(shown)
    listed = "; ".join(d["text"] for d in shown) + (f"; and {more} more" if more > 0 else "")
    if not failing:
        verdict = f"holds: {listed}" if len(details) == 1 else f"holds in all {len(details)} measurements: {listed}"
    elif len(failing) == len(details):
        verdict = f"does not hold here: {listed}"
    else:
        verdict = f"holds in {len(details) - len(failing)} of {len(details)} measurements; not for {listed}"
    measured = "; ".join(d["text"] for d in details[:MAX_LISTED])
    if len(details) > MAX_LISTED:
        measured += f"; and {len(details) - MAX_LISTED} more"
    return {"claim": claim, "expected": expected, "rule": rule, "measured": measured, "holds": not failing,
            "verdict": verdict, "details": details}


# ------------------------------------------------------------------------------------------------ adding problem
def _adding_claim(rows: list[dict]) -> dict:
    claim = ("attention links distant steps directly, so it learns long-range dependencies an RNN cannot "
             "(the adding problem)")
    expected = "Transformer's error well below the RNN's at long n"
    rule = ("holds when, at some length both were trained at (full-mode sweeps of an adding data set), the best "
            "Transformer is clearly better than every recurrent model: at most half its error, or 5 points more "
            "accurate; each length is reported")
    scored: dict[tuple[str, int], tuple[float, str, dict]] = {}  # (family, n) -> best (score, metric name, row)
    lower = None
    for r in rows:
        if r.get("mode") != "full" or not str(r.get("dataset") or "").startswith("adding"):
            continue
        n = as_number(r.get("seq_len"))
        metric, name = as_number(r.get("metric")), str(r.get("metric_name") or "")
        if metric is None:
            metric, name = as_number(r.get("accuracy")), "accuracy"
        family = "attention" if is_attention(r.get("arch")) else "recurrent" if is_recurrent(r.get("arch")) else None
        if metric is None or n is None or family is None:
            continue
        low = name.lower() in LOWER_IS_BETTER
        lower = low if lower is None else lower
        if low != lower:
            continue  # one kind of score per comparison
        score = metric if low else -metric
        if (family, int(n)) not in scored or score < scored[(family, int(n))][0]:
            scored[(family, int(n))] = (score, name, r)
    common = sorted({n for fam, n in scored if fam == "attention"} & {n for fam, n in scored if fam == "recurrent"})
    if not common:
        return {"claim": claim, "expected": expected, "rule": rule, "measured": "not measured", "holds": None,
                "verdict": f"not measured: run `{ADDING_SWEEP}`", "details": []}

    def clearly_better(a: float, b: float) -> bool:  # scores: lower is better (accuracy negated)
        return a <= 0.5 * b if lower else a <= b - 0.05

    details, parts = [], []
    for n in common:
        (s_att, name, r_att), (s_rnn, _, r_rnn) = scored[("attention", n)], scored[("recurrent", n)]
        att, rnn = abs(s_att), abs(s_rnn)
        if clearly_better(s_att, s_rnn):
            how = "Transformer clearly better"
        elif clearly_better(s_rnn, s_att):
            how = "RNN clearly better"
        else:
            how = "neither clearly better"
        details.append({"n": n, "metric_name": name, "transformer": att, "recurrent": rnn, "verdict": how,
                        "transformer_model": f"{r_att.get('arch')} {r_att.get('size')}",
                        "recurrent_model": f"{r_rnn.get('arch')} {r_rnn.get('size')}"})
        parts.append(f"n = {n}: Transformer {att:.4g} vs {r_rnn.get('arch')} {rnn:.4g} ({how})")
    name = details[0]["metric_name"]
    measured = (f"{name} ({'lower' if lower else 'higher'} is better; {scored[('attention', common[0])][2].get('dataset')}): "
                + "; ".join(parts))
    holds = any(d["verdict"] == "Transformer clearly better" for d in details)
    verdict = (f"holds: {measured}" if holds else
               f"does not hold here: {measured}; no length where attention was clearly better")
    return {"claim": claim, "expected": expected, "rule": rule, "measured": measured, "holds": holds,
            "verdict": verdict, "details": details}


# ------------------------------------------------------------------------------------------------ public
def textbook_claims(rows: Iterable[dict]) -> list[dict]:
    """The five claims, each {claim, expected, rule, measured, holds (True/False/None), verdict, details}."""
    rows = list(rows)
    fits = scaling_fits(rows)
    out = [_measured_claim(claim, expected, rule, [f for f in fits if pick(f)], judge, command)
           for claim, expected, rule, pick, judge, command in CLAIMS]
    return [*out, _adding_claim(rows)]


def claims_markdown(claims: list[dict]) -> str:
    """'## The textbook claims, measured': one row per claim (claim, expected, measured, holds?), then verdicts."""
    holds = {True: "yes", False: "no", None: "not measured"}
    lines = ["## The textbook claims, measured", "", "| claim | expected | measured | holds? |", "|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['expected']} | {c['measured']} | {holds[c['holds']]} |" for c in claims]
    lines += ["", *(f"- **{c['claim']}**: {c['verdict']} (rule: {c['rule']})." for c in claims), ""]
    return "\n".join(lines)
