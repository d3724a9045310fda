"""Scaling analysis of sweep cells: power-law exponents with CIs, crossovers, per-step streaming cost, the claims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseq.sweep.claims import claims_markdown, textbook_claims
from edgeseq.sweep.scaling import (
    crossovers,
    fit_power_law,
    scaling_fits,
    scaling_markdown,
    streaming_costs,
    t_quantile_975,
)

NS = [16 * 2**i for i in range(8)]  # 16 .. 2048


def cell(arch: str, n: int, p50: float, *, form: str = "whole", kind: str | None = None, size: str = "small",
         recipe: str = "fp32", target: str = "local", mem: float | None = 100.0, state: float | None = None,
         **extra) -> dict:
    return {"target": target, "device": "host/x86_64", "arch": arch, "size": size, "recipe": recipe, "form": form,
            "kind": kind, "seq_len": n, "p50_us": p50, "p99_us": p50 * 1.2, "model_peak_kb": mem,
            "state_bytes": state, "accuracy": None, "dataset": None, "mode": "cost", **extra}


def inside(fit: dict, k: float) -> bool:
    lo, hi = fit["ci95"]
    return lo <= k <= hi


# ------------------------------------------------------------------------------------------------ fit_power_law
def test_t_quantiles_match_the_table_and_the_normal_limit():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(30) == 2.042
    assert t_quantile_975(40) == pytest.approx(2.021, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    assert t_quantile_975(10**6) == pytest.approx(1.960, abs=1e-3)


def test_linear_with_noise_is_recovered_within_its_ci():
    rng = np.random.default_rng(7)
    ys = 3.0 * np.asarray(NS) * np.exp(rng.normal(0, 0.03, len(NS)))
    fit = fit_power_law(NS, ys)
    assert inside(fit, 1.0) and abs(fit["exponent"] - 1) < 0.1
    assert fit["lengths"] == [256, 512, 1024, 2048] and fit["n_points"] == 4  # n >= sqrt(16 * 2048) = 181
    assert fit["coefficient"] == pytest.approx(3.0, rel=0.3) and fit["r2"] > 0.99


def test_quadratic_under_a_fixed_overhead_is_fitted_on_the_upper_lengths():
    rng = np.random.default_rng(1)
    ns = np.asarray(NS, float)
    ys = (0.01 * ns**2 + 50) * np.exp(rng.normal(0, 0.02, len(NS)))
    fit = fit_power_law(NS, ys)
    assert inside(fit, 2.0) and fit["exponent"] > 1.9
    assert fit["exponent_all"] < 1.6  # the overhead flattens the short end: why only the upper part is fitted


def test_constant_gives_exponent_zero_not_nan():
    fit = fit_power_law(NS, [4096] * len(NS))
    assert fit["exponent"] == 0.0 and fit["ci95"] == [0.0, 0.0] and fit["exponent_all"] == 0.0
    assert fit["r2"] == 1.0 and fit["coefficient"] == pytest.approx(4096)


def test_too_few_usable_points_is_none_and_bad_points_are_left_out():
    assert fit_power_law([16, 32], [1.0, 2.0]) is None
    assert fit_power_law([16, 32, 64, 128], [1.0, None, 0.0, float("nan")]) is None
    fit = fit_power_law([16, 32, 64, 128, 256], [16, None, 64, 128, 256])
    assert fit["exponent"] == pytest.approx(1.0) and fit["lengths"] == [64, 128, 256]  # three longest at least


def test_few_lengths_take_the_three_longest():
    fit = fit_power_law([10, 20, 40], [5, 10, 20])
    assert fit["lengths"] == [10, 20, 40] and fit["exponent"] == pytest.approx(1.0)
    assert all(math.isfinite(v) for v in fit["ci95"])


# ------------------------------------------------------------------------------------------------ scaling_fits
def test_scaling_fits_group_by_cell_and_fit_latency_memory_state():
    rows = [cell("gru", n, 2.0 * n + 30) for n in NS]
    rows += [cell("gru", n, 5.0, form="stream", kind="recurrent-step", mem=50.0, state=256) for n in NS]
    rows += [cell("gru", n, 2.0 * n, recipe="int8") for n in NS[:2]]  # two lengths: no fit
    fits = {(f["recipe"], f["form"]): f for f in scaling_fits(rows)}
    whole, stream = fits[("fp32", "whole")], fits[("fp32", "stream")]
    assert abs(whole["latency"]["exponent"] - 1) < 0.05  # the 30 µs overhead still bends it a little at 256
    assert whole["memory"]["exponent"] == 0 and whole["state"] is None
    assert stream["kind"] == "recurrent-step" and stream["state"]["exponent"] == 0
    assert [p["n"] for p in whole["points"]] == NS and whole["device"] == "host/x86_64"
    assert fits[("int8", "whole")]["latency"] is None


# ------------------------------------------------------------------------------------------------ crossovers
def test_crossover_of_a_linear_and_a_quadratic_curve():
    # 10 n vs 0.01 n^2 + n: equal at 0.01 n = 9, n = 900
    ns = [64, 128, 256, 512, 1024, 2048, 4096]
    rows = [cell("gru", n, 10.0 * n) for n in ns] + [cell("transformer", n, 0.01 * n**2 + n) for n in ns]
    (x,) = crossovers(rows)
    assert (x["arch_a"], x["arch_b"]) == ("gru", "transformer")
    assert x["crossover_n"] == pytest.approx(900, rel=0.05)
    assert x["cheaper_below"] == "transformer" and x["cheaper_above"] == "gru"
    assert "below n ≈" in x["note"] and x["lengths"] == ns


def test_no_crossover_in_range():
    rows = [cell("gru", n, 1.0 * n) for n in NS] + [cell("lstm", n, 2.0 * n) for n in NS]
    rows += [cell("transformer", 16, 5.0)]  # one common length only: no pair
    (x,) = crossovers(rows)
    assert x["crossover_n"] is None and x["note"] == "none in range"
    assert x["cheaper_below"] == x["cheaper_above"] == "gru" and x["ratio_first"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ streaming
def test_streaming_costs_per_step_window_recompute_and_real_time_factor():
    rows = [cell("gru", n, 40.0, form="stream", kind="recurrent-step") for n in (64, 256)]
    rows += [cell("gru", n, 10.0 * n) for n in (64, 256)]  # has stream cells: whole cells are not its stream cost
    rows += [cell("transformer", n, 0.5 * n) for n in (64, 256)]  # no stream form: window recompute
    costs = streaming_costs(rows, hop_ms=0.1)
    by = {(r["arch"], r["n"]): r for r in costs}
    assert len(costs) == 4
    assert by[("gru", 64)]["served"] == "recurrent-step" and by[("gru", 64)]["p50_us"] == 40.0
    assert by[("transformer", 256)]["served"] == "window" and by[("transformer", 256)]["served_label"] == \
        "window recompute"
    assert by[("transformer", 64)]["vs_fastest"] == 1.0 and by[("gru", 64)]["vs_fastest"] == pytest.approx(40 / 32)
    assert by[("transformer", 256)]["vs_fastest"] == pytest.approx(128 / 40)
    assert by[("gru", 256)]["rtf"] == pytest.approx(48 / 100) and by[("gru", 256)]["keeps_up"]
    assert by[("transformer", 256)]["rtf"] == pytest.approx(153.6 / 100) and not by[("transformer", 256)]["keeps_up"]
    assert streaming_costs(rows)[0]["rtf"] is None


def test_a_bad_hop_is_one_input_error():
    from edgeseq.core.errors import InputError

    with pytest.raises(InputError):
        streaming_costs([], hop_ms=float("nan"))


def test_markdown_sections():
    rows = [cell("gru", n, 3.0 * n) for n in NS] + [cell("transformer", n, 0.01 * n**2 + n) for n in NS]
    rows += [cell("gru", n, 5.0, form="stream", kind="recurrent-step", state=256) for n in NS]
    md = scaling_markdown(rows, hop_ms=20)
    assert md.startswith("## Scaling") and "### Crossovers" in md and "### Per-step streaming cost" in md
    assert "| local | fp32 | gru | small | whole | 1.00 [1.00, 1.00] | 256..2048 |" in md
    assert "No sweep cells" in scaling_markdown([])


# ------------------------------------------------------------------------------------------------ claims
def _by_claim(claims: list[dict]) -> dict[str, dict]:
    return {c["claim"].split(" (")[0]: c for c in claims}


def test_claims_hold_on_textbook_data():
    rng = np.random.default_rng(3)
    noise = lambda: float(np.exp(rng.normal(0, 0.02)))  # noqa: E731
    rows = [cell("gru", n, (3.0 * n + 20) * noise()) for n in NS]
    rows += [cell("transformer", n, (0.01 * n**2 + n + 200) * noise()) for n in NS]
    rows += [cell("gru", n, 5.0, form="stream", kind="recurrent-step", mem=50.0, state=256) for n in NS]
    rows += [cell("transformer-causal", n, 4 + 0.01 * n, form="stream", kind="kv-cache", state=512 * n + 8)
             for n in NS]
    claims = _by_claim(textbook_claims(rows))
    assert [claims[c]["holds"] for c in ("RNN time is O(n)", "attention time is O(n^2)",
                                         "RNN streaming memory is constant", "KV-cache memory is O(n)")] == [True] * 4
    rnn = claims["RNN time is O(n)"]
    assert rnn["verdict"].startswith("holds: GRU small latency grows as n^0.99 [0.92, 1.05] over n = 256..2048 on "
                                     "local fp32")
    adding = claims["attention links distant steps directly, so it learns long-range dependencies an RNN cannot"]
    assert adding["holds"] is None and "edgeseq sweep --dataset adding --mode full" in adding["verdict"]
    md = claims_markdown(textbook_claims(rows))
    assert md.startswith("## The textbook claims, measured") and md.count("| yes |") == 4
    assert "| not measured |" in md


def test_claims_that_do_not_hold_say_why():
    rows = [cell("gru", n, 0.01 * n**2 + 5) for n in NS]  # an "RNN" growing quadratically
    rows += [cell("transformer", n, 2.0 * n) for n in NS]  # attention measured linear
    rows += [cell("transformer", n, 1000.0 + 0.02 * n, size="big") for n in NS]  # overhead-bound
    claims = _by_claim(textbook_claims(rows))
    assert claims["RNN time is O(n)"]["holds"] is False
    assert "faster than linear" in claims["RNN time is O(n)"]["verdict"]
    att = claims["attention time is O(n^2)"]
    assert att["holds"] is False and att["verdict"].startswith("does not hold here")
    assert "linear parts" in att["verdict"] and len(att["details"]) == 2
    assert claims["RNN streaming memory is constant"]["holds"] is None


def test_quadratic_term_visible_but_linear_parts_weigh():
    rows = [cell("transformer", n, 0.0005 * n**2 + 2 * n) for n in NS]
    att = _by_claim(textbook_claims(rows))["attention time is O(n^2)"]
    assert att["holds"] is True and "linear parts" in att["verdict"] and "still weigh" in att["verdict"]


def test_mixed_measurements_name_the_failing_one():
    rows = [cell("gru", n, 3.0 * n) for n in NS] + [cell("lstm", n, 3.0 * n**1.6) for n in NS]
    c = _by_claim(textbook_claims(rows))["RNN time is O(n)"]
    assert c["holds"] is False and c["verdict"].startswith("holds in 1 of 2 measurements; not for LSTM small")


def test_adding_problem_from_full_mode_rows():
    def trained(arch: str, n: int, mse: float, **kw) -> dict:
        return cell(arch, n, 10.0, mode="full", dataset="adding", metric_name="mse", metric=mse, **kw)

    rows = [trained("gru", 50, 0.001), trained("gru", 400, 0.15), trained("lstm", 400, 0.12),
            trained("transformer", 50, 0.002), trained("transformer", 400, 0.004),
            trained("transformer", 800, 0.005),  # no RNN at 800: not the comparison
            cell("gru", 400, 10.0, mode="cost", dataset="adding", metric_name="mse", metric=9.0)]  # untrained: ignored
    c = _by_claim(textbook_claims(rows))["attention links distant steps directly, so it learns long-range " \
                                         "dependencies an RNN cannot"]
    assert c["holds"] is True and "n = 400: Transformer 0.004 vs lstm 0.12 (Transformer clearly better)" in c["measured"]
    assert [d["n"] for d in c["details"]] == [50, 400]  # 800 has no RNN to compare with
    assert c["details"][0]["verdict"] == "RNN clearly better"  # 0.001 vs 0.002 at n = 50
    rows[4] = trained("transformer", 400, 0.1)  # better, but not clearly: not enough to call it
    c = _by_claim(textbook_claims(rows))["attention links distant steps directly, so it learns long-range " \
                                         "dependencies an RNN cannot"]
    assert c["holds"] is False and "(neither clearly better)" in c["measured"]
    rows[3:5] = [trained("transformer", 50, 0.2), trained("transformer", 400, 0.3)]
    c = _by_claim(textbook_claims(rows))["attention links distant steps directly, so it learns long-range " \
                                         "dependencies an RNN cannot"]
    assert c["holds"] is False and c["verdict"].startswith("does not hold here")
