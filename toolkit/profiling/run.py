"""Profile .tflite models on targets and store each run: the library behind `edgeseq profile` (and `demo`).

Works on any .tflite; when the converter's manifest sits next to it (`<name>-<recipe>.json`) its recipe, parameter
count and accuracy are carried into the store. No TensorFlow import anywhere on this path.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeseq.core.errors import EdgeseqError, InputError, ModelError
from edgeseq.core.fsio import sha256_file
from edgeseq.core.stats import summarize
from edgeseq.profiling.ops import op_fields
from edgeseq.quantize.manifest import manifest_path_for, read_manifest
from edgeseq.store.results import ResultsStore, preflight
from edgeseq.targets.limits import check_profile_options
from edgeseq.targets.runner import AgentOptions, run_agent

KNOWN_RECIPES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


# ------------------------------------------------------------------------------------------ manifests
def _find(obj, keys: tuple[str, ...], want: type | tuple, depth: int = 4):
    """Breadth-first search for the first value under one of `keys` of type `want` (shallowest wins)."""
    level = [obj]
    for _ in range(depth):
        nxt = []
        for node in level:
            if isinstance(node, dict):
                for k in keys:
                    v = node.get(k)
                    if isinstance(v, want) and not isinstance(v, bool):
                        return v
                nxt.extend(v for v in node.values() if isinstance(v, dict | list))
            elif isinstance(node, list):
                nxt.extend(v for v in node if isinstance(v, dict | list))
        level = nxt
    return None


def _num(v) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _get(d, *path):
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def manifest_summary(manifest: dict | None, model: Path, sha256: str) -> dict:
    """recipe / params / accuracy for tables, from an edgeseq.manifest/1 (artifact.sha256, recipe.slug,
    source.parameters, validation.tflite_metrics.accuracy) or a flatter hand-written one; strict about staleness."""
    out = {"recipe": None, "params": None, "accuracy": None, "manifest_stale": False}
    if manifest:
        stated = _get(manifest, "artifact", "sha256") or manifest.get("sha256")
        if isinstance(stated, str) and stated.lower() != sha256:
            out["manifest_stale"] = True  # the manifest describes another file: use none of its figures
            manifest = None
    if manifest:
        recipe = manifest.get("recipe")
        if isinstance(recipe, dict):
            recipe = recipe.get("slug") or recipe.get("name") or recipe.get("mode")
        out["recipe"] = recipe if isinstance(recipe, str) else None
        params = _get(manifest, "source", "parameters")
        if not isinstance(params, int):
            params = _find(manifest, ("parameters", "params", "param_count", "num_params"), int)
        out["params"] = int(params) if params is not None else None
        for path in (
            ("validation", "tflite_metrics", "accuracy"),
            ("validation", "accuracy"),
            ("accuracy",),
            ("evaluation", "accuracy"),
            ("metrics", "accuracy"),
        ):
            acc = _num(_get(manifest, *path))
            if acc is not None:
                out["accuracy"] = acc
                break
    if out["recipe"] is None:
        tail = Path(model).stem.rsplit("-", 1)[-1]
        if tail in KNOWN_RECIPES:
            out["recipe"] = tail
    return out


# ------------------------------------------------------------------------------------------ profiling
def _check_model(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    if not path.is_file():
        raise ModelError(f"not a file: {path}")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(
            f"{path} is not a TFLite model (no TFL3 identifier; corrupt or wrong file)",
            "pass a .tflite written by `edgeseq convert`",
        )
    from edgeseq.quantize.inspect import refuse_uninitialised_state
    from edgeseq.quantize.tflite.reader import read_tflite

    # the checked reader and parser: refuses an inconsistent file before any target or the store
    refuse_uninitialised_state(read_tflite(path), path)


def open_targets(names: Sequence[str], cpus: int | None, memory_limit, cpu_quota: float | None) -> list:
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.resolve import open_target

    constrained = cpus is not None or memory_limit is not None or cpu_quota is not None
    out = []
    for name in names:
        target = open_target(name)
        if constrained:
            if not isinstance(target, LocalTarget):
                raise InputError(
                    f"--cpus/--memory-limit/--cpu-quota emulate a device on the local target only, "
                    f"not on {name}"
                )
            target = LocalTarget(
                cpus=cpus, memory_limit=memory_limit, cpu_quota=cpu_quota, python=target.python
            )
        out.append((name, target))
    return out


def build_record(
    data: dict,
    target_name: str,
    target,
    model: Path,
    manifest: dict | None,
    summary: dict,
    opts: AgentOptions,
    session: str,
    repeat_index: int,
) -> dict:
    from edgeseq import __version__

    stats = summarize(data)  # either runner: the agent's raw samples, or benchmark_model's aggregates
    device = data.get("device") or {}
    timings = data["timings_ns"]
    agent_rest = {k: v for k, v in data.items() if k not in ("timings_ns", "device")}
    agent_rest["timings_ns"] = {k: v for k, v in timings.items() if k not in ("invoke", "warmup")}
    # emulated limits (local target); info() is not called here: on ssh/adb it costs a round trip per run
    constraints = target.constraints() if hasattr(target, "constraints") else None
    return {
        "session": session,
        "repeat_index": repeat_index,
        "edgeseq_version": __version__,
        "target": target_name,
        "target_url": getattr(getattr(target, "spec", None), "url", None),
        "device_key": device_key(device),
        "device_json": device,
        "constraints_json": constraints,
        "model_path": str(model.resolve()),
        "model_name": model.stem,
        "model_sha256": data["model"]["sha256"],
        "model_size_bytes": data["model"]["size_bytes"],
        "recipe": summary["recipe"],
        "params": summary["params"],
        "accuracy": summary["accuracy"],
        "manifest_json": manifest,
        "runtime_name": data["runtime"]["name"],
        "runtime_version": data["runtime"]["version"],
        "agent_version": data["agent_version"],
        "agent_schema": data["schema"],
        "options_json": opts.to_dict(),
        "stats_json": stats,
        "p50_us": stats["p50_us"],
        "mean_us": stats["mean_us"],
        "peak_rss_kb": stats["peak_rss_kb"],
        "samples": timings.get("invoke") or [],
        "warmup": timings.get("warmup") or [],
        "agent_json": agent_rest,
    }


def _measure(target, model: Path, opts: AgentOptions, ops: tuple = (None, None)) -> dict:
    """The Python agent, or LiteRT's native benchmark_model where the target is set up for it (Android). Errors
    name the user's files, not their copies in the run directory. `ops`: (op slices pack, why none) for --ops."""
    from edgeseq.targets.deploy import with_user_paths

    try:
        data = _measure_on(target, model, opts, ops[0])
    except EdgeseqError as exc:
        raise with_user_paths(exc, model, opts.input) from None
    if opts.ops and not isinstance(data.get("ops"), dict):
        data["ops"] = {"route": None, "reason": ops[1] or "the agent timed no ops"}
    return data


def _op_slices(model: Path, sha256: str, folder: Path) -> tuple[Path | None, str | None]:
    """(the op slices pack for `model`, None), or (None, why the sub-model route cannot cut it)."""
    from edgeseq.quantize.op_slices import cut_ops, write_pack

    try:
        slices = cut_ops(model)
    except Exception as exc:  # noqa: BLE001 - a model the slicer trips on still gets its whole-model figures
        return None, f"cutting it into one-op models failed ({type(exc).__name__}: {exc})"
    if slices.reason:
        return None, slices.reason
    return write_pack(slices, sha256, folder / f"{sha256[:16]}-ops.zip"), None


def _measure_on(target, model: Path, opts: AgentOptions, ops_pack: Path | None = None) -> dict:
    spec = getattr(target, "spec", None)
    if getattr(spec, "runner", "agent") != "benchmark_model":
        return run_agent(target, model, opts, ops_pack=ops_pack)
    from edgeseq.targets.benchmark_model import BenchmarkOptions, run_benchmark

    if opts.ops:
        raise InputError("--ops needs the Python agent (it times one-op models); this target runs benchmark_model")
    if opts.input:
        raise InputError("--input needs the Python agent; this target runs benchmark_model")
    if opts.stream:
        raise InputError("--stream needs the Python agent (state carried between invokes); this target runs "
                         "benchmark_model")
    if not spec.benchmark_binary:
        raise InputError(
            f"target {spec.name} runs benchmark_model but names no binary",
            "set benchmark_binary for it with `edgeseq targets add`",
        )
    bm = BenchmarkOptions(
        runs=opts.runs, warmup=opts.warmup, threads=opts.threads, max_secs=opts.max_secs, xnnpack=opts.xnnpack
    )
    return run_benchmark(target, model, Path(spec.benchmark_binary), bm, timeout=opts.default_timeout())


def device_key(device: dict) -> str:
    return "/".join(str(device.get(k) or "?") for k in ("hostname", "machine", "cpu_model"))


def row_from_record(record: dict, run_id: int | None) -> dict:
    """The flat dict a table (and --json) shows for one run."""
    opts = record.get("options_json") or record.get("options") or {}
    stats = record.get("stats_json") or record.get("stats") or {}
    device = record.get("device_json") or record.get("device") or {}
    return {
        "run_id": run_id,
        "target": record["target"],
        "device": record.get("device_key") or device_key(device),
        "device_facts": device,
        "model": record["model_name"],
        "model_path": record["model_path"],
        "sha256": record["model_sha256"],
        "recipe": record.get("recipe"),
        "params": record.get("params"),
        "accuracy": record.get("accuracy"),
        "runtime": f"{record.get('runtime_name')} {record.get('runtime_version')}",
        "threads": opts.get("threads"),
        "xnnpack": opts.get("xnnpack"),
        "repeat_index": record.get("repeat_index", 0),
        **stats,
        **op_fields((record.get("agent_json") or {}).get("ops"), stats.get("p50_us")),
        "stream": stream_fields((record.get("agent_json") or record.get("agent") or {}).get("stream"), stats),
    }


def stream_fields(stream: dict | None, stats: dict) -> dict | None:
    """What `profile --stream` measured, per step: the whole step (p50/p99, the timed loop's samples), the invoke
    inside it, the host's share (step - invoke at p50), and against --hop-ms the share of steps in time and the
    real-time factor (per-step p99 / hop). None for a run that was not a stream."""
    if not isinstance(stream, dict):
        return None
    invokes = sorted(v for v in stream.get("invoke_ns") or [] if isinstance(v, (int, float)))
    invoke_p50 = invokes[len(invokes) // 2] / 1000.0 if invokes else None
    p50, p99, hop = stats.get("p50_us"), stats.get("p99_us"), stream.get("hop_ms")
    return {
        "kind": stream.get("kind"), "steps": stream.get("steps"), "window": stream.get("window"),
        "state_bytes": stream.get("state_bytes"),
        "step_p50_us": p50, "step_p99_us": p99, "invoke_p50_us": invoke_p50,
        "host_overhead_us": (p50 - invoke_p50) if p50 is not None and invoke_p50 is not None else None,
        "hop_ms": hop, "deadline_met_share": stream.get("deadline_met_share"),
        "real_time_factor": (p99 / 1000.0 / hop) if hop and p99 is not None else None,
    }


def profile_models(
    paths: Sequence[str | Path],
    target: str | Sequence[str] = "local",
    runs: int = 200,
    warmup: int = 20,
    threads: int | None = 1,
    db: str | Path | None = None,
    max_secs: float | None = None,
    xnnpack: bool = True,
    input: str | Path | None = None,
    cpus: int | None = None,
    memory_limit: str | int | None = None,
    cpu_quota: float | None = None,
    repeat: int = 1,
    on_result: Callable[[dict], None] | None = None,
    stream: bool = False,
    steps: int | None = None,
    hop_ms: float | None = None,
    ops: bool = False,
) -> list[dict]:
    """Measure every model on every target `repeat` times; store each run as it finishes; return the rows.

    Everything that can be checked before measuring (models, options, targets, the store) is checked first, so a
    bad argument writes nothing. Each run is committed on its own: an error or Ctrl-C later keeps earlier runs.
    """
    if not paths:
        raise InputError("no models given", "pass one or more .tflite files")
    check_profile_options(runs, warmup, threads, max_secs, cpus, memory_limit, cpu_quota, repeat, steps, hop_ms)
    opts = AgentOptions(
        runs=runs,
        warmup=warmup,
        threads=threads,
        max_secs=max_secs,
        xnnpack=xnnpack,
        input=str(input) if input is not None else None,
        stream=stream,
        steps=steps,
        hop_ms=hop_ms,
        ops=ops,
    )
    opts.check()
    models = [Path(p) for p in paths]
    for m in models:
        _check_model(m)
    names = [target] if isinstance(target, str) else list(target)
    if not names:
        raise InputError("no target given")
    if memory_limit is not None:  # before any cgroup is made: what the models need, predicted from the files
        from edgeseq.profiling.memory_need import check_memory_limit

        check_memory_limit(models, memory_limit, names, xnnpack=xnnpack)
    targets = open_targets(names, cpus, memory_limit, cpu_quota)
    prepared = []
    for m in models:
        sha = sha256_file(m)
        manifest = read_manifest(manifest_path_for(m), strict=False)  # a model profiles without one
        prepared.append((m, manifest, manifest_summary(manifest, m, sha)))
    db_path = preflight(db)  # refuses a foreign, newer, damaged or unwritable store; creates nothing
    session = uuid.uuid4().hex[:12]
    rows = []
    store = None  # opened (and, when new, created) at the first result: a failed run leaves no file behind
    scratch = Path(tempfile.mkdtemp(prefix="edgeseq-ops-")) if ops else None
    try:
        packs = {m: _op_slices(m, sha256_file(m), scratch) for m, _, _ in prepared} if scratch else {}
        for name, tgt in targets:
            for m, manifest, summary in prepared:
                for k in range(repeat):
                    data = _measure(tgt, m, opts, packs.get(m, (None, None)))
                    record = build_record(data, name, tgt, m, manifest, summary, opts, session, k)
                    if store is None:
                        store = ResultsStore(db_path)
                    run_id = store.add_run(record)
                    row = row_from_record(record, run_id)
                    row["manifest_stale"] = summary["manifest_stale"]
                    rows.append(row)
                    if on_result is not None:
                        on_result(row)
    finally:
        if store is not None:
            store.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return rows
