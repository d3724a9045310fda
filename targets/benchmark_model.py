"""Runner for LiteRT's native `benchmark_model` binary: the usual way to time a model on a stock Android phone,
which has no Python. The user supplies the binary built for the device (e.g. android_aarch64) with
`--benchmark-binary`; it is pushed with the model, run with an argv list, and its log is parsed into the same result
schema the Python agent produces (`edgeseq.agent/1`), with `runner: "benchmark_model"`.

What the log gives, and so what the result has: init time, first inference, warm-up average, and for the timed runs
count/avg/std/min/max (and p5/median/p95 on newer builds). It prints no per-run samples, so `timings_ns.invoke` is
empty and the aggregates travel in `aggregate_us`; p90/p99 are unknown (None), never invented. Its memory figures
are, in its own words, only APPROXIMATE: they are stored as such (`memory.approximate = true`). The figures a table
shows come from `edgeseq.core.stats.summarize`, as for the agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgeseq.core.errors import InputError, ModelError, RuntimeMissing, TargetError
from edgeseq.targets import device_shell
from edgeseq.targets.facts import from_target_facts

RUNNER = "benchmark_model"
REMOTE_NAME = "benchmark_model"
_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_SUMMARY_RE = re.compile(
    rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}"
)
_COUNT_RE = re.compile(r"\bcount=(\d+)((?:\s+\w+=[-+\d.eE]+)*)")
_KV_RE = re.compile(rf"(\w+)={_NUM}")
_INIT_SESSION_RE = re.compile(rf"Initialized session in {_NUM}\s*ms")
_MODEL_SIZE_RE = re.compile(rf"The input model file size \(MB\): {_NUM}")
_MEM_DELTA_RE = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init={_NUM} overall={_NUM}"
)
_MEM_PEAK_RE = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_THREADS_RE = re.compile(r"(?:Num threads|#threads used for CPU inference): \[(\d+)\]")
_VERSION_RE = re.compile(r"(?:TF ?Lite|LiteRT)(?: runtime)? version:? \[?([0-9][\w.\-+]*)\]?", re.IGNORECASE)
_FATAL = (
    "Failed to",
    "Error:",
    "ERROR:",
    "error:",
    "Didn't find op",
    "Unsupported",
    "Aborted",
    "Segmentation fault",
)


@dataclass(frozen=True)
class BenchmarkOptions:
    runs: int = 100
    warmup: int = 10
    threads: int | None = 1
    max_secs: float | None = None
    xnnpack: bool = True


def build_argv(binary: str, graph: str, opts: BenchmarkOptions) -> list[str]:
    """benchmark_model's flags for exactly `runs` timed and `warmup` untimed invokes (its time minimums are off)."""
    argv = [
        binary,
        f"--graph={graph}",
        f"--num_runs={opts.runs}",
        f"--warmup_runs={opts.warmup}",
        "--min_secs=0",
        "--warmup_min_secs=0",
        f"--max_secs={opts.max_secs if opts.max_secs else 150:g}",
    ]
    if opts.threads is not None:
        argv.append(f"--num_threads={opts.threads}")
    if not opts.xnnpack:
        argv.append("--use_xnnpack=false")
    return argv


def parse_log(text: str) -> dict:
    """The figures in one benchmark_model log, in the units it prints (us, ms, MB). Raises TargetError when the
    log has no timing summary (the tool failed), naming the tool's own error line."""
    text = text.replace("\r", "")
    summary = _SUMMARY_RE.search(text)
    if not summary:
        raise _failure(text)
    init_us, first_us, warmup_avg_us, avg_us = (float(v) for v in summary.groups())
    counts = []
    for m in _COUNT_RE.finditer(text):
        fields = {k: float(v) for k, v in _KV_RE.findall(m.group(2))}
        fields["count"] = int(m.group(1))
        counts.append(fields)
    steady = counts[-1] if counts else {"count": None}
    warm = counts[0] if len(counts) >= 2 else {}
    out: dict = {
        "init_us": init_us,
        "first_inference_us": first_us,
        "warmup_avg_us": warmup_avg_us,
        "warmup_count": warm.get("count"),
        "avg_us": avg_us,
        "count": steady.get("count"),
        "std_us": steady.get("std"),
        "min_us": steady.get("min"),
        "max_us": steady.get("max"),
        "p5_us": steady.get("p5"),
        "median_us": steady.get("median"),
        "p95_us": steady.get("p95"),
        "first_us": steady.get("first"),
        "curr_us": steady.get("curr"),
        "init_session_ms": None,
        "model_size_mb": None,
        "memory_init_mb": None,
        "memory_overall_mb": None,
        "memory_peak_mb": None,
        "threads": None,
        "version": None,
    }
    for key, regex in (
        ("init_session_ms", _INIT_SESSION_RE),
        ("model_size_mb", _MODEL_SIZE_RE),
        ("memory_peak_mb", _MEM_PEAK_RE),
    ):
        m = regex.search(text)
        if m:
            out[key] = float(m.group(1))
    m = _MEM_DELTA_RE.search(text)
    if m:
        out["memory_init_mb"], out["memory_overall_mb"] = float(m.group(1)), float(m.group(2))
    m = _THREADS_RE.search(text)
    if m:
        out["threads"] = int(m.group(1))
    m = _VERSION_RE.search(text)
    if m:
        out["version"] = m.group(1)
    return out


def _failure(text: str) -> TargetError | ModelError | RuntimeMissing:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if any(f in ln for f in _FATAL)]
    ops = [ln for ln in lines if "Didn't find op" in ln]
    reason = (ops or fatal[:1] or lines[-1:] or ["no output"])[0][:300]  # the first error is the cause
    if "Didn't find op" in text or "Unsupported" in text or "not supported" in text:
        return RuntimeMissing(
            f"benchmark_model cannot run this model: {reason}",
            "use a benchmark_model build matching the converter, or another recipe",
        )
    if "Failed to mmap model" in text or "Failed to load model" in text or "Could not open" in text:
        return ModelError(
            f"benchmark_model could not load the model: {reason}", "check the file pushed intact"
        )
    return TargetError(
        f"benchmark_model printed no timing summary: {reason}",
        "run it by hand with `adb shell` to see its full log",
    )


def to_result(parsed: dict, model: dict, opts: BenchmarkOptions, device: dict) -> dict:
    """The common result schema (edgeseq.agent/1 layout) for one benchmark_model run."""
    peak_mb = parsed["memory_peak_mb"] or parsed["memory_overall_mb"]
    return {
        "schema": "edgeseq.agent/1",
        "agent_version": f"{RUNNER}",
        "runner": RUNNER,
        "ok": True,
        "model": model,
        "runtime": {
            "name": RUNNER,
            "version": parsed["version"] or "native",
            "numpy_version": None,
            "threads": parsed["threads"] or opts.threads,
            "xnnpack": "default" if opts.xnnpack else "off",
        },
        "options": {
            "runs": opts.runs,
            "warmup": opts.warmup,
            "max_secs": opts.max_secs,
            "threads": opts.threads,
            "xnnpack": opts.xnnpack,
        },
        "timings_ns": {
            "import_runtime": None,
            "load": int(parsed["init_us"] * 1000),
            "allocate": 0,
            "first_inference": int(parsed["first_inference_us"] * 1000),
            "warmup": [],
            "invoke": [],  # benchmark_model prints aggregates only; see aggregate_us
        },
        "aggregate_us": {
            "count": parsed["count"],
            "mean_us": parsed["avg_us"],
            "std_us": parsed["std_us"],
            "min_us": parsed["min_us"],
            "max_us": parsed["max_us"],
            "p5_us": parsed["p5_us"],
            "p50_us": parsed["median_us"],
            "p95_us": parsed["p95_us"],
            "warmup_mean_us": parsed["warmup_avg_us"],
            "warmup_count": parsed["warmup_count"],
        },
        "runs_completed": parsed["count"],
        "stopped_by": "runs" if parsed["count"] == opts.runs else "max_secs",
        "memory": {
            "vm_hwm_kb": int(peak_mb * 1024) if peak_mb is not None else None,
            "vm_rss_kb": None,
            "approximate": True,
            "source": "benchmark_model log (its own note: only APPROXIMATE)",
            "init_mb": parsed["memory_init_mb"],
            "overall_mb": parsed["memory_overall_mb"],
            "peak_mb": parsed["memory_peak_mb"],
        },
        "device": from_target_facts(device),  # the agent's `device` fields (edgeseq.targets.facts)
        "target_facts": device,  # what the transport gathered (getprop, /proc), as it gave it
        "stream": None,
    }


def run_benchmark(
    target, model: Path, binary: Path, opts: BenchmarkOptions, timeout: float = 600.0, keep: bool = False
) -> dict:
    """Push the binary and the model to a fresh work directory, verify the model's sha256 there, run, parse, clean up
    (unless `keep`). Returns the common result schema: `device` in the agent's fields, `target_facts` as `info()` gave them."""
    from edgeseq.core.fsio import sha256_file
    from edgeseq.targets.runner import _safe_name

    model, binary = Path(model), Path(binary).expanduser()
    if not model.is_file():
        raise ModelError(f"model not found: {model}")
    if not binary.is_file():
        raise InputError(
            f"benchmark_model binary not found: {binary}",
            "download or build LiteRT's benchmark_model for the device (e.g. android_aarch64) and pass --benchmark-binary",
        )
    digest = sha256_file(model)
    wd = target.workdir()
    try:
        remote_bin = str(PurePosixPath(wd) / REMOTE_NAME)
        remote_model = str(PurePosixPath(wd) / _safe_name(model.name))
        target.push(binary, remote_bin)
        target.push(model, remote_model)
        chmod = target.run(["chmod", "755", remote_bin], timeout=30)
        if chmod.returncode != 0:
            raise TargetError(
                f"cannot make {remote_bin} executable: {device_shell.last_line(chmod.stderr)}",
                "set workdir to a filesystem that allows exec (e.g. /data/local/tmp)",
            )
        verified = device_shell.verify_sha256(target, remote_model, digest)
        result = target.run(build_argv(remote_bin, remote_model, opts), timeout=timeout)
        log = result.stdout + "\n" + result.stderr
        if result.returncode != 0 and not _SUMMARY_RE.search(log):
            if result.returncode >= 128:
                raise TargetError(
                    f"benchmark_model was killed (exit {result.returncode}) while measuring {model.name}: {device_shell.last_line(log) or 'no output'}",
                    "the device may have run out of memory; only this run was lost",
                )
            raise _failure(log)
        parsed = parse_log(log)
        try:
            device = target.info()
        except TargetError:
            device = {}
    finally:
        if not keep:
            try:
                target.cleanup(wd)
            except TargetError:
                pass
    model_info = {
        "path": remote_model,
        "size_bytes": model.stat().st_size,
        "sha256": digest,
        "sha256_verified": verified,
        "host_path": str(model),
    }
    out = to_result(parsed, model_info, opts, device)
    if keep:
        out["remote_dir"] = wd
    return out
