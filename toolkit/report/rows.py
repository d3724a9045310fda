"""The report's rows: the results store's runs grouped for tables, and the columns every format shows.

Rows are grouped by target and device, then by model file (sha256) and measuring options; a group shows its
latest run, how many runs it has, and the spread of p50 across them (CV), so a repeated measurement is visible as
such instead of as duplicate lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgeseq.core.finite import is_number, rank_key, show
from edgeseq.core.stats import cv, memory_figures
from edgeseq.profiling.ops import op_fields
from edgeseq.store.results import ResultsStore

# key, header, formatter
Fmt = Callable[[object], str]
Warn = Callable[[str], None] | None


def fixed(digits: int, scale: float = 1.0) -> Fmt:
    """A formatter: the value times `scale` with `digits` decimals, '-' for None."""
    return lambda v: "-" if v is None else f"{float(v) * scale:.{digits}f}" if is_number(v) else show(v)


def count_text(v) -> str:
    return "-" if v is None else f"{int(v):,}"


def accuracy_text(v) -> str:
    return "-" if v is None else f"{float(v):.4f}" if is_number(v) else show(v)


COLUMNS: list[tuple[str, str, Fmt]] = [
    ("label", "model", str),
    ("recipe", "recipe", lambda v: v or "-"),
    ("params", "params", count_text),
    ("accuracy", "acc", accuracy_text),
    ("init_ms", "init ms", fixed(2)),
    ("first_inference_ms", "first ms", fixed(3)),
    ("mean_us", "mean µs", fixed(1)),
    ("std_us", "std µs", fixed(1)),
    ("min_us", "min µs", fixed(1)),
    ("p50_us", "p50 µs", fixed(1)),
    ("p90_us", "p90 µs", fixed(1)),
    ("p99_us", "p99 µs", fixed(1)),
    ("max_us", "max µs", fixed(1)),
    ("throughput_per_s", "inf/s", fixed(0)),
    ("model_peak_kb", "model MiB", fixed(1, 1 / 1024)),  # what the model adds to the runtime's baseline
    ("peak_rss_kb", "process MiB", fixed(1, 1 / 1024)),
    ("model_size_bytes", "size KiB", fixed(1, 1 / 1024)),
    ("count", "invokes", lambda v: "-" if v is None else str(v)),  # timed invokes per run (--runs)
    ("runs", "stored", lambda v: "-" if v is None else str(v)),  # stored runs pooled in the row
]
# The columns a table shows, on a terminal and piped alike; --wide (or md/csv/json) shows every one.
DEFAULT_KEYS = ("label", "recipe", "accuracy", "p50_us", "p99_us", "model_peak_kb", "model_size_bytes", "count",
                "runs")

# What each tag in a model's [ ... ] suffix means: a run's options that differ from its group's.
TAGS: tuple[tuple[str, str], ...] = (
    ("stream", "stream run; streamN: N steps (the context)"),
    ("t", "tN: N interpreter threads"),
    ("no-xnnpack", "without the XNNPACK delegate"),
    ("cpus", "cpusN: pinned to N CPUs"),
    ("mem", "memNM: memory limit N MiB"),
    ("quota", "quotaX: CPU quota X of one CPU"),
    ("in:", "in:FILE: measured on that input file"),
)


def columns(wide: bool = False) -> list[tuple[str, str, Fmt]]:
    return list(COLUMNS) if wide else [c for c in COLUMNS if c[0] in DEFAULT_KEYS]


def tag_legend(rows: list[dict]) -> str:
    """One line naming every tag the rows' labels carry ('' when none do)."""
    import re

    used = set()
    for r in rows:
        m = re.search(r" \[([^\]]+)\]$", str(r.get("label", "")))
        for bit in (m[1].split() if m else ()):
            for tag, meaning in TAGS:
                if bit == tag or (bit.startswith(tag) and (tag.endswith(":") or bit[len(tag):][:1].isdigit())):
                    used.add((tag, meaning))
                    break
    return ("tags: " + "; ".join(meaning for tag, meaning in TAGS if (tag, meaning) in used)) if used else ""


def _where(row: dict) -> str:
    dev = row.get("device") or {}
    host = dev.get("hostname") if isinstance(dev, dict) else None
    return f"{row['target']} on {host}" if host and host != row["target"] else row["target"]


def _opts_key(row: dict) -> tuple:
    o = row.get("options") or {}
    c = row.get("constraints") or {}
    return (
        o.get("threads"),
        o.get("xnnpack"),
        o.get("input"),
        c.get("cpus"),
        c.get("memory_limit_bytes"),
        c.get("cpu_quota"),
        o.get("steps") or -1 if o.get("stream") else None,  # stream runs: one group per context
    )


def _opts_suffix(row: dict, common: tuple | None) -> str:
    key = _opts_key(row)
    if common is not None and key == common:
        return ""
    threads, xnn, inp, cpus, mem, quota, stream = key
    bits = []
    if stream is not None:
        bits.append("stream" + (f"{stream}" if stream > 0 else ""))
    if threads is not None:
        bits.append(f"t{threads}")
    if xnn is False:
        bits.append("no-xnnpack")
    if cpus:
        bits.append(f"cpus{cpus}")
    if mem:
        bits.append(f"mem{mem // (1 << 20)}M")
    if quota:
        bits.append(f"quota{quota:g}")
    if inp:
        bits.append(f"in:{inp}")
    return f" [{' '.join(bits)}]" if bits else ""


def load_groups(store: ResultsStore, target: str | None = None, with_samples: bool = False) -> list[dict]:
    """One dict per (target, device, model sha256, options): the latest run's figures plus `runs` and `p50_cv`."""
    from edgeseq.estimate.grid import is_calibration_file

    runs = [r for r in store.runs(target=target, with_samples=with_samples)  # calibration runs feed estimates only
            if not is_calibration_file(r["model_path"])]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["target"], r["device_key"], r["model_sha256"], _opts_key(r))
        groups.setdefault(key, []).append(r)
    keys_by_model: dict[tuple, set] = {}
    for key in groups:
        keys_by_model.setdefault((key[0], key[1], key[2]), set()).add(key[3])
    names_by_sha: dict[str, set] = {}
    for r in runs:
        names_by_sha.setdefault(r["model_name"], set()).add(r["model_sha256"])
    out = []
    for key, members in groups.items():
        last = members[-1]
        stats = last.get("stats") or {}
        label = last["model_name"]
        if len(names_by_sha.get(label, ())) > 1:
            label += f" ({last['model_sha256'][:6]})"
        variants = keys_by_model[(key[0], key[1], key[2])]
        label += _opts_suffix(last, next(iter(variants)) if len(variants) == 1 else None)
        row = {
            "run_id": last["id"],
            "created_at": last["created_at"],
            "target": last["target"],
            "device_key": last["device_key"],
            "where": _where(last),
            "label": label,
            "model": last["model_name"],
            "model_path": last["model_path"],
            "sha256": last["model_sha256"],
            "recipe": last.get("recipe"),
            "params": last.get("params"),
            "accuracy": last.get("accuracy"),
            "runtime": f"{last.get('runtime_name')} {last.get('runtime_version')}",
            "options": last.get("options"),
            "constraints": last.get("constraints"),
            "device": last.get("device"),
            # the columns stored beside the stats, for a stats object that lacks them
            "p50_us": last.get("p50_us"),
            "mean_us": last.get("mean_us"),
            "peak_rss_kb": last.get("peak_rss_kb"),
            "model_size_bytes": last.get("model_size_bytes"),
            **memory_figures((last.get("agent") or {}).get("memory")),  # runs stored before agent/2: inferred
            **stats,
            "runs": len(members),
            "p50_cv": _p50_cv(members),
        }
        row.update(op_fields((last.get("agent") or {}).get("ops"), row.get("p50_us")))  # profile --ops runs
        if with_samples:
            row["samples_us"] = (last["samples"] / 1e3).tolist()
        out.append(row)
    out.sort(key=lambda r: (r["where"], *rank_key(r.get("p50_us"))))  # NaN/inf/missing last, never first
    return out


def _p50_cv(members: list[dict]) -> float | None:
    p50s = [m["p50_us"] for m in members if m.get("p50_us") is not None]
    return cv(p50s) if len(p50s) > 1 else None


def warn_damage(store: ResultsStore, warn: Warn) -> None:
    """Pass the store's one line about skipped damaged rows to `warn`, if any."""
    note = store.damage_note()
    if note and warn is not None:
        warn(note)


def load_report(db: str | Path | None, target: str | None = None, warn: Warn = None) -> list[dict]:
    """`load_groups` of the store at `db`, opened read-only; `warn` gets one line when damaged rows were skipped."""
    with ResultsStore(db, create=False) as store:
        rows = load_groups(store, target=target)
        warn_damage(store, warn)
    return rows


def by_where(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows per target/device, in order."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["where"], []).append(r)
    return out


def device_line(rows: list[dict]) -> str:
    """One line about the device the rows ran on (machine, board, cpus, RAM, OS, Python, runtime)."""
    d = rows[0].get("device") or {}
    bits = [
        d.get("machine"),
        d.get("board") or d.get("cpu_model"),
        f"{d.get('cpus_allowed')} cpus",
        f"{(d.get('mem_total_kb') or 0) / 1048576:.1f} GB RAM",
        d.get("os_release"),
        f"Python {d.get('python')}",
        rows[0].get("runtime"),
    ]
    return ", ".join(str(b) for b in bits if b)
