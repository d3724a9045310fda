"""Streaming measurements: per-step latency and memory as the context grows, stored and read back as rows.

    rows = profile_contexts(["gru-step-fp32.tflite", "tf-kv*.tflite", "tf-win*.tflite"], contexts=[16, 64, 256])
    rows = stream_sweep(["runs/gru/model.keras", "runs/tf-causal/model.keras"], contexts=[16, ..., 1024], out_dir=...)

Three ways to serve a stream (`edgeseq.models.streamkind.StreamKind`), told apart by the stored run (the agent's
`stream.kind`, or for older runs its mode and position input), never by file name:
- recurrent-step ("recurrent state"): a step model without a position input: constant work and memory per step;
- kv-cache ("kv cache"): a step model with a `pos` input: attention over a cache of `capacity` slots, one export
  per context;
- window ("window recompute"): a plain [1, W, F] model, re-run on the whole window for every new step;
- internal-state ("state inside"): the state (recurrent, KV cache, ring buffers) lives in the model's resource
  variables: the host writes the input, invokes, reads the output. edgeseq's `--state internal` exports (their
  manifest names the form they came from: `form`) and third-party files without a manifest alike; a row's `form`
  pairs it with the host-carried export of the same model (the report sets the two side by side).

Each (model, context) is one agent run (`--stream --steps context`), stored like any profile run (its options say
stream/steps/hop_ms; the agent's "stream" block holds state bytes and deadline figures). This module measures and
reads those runs back as rows (`kind` a StreamKind, `model` the source model the manifest names) and fits the
slopes; `stream_report` renders them (the report's streaming section, the plot). No TensorFlow here (only the
.keras sweep converts, in children).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeseq.core.errors import InputError
from edgeseq.core.stats import memory_figures
from edgeseq.models.streamkind import StreamKind

DEFAULT_CONTEXTS = (16, 32, 64, 128, 256, 512, 1024)


def parse_contexts(text: str | Sequence[int]) -> list[int]:
    """'16,32,64' or '16,32,...,1024' (the ellipsis goes on with the ratio of the two values before it) -> ints."""
    try:
        if not isinstance(text, str):
            vals = [int(v) for v in text]
        else:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            vals = []
            for i, p in enumerate(parts):
                if p not in ("...", "\u2026"):
                    vals.append(int(p))
                    continue
                if len(vals) < 2 or i + 1 >= len(parts) or vals[-1] <= vals[-2] or vals[-1] % vals[-2]:
                    raise ValueError
                ratio, last = vals[-1] // vals[-2], int(parts[i + 1])
                while vals[-1] * ratio < last:
                    vals.append(vals[-1] * ratio)
    except (TypeError, ValueError):
        raise InputError(f"cannot read contexts {text!r}", "pass e.g. 16,32,64 or 16,32,...,1024") from None
    if not vals or any(v < 1 for v in vals):
        raise InputError(f"contexts must be positive integers, got {text!r}")
    return sorted(set(vals))


# ------------------------------------------------------------------------------------------ measuring
def profile_contexts(
    models: Sequence[str | Path],
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    *,
    target: str = "local",
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = 1,
    hop_ms: float | None = None,
    db: str | Path | None = None,
    input: str | Path | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Profile each .tflite in stream mode at each context it can serve; returns streaming rows (see row_from_run).

    A recurrent step model is measured at every context; a KV-cache model only at its own capacity, a window model
    only at its own window (export one per context: edgeseq convert --stream --kv-capacity / --window)."""
    from edgeseq.profiling.run import profile_models
    from edgeseq.store.results import ResultsStore

    contexts = parse_contexts(contexts)
    plan = []
    for m in models:
        serves = _serves(Path(m))
        plan += [(m, c) for c in contexts if serves is None or c == serves]
    if not plan:
        raise InputError("no model serves any of the contexts asked for",
                         "a KV-cache or window export serves only its own capacity; export one per context")
    rows = []
    for m, c in plan:
        for r in profile_models([m], target=target, runs=max(runs, c), warmup=warmup, threads=threads, db=db,
                                input=input, stream=True, steps=c, hop_ms=hop_ms):
            with ResultsStore(db) as store:
                row = row_from_run(store.get_run(r["run_id"]))
            rows.append(row)
            if on_result is not None:
                on_result(row)
    return rows


def _serves(path: Path) -> int | None:
    """The one context a KV/window export serves (from its manifest), or None for a recurrent step model."""
    from edgeseq.quantize.manifest import manifest_path_for, read_manifest

    manifest = read_manifest(manifest_path_for(path), strict=False) or {}
    s = manifest.get("stream") or {}
    kind = _manifest_kind(path, s)
    if kind is StreamKind.KV_CACHE:
        return int(s["kv_capacity"])
    if kind is StreamKind.WINDOW:
        return int(s["window"])
    if kind is StreamKind.INTERNAL_STATE:
        return int(s["kv_capacity"]) if s.get("kv_capacity") else None
    if not s:
        from edgeseq.quantize.inspect import state_inside
        from edgeseq.quantize.tflite.reader import read_tflite

        if state_inside(read_tflite(path)) is not None:  # a third-party model with its state inside: any length
            return None
        inputs = (manifest.get("signature") or {}).get("inputs") or []
        if len(inputs) == 1 and len(inputs[0].get("shape") or []) == 3:
            return int(inputs[0]["shape"][1])  # a plain batch model: the window baseline at its own length
        raise InputError(f"{path} has no streaming manifest next to it",
                         "export it with edgeseq convert --stream (or --window W)")
    return None


def _manifest_kind(path: Path, stream: dict) -> StreamKind | None:
    """The kind a manifest's stream block names (older names read too); None without one."""
    if stream.get("kind") is None:
        return None
    try:
        return StreamKind.parse(stream["kind"])
    except ValueError:
        raise InputError(f"{path}'s manifest names an unknown stream kind {stream['kind']!r}",
                         "export it again with edgeseq convert --stream") from None


# ------------------------------------------------------------------------------------------ stored runs -> rows
class UnreadableStreamRun(ValueError):
    """A stored stream run whose stream block cannot be read (a damaged or foreign row)."""


def stream_kind(stream: dict) -> StreamKind:
    """The kind of a stored stream run: the agent's `stream.kind`; for runs stored before the agent named it, its
    mode and position input (a window mode, else a KV cache when there is a position input)."""
    if stream.get("kind") is not None:
        try:
            return StreamKind.parse(stream["kind"])
        except ValueError:
            raise UnreadableStreamRun(f"stream.kind {str(stream['kind'])[:40]!r} is not a stream kind") from None
    if stream.get("mode") == "window":
        return StreamKind.WINDOW
    return StreamKind.KV_CACHE if stream.get("position_input") else StreamKind.RECURRENT_STEP


def source_name(run: dict) -> str:
    """The model a streaming export came from, named as convert names it: its manifest's source file (so a model's
    step, KV-cache and window exports share one name); the file stem for a run stored without a manifest."""
    from edgeseq.quantize.convert import default_name

    source = (run.get("manifest") or {}).get("source")
    path = source.get("path") if isinstance(source, dict) else None
    return default_name(path) if isinstance(path, str) and path.strip() else run["model_name"]


def _number(block: dict, key: str, name: str, *, integer: bool = False) -> float | int | None:
    """A finite number (or None) from a stored block; anything else makes the run unreadable."""
    value = block.get(key)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or not np.isfinite(value):
        raise UnreadableStreamRun(f"{name}.{key} is not {'an integer' if integer else 'a finite number'}")
    return value


def _p50(ns) -> float | None:
    if ns is None:
        return None
    if not isinstance(ns, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in ns):
        raise UnreadableStreamRun("stream.invoke_ns is not a list of numbers")
    return float(np.percentile(np.asarray(ns, np.float64), 50) / 1e3) if ns else None


def row_from_run(run: dict) -> dict | None:
    """One stored stream run -> a streaming row; None for a run that was not a streaming one. A stream block that
    cannot be read is UnreadableStreamRun (saying which field)."""
    opts = run.get("options") or {}
    stream = (run.get("agent") or {}).get("stream")
    if not opts.get("stream") or not stream:
        return None
    if not isinstance(stream, dict):
        raise UnreadableStreamRun("stream is not an object")
    stats = run.get("stats") or {}
    p50 = _number(stats, "p50_us", "stats")
    if p50 is None:
        raise UnreadableStreamRun("stats.p50_us is missing")
    context = _number(stream, "steps", "stream", integer=True) or opts.get("steps") or 0
    kind = stream_kind(stream)
    return {
        "run_id": run["id"], "model": source_name(run), "file": run["model_name"], "recipe": run.get("recipe"),
        "kind": kind, "context": int(context), "form": _form(run, kind),
        "frames": _number(stream, "frames_per_invoke", "stream", integer=True) or 1,
        "p50_us": p50, "p99_us": _number(stats, "p99_us", "stats"), "mean_us": _number(stats, "mean_us", "stats"),
        "invoke_p50_us": _p50(stream.get("invoke_ns")), "state_bytes": _number(stream, "state_bytes", "stream"),
        "peak_rss_kb": _number(stats, "peak_rss_kb", "stats"),
        "model_peak_kb": _number(stats, "model_peak_kb", "stats") if "model_peak_kb" in stats
        else memory_figures((run.get("agent") or {}).get("memory"))["model_peak_kb"],  # stored before agent/2
        "deadline_met_share": _number(stream, "deadline_met_share", "stream"),
        "hop_ms": _number(stream, "hop_ms", "stream"), "target": run["target"],
    }


def _form(run: dict, kind: StreamKind) -> StreamKind | None:
    """The form a state-inside export came from (its manifest's stream.form: recurrent-step or kv-cache); the kind
    itself for every other; None for a third-party file with its state inside (no manifest says)."""
    if kind is not StreamKind.INTERNAL_STATE:
        return kind
    form = ((run.get("manifest") or {}).get("stream") or {}).get("form")
    try:
        return StreamKind.parse(form) if form else None
    except ValueError:
        return None


def rows_from_store(db: str | Path | None, target: str | None = None, skipped: list[str] | None = None) -> list[dict]:
    """Streaming rows of every stream run in the store (the latest per model file, kind and context). A run whose
    stream block cannot be read is left out; `skipped` (when given) gets one 'run #N: why' per such run."""
    from edgeseq.store.results import ResultsStore

    with ResultsStore(db, create=False) as store:
        runs = store.runs(target=target)
    latest: dict[tuple, dict] = {}
    for run in runs:
        try:
            row = row_from_run(run)
        except UnreadableStreamRun as exc:
            if skipped is not None:
                skipped.append(f"run #{run['id']}: {exc}")
            continue
        if row is not None:
            latest[(run["target"], run["model_sha256"], row["kind"], row["context"])] = row
    order = list(StreamKind)
    return sorted(latest.values(), key=lambda r: (r["target"], r["model"], order.index(r["kind"]), r["context"]))


# ------------------------------------------------------------------------------------------ slopes
def fit_slopes(rows: list[dict]) -> list[dict]:
    """Per (model, kind): least-squares slope of p50 µs, state bytes, model memory and peak RSS against the
    context."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r.get("target"), r["model"], r["kind"]), []).append(r)
    out = []
    for (target, model, kind), members in groups.items():
        members.sort(key=lambda r: r["context"])
        ctx = np.array([r["context"] for r in members], np.float64)

        def slope(key, members=members, ctx=ctx):
            ys = [r.get(key) for r in members]
            if len(members) < 2 or any(y is None for y in ys) or np.ptp(ctx) == 0:
                return None
            value = float(np.polyfit(ctx, np.asarray(ys, np.float64), 1)[0])
            return 0.0 if abs(value) < 1e-9 * max(1.0, float(np.max(np.abs(ys)))) else value

        out.append({
            "target": target, "model": model, "kind": kind, "contexts": [int(c) for c in ctx],
            "latency_us_per_step": slope("p50_us"), "state_bytes_per_step": slope("state_bytes"),
            "rss_kb_per_step": slope("peak_rss_kb"), "model_kb_per_step": slope("model_peak_kb"),
            "p50_us_first": members[0]["p50_us"], "p50_us_last": members[-1]["p50_us"],
            "state_bytes_first": members[0]["state_bytes"], "state_bytes_last": members[-1]["state_bytes"],
        })
    return out


# ------------------------------------------------------------------------------------------ CLI
# ------------------------------------------------------------------------------------------ .keras sweep
def stream_sweep(
    models: Sequence[str | Path],
    contexts: Sequence[int] = DEFAULT_CONTEXTS,
    *,
    out_dir: str | Path,
    recipe: str = "fp32",
    target: str = "local",
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = 1,
    hop_ms: float | None = None,
    db: str | Path | None = None,
    windows: bool = True,
    say: Callable[[str], None] | None = None,
    state: str = "external",
) -> list[dict]:
    """Export the streaming variants of each .keras model (RNN: one step model; causal Transformer: a KV cache per
    context, and the window baseline per context) and profile them at every context. `state` "internal" or "both"
    exports the step models with their state inside too. Exports are not re-validated here (edgeseq convert
    --stream does that)."""
    from edgeseq.quantize.stream.convert import convert_stream, streaming_kind

    say = say or (lambda _m: None)
    contexts = parse_contexts(contexts)
    files: list[Path] = []
    for m in models:
        kind = streaming_kind(m)
        if kind == StreamKind.WINDOW:
            res = convert_stream(m, [recipe], out_dir=out_dir, window=contexts[0], contexts=contexts,
                                 validate=False, raise_on_error=False)
        else:
            kv = kind == StreamKind.KV_CACHE
            res = convert_stream(m, [recipe], out_dir=out_dir, contexts=contexts if kv else None,
                                 windows=windows and kv, validate=False, raise_on_error=False, state=state)
        for r in res:
            if r.ok:
                files.append(r.tflite_path)
            else:
                say(f"skipped: {r.error.one_line()}")
    return profile_contexts(files, contexts, target=target, runs=runs, warmup=warmup, threads=threads, hop_ms=hop_ms,
                            db=db)
