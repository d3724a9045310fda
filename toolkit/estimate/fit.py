"""Per-op latency predictors fitted on a target's per-op runs, and the whole-invoke model built on them (pure).

The data: every stored run on the target with per-op times (`edgeseq calibrate`'s models and any `profile --ops`
run whose file is still on disk), joined op by op (subgraph, index) with the op's work read from the file
(edgeseq.estimate.work). Like nn-Meter's kernel predictors, but kept simple because these are small CPU kernels:
- per (op type, dtype, kernel) a linear model in the op's work, with non-negative coefficients, fitted on relative
  error (a 0.2 µs op matters as much as a 20 µs one): `a + b x MACs + c x bytes + d x weight bytes + e x output
  elements` for matmul-like ops (a batch-1 matmul in a loop body streams its weights once per call; the builtin int8
  BATCH_MATMUL pays per output element, so QK^T costs ~4x S.V at equal MACs), `a + b x bytes + c x elements` for the
  others (bytes = the non-constant inputs and outputs), each plus a hinge `f x max(bytes - 2 MiB, 0)`: past the
  caches an op is bound by memory; the median where the data hold one work value. The kernel is "xnnpack" for an op
  the delegate takes (edgeseq.estimate.delegation asks the host runtime), else "builtin": an op XNNPACK leaves alone
  runs the same kernel with XNNPACK on or off, and both kinds of run feed its line;
- the shape correction: a matmul's or convolution's cost follows how its inner dimension K (head width, kernel
  taps x input channels) fills the kernel's tiles, which a line in MACs cannot follow (the builtin int8 BATCH_MATMUL
  at K = 12 runs 1.44x its line, at K = 16 1.0x). Such an op's line is scaled by the geometric mean of measured /
  line over the calibration points of its kind, weighted by closeness in log K (width 0.1) and in log MACs (width
  2), shrunk towards 1 when no point is close (a prior weight of 0.2). A FULLY_CONNECTED's cost follows how often
  each weight is used instead: a batch-1 one (a loop body's recurrent matmul) streams its weights from the caches
  once per call and runs ~1.2x the line pooled with the batched ones (fp32, weights past 64 KiB), while K barely
  matters to XNNPACK's float kernels. Its correction weighs the points by closeness in log(weight bytes per MAC)
  (width 0.3: batch 1 and batch 2 are 0.69 apart) and in log MACs (width 1). A CONV_2D's by closeness in log K and
  log output channels N (width 0.3): its kernels tile N too (XNNPACK here: 8 output channels cost what 16 do, so a
  3x3 fp32 convolution over one input channel runs 2x its line at N = 8 and 1.05x at N = 16);
- an op type unseen in that dtype/kernel falls back to the same type in any dtype/kernel, then to one line per
  (dtype, kernel) over every op's bytes; each fallback is named in the estimate;
- the invoke: p50 = c0 + c1 x delegate partition calls + sum(calls x op time) - k x (time of the ops past the
  caches) + per WHILE loop trips x (t0 + t1 x loop values), float and quantized loop bodies apart + c2 x the model's
  input bytes: fitted (non-negative) on what the calibration runs' p50 holds besides their measured ops. c2: an op
  timed alone finds its inputs in the caches, while the inputs the caller sets (a step model's KV cache, 256 KiB
  in the grid's largest) come from memory on every invoke (that step model's p50 is 21 % above its ops' sum).
  k: an op timed alone runs R copies whose R outputs thrash the caches more than the one op does in its model;
- repeats of one file (calibrate's passes) count once: per op and for the p50 the mean of the quickest two thirds;
- the range: the 10th-90th percentile of measured / predicted over the calibration runs (widened to +-5 % at least).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeseq.estimate.work import LOOP_OPS, ModelWork, OpWork

MAC_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D",
           "UNIDIRECTIONAL_SEQUENCE_LSTM")
MIN_SPREAD = 0.05
# the shape correction's ops, with the widths of its two closeness terms (see `_shape`)
SHAPED_OPS = {"BATCH_MATMUL": (0.1, 2.0), "CONV_2D": (0.1, 0.3), "DEPTHWISE_CONV_2D": (0.1, 2.0),
              "FULLY_CONNECTED": (0.3, 1.0)}
PRIOR_WEIGHT = 0.2


def work_of(op: OpWork) -> float:
    """The op's main work figure (MACs for matmul-like ops, else bytes): what leave-one-out compares."""
    return float(op.macs) if op.type in MAC_OPS and op.macs > 0 else float(op.bytes)


CACHE_BYTES = 2 * 1024 * 1024  # past this many bytes touched, data come from memory: a steeper slope (the hinge)


def features(op: OpWork) -> tuple[float, ...]:
    past = float(max(op.bytes - CACHE_BYTES, 0))
    if op.type in MAC_OPS and op.macs > 0:
        return (1.0, float(op.macs), float(op.bytes), float(op.const_bytes), float(op.elems), past)
    return (1.0, float(op.bytes), float(op.elems), past)


def nnls_relative(rows: list[tuple[float, ...]], ys: list[float], weights: list[float] | None = None) -> list[float]:
    """min sum(w (x.c - y))^2 over c >= 0 (w = 1/y unless given), exactly, by trying every subset of columns (a few
    columns only); zeros when nothing fits."""
    import numpy as np

    a = np.array(rows, dtype=float)
    y = np.array(ys, dtype=float)
    w = np.array(weights if weights is not None else [1.0 / max(v, 0.01) for v in ys], dtype=float)
    aw, yw = a * w[:, None], y * w
    n = a.shape[1]
    best, best_err = [0.0] * n, float(np.sum(yw ** 2))
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            sub = aw[:, cols]
            if np.linalg.matrix_rank(sub) < k:
                continue
            c, *_ = np.linalg.lstsq(sub, yw, rcond=None)
            if (c < 0).any():
                continue
            err = float(np.sum((sub @ c - yw) ** 2))
            if err < best_err - 1e-15:
                best, best_err = [0.0] * n, err
                for j, v in zip(cols, c, strict=True):
                    best[j] = float(v)
    return best


@dataclass(frozen=True)
class Line:
    """A fitted op model: coefficients over `features(op)` (or over (1, work) for `fit_line`)."""

    coef: tuple[float, ...]
    n: int

    def at(self, x: tuple[float, ...]) -> float:
        return sum(c * v for c, v in zip(self.coef, x, strict=False))

    def __call__(self, w: float) -> float:
        return self.at((1.0, w))

    @property
    def a_us(self) -> float:
        return self.coef[0]

    @property
    def b_us(self) -> float:
        return self.coef[1] if len(self.coef) > 1 else 0.0


def fit_model(points: list[tuple[tuple[float, ...], float]]) -> Line:
    """Non-negative linear model on relative error; the median time when the points hold one work value."""
    ys = [y for _, y in points]
    width = len(points[0][0])
    if len({x for x, _ in points}) < 2:
        return Line((statistics.median(ys),) + (0.0,) * (width - 1), len(points))
    return Line(tuple(nnls_relative([x for x, _ in points], ys)), len(points))


def fit_line(points: list[tuple[float, float]]) -> Line:
    """a + b x w, a and b >= 0, on relative error (the median for one work value)."""
    return fit_model([((1.0, float(w)), y) for w, y in points])


def route(op: OpWork, xnnpack: bool) -> str:
    """The kernel that runs the op: "xnnpack" when the delegate takes it, else "builtin" (XNNPACK off, or an op the
    delegate leaves to the interpreter: timed with XNNPACK off or on, it is the same kernel)."""
    return "xnnpack" if xnnpack and op.delegated is not False else "builtin"


@dataclass
class Predictor:
    """Everything the estimate needs for one target (and toolchain): op models, fallbacks, the invoke model."""

    target: str
    toolchain: str
    lines: dict[tuple[str, str, str], Line] = field(default_factory=dict)  # (type, dtype, route)
    by_type: dict[tuple[str, str], Line] = field(default_factory=dict)  # (type, route)
    generic: dict[tuple[str, str], Line] = field(default_factory=dict)  # (dtype, route)
    # per (type, dtype, route) of SHAPED_OPS: (log K, log MACs) and log(measured / line) of each calibration point
    shaped: dict[tuple[str, str, str], list[tuple[float, float, float]]] = field(default_factory=dict)
    invoke: dict[bool, tuple[float, ...]] = field(default_factory=dict)  # c0, per partition call, k, t0..t3, c2
    spread: dict[bool, tuple[float, float]] = field(default_factory=dict)  # (low, high) multipliers
    runs: int = 0
    op_samples: int = 0

    def op_us(self, op: OpWork, xnnpack: bool) -> tuple[float, str | None]:
        """(time of one call in µs, the fallback used or None)."""
        x = features(op)
        r = route(op, xnnpack)
        other = "builtin" if r == "xnnpack" else "xnnpack"
        line = self.lines.get((op.type, op.dtype, r))
        if line is not None:
            return max(line.at(x), 0.0) * self.shape_factor((op.type, op.dtype, r), op), None
        line = self.by_type.get((op.type, r)) or self.by_type.get((op.type, other))
        if line is not None:
            return max(line.at(x), 0.0), "same op type, other dtype or kernel"
        line = (self.generic.get((op.dtype, r)) or self.generic.get(("float32", r))
                or next(iter(self.generic.values()), None))
        if line is not None:
            return max(line(float(op.bytes)), 0.0), "default: every op's time against its bytes"
        return 1.0, "default: 1 µs (no calibration data)"

    def shape_factor(self, key: tuple[str, str, str], op: OpWork) -> float:
        """The shape correction (see the module's text): 1.0 for an op not in SHAPED_OPS."""
        points = self.shaped.get(key)
        if not points or op.macs <= 0:  # no calibration points, or an op without MACs (its shapes unknown)
            return 1.0
        log_k, log_macs = _shape(op)
        k_width, macs_width = SHAPED_OPS[key[0]]
        num = den = 0.0
        for k, macs, log_ratio in points:
            w = math.exp(-((log_k - k) / k_width) ** 2 - ((log_macs - macs) / macs_width) ** 2)
            num += w * log_ratio
            den += w
        return math.exp(num / (den + PRIOR_WEIGHT))

    def _invoke(self, xnnpack: bool) -> tuple[float, ...]:
        return self.invoke.get(xnnpack) or self.invoke.get(not xnnpack) or (0.0,) * 8

    def loop_us(self, work: ModelWork, xnnpack: bool) -> float:
        c = self._invoke(xnnpack)
        return sum(v * c[i + 3] for lp in work.loops for i, v in enumerate(_loop_terms(lp)))

    def predict(self, work: ModelWork, xnnpack: bool) -> dict:
        """{"p50_us", "p50_us_range", "ops_us", "fallbacks": {op type: reason}}."""
        total, fallbacks = 0.0, {}
        c = self._invoke(xnnpack)
        for op in work.ops:
            if op.calls == 0 or op.type in LOOP_OPS:
                continue
            t, why = self.op_us(op, xnnpack)
            total += t * op.calls * (1.0 - c[2] if _big(op) else 1.0)
            if why:
                fallbacks[op.type] = why
        fixed = c[0] + (c[1] * work.partition_calls if xnnpack else 0.0) + c[7] * work.input_bytes
        p50 = max(fixed + total + self.loop_us(work, xnnpack), 0.01)
        lo, hi = self.spread.get(xnnpack) or self.spread.get(not xnnpack) or (1 - MIN_SPREAD, 1 + MIN_SPREAD)
        return {"p50_us": p50, "p50_us_range": [p50 * lo, p50 * hi], "ops_us": total, "fallbacks": fallbacks}


def _loop_terms(lp) -> tuple[float, float, float, float]:
    """Per trip: a constant and one per loop value, for float and for quantized bodies apart."""
    t, tv = float(lp.trips), float(lp.trips * lp.values)
    return (0.0, 0.0, t, tv) if lp.quantized else (t, tv, 0.0, 0.0)


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


def _trimmed(values: list[float]) -> float:
    """The mean of the quickest two thirds (at least one): a pass slowed by a burst of load is dropped, and the
    rest are averaged (the minimum of noisy per-op times would be biased low)."""
    keep = sorted(values)[:max(1, len(values) - len(values) // 3)]
    return sum(keep) / len(keep)


def quickest(runs: list[CalRun]) -> list[CalRun]:
    """Repeated runs of one file (same sha256 and XNNPACK setting) as one: per op and for the p50, the mean of the
    quickest two thirds of the repeats (calibrate's passes; repeated `profile --ops` runs alike). Load on a shared
    machine only ever slows a run down, so the slowest third is the disturbed part."""
    groups: dict[tuple, list[CalRun]] = defaultdict(list)
    for r in runs:
        groups[(r.sha256 or id(r), r.xnnpack)].append(r)
    out = []
    for same in groups.values():
        first = same[0]
        if len(same) == 1:
            out.append(first)
            continue
        keys = set().union(*(r.op_us for r in same))
        op_us = {k: _trimmed([r.op_us[k] for r in same if k in r.op_us]) for k in keys}
        out.append(CalRun(xnnpack=first.xnnpack, p50_us=_trimmed([r.p50_us for r in same]), work=first.work,
                          op_us=op_us, sha256=first.sha256))
    return out


def fit(runs: list[CalRun], target: str, toolchain: str,
        keep: Callable[[OpWork], bool] = lambda _op: True) -> Predictor:
    """The predictor from calibration runs; `keep` drops op samples (leave-one-family-out)."""
    pts: dict[tuple[str, str, str], dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    shapes: dict[tuple, tuple[float, float]] = {}  # (type, features) -> the shape correction's coordinates
    generic: dict[tuple[str, str], dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        for op in r.work.ops:
            t = r.op_us.get((op.subgraph, op.index))
            if t is None or op.calls == 0 or not keep(op):
                continue
            k = route(op, r.xnnpack)
            pts[(op.type, op.dtype, k)][features(op)].append(t)
            if op.type in SHAPED_OPS and op.macs > 0:
                shapes[(op.type, features(op))] = _shape(op)
            if op.type not in MAC_OPS:
                generic[(op.dtype, k)][float(op.bytes)].append(t)
    pred = Predictor(target=target, toolchain=toolchain, runs=len(runs))
    by_type: dict[tuple[str, str], list] = defaultdict(list)
    for key, by_x in pts.items():
        points = [(x, statistics.median(ts)) for x, ts in by_x.items()]
        pred.op_samples += sum(len(ts) for ts in by_x.values())
        pred.lines[key] = line = fit_model(points)
        if key[0] in SHAPED_OPS:
            pred.shaped[key] = [(*shapes[(key[0], x)], math.log(max(y, 1e-3) / max(line.at(x), 1e-3)))
                                for x, y in points if (key[0], x) in shapes]
        by_type[(key[0], key[2])] += points
    pred.by_type = {k: fit_model(v) for k, v in by_type.items()}
    pred.generic = {k: fit_line([(w, statistics.median(ts)) for w, ts in v.items()]) for k, v in generic.items()}
    for xnn in (True, False):
        mine = [r for r in runs if r.xnnpack == xnn]
        if not mine:
            continue
        pred.invoke[xnn] = _fit_invoke(mine, xnn)
        ratios = sorted(r.p50_us / pred.predict(r.work, xnn)["p50_us"] for r in mine)
        lo, hi = _quantile(ratios, 0.1), _quantile(ratios, 0.9)
        pred.spread[xnn] = (min(lo, 1 - MIN_SPREAD), max(hi, 1 + MIN_SPREAD))
    return pred


def _shape(op: OpWork) -> tuple[float, float]:
    """The shape correction's two coordinates: (log inner dimension K = MACs / output elements, log MACs); for
    FULLY_CONNECTED log(weight bytes / MACs) in K's place (how often each weight is used per call); for CONV_2D log
    output channels in MACs' place."""
    log_k = math.log(max(op.macs, 1) / max(op.elems, 1))
    if op.type == "FULLY_CONNECTED":
        return math.log(max(op.const_bytes, 1) / max(op.macs, 1)), math.log1p(op.macs)
    if op.type == "CONV_2D":
        return log_k, math.log(max(op.channels, 1))
    return log_k, math.log1p(op.macs)


def _big(op: OpWork) -> bool:
    return op.bytes > CACHE_BYTES


def _fit_invoke(runs: list[CalRun], xnnpack: bool) -> tuple[float, ...]:
    """What the runs' p50 holds besides their measured ops, as c0 + c1 x delegate partition calls - k x the time of
    ops past the caches (timed alone, R copies of a 4 MiB output thrash the caches more than the one op does in its
    model) + per WHILE trip terms + c2 x the model's input bytes: non-negative least squares relative to each run's
    p50."""
    rows, ys = [], []
    for r in runs:
        loop = [sum(t) for t in zip(*(_loop_terms(lp) for lp in r.work.loops), strict=True)] or [0.0] * 4
        ops = [(op, (r.op_us.get((op.subgraph, op.index)) or 0.0) * op.calls) for op in r.work.ops
               if op.type not in LOOP_OPS]
        rows.append((1.0, r.work.partition_calls if xnnpack else 0.0, -sum(t for op, t in ops if _big(op)), *loop,
                     float(r.work.input_bytes)))
        ys.append(r.p50_us - sum(t for _, t in ops))
    coef = nnls_relative(rows, ys, [1.0 / max(r.p50_us, 0.1) for r in runs])
    coef[2] = min(coef[2], 0.9)
    return tuple(coef)


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return 1.0
    i = q * (len(xs) - 1)
    lo = int(i)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)
