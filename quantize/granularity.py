"""The weight-scale granularity rule of `--granularity auto`: per-channel or per-tensor, decided on validation.

On a graph that is not unrolled, the calibrated recipes (`Recipe.compares_granularity`) are converted both ways and
validated on the same inputs; the smaller per-tensor file is kept only when it loses nothing against per-channel.
`edgeseq convert --help` and the README's granularity block are generated from this module and from `Recipe`
(scripts/readme_tables.py; tests/test_one_source.py fails when they drift).
"""

from __future__ import annotations

from edgeseq.core.finite import at_least, within
from edgeseq.quantize.recipes import MODES, Recipe

ACCURACY_TOL = 0.001  # 0.1 accuracy point
MSE_TOL_REL = 0.02  # 2 % relative
AGREEMENT_TOL = 0.005  # 0.5 point of top-1 agreement with Keras
DIFF_TOL_REL = 0.02  # 2 % relative mean |diff| against Keras


def _pt(fraction: float) -> str:
    return f"{fraction * 100:g} pt"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g} %"


GRANULARITY_RULE = (
    "auto converts per-channel and per-tensor and keeps per-tensor when that file is smaller, passes parity, and "
    "either per-channel failed parity or per-tensor is no worse on the validation inputs: with labels, accuracy at "
    f"most {_pt(ACCURACY_TOL)} lower (classification) or MSE at most {_pct(MSE_TOL_REL)} higher (regression) than "
    "per-channel's or than the float model's own (a per-channel file that beats the float model it quantizes by a "
    "sample or two is not a reason to keep the larger file); without labels, top-1 agreement with Keras at most "
    f"{_pt(AGREEMENT_TOL)} lower (classifiers) or mean |diff| against Keras at most {_pct(DIFF_TOL_REL)} higher. "
    "Otherwise per-channel."
)


def auto_granularity_summary() -> str:
    """What `--granularity auto` does, per graph and recipe, read off `Recipe.per_channel_for` and
    `Recipe.compares_granularity` (the methods the converter asks)."""
    unrolled_tensor = [m for m in MODES if not Recipe(m).per_channel_for("unroll")]
    compared = [m for m in MODES if Recipe(m).compares_granularity("loop")]
    channel = [m for m in MODES if m not in compared and Recipe(m).per_channel_for("loop")]
    parts = []
    if unrolled_tensor:
        every = unrolled_tensor == list(MODES)
        parts.append(f"per tensor on unrolled graphs{'' if every else ' for ' + '/'.join(unrolled_tensor)}")
    if compared:
        parts.append(f"elsewhere {'/'.join(compared)} convert both and keep per tensor only when it is smaller, "
                     f"passes parity and is no worse (accuracy -{_pt(ACCURACY_TOL)}, MSE +{_pct(MSE_TOL_REL)}, "
                     f"top-1 agreement -{_pt(AGREEMENT_TOL)}, mean |diff| +{_pct(DIFF_TOL_REL)})")
    if channel:
        parts.append(f"{'/'.join(channel)} per channel")
    return "; ".join(parts)


def granularity_figure(validation: dict) -> tuple[str, float, bool]:
    """The figure the rule compares: (name, value, higher is better)."""
    tm = validation.get("tflite_metrics") or {}
    if "accuracy" in tm:
        return "accuracy", float(tm["accuracy"]), True
    if "mse" in tm:
        return "mse", float(tm["mse"]), False
    if "top1_agreement" in validation:
        return "top1_agreement", float(validation["top1_agreement"]), True
    return "mean_abs_diff", float(validation["mean_abs_diff"]), False


def _float_figure(validation: dict, name: str) -> float | None:
    """The float (Keras) model's own accuracy or MSE on the same inputs, where validation measured it."""
    value = (validation.get("keras_metrics") or {}).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def prefer_per_tensor(per_channel: dict, per_tensor: dict, channel_bytes: int, tensor_bytes: int) -> tuple[bool, str]:
    """GRANULARITY_RULE on two validation results: (keep per-tensor?, why)."""
    if tensor_bytes >= channel_bytes:
        return False, f"per-tensor is not smaller ({tensor_bytes} >= {channel_bytes} bytes)"
    if not per_tensor.get("passed"):
        return False, f"per-tensor failed parity ({'; '.join(per_tensor.get('failures') or ['not validated'])})"
    if not per_channel.get("passed"):
        return True, "per-channel failed parity, per-tensor passed"
    name, pc, higher = granularity_figure(per_channel)
    _, pt, _ = granularity_figure(per_tensor)
    ref = _float_figure(per_tensor, name) if name in ("accuracy", "mse") else None
    # the bar: per-channel's figure, or the float model's where that is the easier one (per-channel above float)
    base = pc if ref is None else (min(pc, ref) if higher else max(pc, ref))
    if name == "accuracy":
        limit = base - ACCURACY_TOL
    elif name == "top1_agreement":
        limit = base - AGREEMENT_TOL
    else:
        limit = base * (1 + (MSE_TOL_REL if name == "mse" else DIFF_TOL_REL))
    ok = at_least(pt, limit) if higher else within(pt, limit)  # a NaN figure never wins
    figures = f"{name} {pt:.4g} per-tensor vs {pc:.4g} per-channel"
    if ref is not None:
        figures += f", {ref:.4g} float"
    figures += f", limit {limit:.4g}"
    saved = f"{channel_bytes - tensor_bytes} bytes smaller"
    if ok:
        return True, f"per-tensor passed parity and is no worse ({figures}); {saved}"
    return False, f"per-tensor is worse ({figures}) although {saved}"
