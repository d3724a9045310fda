"""Which RNN routes a recipe tries, in which order, and the words the manifest uses for the choice.

Routes (how the recurrence reaches the .tflite):
- loop:   the Keras layer's own WHILE loop, batch 1; calibrated recipes go through the calibrator workaround
          (quantize/while_calibration.py). Size does not depend on T.
- fused:  each LSTM becomes one UNIDIRECTIONAL_SEQUENCE_LSTM op (quantize/fused_lstm.py); other RNN layers loop.
          int8 only: the float kernels keep state across invokes. Size does not depend on T.
- unroll: one copy of the cell's ops per time step; always quantizes, grows with T.

`auto` tries them in that order (AUTO_WHY says why) and keeps the first that converts and passes parity
(quantize/convert.py); every candidate converts in its own child, so a converter crash costs only that candidate. Routes known not to work are
skipped with their reason instead of spending a conversion on them. Pure data and rules: no TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeseq.core.errors import ConversionError, EdgeseqError

ROUTES = ("loop", "fused", "unroll")  # auto's order for int8 (why loop before fused: AUTO_WHY)
# What auto tries for each recipe is what `plan` returns, and every statement of it (`edgeseq convert --help`, the
# capability table, the README's routes table) is generated from `plan` by the functions at the end of this module.
AUTO_WHY = (
    "Loop before fused: LSTM small on JapaneseVowels, the fused int8 kernel was 17x slower on LiteRT x86 (1.6 ms vs "
    "94 us at T=64) and 2.7-3.5 accuracy points lower, for a file 7 % smaller (benchmarks/int8_rnn.py)."
)
ROUTE_WORDS = {"loop": "the WHILE loop", "fused": "the fused LSTM op", "unroll": "unrolling"}
FLOAT_FUSED_STATE = ("TFLite's float and hybrid fused LSTM kernels carry h/c from one invoke to the next "
                     "(tensorflow/tensorflow#47813), so a file would answer differently after its first sequence")
# Declared, measured on TF 2.21 (see the module docstrings named): auto does not spend a conversion on these.
KNOWN_REFUSALS = {
    ("fused", "int16x8"): "TF 2.21's quantizer: \"Quantization to 16x8-bit not yet supported for op: "
                          "'UNIDIRECTIONAL_SEQUENCE_LSTM'\"",
    ("loop", "int16x8"): "TF 2.21's 16x8 quantizer does not quantize across a WHILE loop (\"Max and min for dynamic "
                         "tensors should be recorded during calibration ... while_cond_arg0\")",
}


@dataclass(frozen=True)
class RoutePlan:
    routes: tuple[str, ...]  # to try, in order
    skipped: dict[str, str] = field(default_factory=dict)  # route -> why auto does not try it
    forced: bool = False


def plan(mode: str, strategy: str, recurrent: bool, survey: dict | None) -> RoutePlan:
    """The routes for recipe `mode` with --rnn-strategy `strategy`. `survey`: fused_lstm.survey() of the model."""
    if not recurrent:
        return RoutePlan(("none",))
    survey = survey or {}
    fusable = bool(survey.get("lstm_fusable"))
    if strategy != "auto":
        if strategy == "fused" and mode != "int8":
            raise ConversionError(f"--rnn-strategy fused is int8 only, not {mode}: "
                                  + KNOWN_REFUSALS.get(("fused", mode), FLOAT_FUSED_STATE),
                                  "use --rnn-strategy loop (or auto)")
        if strategy == "fused" and not fusable:
            why = "; ".join(survey.get("not_fusable", {}).values()) or "the model has no LSTM layer"
            raise ConversionError(f"--rnn-strategy fused: no LSTM of this model can be fused ({why})",
                                  "use --rnn-strategy auto, loop or unroll")
        return RoutePlan((strategy,), forced=True)
    if mode not in ("int8", "int16x8"):
        return RoutePlan(("loop",))
    skipped: dict[str, str] = {}
    routes = []
    for route in ROUTES:
        if route == "fused" and not fusable:
            skipped[route] = ("; ".join(survey.get("not_fusable", {}).values())
                              or "no LSTM layer (GRU and SimpleRNN have no fused TFLite op)")
        elif (route, mode) in KNOWN_REFUSALS:
            skipped[route] = KNOWN_REFUSALS[(route, mode)]
        else:
            routes.append(route)
    return RoutePlan(tuple(routes), skipped)


def reason(route_plan: RoutePlan, chosen: str, attempts: list[dict], validated: bool) -> str:
    """One sentence for route.rnn_reason: what was kept and why the better routes were not."""
    if chosen == "none":
        return "no recurrent layer"
    if route_plan.forced:
        return f"--rnn-strategy {chosen}"
    if route_plan.routes == ("loop",) and not route_plan.skipped:
        return "auto, float recipe: the Keras WHILE loop (converts directly, size constant in T)"
    passed = "passed parity" if validated else "converted (not validated)"
    parts = [f"auto kept {chosen} (order {' > '.join(route_plan.routes)}): it {passed}"]
    for a in attempts:
        if a["route"] != chosen and a["outcome"] != "kept":
            parts.append(f"{a['route']} {a['outcome']} ({a['why'][:200]})")
    for route, why in route_plan.skipped.items():
        parts.append(f"{route} not tried ({why})")
    return "; ".join(parts)


def choose(route_plan: RoutePlan, attempt: Callable[[str], Any], label: str) -> tuple[Any, str, dict]:
    """Run `attempt(route)` (convert + validate one candidate; raises EdgeseqError when it cannot convert) for each
    route of the plan in order and keep the first that converts and passes parity, or converts when it is not
    validated. A failed route is recorded with its reason and the next is tried. When all converted candidates
    fail parity, the first of them is kept (strict mode then refuses it, --no-strict keeps it). A single-route plan
    raises its own error unchanged; a longer one that converts nothing raises one error naming every route.
    Returns (candidate, route, manifest fields: rnn, rnn_reason, rnn_candidates)."""
    attempts: list[dict] = []
    fallback: tuple[Any, str] | None = None
    last_error: EdgeseqError | None = None
    for i, route in enumerate(route_plan.routes):
        more = i + 1 < len(route_plan.routes)
        started = time.perf_counter()
        try:
            cand = attempt(route)
        except EdgeseqError as exc:
            if len(route_plan.routes) == 1:
                raise
            attempts.append({"route": route, "outcome": "failed to convert", "why": exc.one_line()[:300],
                             "seconds": round(time.perf_counter() - started, 3)})
            last_error = exc
            continue
        record = {"route": route, "bytes": len(cand.data), "seconds": round(cand.convert_s + cand.validate_s, 3)}
        if cand.validation.get("passed") is False and (more or fallback is not None):
            why = "; ".join(cand.validation.get("failures") or [])[:300]
            attempts.append(record | {"outcome": "failed parity", "why": why})
            fallback = fallback or (cand, route)
            continue
        attempts.append(record | {"outcome": "kept"})
        break
    else:
        if fallback is None:
            tried = "; ".join(f"{a['route']}: {a['why']}" for a in attempts)
            raise ConversionError(f"{label}: no RNN route converted ({tried})",
                                  getattr(last_error, "hint", None) or "try another recipe")
        cand, route = fallback
        attempts = [a | {"outcome": "kept (failed parity)"} if a["route"] == route else a for a in attempts]
    info: dict[str, Any] = {"rnn": route, "rnn_reason": reason(route_plan, route, attempts,
                                                                not cand.validation.get("skipped"))}
    if len(route_plan.routes) > 1 or route_plan.skipped:
        info["rnn_candidates"] = attempts + [{"route": r, "outcome": "not tried", "why": why}
                                             for r, why in route_plan.skipped.items()]
    return cand, route, info


# ---------------------------------------------------------------- the rule in words, generated from `plan`
def auto_plans() -> dict[str, tuple[RoutePlan, RoutePlan]]:
    """Recipe mode -> auto's plan for a recurrent model (with a fusable LSTM, without one)."""
    from edgeseq.quantize.recipes import MODES  # recipes imports this module

    return {mode: (plan(mode, "auto", True, {"lstm_fusable": True}),
                   plan(mode, "auto", True, {"lstm_fusable": False, "not_fusable": {"x": "no fusable LSTM"}}))
            for mode in MODES}


def auto_order(mode: str, words: dict[str, str] | None = None) -> str:
    """auto's routes for recipe `mode` in order, e.g. 'loop, then fused (when an LSTM can be fused), then unroll'."""
    fusable, not_fusable = auto_plans()[mode]
    words = words or {}
    return ", then ".join(words.get(r, r) + ("" if r in not_fusable.routes else " (when an LSTM can be fused)")
                          for r in fusable.routes)


def auto_rule_summary() -> str:
    """One line for `--rnn-strategy` help: what auto tries for each recipe, in order."""
    plans = auto_plans()
    groups: dict[tuple[str, ...], list[str]] = {}
    for mode, (fusable, _) in plans.items():
        groups.setdefault(fusable.routes, []).append(mode)
    parts = []
    for routes, modes in groups.items():
        text = f"{'/'.join(modes)}: {auto_order(modes[0], ROUTE_WORDS)}"
        if len(routes) > 1:
            text += ", keeping the first that converts and passes parity"
        skipped = plans[modes[0]][0].skipped
        if skipped:
            text += f" ({' and '.join(skipped)}: known refusals)"
        parts.append(text)
    return "auto: " + "; ".join(parts) + ". Manifest: route.rnn, route.rnn_reason."
