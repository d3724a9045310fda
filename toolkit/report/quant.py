"""The report's "where quantization loses accuracy" section: the per-op table of every quantized file in the report
that has a `quant-report` beside it (<stem>.quant.json), and for the others the command that makes one."""

from __future__ import annotations

import html
import json
from pathlib import Path

FLOAT_RECIPES = (None, "", "fp32", "fp16")


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and str(data.get("schema", "")).startswith("edgeseq.quant-report/") \
        and isinstance(data.get("ops"), list) and isinstance(data.get("ranked"), list) else None


def quantized_files(rows: list[dict]) -> dict[str, dict | None]:
    """model path -> its saved quant report (None when there is none), for every quantized file in `rows`."""
    from edgeseq.quantize.quant_report import sidecar_path

    out: dict[str, dict | None] = {}
    for r in rows:
        path, recipe = r.get("model_path"), str(r.get("recipe") or "")
        if path and recipe.split("-")[0] not in FLOAT_RECIPES and path not in out:
            out[path] = _load(sidecar_path(path))
    return out


def quant_report_section(rows: list[dict], fmt: str) -> str:
    """HTML or markdown; "" when the report holds no quantized file (and for the other formats)."""
    from edgeseq.report.text import render_cells
    from edgeseq.report.views import quant_report_rows

    files = quantized_files(rows)
    if not files or fmt not in ("html", "md"):
        return ""
    esc = html.escape
    parts = ["<h2>Where quantization loses accuracy</h2>" if fmt == "html" else "\n## Where quantization loses accuracy\n"]
    for path, rep in files.items():
        name = Path(path).name
        if rep is None:
            hint = f"no per-op report saved: run edgeseq quant-report {path} --dataset DATA"
            parts.append(f"<h3>{esc(name)}</h3><p>{esc(hint)}</p>" if fmt == "html" else f"\n### {name}\n\n{hint}\n")
            continue
        head, cells = quant_report_rows(rep)
        about = (f"{rep['summary']} ({rep['samples']} test samples of {rep['dataset']}; reference: "
                 f"{rep['reference']}; {rep['matched']} of {rep['total']} ops matched)")
        table = render_cells([head, *cells], fmt, left=len(head))
        parts.append(f"<h3>{esc(name)}</h3><p>{esc(about)}</p>{table}" if fmt == "html"
                     else f"\n### {name}\n\n{about}\n\n{table}")
    return "".join(parts)
