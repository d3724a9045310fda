"""The report's PNG plots, drawn with matplotlib's Agg backend (no display needed, no TensorFlow).

Each function takes report rows (one per model x target x options group, see `edgeseq.report.dispatch.load_groups`) and
writes one PNG. Colours mark the target/device, so a fleet's figures can share one plot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseq.core.fsio import atomic_save_with
from edgeseq.core.stats import pareto_front

DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colours(rows: list[dict]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    keys = sorted({r["where"] for r in rows})
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def _legend(ax, colours: dict, **kw) -> None:
    if len(colours) > 1:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=c, label=k) for k, c in colours.items()], fontsize=8, **kw)


def _label(r: dict, rows: list[dict]) -> str:
    """The row's label, with its target when the plot mixes several."""
    return r["label"] if len({x["where"] for x in rows}) == 1 else f"{r['label']} @ {r['target']}"


def _title_where(rows: list[dict]) -> str:
    wheres = sorted({r["where"] for r in rows})
    return wheres[0] if len(wheres) == 1 else f"{len(wheres)} targets"


def _scale(ax, axis: str, values) -> None:
    """Log scale only where the values span a decade or more; plain numbers on the ticks either way."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    vals = [float(v) for v in values if v and v > 0]
    if not vals or max(vals) / min(vals) < 8:
        return
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _empty(path: Path, title: str, text: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True, transform=ax.transAxes)
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def latency_distribution(rows: list[dict], path: Path) -> Path:
    """Box plot of the raw timed invokes per model (whiskers 1st-99th percentile), p50 printed next to each box."""
    plt = _plt()
    rows = [r for r in rows if len(r.get("samples_us", [])) > 0]
    if not rows:
        return _empty(path, "Latency distribution", "no runs stored")
    rows = sorted(rows, key=lambda r: (r["where"], r["p50_us"]), reverse=True)
    colours = _colours(rows)
    data = [np.asarray(r["samples_us"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    bp = ax.boxplot(
        data,
        vert=False,
        whis=(1, 99),
        showfliers=True,
        patch_artist=True,
        widths=0.6,
        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
    )
    for patch, r in zip(bp["boxes"], rows, strict=True):
        patch.set_facecolor(colours[r["where"]])
        patch.set_alpha(0.55)
    for med in bp["medians"]:
        med.set_color("black")
    ax.set_yticks(range(1, len(rows) + 1), [_label(r, rows) for r in rows], fontsize=8)
    _scale(ax, "x", [min(float(d.min()) for d in data), max(float(d.max()) for d in data) / 4])
    for i, r in enumerate(rows, start=1):
        ax.annotate(f"p50 {r['p50_us']:.1f}", (r["p50_us"], i + 0.32), fontsize=7, ha="center")
    ax.set_xlabel("latency per invoke (µs); box = p25-p75, whiskers = p1-p99")
    ax.set_title(f"Latency distribution per model: {_title_where(rows)}")
    ax.grid(axis="x", alpha=0.3)
    _legend(ax, colours, loc="lower right")
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def latency_vs_size_figure(rows: list[dict]):
    """The latency-vs-size figure (rows non-empty), labels placed apart (`edgeseq.report.labels`)."""
    from edgeseq.report.labels import place_labels

    plt = _plt()
    colours = _colours(rows)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for r in rows:
        x, y = r["model_size_bytes"] / 1024, r["p50_us"]
        ax.errorbar(
            x,
            y,
            yerr=[[y - r["min_us"]], [r["p90_us"] - y]],
            fmt="o",
            color=colours[r["where"]],
            ms=6,
            capsize=3,
            alpha=0.85,
        )
    _scale(ax, "x", [r["model_size_bytes"] / 1024 for r in rows])
    _scale(ax, "y", [r["p50_us"] for r in rows])
    ax.set_xlabel("model file size (KiB)")
    ax.set_ylabel("p50 latency (µs); bar = min..p90")
    ax.set_title(f"Latency vs model size: {_title_where(rows)}")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, colours, loc="best")
    place_labels(ax, [(r["model_size_bytes"] / 1024, r["p50_us"]) for r in rows], [r["label"] for r in rows])
    return fig


def latency_vs_size(rows: list[dict], path: Path) -> Path:
    if not rows:
        return _empty(path, "Latency vs model size", "no runs stored")
    fig = latency_vs_size_figure(rows)
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    _plt().close(fig)
    return path


def memory_per_model(rows: list[dict], path: Path) -> Path:
    """The model's own memory (peak minus the runtime's baseline); the process's peak in each bar's label. Runs
    stored without a model figure (older agents, benchmark_model) are left out unless no run has one."""
    plt = _plt()
    key = "model_peak_kb" if any(r.get("model_peak_kb") is not None for r in rows) else "peak_rss_kb"
    rows = [r for r in rows if r.get(key)]
    if not rows:
        return _empty(path, "Memory per model", "no memory figure recorded")
    rows = sorted(rows, key=lambda r: (r["where"], -r[key]))  # top to bottom once inverted
    colours = _colours(rows)
    mb = [r[key] / 1024 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
    bars = ax.barh(range(len(rows)), mb, color=[colours[r["where"]] for r in rows], alpha=0.8)
    ax.set_yticks(range(len(rows)), [_label(r, rows) for r in rows], fontsize=8)
    ax.invert_yaxis()
    for bar, v, r in zip(bars, mb, rows, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {v:.1f} MB (file {r['model_size_bytes'] / 1024:.0f} KiB"
            + (f", process peak {r['peak_rss_kb'] / 1024:.1f} MB)" if r.get("peak_rss_kb") else ")"),
            va="center",
            fontsize=7,
        )
    ax.set_xlim(0, max(mb) * 1.6)
    ax.set_xlabel("model memory (MiB): peak resident memory less what Python, numpy and the runtime held before"
                  if key == "model_peak_kb" else "agent process peak resident memory, VmHWM (MB)")
    ax.set_title(f"Memory per model: {_title_where(rows)}")
    ax.grid(axis="x", alpha=0.3)
    _legend(ax, colours, loc="lower right")
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def accuracy_vs_latency_figure(rows: list[dict]):
    """The accuracy-vs-latency figure (rows with an accuracy, non-empty), labels placed apart."""
    from edgeseq.report.labels import place_labels

    plt = _plt()
    colours = _colours(rows)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for where, colour in colours.items():
        group = [r for r in rows if r["where"] == where]
        pts = [(r["p50_us"], r["accuracy"]) for r in group]
        front = set(pareto_front(pts))
        for i, r in enumerate(group):
            on = i in front
            ax.scatter(
                r["p50_us"],
                r["accuracy"],
                s=70 if on else 35,
                color=colour,
                zorder=3,
                edgecolors="black" if on else "none",
                linewidths=1.4,
            )
        fp = sorted((pts[i] for i in front), key=lambda p: p[0])
        if fp:
            xs, ys = zip(*fp, strict=True)
            ax.step(
                xs,
                ys,
                where="post",
                color=colour,
                alpha=0.7,
                lw=1.5,
                ls="--",
                label=f"Pareto front{'' if len(colours) == 1 else ' ' + where}",
            )
    _scale(ax, "x", [r["p50_us"] for r in rows])
    ax.set_xlabel("p50 latency (µs)")
    ax.set_ylabel("accuracy (from the manifest)")
    ax.set_title(f"Accuracy vs latency: {_title_where(rows)} (ringed = Pareto-optimal)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    place_labels(ax, [(r["p50_us"], r["accuracy"]) for r in rows], [r["label"] for r in rows])
    return fig


def accuracy_vs_latency(rows: list[dict], path: Path) -> Path:
    """Scatter of accuracy against p50 per target; the Pareto front (nothing both faster and more accurate) is
    drawn as a step line with ringed markers."""
    rows = [r for r in rows if r.get("accuracy") is not None]
    if not rows:
        return _empty(
            path,
            "Accuracy vs latency",
            "no accuracy recorded: profile models that have a converter manifest with validation results",
        )
    fig = accuracy_vs_latency_figure(rows)
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    _plt().close(fig)
    return path


PLOTS = {
    "latency_distribution.png": latency_distribution,
    "latency_vs_size.png": latency_vs_size,
    "memory_per_model.png": memory_per_model,
    "accuracy_vs_latency.png": accuracy_vs_latency,
}


def op_types(rows: list[dict], path: Path, top: int = 12) -> Path:
    """Per-op time by op type (profile --ops): µs per invoke, one bar per run measured with --ops, for the op types
    that cost the most in any of them; the label says what share of its p50 the ops explain."""
    plt = _plt()
    runs = [r for r in rows if r.get("ops_route") and r.get("op_types")]
    if not runs:
        return _empty(path, "Per-op time by op type", "no run was measured with --ops")
    worst: dict[str, float] = {}
    for r in runs:
        for t in r["op_types"]:
            worst[t["type"]] = max(worst.get(t["type"], 0.0), t["mean_us"] or 0.0)
    types = sorted(worst, key=lambda k: -worst[k])[:top][::-1]
    height = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(types) * max(1, len(runs) * 0.6)))
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(runs):
        by = {t["type"]: t["mean_us"] or 0.0 for t in r["op_types"]}
        ys = [k + (i - (len(runs) - 1) / 2) * height for k in range(len(types))]
        cov = r.get("ops_coverage")
        label = _label(r, runs) + (f" (ops = {100 * cov:.0f}% of p50 {r['p50_us']:.1f} µs)" if cov else "")
        ax.barh(ys, [by.get(t, 0.0) for t in types], height=height, color=cmap(i % 10), label=label)
    ax.set_yticks(range(len(types)))
    ax.set_yticklabels(types, fontsize=8)
    ax.set_xlabel("µs per invoke (op time x calls)")
    ax.set_title(f"Per-op time by op type ({_title_where(runs)})")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight"))
    plt.close(fig)
    return path


def write_plots(rows: list[dict], out_dir: Path) -> list[Path]:
    """All plots (and the per-op one when a run has --ops figures); each is drawn to a temporary file and renamed,
    so a failure never leaves half a PNG."""
    import os

    from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
    make_dirs(out_dir)
    paths = []
    plots = dict(PLOTS)
    if any(r.get("ops_route") for r in rows):
        plots["op_types.png"] = op_types
    for name, fn in plots.items():
        final = out_dir / name
        tmp = out_dir / f".{name}.tmp.png"
        try:
            fn(rows, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(final)
    return paths
