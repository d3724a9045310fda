"""Per-op time (`edgeseq profile --ops`): the agent's `ops` section turned into the figures tables show.

The agent times every op on its own (edgeseq.quantize.op_slices, targets/agent/ops.py) and reports per op
its calls per invoke and the time of one call. Here, like LiteRT benchmark_model's --enable_op_profiling tables:
- per op: `mean_us`, its time per invoke of the model (one call x calls; a WHILE body's ops are called once per
  trip), and `share`, that time over the whole invoke's p50;
- per op type: how many ops, their summed time per invoke and share;
- `ops_sum_us` and `ops_coverage` (sum / p50): what the ops explain of the invoke. The rest is the invoke's own cost
  (`ops_overhead_us`: a one-op model's invoke minus its op, ~0.4 µs from Python here) and what ops cost in sequence
  beyond their isolated time (caches and branch predictors warmed by the same op repeated).
A model the route cannot cut has `ops_route` None and `ops_reason` (its whole-model figures stand).
"""

from __future__ import annotations

import html
from collections import defaultdict

TOP = 10


def _num(v) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def op_fields(agent_ops: dict | None, p50_us: float | None) -> dict:
    """{} when the run was not asked for ops; else ops_route, ops_reason, ops, op_types, ops_sum_us, ops_coverage,
    ops_overhead_us (shares are of `p50_us`)."""
    if not isinstance(agent_ops, dict):
        return {}
    route = agent_ops.get("route") if isinstance(agent_ops.get("route"), str) else None
    out = {"ops_route": route, "ops_reason": agent_ops.get("reason") if route is None else None, "ops": [],
           "op_types": [], "ops_sum_us": None, "ops_coverage": None, "ops_overhead_us": None}
    if route is None:
        out["ops_reason"] = out["ops_reason"] or "the agent timed no ops"
        return out
    p50 = _num(p50_us)
    ops = []
    for e in agent_ops.get("ops") or []:
        if not isinstance(e, dict):
            continue
        per_call = _num(e.get("op_ns"))
        calls = e.get("calls") if isinstance(e.get("calls"), int) else 1
        mean = per_call * calls / 1e3 if per_call is not None else None
        op = {"index": e.get("index"), "subgraph": e.get("subgraph", 0), "type": str(e.get("type") or "?"),
              "dtypes": e.get("dtypes"), "output_shape": e.get("output_shape"), "calls": calls,
              "per_call_us": None if per_call is None else per_call / 1e3, "mean_us": mean,
              "share": mean / p50 if mean is not None and p50 else None}
        if e.get("error"):
            op["error"] = str(e["error"])
        once = _num(e.get("once_ns"))
        if once is not None:  # CALL_ONCE's initialiser: once per stream, nothing per invoke
            op["once_us"] = once / 1e3
        ops.append(op)
    types: dict[str, dict] = defaultdict(lambda: {"count": 0, "calls": 0, "mean_us": 0.0})
    for op in ops:
        t = types[op["type"]]
        t["count"] += 1
        t["calls"] += op["calls"]
        t["mean_us"] += op["mean_us"] or 0.0
    total = sum(op["mean_us"] or 0.0 for op in ops)
    out["ops"] = ops
    out["op_types"] = sorted(
        ({"type": k, **v, "share": v["mean_us"] / p50 if p50 else None} for k, v in types.items()),
        key=lambda t: -t["mean_us"])
    out["ops_sum_us"] = total
    out["ops_coverage"] = total / p50 if p50 else None
    overhead = _num(agent_ops.get("overhead_ns"))
    out["ops_overhead_us"] = None if overhead is None else overhead / 1e3
    return out


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _us(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _op_name(op: dict) -> str:
    return f"{op['index']}" if not op.get("subgraph") else f"{op['subgraph']}:{op['index']}"


def summary_line(row: dict) -> str:
    if row.get("ops_route") is None:
        return f"per-op time not measured: {row.get('ops_reason')}"
    cov = row.get("ops_coverage")
    bits = [f"route {row['ops_route']}", f"{len(row.get('ops') or [])} ops",
            f"sum {_us(row.get('ops_sum_us'))} µs = {_pct(cov)} of p50 {_us(row.get('p50_us'))} µs"]
    if row.get("ops_overhead_us") is not None:
        bits.append(f"invoke overhead ~{_us(row['ops_overhead_us'])} µs")
    once = [op for op in row.get("ops") or [] if op.get("once_us") is not None]
    if once:
        bits.append(f"CALL_ONCE initialiser {_us(sum(op['once_us'] for op in once))} µs on the first invoke only")
    failed = sum(1 for op in row.get("ops") or [] if op.get("error"))
    if failed:
        bits.append(f"{failed} ops could not run alone")
    return "; ".join(bits)


def _tables(row: dict, top: int) -> tuple[list[list[str]], list[list[str]]]:
    ops = sorted((op for op in row.get("ops") or []), key=lambda op: -(op["mean_us"] or 0.0))[:top]
    by_op = [["op", "type", "dtypes", "output", "calls", "µs/invoke", "share", "cdf"]]
    cdf = 0.0
    for op in ops:
        cdf += op["share"] or 0.0
        shape = "x".join(str(d) for d in op.get("output_shape") or []) or "-"
        by_op.append([_op_name(op), op["type"], str(op.get("dtypes") or "-"), shape, str(op["calls"]),
                      _us(op["mean_us"]) if not op.get("error") else "failed", _pct(op["share"]), _pct(cdf)])
    by_type = [["op type", "ops", "calls", "µs/invoke", "share"]]
    for t in row.get("op_types") or []:
        by_type.append([t["type"], str(t["count"]), str(t["calls"]), _us(t["mean_us"]), _pct(t["share"])])
    return by_op, by_type


def _plain(cells: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return [indent + "  ".join(c.ljust(w) if i in (0, 1, 2) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip() for r in cells]


def render_ops_text(row: dict, top: int = TOP) -> str:
    """One run's per-op section as plain text: the summary line, top ops by time, every op type."""
    head = f"-- per-op time: {row.get('label') or row.get('model')} @ {row.get('where') or row.get('target')}"
    lines = [head, "   " + summary_line(row)]
    if row.get("ops_route") is None:
        return "\n".join(lines) + "\n"
    by_op, by_type = _tables(row, top)
    lines += [f"   top {len(by_op) - 1} ops by time per invoke:", *_plain(by_op, "   "), "   by op type:",
              *_plain(by_type, "   ")]
    return "\n".join(lines) + "\n"


def render_ops_md(row: dict, top: int = TOP) -> str:
    out = [f"### per-op time: {row.get('label') or row.get('model')} @ {row.get('where')}", "",
           summary_line(row), ""]
    if row.get("ops_route") is None:
        return "\n".join(out) + "\n"
    for cells in _tables(row, top):
        out.append("| " + " | ".join(cells[0]) + " |")
        out.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(cells[0]))) + "|")
        out += ["| " + " | ".join(r) + " |" for r in cells[1:]]
        out.append("")
    return "\n".join(out) + "\n"


def render_ops_html(row: dict, top: int = TOP) -> str:
    esc = html.escape
    out = [f"<h3>{esc(str(row.get('label') or row.get('model')))} @ {esc(str(row.get('where')))}</h3>",
           f"<p class='muted'>{esc(summary_line(row))}</p>"]
    if row.get("ops_route") is None:
        return "\n".join(out)
    for cells in _tables(row, top):
        out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in cells[0]) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in cells[1:]]
        out.append("</table>")
    return "\n".join(out)


def ops_report_section(rows: list[dict], fmt: str) -> str:
    """The report's per-op section (table, md, html) for every row measured with --ops; "" when none was (and for
    csv/json, whose rows carry the figures themselves)."""
    with_ops = [r for r in rows if "ops_route" in r]
    if not with_ops or fmt not in ("table", "md", "html"):
        return ""
    if fmt == "html":
        return "<h2>Per-op time</h2>" + "".join(render_ops_html(r) for r in with_ops)
    if fmt == "md":
        return "\n## Per-op time\n\n" + "".join(render_ops_md(r) for r in with_ops)
    return "\n" + "".join(render_ops_text(r) + "\n" for r in with_ops)


def compare_op_types(a: dict, b: dict) -> list[dict]:
    """Op types of two runs lined up (union, by B's time first): time per invoke in each and B/A."""
    ta = {t["type"]: t for t in a.get("op_types") or []}
    tb = {t["type"]: t for t in b.get("op_types") or []}
    out = []
    for name in sorted(set(ta) | set(tb), key=lambda n: -max((tb.get(n) or {}).get("mean_us", 0.0),
                                                          (ta.get(n) or {}).get("mean_us", 0.0))):
        va, vb = (ta.get(name) or {}).get("mean_us"), (tb.get(name) or {}).get("mean_us")
        out.append({"type": name, "a_count": (ta.get(name) or {}).get("count", 0),
                    "b_count": (tb.get(name) or {}).get("count", 0), "a_us": va, "b_us": vb,
                    "delta_us": (vb or 0.0) - (va or 0.0), "ratio": vb / va if va and vb is not None else None})
    return out


def render_compare_ops(rows: list[dict], a: dict, b: dict) -> str:
    if not rows:
        return ""
    cells = [["op type", "A ops", "A µs", "B ops", "B µs", "B-A µs", "B/A"]]
    for r in rows:
        cells.append([r["type"], str(r["a_count"]), _us(r["a_us"]), str(r["b_count"]), _us(r["b_us"]),
                      f"{r['delta_us']:+.2f}", "-" if r["ratio"] is None else f"{r['ratio']:.2f}"])
    head = (f"per-op time by op type, µs per invoke (the ops explain {_pct(a.get('ops_coverage'))} of A's p50, "
            f"{_pct(b.get('ops_coverage'))} of B's)")
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    body = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in cells]
    return "\n" + head + "\n" + "\n".join(body) + "\n"


def print_ops(rows: list[dict], warn=None, stream=None) -> None:
    """`profile --ops`: each run's per-op section; a run whose ops were not timed gets one warning line instead."""
    import sys

    stream = stream or sys.stdout
    for r in rows:
        if r.get("ops_route") is None:
            if warn is not None:
                warn(f"warning: {r.get('model')} @ {r.get('target')}: {summary_line(r)}; whole-model figures only")
            continue
        stream.write("\n" + render_ops_text(r))
    stream.flush()


def stored_op_evidence(db, target: str) -> dict:
    """What `convert --float-ops auto` decides from: the per-op rows of every stored `profile --ops` run on
    `target` ({"target", "machine", "runs", "ops"}), the machine from the runs' device facts (or this host's for
    `local`). Reads only: a missing store is no error (no rows)."""
    import os
    import platform

    from edgeseq.store.results import ResultsStore, default_db_path

    path = db or default_db_path()
    machine = platform.machine() if target == "local" else None
    if not os.path.exists(path):
        return {"target": target, "machine": machine, "runs": 0, "ops": []}
    with ResultsStore(path, create=False) as store:
        records = store.runs(target=target)
    timed = []
    for r in records:
        machine = machine or (r.get("device") or {}).get("machine")
        fields = op_fields((r.get("agent") or {}).get("ops"), (r.get("stats") or {}).get("p50_us"))
        if fields.get("ops"):
            timed.append(fields["ops"])
    return {"target": target, "machine": machine, "runs": len(timed),
            "ops": [op for ops in timed for op in ops if op.get("per_call_us") is not None]}
