"""The report as text: a fixed-width or rich terminal table, markdown, CSV and JSON, from the report's rows."""

from __future__ import annotations

import csv
import html
import io
import json

from edgeseq.report.rows import COLUMNS, Fmt, by_where, columns, device_line, tag_legend


def render_cells(cells: list[list[str]], fmt: str, left: int = 2) -> str:
    """A small table of strings (header row first) for a report section: aligned text, markdown or HTML; the first
    `left` columns read left-aligned, the rest (figures) right-aligned."""
    head, body = cells[0], cells[1:]
    if fmt == "html":
        esc = html.escape
        return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in body) + "</table>")
    if fmt == "md":
        return ("| " + " | ".join(head) + " |\n|" + "|".join("---" if i < left else "---:" for i in range(len(head)))
                + "|\n" + "".join("| " + " | ".join(r) + " |\n" for r in body))
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in cells)


def render_text(rows: list[dict], wide: bool = False) -> str:
    """Plain fixed-width table per target (for pipes and logs): the same columns as on a terminal."""
    parts = []
    cols = columns(wide)
    for where, group in by_where(rows).items():
        parts.append(f"== {where}: {device_line(group)}")
        cells = [[h for _, h, _ in cols]] + [[fmt(r.get(k)) for k, _, fmt in cols] for r in group]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        for row in cells:
            parts.append(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
        if tag_legend(group):
            parts.append(tag_legend(group))
        parts.append("")
    return "\n".join(parts)


# Dropped first when a terminal is too narrow for every column; the rest (model, p50, p99, peak, size...) stay.
DROP_ORDER = (
    "std_us",
    "min_us",
    "max_us",
    "peak_rss_kb",  # the process's peak: the model's own memory column stays
    "params",
    "first_inference_ms",
    "throughput_per_s",
    "init_ms",
    "runs",
    "count",
    "p90_us",
    "mean_us",
    "recipe",
    "accuracy",
)


def fit_columns(rows: list[dict], width: int, wide: bool = True) -> list[tuple[str, str, Fmt]]:
    """The columns that fit in `width` characters (rich draws 3 per column for borders and padding)."""
    cols = columns(wide)

    def needed(cs) -> int:
        return 1 + sum(3 + max([len(h)] + [len(f(r.get(k))) for r in rows]) for k, h, f in cs)

    for key in DROP_ORDER:
        if needed(cols) <= width:
            break
        cols = [c for c in cols if c[0] != key]
    return cols


def render_rich(rows: list[dict], console=None, wide: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for where, group in by_where(rows).items():
        cols = fit_columns(group, console.width, wide)
        caption = device_line(group) + (f"; {tag_legend(group)}" if tag_legend(group) else "")
        hidden = len(columns(wide)) - len(cols)
        if hidden:
            caption += f"; {hidden} columns hidden: widen the terminal, or --format md/csv/json"
        table = Table(title=f"{where}", caption=caption, title_justify="left", header_style="bold")
        for i, (_, header, _) in enumerate(cols):
            table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
        for r in group:
            table.add_row(*[fmt(r.get(k)) for k, _, fmt in cols])
        console.print(table)


def print_table(rows: list[dict], stream=None, wide: bool = False) -> None:
    """Rich on a TTY, plain text otherwise; the same columns either way (`wide`: every column)."""
    import sys

    stream = stream or sys.stdout
    if getattr(stream, "isatty", lambda: False)():
        from rich.console import Console

        render_rich(rows, Console(file=stream), wide)
    else:
        stream.write(render_text(rows, wide) + ("\n" if rows else "no runs\n"))


def render_md(rows: list[dict], answer: str = "") -> str:
    """The markdown report; `answer` (markdown, "What to ship") goes first, right under the title."""
    parts = ["# edgeseq profile report", ""] + ([answer.rstrip("\n"), ""] if answer else [])
    for where, group in by_where(rows).items():
        parts += [f"## {where}", "", f"{device_line(group)}", ""]
        parts.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
        parts.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|")
        for r in group:
            parts.append("| " + " | ".join(fmt(r.get(k)) for k, _, fmt in COLUMNS) + " |")
        if tag_legend(group):
            parts += ["", tag_legend(group)]
        parts.append("")
    return "\n".join(parts)


CSV_FIELDS = [
    "run_id",
    "created_at",
    "target",
    "device_key",
    "model",
    "model_path",
    "sha256",
    "recipe",
    "params",
    "accuracy",
    "runtime",
    "threads",
    "xnnpack",
    "runs",
    "p50_cv",
    "count",
    "init_ms",
    "load_ms",
    "allocate_ms",
    "first_inference_ms",
    "mean_us",
    "std_us",
    "min_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "cv",
    "throughput_per_s",
    "model_peak_kb",
    "baseline_kb",
    "memory_method",
    "peak_rss_kb",
    "model_size_bytes",
]


def _flat(r: dict) -> dict:
    o = r.get("options") or {}
    flat = {**{k: r.get(k) for k in CSV_FIELDS}, "threads": o.get("threads"), "xnnpack": o.get("xnnpack")}
    return {k: _rounded(v) for k, v in flat.items()}


def _rounded(v):
    """A float as measured, without binary noise (7.427019999999999 -> 7.42702): 7 significant digits, more than
    any timer or memory reading here resolves."""
    return float(f"{v:.7g}") if isinstance(v, float) else v


def render_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(_flat(r))
    return buf.getvalue()


def render_json(rows: list[dict], sections: dict | None = None) -> str:
    """`edgeseq.report/1`: "groups" (every row, its per-op figures included), then every other section the text
    report shows, as data: "answer" (What to ship), "streaming", "scaling" (fits, crossovers, per-step cost),
    "claims", "failed_cells" (keys added within the schema's version: readers of /1 ignore them)."""
    keep = [{k: v for k, v in r.items() if k != "samples_us"} for r in rows]
    return json.dumps({"schema": "edgeseq.report/1", **(sections or {}), "groups": keep}, indent=2, default=str)
