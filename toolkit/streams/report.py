"""The report's streaming section: per-step latency and memory against the context, as markdown, HTML and a PNG.

Built from the stream runs in the results store (`stream_profile.rows_from_store`): a table per model and kind, the
least-squares slopes (`stream_profile.fit_slopes`), one three-panel plot, and where a model was measured in both
state forms (`--state both`) the host-carried and state-inside runs side by side (`state_pairs`) with which form a
device app should ship and why (`ship_advice`, from the measured step, invoke, host overhead and model memory). Kinds are `StreamKind` members, shown
by their `.label`. A section that cannot be built says why, in the section.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edgeseq.core.errors import StoreError
from edgeseq.core.fsio import atomic_save_with
from edgeseq.models.streamkind import StreamKind
from edgeseq.streams.profile import fit_slopes, rows_from_store

_ORDER = list(StreamKind)
_STYLE = {StreamKind.RECURRENT_STEP: ("o", "-"), StreamKind.KV_CACHE: ("s", "--"), StreamKind.WINDOW: ("^", ":"),
          StreamKind.INTERNAL_STATE: ("D", "-.")}
SAME = 0.03  # whole steps within 3% of each other: either form will do


def _fmt(v, digits=1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _label(kind) -> str:
    return StreamKind.parse(kind).label


def _met(r: dict) -> str:
    share, hop = r.get("deadline_met_share"), r.get("hop_ms")
    if share is None:
        return "-"
    return f"{share:.0%}" + (f" of {hop:g} ms" if hop is not None else "")


def _rss_mb(r: dict, key: str = "peak_rss_kb") -> float | None:
    return None if r.get(key) is None else r[key] / 1024


def _model_slope(s: dict) -> float | None:
    """The model memory's slope; the process peak's for runs stored before the agent measured the model's."""
    return s["model_kb_per_step"] if s.get("model_kb_per_step") is not None else s.get("rss_kb_per_step")


def render_markdown(rows: list[dict], note: str = "") -> str:
    """A table per context row plus the slopes, and `note` (one sentence) first; empty string without either."""
    if not rows and not note:
        return ""
    lines = ["## Streaming", ""]
    if note:
        lines += [note, ""]
    if not rows:
        return "\n".join(lines)
    lines += ["Per-step latency (whole step: set the input, invoke, carry the state the host carries, read the "
              "output) and memory as the context grows.", "",
              "| model | kind | context | p50 µs/step | p99 µs/step | invoke p50 µs | state bytes | model MiB |"
              " process MiB | deadline met |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {_label(r['kind'])} | {r['context']} | {_fmt(r['p50_us'])} "
                     f"| {_fmt(r.get('p99_us'))} | {_fmt(r.get('invoke_p50_us'), 2)} "
                     f"| {_fmt(r.get('state_bytes'), 0)} | {_fmt(_rss_mb(r, 'model_peak_kb'))} | {_fmt(_rss_mb(r))} "
                     f"| {_met(r)} |")
    lines += ["", "Fitted slopes (least squares over the contexts measured):", "",
              "| model | kind | contexts | µs per step of context | state bytes per step of context "
              "| model KiB per step |",
              "|---|---|---|---:|---:|---:|"]
    for s in fit_slopes(rows):
        ctx = f"{s['contexts'][0]}..{s['contexts'][-1]}" if s["contexts"] else "-"
        lines.append(f"| {s['model']} | {_label(s['kind'])} | {ctx} | {_fmt(s['latency_us_per_step'], 4)} "
                     f"| {_fmt(s['state_bytes_per_step'], 1)} | {_fmt(_model_slope(s), 2)} |")
    pairs = state_pairs(rows)
    if pairs:
        lines += ["", "### State carried by the host vs kept inside the model", "",
                  "Each pair is one model, recipe and context exported both ways (`--state both`). Host overhead = "
                  "whole step - invoke: what the host does around the invoke (the input, the state it carries, the "
                  "output).", "",
                  "| model | form | recipe | context | step p50 µs host / inside | invoke p50 µs host / inside "
                  "| host overhead µs host / inside | state bytes | model MB host / inside | faster |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for h, i in pairs:
            lines.append(f"| {h['model']} | {_label(h['kind'])} | {h.get('recipe') or '-'} | {h['context']} "
                         f"| {_fmt(h['p50_us'], 2)} / {_fmt(i['p50_us'], 2)} "
                         f"| {_fmt(h.get('invoke_p50_us'), 2)} / {_fmt(i.get('invoke_p50_us'), 2)} "
                         f"| {_fmt(_over(h), 2)} / {_fmt(_over(i), 2)} | {_fmt(h.get('state_bytes'), 0)} "
                         f"| {_fmt(_rss_mb(h, 'model_peak_kb'), 2)} / {_fmt(_rss_mb(i, 'model_peak_kb'), 2)} "
                         f"| {_faster(h, i)} |")
        lines += [""] + [f"- {line}" for line in ship_advice(pairs)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ host vs inside
def state_pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(host-carried row, state-inside row) of the same model, recipe, context, frames per invoke and form."""
    def key(r):
        return (r.get("target"), r["model"], r.get("recipe"), r["context"], r.get("frames") or 1)

    inside = {(*key(r), r.get("form")): r for r in rows if r["kind"] == StreamKind.INTERNAL_STATE}
    pairs = [(r, inside[(*key(r), r["kind"])]) for r in rows
             if r["kind"] in (StreamKind.RECURRENT_STEP, StreamKind.KV_CACHE) and (*key(r), r["kind"]) in inside]
    return sorted(pairs, key=lambda p: (p[0]["model"], _ORDER.index(p[0]["kind"]), str(p[0].get("recipe")),
                                        p[0]["context"]))


def _over(r: dict) -> float | None:
    return None if r.get("invoke_p50_us") is None else r["p50_us"] - r["invoke_p50_us"]


def _faster(h: dict, i: dict) -> str:
    ratio = i["p50_us"] / h["p50_us"]
    return "either" if abs(ratio - 1) <= SAME else (f"inside ({ratio:.2f}x)" if ratio < 1 else f"host ({ratio:.2f}x)")


def ship_advice(pairs: list[tuple[dict, dict]]) -> list[str]:
    """Per form (recurrent state, KV cache): which form a device app should ship, and why, from the pairs measured."""
    import numpy as np

    out = []
    for form in (StreamKind.RECURRENT_STEP, StreamKind.KV_CACHE):
        mine = [(h, i) for h, i in pairs if h["kind"] == form]
        if not mine:
            continue
        ratio = float(np.median([i["p50_us"] / h["p50_us"] for h, i in mine]))
        saved = float(np.median([(_over(h) or 0) - (_over(i) or 0) for h, i in mine]))
        added = float(np.median([(i.get("invoke_p50_us") or 0) - (h.get("invoke_p50_us") or 0) for h, i in mine]))
        mem = [(i["model_peak_kb"] - h["model_peak_kb"]) for h, i in mine
               if i.get("model_peak_kb") is not None and h.get("model_peak_kb") is not None]
        memory = f"; the model's memory {float(np.median(mem)):+,.0f} KB inside" if mem else ""
        why = (f"with the state inside the host's work per step drops by {saved:.2f} µs and the invoke changes by "
               f"{added:+.2f} µs (the runtime reads and writes the variables itself)")
        worst = max(mine, key=lambda p: p[1]["p50_us"] / p[0]["p50_us"])
        where = f"{len(mine)} pair{'s' if len(mine) != 1 else ''}, contexts {mine[0][0]['context']}.." \
                f"{mine[-1][0]['context']}"
        if ratio < 1 - SAME:
            verdict = f"ship the state inside: a whole step takes {ratio:.2f}x the host-carried one (median of {where})"
        elif ratio > 1 + SAME:
            verdict = (f"ship the host-carried form: with the state inside a whole step takes {ratio:.2f}x as long "
                       f"(median of {where}; worst {worst[1]['p50_us'] / worst[0]['p50_us']:.2f}x at context "
                       f"{worst[0]['context']})")
        else:
            verdict = (f"either form: a whole step takes {ratio:.2f}x the host-carried one (median of {where}); the "
                       "state inside leaves the device app nothing to carry")
        out.append(f"**{form.label}**: {verdict}; {why}{memory}.")
    return out


def render_html(rows: list[dict], png: Path | None, note: str = "") -> str:
    """The section as HTML (the PNG inlined), `note` (one sentence) first; empty string without either."""
    if not rows and not note:
        return ""
    head = "<h2>Streaming</h2>" + (f"<p>{html.escape(note)}</p>" if note else "")
    if not rows:
        return head
    out = [head + "<p class='muted'>Per-step latency (set x/pos, invoke, carry state) and memory as the context "
           "grows: a recurrent state stays flat, a KV cache grows with its capacity, window recomputation re-runs the "
           "whole window for every step.</p><table><tr>"]
    heads = ["model", "kind", "context", "p50 µs/step", "p99 µs/step", "invoke p50 µs", "state bytes", "model MiB",
             "process MiB", "deadline met"]
    out += [f"<th>{h}</th>" for h in heads] + ["</tr>"]
    for r in rows:
        cells = [r["model"], _label(r["kind"]), r["context"], _fmt(r["p50_us"]), _fmt(r.get("p99_us")),
                 _fmt(r.get("invoke_p50_us"), 2), _fmt(r.get("state_bytes"), 0), _fmt(_rss_mb(r, "model_peak_kb")),
                 _fmt(_rss_mb(r)), _met(r)]
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table><table><tr><th>model</th><th>kind</th><th>µs per step of context</th>"
               "<th>state bytes per step of context</th><th>model KiB per step</th></tr>")
    for s in fit_slopes(rows):
        cells = [s["model"], _label(s["kind"]), _fmt(s["latency_us_per_step"], 4),
                 _fmt(s["state_bytes_per_step"], 1), _fmt(_model_slope(s), 2)]
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    pairs = state_pairs(rows)
    if pairs:
        out.append("<h3>State carried by the host vs kept inside the model</h3><table><tr>" + "".join(
            f"<th>{h}</th>" for h in ("model", "form", "recipe", "context", "step p50 µs host / inside",
                                       "invoke p50 µs host / inside", "host overhead µs host / inside",
                                       "state bytes", "model MB host / inside", "faster")) + "</tr>")
        for h, i in pairs:
            cells = [h["model"], _label(h["kind"]), h.get("recipe") or "-", h["context"],
                     f"{_fmt(h['p50_us'], 2)} / {_fmt(i['p50_us'], 2)}",
                     f"{_fmt(h.get('invoke_p50_us'), 2)} / {_fmt(i.get('invoke_p50_us'), 2)}",
                     f"{_fmt(_over(h), 2)} / {_fmt(_over(i), 2)}", _fmt(h.get("state_bytes"), 0),
                     f"{_fmt(_rss_mb(h, 'model_peak_kb'), 2)} / {_fmt(_rss_mb(i, 'model_peak_kb'), 2)}", _faster(h, i)]
            out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        out.append("</table><ul>" + "".join(f"<li>{html.escape(a.replace('**', ''))}</li>"
                                           for a in ship_advice(pairs)) + "</ul>")
    if png is not None and Path(png).is_file():
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        out.append(f"<div><img alt='streaming' src='data:image/png;base64,{data}'></div>")
    return "\n".join(out)


def plot_streaming(rows: list[dict], path: str | Path) -> Path | None:
    """Per-step latency and state bytes against the context (log-log), one line per model and kind, slope in
    the legend. None without streaming rows."""
    if not rows:
        return None
    from edgeseq.report.plots import DPI, _plt

    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.6))
    cmap = plt.get_cmap("tab10")
    slopes = {(s["target"], s["model"], s["kind"]): s for s in fit_slopes(rows)}
    keys = sorted({(r.get("target"), r["model"], r["kind"]) for r in rows},
                  key=lambda k: (k[1], _ORDER.index(StreamKind.parse(k[2]))))
    models = sorted({k[1] for k in keys})
    mem_key = "model_peak_kb" if any(r.get("model_peak_kb") is not None for r in rows) else "peak_rss_kb"

    def tag(value, unit, top, span):
        """The fitted slope; 'flat' when it moves the value by < 5% over the contexts measured."""
        if value is None:
            return ""
        return " (flat)" if abs(value) * span < 0.05 * top else f" ({value:+.3g} {unit}/step)"

    for key in keys:
        pts = sorted((r for r in rows if (r.get("target"), r["model"], r["kind"]) == key), key=lambda r: r["context"])
        kind = StreamKind.parse(key[2])
        marker, ls = _STYLE[kind]
        colour = cmap((models.index(key[1]) * 3 + _ORDER.index(kind)) % 10)
        s = slopes[key]
        ctx = [r["context"] for r in pts]
        span = max(ctx) - min(ctx)
        name = f"{key[1]} {kind.label}"
        lat = [r["p50_us"] for r in pts]
        ax1.plot(ctx, lat, marker=marker, ls=ls, color=colour,
                 label=name + tag(s["latency_us_per_step"], "µs", max(lat), span))
        for ax, field, unit, scale in ((ax2, "state_bytes", "B", 1.0), (ax3, mem_key, "KiB", 1024.0)):
            ys = [r.get(field) for r in pts]
            if all(y is not None for y in ys):
                slope = s["state_bytes_per_step" if field == "state_bytes" else
                          "model_kb_per_step" if field == "model_peak_kb" else "rss_kb_per_step"]
                ax.plot(ctx, [y / scale for y in ys] if field == mem_key else ys, marker=marker, ls=ls,
                        color=colour, label=name + tag(slope, unit, max(ys), span))
    panels = ((ax1, "p50 per-step latency (µs)", "Per-step latency", True),
              (ax2, "state / KV cache / window bytes", "Memory carried between steps", True),
              (ax3, "model memory (MiB)" if mem_key == "model_peak_kb" else "agent peak RSS (MiB)",
               "Model memory (peak less the runtime's baseline)" if mem_key == "model_peak_kb"
               else "Process peak memory (VmHWM)", False))
    for ax, ylabel, title, logy in panels:
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("context (steps)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    wheres = sorted({str(r.get("target")) for r in rows})
    fig.suptitle(f"Streaming: cost per new step as the context grows ({', '.join(wheres)})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
    make_dirs(path.parent)
    atomic_save_with(path, lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    plt.close(fig)
    return path


def streaming_section(db: str | Path | None, out_dir: str | Path | None, fmt: str, target: str | None = None) -> str:
    """The report's streaming section in `fmt` (html/md/table), writing streaming.png to out_dir; "" without stream
    runs. Stream runs whose stream block cannot be read are left out and named in one sentence; a store that cannot
    be read here makes the section one sentence saying why."""
    skipped: list[str] = []
    try:
        rows = rows_from_store(db, target, skipped=skipped)
    except StoreError as exc:
        rows, note = [], f"The streaming section cannot be shown: {exc.message}."
    else:
        note = _skipped_note(skipped)
    png = plot_streaming(rows, Path(out_dir) / "streaming.png") if out_dir is not None and rows else None
    if fmt == "html":
        return render_html(rows, png, note)
    if fmt in ("md", "table"):
        text = render_markdown(rows, note)
        return "\n" + text if text else ""
    return ""


def streaming_json(db: str | Path | None, target: str | None = None) -> dict:
    """The streaming section as data for `report --format json`: {"runs", "ship_advice", "note"}."""
    skipped: list[str] = []
    try:
        rows = rows_from_store(db, target, skipped=skipped)
    except StoreError as exc:
        return {"runs": [], "ship_advice": [], "note": f"The streaming section cannot be shown: {exc.message}."}
    return {"runs": rows, "ship_advice": ship_advice(state_pairs(rows)), "note": _skipped_note(skipped) or None}


def _skipped_note(skipped: list[str]) -> str:
    if not skipped:
        return ""
    n = len(skipped)
    return (f"{n} stored stream run{'s' if n != 1 else ''} left out of this section because "
            f"{'its stream record is' if n == 1 else 'their stream records are'} unreadable ({skipped[0]}).")
