"""How cost grows with the sequence length, from a sweep's measured cells: power-law fits, crossovers, per-step cost.

    fits = scaling_fits(rows)             # per target x recipe x arch x size x form: latency, memory, state vs n
    xs = crossovers(rows)                 # where one architecture becomes cheaper than another
    steps = streaming_costs(rows, 20.0)   # per-step cost of serving a stream, and its real-time factor at the hop

A row is one measured sweep cell: `target, device, arch, size, recipe, form` ("whole": the whole sequence per invoke,
"stream": one step per invoke), `kind` (None, or a `StreamKind` value for stream cells), `seq_len` (the length, or
the stream's context), `p50_us, p99_us` (per invoke), `model_peak_kb`, `state_bytes`, `accuracy`, `dataset`, `mode`,
optionally `metric_name, metric`. Missing figures are None and are left out of the fits that need them.

Why fit only the upper lengths: a fixed per-invoke cost (interpreter dispatch, tensor copies) dominates short
sequences and flattens the log-log curve there, so y = c * n^k is fitted over n >= sqrt(n_min * n_max) (at least
the three longest lengths); the fit over every length is kept beside it (`exponent_all`) for reference. The 95%
interval is the t distribution's on the slope's standard error. Pure: numpy only, no store access.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from edgeseq.core.errors import check_finite
from edgeseq.core.finite import is_number, within
from edgeseq.models.streamkind import StreamKind

# two-sided 95% quantiles of Student's t, df = 1..30 (beyond: the Cornish-Fisher expansion, within 1e-4)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964
GROUP_KEYS = ("target", "recipe", "arch", "size", "form", "kind")


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def as_number(value: object) -> float | None:
    """A finite float, or None for anything else (None, NaN, a bool, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return float(value) if is_number(value) else None  # NaN/inf never enter a fit (edgeseq.core.finite)


def _loglog(ns: np.ndarray, ys: np.ndarray) -> dict | None:
    """Least squares of log y on log n: slope, intercept, r2, the slope's standard error (None with < 3 points)."""
    x, y = np.log(ns), np.log(ys)
    m = len(x)
    sxx = float(np.sum((x - x.mean()) ** 2))
    if m < 3 or sxx == 0:
        return None
    if np.ptp(ys) == 0:  # constant: exactly flat, exactly known (not NaN, not 1e-17 of rounding)
        return {"slope": 0.0, "intercept": float(y[0]), "r2": 1.0, "se": 0.0, "df": m - 2}
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * x.mean())
    ssr = float(np.sum((y - (intercept + slope * x)) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    return {"slope": slope, "intercept": intercept, "r2": 1.0 - ssr / sst if sst > 0 else 1.0,
            "se": math.sqrt(ssr / (m - 2) / sxx), "df": m - 2}


def fit_power_law(ns: Iterable, ys: Iterable) -> dict | None:
    """y = coefficient * n^exponent, fitted on log-log over the upper lengths (n >= sqrt(n_min * n_max), at least the
    three longest). Points with a missing, non-positive or non-finite n or y are left out; None with fewer than 3
    usable points at 3 distinct lengths. Returns exponent, ci95 [lo, hi], coefficient, r2, lengths, n_points,
    exponent_all (the fit over every usable point)."""
    pairs = sorted((n, y) for n, y in zip((as_number(v) for v in ns), (as_number(v) for v in ys), strict=True)
                   if n is not None and y is not None and n > 0 and y > 0)
    distinct = sorted({n for n, _ in pairs})
    if len(distinct) < 3:
        return None
    cut = min(math.sqrt(distinct[0] * distinct[-1]), distinct[-3])
    upper = [(n, y) for n, y in pairs if n >= cut]
    fit = _loglog(np.array([n for n, _ in upper]), np.array([y for _, y in upper]))
    every = _loglog(np.array([n for n, _ in pairs]), np.array([y for _, y in pairs]))
    if fit is None or every is None:
        return None
    half = t_quantile_975(fit["df"]) * fit["se"]
    return {
        "exponent": fit["slope"], "ci95": [fit["slope"] - half, fit["slope"] + half],
        "coefficient": math.exp(fit["intercept"]), "r2": fit["r2"], "stderr": fit["se"],
        "lengths": [_int_or_float(n) for n in sorted({n for n, _ in upper})], "n_points": len(upper),
        "exponent_all": every["slope"],
    }


def _int_or_float(n: float) -> int | float:
    return int(n) if float(n).is_integer() else n


def _kind(value: object) -> str | None:
    """A stream kind's value ("recurrent-step", "kv-cache", "window"); text kept as it is when it is not one."""
    if value is None:
        return None
    try:
        return StreamKind.parse(value).value
    except ValueError:
        return str(value)


def _kind_label(kind: str | None) -> str:
    try:
        return StreamKind.parse(kind).label
    except ValueError:
        return kind or "stream"


def _latest_by_length(members: list[dict]) -> dict[int, dict]:
    """One row per length (the last given wins: rows come oldest first)."""
    out: dict[int, dict] = {}
    for r in members:
        n = as_number(r.get("seq_len"))
        if n is not None and n > 0:
            out[int(n)] = r
    return dict(sorted(out.items()))


def _groups(rows: Iterable[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(_kind(r.get(k)) if k == "kind" else r.get(k) for k in keys), []).append(r)
    return out


# ------------------------------------------------------------------------------------------------ fits
def scaling_fits(rows: Iterable[dict]) -> list[dict]:
    """Per (target, recipe, arch, size, form, kind): `latency` (p50_us vs n), `memory` (model_peak_kb vs n) and, for
    stream cells, `state` (state_bytes vs n) fits (each a `fit_power_law` dict or None), with `device` and the
    measured `points` ([{n, p50_us, p99_us, model_peak_kb, state_bytes}], by n)."""
    out = []
    for key, members in _groups(rows, GROUP_KEYS).items():
        by_n = _latest_by_length(members)
        points = [{"n": n, **{k: as_number(r.get(k)) for k in ("p50_us", "p99_us", "model_peak_kb", "state_bytes")}}
                  for n, r in by_n.items()]
        ns = [p["n"] for p in points]
        fit = dict(zip(GROUP_KEYS, key, strict=True))
        out.append({
            **fit, "device": next((r.get("device") for r in members if r.get("device")), None),
            "latency": fit_power_law(ns, [p["p50_us"] for p in points]),
            "memory": fit_power_law(ns, [p["model_peak_kb"] for p in points]),
            "state": fit_power_law(ns, [p["state_bytes"] for p in points]) if fit["form"] == "stream" else None,
            "points": points,
        })
    return sorted(out, key=lambda f: tuple(str(f[k] or "") for k in GROUP_KEYS))


# ------------------------------------------------------------------------------------------------ crossovers
def crossovers(rows: Iterable[dict], metric: str = "p50_us") -> list[dict]:
    """Per (target, recipe, size, form) and each pair of architectures measured at >= 2 common lengths: where the
    cheaper one changes, interpolated on log-log between the two bracketing lengths. `crossover_n` is the first
    change (None, note "none in range", when one is cheaper at every common length); `crossings` lists every change;
    `cheaper_below` / `cheaper_above` name the cheaper architecture at the shortest / longest common length."""
    out = []
    for (target, recipe, size, form), members in _groups(rows, ("target", "recipe", "size", "form")).items():
        per_arch: dict[str, dict[int, float]] = {}
        for arch, arch_rows in _groups(members, ("arch",)).items():
            vals = {n: as_number(r.get(metric)) for n, r in _latest_by_length(arch_rows).items()}
            per_arch[arch[0]] = {n: v for n, v in vals.items() if v is not None and v > 0}
        archs = sorted(per_arch, key=str)
        for i, a in enumerate(archs):
            for b in archs[i + 1:]:
                common = sorted(set(per_arch[a]) & set(per_arch[b]))
                if len(common) < 2:
                    continue
                d = [math.log(per_arch[a][n] / per_arch[b][n]) for n in common]  # < 0: a cheaper
                out.append({"target": target, "recipe": recipe, "size": size, "form": form, "metric": metric,
                            "device": next((r.get("device") for r in members if r.get("device")), None),
                            "arch_a": a, "arch_b": b, "lengths": common,
                            "ratio_first": per_arch[a][common[0]] / per_arch[b][common[0]],
                            "ratio_last": per_arch[a][common[-1]] / per_arch[b][common[-1]],
                            **_crossing(a, b, common, d)})
    return out


def _crossing(a: str, b: str, ns: list[int], d: list[float]) -> dict:
    signs = [(n, v) for n, v in zip(ns, d, strict=True) if v != 0]
    if not signs:
        return {"crossover_n": None, "crossings": [], "cheaper_below": None, "cheaper_above": None,
                "note": "equal at every common length"}
    crossings = []
    for (n0, d0), (n1, d1) in zip(signs, signs[1:], strict=False):
        if (d0 < 0) != (d1 < 0):
            t = d0 / (d0 - d1)  # where the log ratio crosses zero, linear in log n
            crossings.append(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    below, above = (a if signs[0][1] < 0 else b), (a if signs[-1][1] < 0 else b)
    if not crossings:
        return {"crossover_n": None, "crossings": [], "cheaper_below": below, "cheaper_above": above,
                "note": "none in range"}
    note = f"{below} cheaper below n ≈ {crossings[0]:.0f}, {above} above"
    if len(crossings) > 1:
        note += f" ({len(crossings)} crossings: the two are close, within measurement noise)"
    return {"crossover_n": crossings[0], "crossings": crossings, "cheaper_below": below, "cheaper_above": above,
            "note": note}


# ------------------------------------------------------------------------------------------------ streaming
def streaming_costs(rows: Iterable[dict], hop_ms: float | None = None) -> list[dict]:
    """Per (target, recipe, arch, size) and length: the per-step cost of serving a stream at that context. Stream
    cells are measured per step; an architecture with no stream cells is served by re-running its whole-sequence
    model on every hop (`served` "window"). Each row: target, device, recipe, arch, size, n, served (a StreamKind
    value), served_label, p50_us, p99_us (per step), vs_fastest (p50 / the fastest p50 of the same target, recipe,
    size and n), fastest (that arch), rtf (p99 / hop: <= 1 keeps up; None without a hop) and keeps_up."""
    if hop_ms is not None:
        hop_ms = check_finite("hop_ms", hop_ms, min=0, min_open=True)
    out = []
    for (target, recipe, arch, size), members in _groups(rows, ("target", "recipe", "arch", "size")).items():
        streamed = [r for r in members if r.get("form") == "stream"]
        use = streamed or [r for r in members if r.get("form") == "whole"]
        for n, r in _latest_by_length(use).items():
            p50, p99 = as_number(r.get("p50_us")), as_number(r.get("p99_us"))
            if p50 is None:
                continue
            served = (_kind(r.get("kind")) or "stream") if streamed else StreamKind.WINDOW.value
            rtf = None if hop_ms is None or p99 is None else p99 / (hop_ms * 1000.0)
            out.append({"target": target, "device": r.get("device"), "recipe": recipe, "arch": arch, "size": size,
                        "n": n, "served": served, "served_label": _kind_label(served), "p50_us": p50, "p99_us": p99,
                        "rtf": rtf, "keeps_up": None if rtf is None else within(rtf, 1.0)})
    fastest: dict[tuple, dict] = {}
    for r in out:
        k = (r["target"], r["recipe"], r["size"], r["n"])
        if k not in fastest or r["p50_us"] < fastest[k]["p50_us"]:
            fastest[k] = r
    for r in out:
        best = fastest[(r["target"], r["recipe"], r["size"], r["n"])]
        r["vs_fastest"], r["fastest"] = r["p50_us"] / best["p50_us"], best["arch"]
    return sorted(out, key=lambda r: (str(r["target"]), str(r["recipe"]), str(r["size"]), r["n"], r["p50_us"]))


# ------------------------------------------------------------------------------------------------ markdown
def exponent_text(fit: dict | None) -> str:
    """'1.02 [0.97, 1.07]', or '-' without a fit."""
    if fit is None:
        return "-"
    lo, hi = fit["ci95"]
    return f"{fit['exponent']:.2f} [{lo:.2f}, {hi:.2f}]"


def lengths_text(fit: dict | None) -> str:
    return "-" if fit is None else f"{fit['lengths'][0]}..{fit['lengths'][-1]}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def scaling_markdown(rows: list[dict], hop_ms: float | None = None) -> str:
    """The report's "## Scaling" section: fits (exponents with 95% CIs), crossovers, per-step streaming cost."""
    rows = list(rows)
    lines = ["## Scaling", ""]
    fits = scaling_fits(rows)
    if not fits:
        return "\n".join([*lines, "No sweep cells measured yet (`edgeseq sweep --arch gru,transformer "
                                  "--seq-len 16,32,...,2048 --mode cost`).", ""])
    lines += ["Cost ~ n^k, fitted on log-log over the upper lengths (n >= sqrt(n_min * n_max)), where the fixed "
              "per-invoke cost no longer dominates; [95% CI]. Latency is per invoke: per sequence (whole), per step "
              "(stream).", ""]
    lines += _table(["target", "recipe", "arch", "size", "form", "latency k", "over n", "all n", "memory k",
                     "state k"],
                    [[f["target"], f["recipe"], f["arch"], f["size"], f["form"] + (f" ({f['kind']})" if f["kind"]
                                                                                  else ""),
                      exponent_text(f["latency"]), lengths_text(f["latency"]),
                      "-" if f["latency"] is None else f"{f['latency']['exponent_all']:.2f}",
                      exponent_text(f["memory"]), exponent_text(f["state"])] for f in fits])
    xs = crossovers(rows)
    if xs:
        lines += ["", "### Crossovers (p50 latency)", ""]
        lines += _table(["target", "recipe", "size", "form", "archs", "crossover n", "cheaper below", "cheaper above"],
                        [[x["target"], x["recipe"], x["size"], x["form"], f"{x['arch_a']} vs {x['arch_b']}",
                          "none in range" if x["crossover_n"] is None else f"{x['crossover_n']:.0f}",
                          x["cheaper_below"] or "-", x["cheaper_above"] or "-"] for x in xs])
    steps = streaming_costs(rows, hop_ms)
    if any(r["served"] != StreamKind.WINDOW.value for r in steps) or (steps and hop_ms is not None):
        hop = f"; rtf: p99 / the {hop_ms:g} ms hop (<= 1 keeps up)" if hop_ms is not None else ""
        lines += ["", "### Per-step streaming cost", "",
                  f"Per step at each context; window recompute re-runs the whole sequence every step{hop}.", ""]
        lines += _table(["target", "recipe", "size", "n", "arch", "served", "p50 µs/step", "p99 µs/step",
                         "x fastest", "rtf"],
                        [[r["target"], r["recipe"], r["size"], r["n"], r["arch"], r["served_label"],
                          f"{r['p50_us']:.1f}", "-" if r["p99_us"] is None else f"{r['p99_us']:.1f}",
                          f"{r['vs_fastest']:.2f}", "-" if r["rtf"] is None else f"{r['rtf']:.3f}"] for r in steps])
    return "\n".join([*lines, ""])


def __getattr__(name: str):
    """`textbook_claims` and `claims_markdown` live in `edgeseq.sweep.claims` (which builds on this module);
    reachable from here too."""
    if name in ("textbook_claims", "claims_markdown"):
        from edgeseq.sweep import claims as scaling_claims

        return getattr(scaling_claims, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
