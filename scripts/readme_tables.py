"""Rewrite the README's generated blocks from the code that applies each rule.

A block sits between `<!-- edgeseq:NAME -->` and `<!-- /edgeseq:NAME -->` (each on its own line; the opening
marker's indentation is the block's); what is between them is replaced. tests/test_one_source.py fails when the
README differs from what this script writes:

    .venv/bin/python scripts/readme_tables.py           # rewrite README.md
    .venv/bin/python scripts/readme_tables.py --check   # exit 1 naming the stale blocks, change nothing

Blocks and the code that owns them:
- exit-codes:   edgeseq.core.errors.exit_codes() (the typed errors' exit_code and meaning, and the CLI's own)
- recipes:      edgeseq.quantize.recipes (MODES, each Recipe's description, calibration and parity tolerance)
- rnn-routes:   edgeseq.quantize.rnn_routes.plan (what --rnn-strategy auto tries per recipe, and what it skips)
- capabilities: edgeseq.quantize.capabilities.rows() (what `edgeseq models --capabilities` prints)
- granularity:  edgeseq.quantize.granularity (auto_granularity_summary, GRANULARITY_RULE)
No TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
WIDTH = 118  # the README's prose width
_BLOCK_START = re.compile(r"([-+*]|\d+[.)]|#+|>)( |$)")
_OPEN = re.compile(r"^(?P<indent>[ \t]*)<!-- edgeseq:(?P<name>[a-z0-9-]+) -->\s*$")


def _cell(value: object) -> str:
    """Table cell text: pipes, emphasis stars and tag-like <...> escaped."""
    text = str(value)
    for char in "|*<":
        text = text.replace(char, "\\" + char)
    return text


def _table(head: list[str], rows: list[list[object]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] * len(head)
    return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def _wrap(text: str, width: int) -> list[str]:
    """Prose wrapped to `width`; a line that markdown would read as a list item or heading gets its first word
    moved up to the line before."""
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    for i in range(1, len(lines)):
        while _BLOCK_START.match(lines[i]) and " " in lines[i]:
            word, lines[i] = lines[i].split(" ", 1)
            lines[i - 1] += " " + word
    return lines


def exit_codes_block(width: int) -> list[str]:
    import importlib

    from edgeseq.cli import COMMANDS
    from edgeseq.core.errors import exit_codes

    # exit_codes() walks the error classes defined so far: load every command first (no TensorFlow), so the table
    # lists every class the CLI raises (e.g. targets' SetupNeeded) whatever this process happened to import before.
    for module, _, _ in COMMANDS.values():
        importlib.import_module(f"edgeseq.commands.{module}")
    rows = [[code, meaning, ", ".join(f"`{c}`" for c in classes) or "(the CLI itself)"]
            for code, meaning, classes in exit_codes()]
    return _table(["exit", "meaning", "raised as"], rows, ["--:", "---", "---"])


def recipes_block(width: int) -> list[str]:
    from edgeseq.quantize.recipes import MODES, Recipe

    def gate(value: float | None) -> str:
        return "not gated" if value is None else f"{value:g}"

    rows = []
    for recipe in [Recipe(mode) for mode in MODES] + [Recipe("int8", float_ops=("auto",))]:
        tol = recipe.tolerance
        rows.append([f"`{recipe.slug}`", recipe.description, "yes" if recipe.calibrated else "no", gate(tol.max_abs),
                     gate(tol.mean_abs), f"{tol.top1:g}"])
    return _table(["recipe", "what", "calibrated", "max \\|diff\\|", "mean \\|diff\\|", "top-1 agreement"], rows,
                  ["---", "---", "---", "--:", "--:", "--:"])


def rnn_routes_block(width: int) -> list[str]:
    from edgeseq.quantize.rnn_routes import auto_order, auto_plans

    groups: dict[str, list[str]] = {}
    plans = auto_plans()
    for mode in plans:
        groups.setdefault(auto_order(mode), []).append(mode)
    rows = []
    for order, modes in groups.items():
        skipped = plans[modes[0]][0].skipped
        rows.append([", ".join(f"`{m}`" for m in modes), order.replace(", then ", " > "),
                     "; ".join(f"`{r}`: {why}" for r, why in skipped.items()) or "-"])
    return _table(["recipe", "`auto` tries, in order", "never tried (declared refusals)"], rows)


def capabilities_block(width: int) -> list[str]:
    """`capabilities.rows()`, one row per family x form, with the forms of one verdict merged into one row."""
    from edgeseq.quantize.capabilities import FORMS, NOT_LISTED, rows

    merged: dict[tuple, list[str]] = {}
    for r in rows():
        key = (r["family"], r["recipe"], r["supported"], r["why"] + (f"; {r['fix']}" if r["fix"] else ""))
        merged.setdefault(key, []).append(r["form"])
    cells = [["every family" if family == "*" else family, "every form" if forms == list(FORMS) else ", ".join(f"`{f}`" for f in forms),
              recipes.replace(",", ", "), "yes" if supported else "refused", why]
             for (family, recipes, supported, why), forms in merged.items()]
    return [*_table(["family", "forms", "recipes", "verdict", "why / how"], cells), "", *_wrap(NOT_LISTED, width)]


def granularity_block(width: int) -> list[str]:
    from edgeseq.quantize.granularity import GRANULARITY_RULE, auto_granularity_summary

    return _wrap(f"`--granularity auto`: {auto_granularity_summary()}. The rule "
                 f"(`edgeseq.quantize.granularity.GRANULARITY_RULE`, copied into each manifest's "
                 f"`route.granularity.rule`): {GRANULARITY_RULE}", width)


BLOCKS: dict[str, Callable[[int], list[str]]] = {
    "exit-codes": exit_codes_block,
    "recipes": recipes_block,
    "rnn-routes": rnn_routes_block,
    "capabilities": capabilities_block,
    "granularity": granularity_block,
}


def _spans(lines: list[str]) -> dict[str, tuple[int, int, str]]:
    """name -> (index of the opening marker, index of the closing one, indentation)."""
    spans: dict[str, tuple[int, int, str]] = {}
    for i, line in enumerate(lines):
        m = _OPEN.match(line)
        if not m:
            continue
        name, indent = m["name"], m["indent"]
        if name in spans:
            raise SystemExit(f"README: block {name!r} appears twice")
        close = f"{indent}<!-- /edgeseq:{name} -->"
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == close), None)
        if end is None:
            raise SystemExit(f"README: block {name!r} has no closing marker {close.strip()!r} at its indentation")
        spans[name] = (i, end, indent)
    return spans


def render(text: str) -> str:
    """`text` with every block rewritten from the code. Every block of BLOCKS must be there, and no other."""
    lines = text.split("\n")
    spans = _spans(lines)
    if set(spans) != set(BLOCKS):
        missing, unknown = sorted(set(BLOCKS) - set(spans)), sorted(set(spans) - set(BLOCKS))
        raise SystemExit(f"README: blocks missing {missing}, unknown {unknown}")
    for name, (start, end, indent) in sorted(spans.items(), key=lambda kv: -kv[1][0]):
        body = [f"{indent}{line}" if line else "" for line in BLOCKS[name](WIDTH - len(indent))]
        lines[start + 1:end] = body
    return "\n".join(lines)


def block_text(text: str, name: str) -> str:
    """What the README holds between the markers of block `name`."""
    lines = text.split("\n")
    start, end, _ = _spans(lines)[name]
    return "\n".join(lines[start + 1:end])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is stale; change nothing")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new = render(text)
    stale = [name for name in BLOCKS if block_text(text, name) != block_text(new, name)]
    if args.check:
        if stale:
            print(f"{args.readme}: stale blocks {', '.join(stale)}; run scripts/readme_tables.py", file=sys.stderr)
        return 1 if stale else 0
    if new != text:
        args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: {'rewrote ' + ', '.join(stale) if stale else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
