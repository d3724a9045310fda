"""The report's sweep sections: "Scaling" (fitted exponents, crossovers, per-step streaming cost, log-log plots) and
"The textbook claims, measured". Empty without sweep cells in the store.

The text comes from `edgeseq.sweep.scaling` / `edgeseq.sweep.claims` as markdown; the HTML page gets the same tables
converted here, and the plots inlined.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edgeseq.core.errors import StoreError
from edgeseq.core.fsio import atomic_save_with


def sweep_section(db: str | Path | None, out_dir: str | Path | None, fmt: str, target: str | None = None,
                  hop_ms: float | None = None) -> str:
    from edgeseq.sweep.claims import claims_markdown, textbook_claims
    from edgeseq.sweep.rows import failed_cells, sweep_rows
    from edgeseq.sweep.scaling import scaling_markdown

    if fmt not in ("html", "md", "table"):
        return ""
    try:
        rows = sweep_rows(db, target)
        failed = failed_cells(db)
    except StoreError as exc:
        return _wrap(f"The sweep sections cannot be shown: {exc.message}.", fmt, [])
    if not rows and not failed:
        return ""
    hop = hop_ms if hop_ms is not None else next((r["hop_ms"] for r in rows if r.get("hop_ms")), None)
    text = scaling_markdown(rows, hop_ms=hop) + "\n" + claims_markdown(textbook_claims(rows))
    if failed:
        text += (f"\n{len(failed)} sweep cell{'s' if len(failed) != 1 else ''} failed and {'is' if len(failed) == 1 else 'are'}"
                 f" recorded with {'its' if len(failed) == 1 else 'their'} reason (first: "
                 f"{failed[0]['config'].get('arch')} n={failed[0]['config'].get('seq_len')} "
                 f"{failed[0]['config'].get('recipe')}: {failed[0]['reason']}).\n")
    pngs = [plot_scaling(rows, Path(out_dir) / "scaling.png")] if out_dir is not None and rows else []
    return _wrap(text, fmt, [p for p in pngs if p is not None])


def sweep_json(db: str | Path | None, target: str | None = None, hop_ms: float | None = None) -> dict:
    """The sweep sections as data for `report --format json`: {"scaling": {fits, crossovers, streaming_costs},
    "claims", "failed_cells"} (empty lists without sweeps; "error" when the store cannot be read)."""
    from edgeseq.sweep.claims import textbook_claims
    from edgeseq.sweep.rows import failed_cells, sweep_rows
    from edgeseq.sweep.scaling import crossovers, scaling_fits, streaming_costs

    empty = {"scaling": {"fits": [], "crossovers": [], "streaming_costs": []}, "claims": [], "failed_cells": []}
    try:
        rows = sweep_rows(db, target)
        failed = failed_cells(db)
    except StoreError as exc:
        return {**empty, "error": exc.message}
    if not rows:
        return {**empty, "failed_cells": failed}
    hop = hop_ms if hop_ms is not None else next((r["hop_ms"] for r in rows if r.get("hop_ms")), None)
    return {"scaling": {"fits": scaling_fits(rows), "crossovers": crossovers(rows),
                        "streaming_costs": streaming_costs(rows, hop_ms=hop)},
            "claims": textbook_claims(rows), "failed_cells": failed}


def _wrap(text: str, fmt: str, pngs: list[Path]) -> str:
    if fmt != "html":
        return "\n" + text
    out = [markdown_html(text)]
    for p in pngs:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        out.append(f"<div><img alt='{html.escape(p.stem)}' src='data:image/png;base64,{data}'></div>")
    return "\n".join(out)


def markdown_html(text: str) -> str:
    """The markdown subset the scaling renderers write (headings, pipe tables, bullets, paragraphs) as HTML."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, body = table[0], [r for r in table[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            table.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            table.append([c.strip() for c in s.strip("|").split("|")])
            continue
        flush()
        if s.startswith("### "):
            out.append(f"<h3>{html.escape(s[4:])}</h3>")
        elif s.startswith("## "):
            out.append(f"<h2>{html.escape(s[3:])}</h2>")
        elif s.startswith("- "):
            out.append(f"<p>• {html.escape(s[2:]).replace('**', '')}</p>")
        elif s:
            out.append(f"<p>{html.escape(s)}</p>")
    flush()
    return "\n".join(out)


def plot_scaling(rows: list[dict], path: Path) -> Path | None:
    """Latency and model memory against n on log-log axes, one line per (target, recipe, arch, form), the fitted
    power law dashed over the lengths it was fitted on, its exponent in the legend."""
    from edgeseq.report.plots import DPI, _plt
    from edgeseq.sweep.scaling import scaling_fits

    fits = scaling_fits(rows)
    if not fits:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    cmap = plt.get_cmap("tab10")
    pairs = sorted({(f["arch"], f["recipe"]) for f in fits})  # one colour per model and recipe; the form is the line
    for f in fits:
        pts = sorted(f["points"], key=lambda p: p["n"])
        colour = cmap(pairs.index((f["arch"], f["recipe"])) % 10)
        form = "stream" if f["form"] == "stream" else "whole"
        name = f"{f['arch']} {f['recipe']} {form}" + (f" @{f['target']}" if len({r['target'] for r in rows}) > 1
                                                       else "")
        for ax, key, fit_key, scale in ((axes[0], "p50_us", "latency", 1.0), (axes[1], "model_peak_kb", "memory",
                                                                               1024.0)):
            xs = [p["n"] for p in pts if p.get(key)]
            ys = [p[key] / scale for p in pts if p.get(key)]
            if not xs:
                continue
            fit = f.get(fit_key)
            label = name + (f" (n^{fit['exponent']:.2f})" if fit else "")
            ax.plot(xs, ys, marker="o", ms=3, color=colour, ls="-" if form == "whole" else ":", label=label)
            if fit:
                fx = [n for n in xs if n >= min(fit["lengths"])]
                ax.plot(fx, [fit["coefficient"] * n ** fit["exponent"] / scale for n in fx], color=colour, ls="--",
                        lw=0.8)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for ax, title, unit in ((axes[0], "latency per invoke", "p50 µs"), (axes[1], "model memory", "MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[:1] in ("2", "5")
                                                   else ""))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sequence length n (stream: context)")
        ax.set_ylabel(unit)
        ax.set_title(f"Scaling: {title} (dashed: fitted power law)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    plt.close(fig)
    return path
