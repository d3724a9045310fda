"""A converter refusal in words: the op and the layer it concerns in one line, the whole text in a log file.

TF's converter raises its MLIR diagnostics as one multi-line string whose first line is a location chain, e.g.
`loc(callsite(fused["BiasAdd:", "functional_1/dense_1/BiasAdd@__inference_..."] at ...)): error: 'tf.Transpose' op
x should be of the same rank with y, ...`. `refusal_line` keeps the op ('tf.Transpose'), the graph op it came from
(BiasAdd), the Keras layer whose name scope holds it (when one of the model's layer names is on the path) and the
reason, and names the log file `write_log` wrote the full text to. No TensorFlow import.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

_LOC = re.compile(r'fused\["([^":]+):",\s*"([^"@]+)')
_OP = re.compile(r"'(tfl?\.[A-Za-z0-9_]+)' op\s*(.*)")
_MAX = 240


def log_path_for(name: str, slug: str) -> Path:
    """Where a conversion's converter log goes: <edgeseq cache>/logs/convert-<name>-<slug>-<time>-<pid>.log."""
    from edgeseq.datasets.base import cache_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cache_dir() / "logs" / f"convert-{name}-{slug}-{stamp}-{os.getpid()}.log"


def write_log(path: str | os.PathLike | None, text: str, job: dict | None = None) -> str | None:
    """Append the converter's full text (with the job that produced it) to `path`; its path, or None when none was
    given or it cannot be written (the one-line message then says so)."""
    if not path:
        return None
    try:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        head = json.dumps({k: v for k, v in (job or {}).items() if k != "log_path"}, default=str)
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(f"== converter output ({time.strftime('%Y-%m-%d %H:%M:%S')}) job: {head}\n{text}\n")
    except OSError:
        return None
    return str(p)


def layer_names(model: Any) -> list[str]:
    """Every layer name in `model`, nested models and wrapped layers included (the name scopes TF's ops carry)."""
    names: list[str] = []
    stack = list(getattr(model, "layers", None) or [])
    while stack:
        layer = stack.pop(0)
        names.append(str(layer.name))
        inner = getattr(layer, "layer", None)  # Bidirectional / TimeDistributed wrap one layer
        stack[:0] = list(getattr(layer, "layers", None) or []) + ([inner] if inner is not None else [])
    return names


def refusal_line(text: str, names: list[str] | tuple[str, ...] = (), log: str | None = None) -> str:
    """'op tf.Transpose (a BiasAdd in layer `dense_1`): x should be ...; the converter's full output: LOG'."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = next((ln for ln in lines if "error:" in ln), lines[0] if lines else "no message")
    where = ""
    m = _LOC.search(first)
    if m:
        graph_op, path = m.group(1), m.group(2).split("/")
        layer = next((part for part in reversed(path[:-1]) if part in set(names)), None)
        where = f"a {graph_op} in layer `{layer}`" if layer else f"a {graph_op} at {'/'.join(path[-2:])}"
    op = _OP.search(first)
    if op:
        reason = f"op {op.group(1)}" + (f" ({where})" if where else "") + f": {op.group(2).strip()}"
    else:
        reason = _strip_locations(first.split("error:", 1)[-1]) or "no reason given"
        reason = f"{where}: {reason}" if where else reason
    if len(reason) > _MAX:
        reason = reason[: _MAX - 3] + "..."
    tail = f"; the converter's full output: {log}" if log else ""
    return reason + tail


def _strip_locations(text: str) -> str:
    """`text` without its `loc(...)` chains (balanced parentheses) and the `<unknown>:0:` prefixes."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("loc(", i):
            depth, i = 1, i + 4
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            continue
        out.append(text[i])
        i += 1
    return re.sub(r"<unknown>:\d+:|^\W+", "", "".join(out)).strip(" :")
