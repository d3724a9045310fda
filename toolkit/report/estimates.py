"""The report's "Estimated vs measured" section: each measured file on a target with per-op runs, estimated as
`edgeseq estimate` would (the fit leaves out that file's own runs, so it is predicted as if never run), beside its
measured p50, with the error; and `sweep --mode estimate` cells beside the measured cells of the same point.

`pairs` is the pure part (estimated, measured, error); `estimate_rows` reads the store; `estimates_section` renders.
"""

from __future__ import annotations

import html
from pathlib import Path


def pairs(estimated: dict, measured: dict) -> list[dict]:
    """{key: {"p50_us", "p50_us_range", ...}} and {key: measured p50 µs} -> one row per key in both: the estimate's
    fields plus measured_us and error (estimated / measured - 1), worst error first."""
    out = []
    for key, est in estimated.items():
        m = measured.get(key)
        if m is None or not m or est.get("p50_us") is None:
            continue
        out.append({**est, "key": key, "estimated_us": est["p50_us"], "measured_us": float(m),
                    "error": est["p50_us"] / float(m) - 1.0})
    return sorted(out, key=lambda r: -abs(r["error"]))


def _sweep_pairs(db, target: str | None) -> list[dict]:
    from edgeseq.store.results import ResultsStore
    from edgeseq.sweep.rows import sweep_rows

    point = ("target", "arch", "size", "recipe", "form", "seq_len")
    measured = {tuple(r[k] for k in point): r["p50_us"] for r in sweep_rows(db, target)}
    with ResultsStore(db, create=False) as store:
        cells = store.cells()
    estimated = {}
    for c in cells.values():
        cfg, res = c["config"], c.get("result") or {}
        if c["status"] != "ok" or not cfg.get("estimate") or (target and cfg.get("target") != target):
            continue
        key = tuple(cfg.get(k) for k in point)
        estimated[key] = {"model": f"{cfg['arch']} T={cfg['seq_len']} {cfg['recipe']} ({cfg['form']}, sweep)",
                          "target": cfg["target"], "p50_us": res.get("p50_us"),
                          "p50_us_range": res.get("p50_us_range")}
    return pairs(estimated, measured)


def estimate_rows(db: str | Path | None, target: str | None = None) -> list[dict]:
    """Pairs for every measured file (XNNPACK on, latest run per file) on every target with per-op runs."""
    from edgeseq.core.errors import EdgeseqError
    from edgeseq.estimate.fit import fit
    from edgeseq.estimate.grid import is_calibration_file
    from edgeseq.estimate.predict import calibration_runs, estimate_file
    from edgeseq.store.results import ResultsStore

    with ResultsStore(db, create=False) as store:
        runs = store.runs(target=target)
    out = []
    for tgt in sorted({r["target"] for r in runs}):
        try:
            cal, toolchain = calibration_runs(db, tgt)
        except EdgeseqError:
            continue  # no per-op runs there: nothing to estimate from
        latest = {}
        for r in runs:
            opts = r.get("options") or {}
            if r["target"] != tgt or opts.get("stream") or opts.get("xnnpack") is False:
                continue
            if is_calibration_file(r["model_path"]) or not Path(r["model_path"]).is_file():
                continue
            latest[r["model_sha256"]] = r
        estimated, measured = {}, {}
        for sha, r in latest.items():
            pred = fit([c for c in cal if c.sha256 != sha], tgt, toolchain)
            try:
                estimated[sha] = {**estimate_file(pred, r["model_path"]), "model": r["model_name"]}
            except EdgeseqError:
                continue
            measured[sha] = r.get("p50_us")
        out += pairs(estimated, measured)
    try:
        out += _sweep_pairs(db, target)
    except EdgeseqError:
        pass  # a store without sweep cells
    return out


def _cells(rows: list[dict]) -> list[list[str]]:
    head = ["target", "model", "measured p50 µs", "estimated µs", "range", "error"]
    body = []
    for r in rows:
        rng = r.get("p50_us_range") or [None, None]
        body.append([str(r.get("target")), str(r.get("model")), f"{r['measured_us']:.1f}", f"{r['estimated_us']:.1f}",
                     "-" if rng[0] is None else f"{rng[0]:.1f}-{rng[1]:.1f}", f"{100 * r['error']:+.1f} %"])
    return [head, *body]


def estimates_section(db: str | Path | None, fmt: str, target: str | None = None) -> str:
    """The section for table, md and html ("" when nothing has both an estimate and a measurement)."""
    from edgeseq.report.text import render_cells

    if fmt not in ("table", "md", "html"):
        return ""
    rows = estimate_rows(db, target)
    if not rows:
        return ""
    within = sum(abs(r["error"]) <= 0.10 for r in rows)
    lead = (f"{within} of {len(rows)} within +-10 % of measured (estimates from per-op runs: `edgeseq calibrate`, "
            "`profile --ops`; each file predicted without its own runs)")
    table = render_cells(_cells(rows), fmt)
    if fmt == "html":
        return f"<h2>Estimated vs measured</h2><p class='muted'>{html.escape(lead)}</p>" + table
    if fmt == "md":
        return "\n## Estimated vs measured\n\n" + lead + "\n\n" + table
    return "\n-- estimated vs measured: " + lead + "\n" + table + "\n"
