"""The report: everything in the results store as tables (terminal, markdown, csv, json), PNG plots and one
self-contained HTML page, plus the streaming section when stream runs are stored.

This module is the dispatch (`write_report`: files; `show_report`: what `edgeseq report` prints or writes). The
parts live beside it: `report_rows` (grouping and columns), `report_text` (table, md, csv, json), `report_html`
(the page), `stream_report` (the streaming section), `plots`; `compare` puts two models or runs side by side.
Their public names stay importable from here.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from edgeseq.core.errors import EdgeseqError, InputError, StoreError
from edgeseq.profiling.ops import ops_report_section
from edgeseq.report.compare import compare_runs, print_compare
from edgeseq.report.estimates import estimates_section
from edgeseq.report.quant import quant_report_section
from edgeseq.report.rows import COLUMNS, Warn, load_groups, load_report, warn_damage
from edgeseq.report.text import fit_columns, print_table, render_csv, render_json, render_md, render_text
from edgeseq.store.results import ResultsStore

FORMATS = ("table", "md", "csv", "json", "html")
_TEXT_RENDERERS = {"table": render_text, "md": render_md, "csv": render_csv, "json": render_json}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown report format {fmt!r}", f"choose one of {', '.join(FORMATS)}")


def _answer(db, target: str | None, budgets: dict | None, fmt: str):
    """The "What to ship" section in `fmt` (the data itself for json)."""
    from edgeseq.report.answer import answer_html, answer_markdown, ship_answer

    answer = ship_answer(db, target=target, budgets=budgets)
    return answer if fmt == "json" else answer_html(answer) if fmt == "html" else answer_markdown(answer)


def _json_sections(db, target: str | None, budgets: dict | None) -> dict:
    """Every section the text report shows, as data: the answer first, then streaming, scaling, claims, and the
    estimated-vs-measured pairs."""
    from edgeseq.report.estimates import estimate_rows
    from edgeseq.streams.report import streaming_json
    from edgeseq.sweep.report import sweep_json

    hop = (budgets or {}).get("hop_ms")
    return {"answer": _answer(db, target, budgets, "json"), "streaming": streaming_json(db, target),
            **sweep_json(db, target, hop_ms=hop), "estimates": estimate_rows(db, target)}


def write_report(
    db: str | Path | None, out_dir: str | Path, fmt: str = "html", target: str | None = None, warn: Warn = None,
    budgets: dict | None = None,
) -> Path:
    """Write the report in `fmt` (plus the PNG plots) under `out_dir`; returns the main file's path. It opens with
    "What to ship" (`edgeseq.report.answer`, under `budgets`: latency_ms, memory_mb, hop_ms, min_accuracy, as
    `recommend` takes them). The store is only read; `warn` gets one line when damaged rows were skipped."""
    from edgeseq.core.fsio import atomic_write_text
    from edgeseq.report.plots import write_plots
    from edgeseq.streams.report import streaming_section
    from edgeseq.sweep.report import sweep_section

    _check_format(fmt)
    out_dir = Path(out_dir)
    with ResultsStore(db, create=False) as store:
        rows = load_groups(store, target=target, with_samples=True)
        warn_damage(store, warn)
    if not rows:
        raise StoreError(f"the results store {store.path} holds no runs", "run `edgeseq profile` first")
    answer = _answer(db, target, budgets, fmt) if fmt not in ("csv", "json") else ""
    hop = (budgets or {}).get("hop_ms")
    try:
        from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
        make_dirs(out_dir)
        pngs = write_plots([r for r in rows if _plottable(r)], out_dir)
        streaming = streaming_section(db, out_dir, fmt, target)  # "" when no streaming runs are stored
        streaming = ops_report_section(rows, fmt) + streaming  # per-op tables of --ops runs ("" when none)
        streaming = quant_report_section(rows, fmt) + streaming  # per-op error of quantized files (quant-report)
        streaming += sweep_section(db, out_dir, fmt, target, hop_ms=hop)  # scaling, the claims ("" without sweeps)
        streaming += estimates_section(db, fmt, target)  # estimated vs measured ("" without per-op runs)
        if fmt == "html":
            from edgeseq.report.html import render_html

            path = atomic_write_text(out_dir / "report.html", render_html(rows, pngs, extra=streaming, answer=answer))
        else:
            if fmt == "json":
                text = render_json(rows, _json_sections(db, target, budgets))
            elif fmt == "md":
                text = render_md(rows, answer) + streaming
            else:
                text = (answer + "\n" if answer else "") + _TEXT_RENDERERS[fmt](rows) + streaming
            path = atomic_write_text(out_dir / f"report.{'txt' if fmt == 'table' else fmt}", text)
        return path
    except OSError as exc:
        raise InputError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None


def show_report(
    db: str | Path | None,
    fmt: str = "table",
    out_dir: str | Path | None = None,
    target: str | None = None,
    warn: Warn = None,
    stream=None,
    wide: bool = False,
    budgets: dict | None = None,
) -> Path | None:
    """What `edgeseq report` does. With `out_dir` (html: ./report when none is given) the report is written there
    (`write_report`) and its path returned; otherwise it is printed to `stream` in `fmt` (What to ship first, then
    the table drawn with rich on a terminal, the per-op, streaming and sweep sections after table and md; json
    carries them all as data) and None returned."""
    from edgeseq.streams.report import streaming_section
    from edgeseq.sweep.report import sweep_section

    _check_format(fmt)
    if out_dir is None and fmt == "html":
        out_dir = "report"
    if out_dir is not None:
        return write_report(db, out_dir, fmt=fmt, target=target, warn=warn, budgets=budgets)
    stream = stream or sys.stdout
    rows = load_report(db, target=target, warn=warn)
    hop = (budgets or {}).get("hop_ms")
    if fmt == "table":
        answer = _answer(db, target, budgets, fmt) if rows else ""
        stream.write(answer + ("\n" if answer else ""))
        print_table(rows, stream, wide)
        stream.write(ops_report_section(rows, "table") + streaming_section(db, None, "table", target)
                     + sweep_section(db, None, "table", target, hop_ms=hop) + estimates_section(db, "table", target))
    elif fmt == "md":
        answer = _answer(db, target, budgets, fmt) if rows else ""
        stream.write(render_md(rows, answer) + ops_report_section(rows, "md")
                     + streaming_section(db, None, "md", target) + sweep_section(db, None, "md", target, hop_ms=hop)
                     + estimates_section(db, "md", target))
    elif fmt == "json":
        sections = _json_sections(db, target, budgets) if rows else {}
        stream.write(render_json(rows, sections) + "\n")
    else:
        stream.write(_TEXT_RENDERERS[fmt](rows))
    stream.flush()
    return None


def _plottable(row: dict) -> bool:
    """The figures every plot draws, finite: a row without them (benchmark_model prints no p90, a store row can be
    incomplete) stays in the tables but out of the plots."""
    return all(
        isinstance(row.get(k), int | float) and not isinstance(row.get(k), bool) and math.isfinite(row[k])
        for k in ("p50_us", "min_us", "p90_us", "model_size_bytes")
    )


__all__ = [
    "COLUMNS",
    "EdgeseqError",
    "FORMATS",
    "compare_runs",
    "fit_columns",
    "load_groups",
    "load_report",
    "print_compare",
    "print_table",
    "render_csv",
    "render_json",
    "render_md",
    "render_text",
    "show_report",
    "write_report",
]
