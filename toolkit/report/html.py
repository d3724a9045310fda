"""The report as one self-contained HTML page: a table per target/device, the PNG plots inlined, provenance."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from edgeseq.report.rows import COLUMNS, by_where, device_line

PROVENANCE_HEADERS = (
    "model",
    "where",
    "latest run",
    "when (UTC)",
    "sha256",
    "runtime",
    "options",
    "constraints",
    "file",
)


def _provenance_html(rows: list[dict]) -> list[str]:
    """Where each row's figures came from, so a reader can trace or redo them."""
    out = ["<h2>Provenance</h2><table><tr>" + "".join(f"<th>{h}</th>" for h in PROVENANCE_HEADERS) + "</tr>"]
    for r in rows:
        o = r.get("options") or {}
        opts = " ".join(f"{k}={o.get(k)}" for k in ("threads", "xnnpack", "runs", "warmup"))
        cons = ", ".join(f"{k}={v}" for k, v in (r.get("constraints") or {}).items() if v and k != "cpu_list")
        cells = (
            r["label"],
            r["where"],
            f"#{r['run_id']}",
            r["created_at"][:19],
            r["sha256"][:16],
            r["runtime"],
            opts,
            cons or "-",
            r["model_path"],
        )
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return out


def render_html(rows: list[dict], pngs: list[Path], extra: str = "", answer: str = "") -> str:
    """The page; `answer` (already HTML: "What to ship") comes first, right under the title, so the first screen
    states it; `extra` (already HTML, e.g. the streaming section) goes after the provenance table."""
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgeseq report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
        "font-size:13px;margin-bottom:1em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}img{max-width:100%;"
        "border:1px solid #ddd;margin:0.5em 0}.muted{color:#666;font-size:12px}#answer{background:#f4f8ff;"
        "border-left:4px solid #3a6ea5;padding:0.3em 1em;margin-bottom:1.2em}#answer h3{margin:0.6em 0 0.2em}"
        "#answer ul{margin:0.2em 0}</style></head><body>",
        "<h1>edgeseq profile report</h1>",
        answer,
        f"<p class='muted'>generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
        "latency figures are per invoke, computed on the host from raw samples; model MiB is the agent's peak "
        "resident memory less what Python, numpy and the runtime held before the model loaded, process MiB the whole "
        "process's peak (VmHWM).</p>",
    ]
    for where, group in by_where(rows).items():
        out.append(f"<h2>{esc(where)}</h2><p class='muted'>{esc(device_line(group))}</p><table><tr>")
        out += [f"<th>{esc(h)}</th>" for _, h, _ in COLUMNS]
        out.append("</tr>")
        for r in group:
            out.append("<tr>" + "".join(f"<td>{esc(fmt(r.get(k)))}</td>" for k, _, fmt in COLUMNS) + "</tr>")
        out.append("</table>")
    out.append("<h2>Plots</h2>")
    for p in pngs:
        data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
        out.append(f"<div><img alt='{esc(p.stem)}' src='data:image/png;base64,{data}'></div>")
    out += _provenance_html(rows)
    out.append(extra + "</body></html>")
    return "\n".join(out)
