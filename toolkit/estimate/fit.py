"""Per-op latency predictors fitted on a target's per-op runs, and the whole-invoke model built on them (pure).

The data: every stored run on the target with per-op times (`edgeseq calibrate`'s models and any `profile --ops`
run whose file is still on disk), joined op by op (subgraph, index) with the op's work read from the file
(edgeseq.estimate.work). Like nn-Meter's kernel predictors, but kept simple because these are small CPU kernels:
- per (op type, dtype, XNNPACK on/off) a line `a + b x work` fitted on relative error (weights 1/t: a 0.2 µs op
  matters as much as a 20 µs one), work being MACs for matmul-like ops and the non-constant bytes touched otherwise,
  with a and b kept >= 0 (a constant, the median, when the data show no slope);
- an op type unseen in that dtype/delegate falls back to the same type in any dtype/delegate, then to one line per
  (dtype, delegate) over every op's bytes; each fallback is named in the estimate;
- the invoke: p50 = c0 + sum(calls x op time) + trips x (t0 + t1 x carried bytes) per WHILE loop, c0/t0/t1 fitted by
  least squares on what the calibration runs' measured ops left of their p50 (the interpreter's entry, the loop's
  copies into its body);
- the range: the 10th-90th percentile of measured / predicted over the calibration runs (widened to +-5 % at least).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeseq.estimate.work import LOOP_OPS, ModelWork, OpWork

MAC_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D",
           "UNIDIRECTIONAL_SEQUENCE_LSTM")
MIN_SPREAD = 0.05


def work_of(op: OpWork) -> float:
    return float(op.macs) if op.type in MAC_OPS and op.macs > 0 else float(op.bytes)


@dataclass(frozen=True)
class Line:
    a_us: float
    b_us: float  # per unit of work
    n: int

    def __call__(self, w: float) -> float:
        return self.a_us + self.b_us * w


def fit_line(points: list[tuple[float, float]]) -> Line:
    """a + b*w >= 0 minimizing relative squared error; the median when there is one work value or no slope."""
    ys = [y for _, y in points]
    med = Line(statistics.median(ys), 0.0, len(points))
    if len({w for w, _ in points}) < 2:
        return med
    # weighted least squares with weights 1/y^2 (relative error); y floored at 10 ns against division by ~0
    sw = swx = swy = swxx = swxy = 0.0
    for w, y in points:
        k = 1.0 / max(y, 0.01) ** 2
        sw, swx, swy, swxx, swxy = sw + k, swx + k * w, swy + k * y, swxx + k * w * w, swxy + k * w * y
    det = sw * swxx - swx * swx
    if det <= 0:
        return med
    b = (sw * swxy - swx * swy) / det
    a = (swy - b * swx) / sw
    if b <= 0:
        return med
    if a < 0:  # through the origin
        return Line(0.0, swxy / swxx, len(points))
    return Line(a, b, len(points))


@dataclass
class Predictor:
    """Everything the estimate needs for one target (and toolchain): op lines, fallbacks, the invoke model."""

    target: str
    toolchain: str
    lines: dict[tuple[str, str, bool], Line] = field(default_factory=dict)
    by_type: dict[tuple[str, bool], Line] = field(default_factory=dict)
    generic: dict[tuple[str, bool], Line] = field(default_factory=dict)
    invoke: dict[bool, tuple[float, float, float]] = field(default_factory=dict)  # c0, t0, t1
    spread: dict[bool, tuple[float, float]] = field(default_factory=dict)  # (low, high) multipliers
    runs: int = 0
    op_samples: int = 0

    def op_us(self, op: OpWork, xnnpack: bool) -> tuple[float, str | None]:
        """(time of one call in µs, the fallback used or None)."""
        w = work_of(op)
        line = self.lines.get((op.type, op.dtype, xnnpack))
        if line is not None:
            return max(line(w), 0.0), None
        line = self.by_type.get((op.type, xnnpack)) or self.by_type.get((op.type, not xnnpack))
        if line is not None:
            return max(line(w), 0.0), "same op type, other dtype or delegate"
        line = (self.generic.get((op.dtype, xnnpack)) or self.generic.get(("float32", xnnpack))
                or next(iter(self.generic.values()), None))
        if line is not None:
            return max(line(float(op.bytes)), 0.0), "default: every op's time against its bytes"
        return 1.0, "default: 1 µs (no calibration data)"

    def predict(self, work: ModelWork, xnnpack: bool) -> dict:
        """{"p50_us", "p50_us_range", "ops_us", "fallbacks": {op type: reason}}."""
        total, fallbacks = 0.0, {}
        for op in work.ops:
            if op.calls == 0 or op.type in LOOP_OPS:
                continue
            t, why = self.op_us(op, xnnpack)
            total += t * op.calls
            if why:
                fallbacks[op.type] = why
        c0, t0, t1 = self.invoke.get(xnnpack) or self.invoke.get(not xnnpack) or (0.0, 0.0, 0.0)
        loops = sum(lp.trips * (t0 + t1 * lp.carried_bytes) for lp in work.loops)
        p50 = max(c0 + total + loops, 0.01)
        lo, hi = self.spread.get(xnnpack) or self.spread.get(not xnnpack) or (1 - MIN_SPREAD, 1 + MIN_SPREAD)
        return {"p50_us": p50, "p50_us_range": [p50 * lo, p50 * hi], "ops_us": total, "fallbacks": fallbacks}


@dataclass(frozen=True)
class CalRun:
    """One stored run with per-op times, joined with its file's work."""

    xnnpack: bool
    p50_us: float
    work: ModelWork
    op_us: dict[tuple[int, int], float]  # (subgraph, index) -> one call, µs
    sha256: str = ""


def cal_run(row: dict, ops: list[dict], work: ModelWork) -> CalRun | None:
    """A store row (decoded, with `op_fields` ops) as a CalRun; None when its ops do not match the file's."""
    times = {(int(o.get("subgraph") or 0), int(o["index"])): o["per_call_us"] for o in ops
             if o.get("per_call_us") is not None and isinstance(o.get("index"), int)}
    known = {(op.subgraph, op.index) for op in work.ops}
    if not times or not set(times) <= known or row.get("p50_us") is None:
        return None
    xnn = (row.get("options") or {}).get("xnnpack")
    return CalRun(xnnpack=xnn is not False, p50_us=float(row["p50_us"]), work=work, op_us=times,
                  sha256=str(row.get("model_sha256") or ""))


def fit(runs: list[CalRun], target: str, toolchain: str,
        keep: Callable[[OpWork], bool] = lambda _op: True) -> Predictor:
    """The predictor from calibration runs; `keep` drops op samples (leave-one-family-out)."""
    pts: dict[tuple[str, str, bool], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for op in r.work.ops:
            t = r.op_us.get((op.subgraph, op.index))
            if t is None or op.calls == 0 or not keep(op):
                continue
            pts[(op.type, op.dtype, r.xnnpack)][work_of(op)].append(t)
    pred = Predictor(target=target, toolchain=toolchain, runs=len(runs))
    by_type: dict[tuple[str, bool], list] = defaultdict(list)
    generic: dict[tuple[str, bool], list] = defaultdict(list)
    for key, by_w in pts.items():
        points = [(w, statistics.median(ts)) for w, ts in by_w.items()]
        pred.op_samples += sum(len(ts) for ts in by_w.values())
        pred.lines[key] = fit_line(points)
        by_type[(key[0], key[2])] += points
    for r in runs:
        for op in r.work.ops:
            t = r.op_us.get((op.subgraph, op.index))
            if t is not None and op.calls and keep(op) and op.type not in MAC_OPS:
                generic[(op.dtype, r.xnnpack)].append((float(op.bytes), t))
    pred.by_type = {k: fit_line(v) for k, v in by_type.items()}
    pred.generic = {k: fit_line(v) for k, v in generic.items()}
    for xnn in (True, False):
        mine = [r for r in runs if r.xnnpack == xnn]
        if not mine:
            continue
        pred.invoke[xnn] = _fit_invoke(mine)
        ratios = sorted(r.p50_us / pred.predict(r.work, xnn)["p50_us"] for r in mine)
        lo, hi = _quantile(ratios, 0.1), _quantile(ratios, 0.9)
        pred.spread[xnn] = (min(lo, 1 - MIN_SPREAD), max(hi, 1 + MIN_SPREAD))
    return pred


def _measured_ops_us(r: CalRun) -> float:
    return sum(r.op_us.get((op.subgraph, op.index), 0.0) * op.calls for op in r.work.ops
               if op.type not in LOOP_OPS)


def _fit_invoke(runs: list[CalRun]) -> tuple[float, float, float]:
    """c0, t0, t1: least squares of (p50 - measured ops) on [1, trips, trips x carried bytes], relative weights."""
    import numpy as np

    rows, ys, ws = [], [], []
    for r in runs:
        trips = sum(lp.trips for lp in r.work.loops)
        carried = sum(lp.trips * lp.carried_bytes for lp in r.work.loops)
        rows.append([1.0, float(trips), float(carried)])
        ys.append(r.p50_us - _measured_ops_us(r))
        ws.append(1.0 / max(r.p50_us, 0.1))
    a, y, w = np.array(rows), np.array(ys), np.array(ws)
    if not a[:, 1].any():
        return float(np.median(y)), 0.0, 0.0
    if not a[:, 2].any() or len(rows) < 4:
        a = a[:, :2]
    coef, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
    c = [float(v) for v in coef] + [0.0] * (3 - len(coef))
    return c[0], c[1], c[2]


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return 1.0
    i = q * (len(xs) - 1)
    lo = int(i)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)
