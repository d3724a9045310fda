#!/usr/bin/env python3
"""edgeseq device agent: load one .tflite, time it, print one JSON document on stdout.

This file is pushed to the device and run there by itself, so it imports only the standard library, numpy and a
TFLite runtime (`ai_edge_litert`, falling back to `tflite_runtime`). It never imports edgeseq, TensorFlow or click
(tests/test_agent.py proves it). It measures and reports raw samples; statistics are computed on the host.
Needs Python >= 3.9.

Contents
--------
In file order; each section starts with a `# ---- name` line.
    the document    SCHEMA, AgentError, `_document` (the header every answer starts with) and `_measurement`
    device facts    `device_facts()`: the `device` block (fields named in edgeseq.targets.facts)
    memory          `MemoryMeter`: VmRSS and resident code per stage, the model's own peak without the runtime's code
    runtime         importing ai_edge_litert / tflite_runtime; runtime errors classified (op, Flex, custom op)
    inputs          random or file inputs, shaped, typed and quantized for the interpreter
    measuring       sha256 check, load, allocate, first inference, warm-up, the timed loop: `measure()`
    streaming       `StreamStepper` (state carried by name, KV caches, windows) and `--stream` measuring
    per-op time     `measure_ops()`: `--ops`, each op of the model timed as one-op models fed real tensors
    CLI             options, `main()`, errors as JSON (`_fail`), the re-exec that frees the script's syntax tree

Command line
------------
    python3 agent.py --model M.tflite [--expect-sha256 HEX] [--threads N] [--runs N] [--warmup N]
                     [--max-secs S] [--no-xnnpack] [--input X.npy|X.npz] [--input-dist normal|uniform]
                     [--seed N] [--runtime auto|ai_edge_litert|tflite_runtime] [--vocab V]
    python3 agent.py --facts          # device facts and runtime only, no model
    python3 agent.py --version        # prints the agent version and schema
    python3 agent.py --model STEP.tflite --stream [--steps N] [--hop-ms H] [--input SEQ.npy] ...
                                      # streaming: one step per invoke, state carried (see "streaming" below)
    python3 agent.py --model M.tflite --ops SLICES.zip ...
                                      # then every op timed on its own (see "per-op time" below)

`--expect-sha256` makes the agent check the file it was given before measuring anything (a truncated or stale
push is an error, never a measurement). `--max-secs` bounds the timed loop (and the warm-up) by wall time, so
`--runs` becomes an upper limit. `--no-xnnpack` builds the interpreter with
`OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES` (XNNPACK is a default delegate of both runtimes).
Random inputs: float tensors N(0, 1) (or U(-1, 1) with `--input-dist uniform`); integer and bool tensors span the
dtype's full range, except token ids: an int32/int64 input without quantization that feeds an Embedding's GATHER gets
uniform ids 0..V-1, V from `--vocab V` (the host passes the manifest's vocabulary) or else the GATHER table's rows. `--input` takes a .npy (one input) or a .npz keyed by input name (or arr_0.. in input order); a
missing batch axis is added, a larger batch is cut to its first sample, float data fed to an int8/uint8/int16
input is quantized with the tensor's scale and zero point.

Progress: one line `edgeseq-agent: stage=NAME` per stage on stderr, so a host can tell where a crash happened.

Exit status: 0 ok; 2 bad input/option; 3 model problem (missing, corrupt, checksum, Flex ops, unsupported op);
4 no runtime; 5 internal error. Errors are JSON on stdout too (`ok: false`).

JSON schema "edgeseq.agent/3" (all times in nanoseconds, sizes in bytes or kB as named)
---------------------------------------------------------------------------------------
{
  "schema": "edgeseq.agent/3", "agent_version": "3.1.0", "ok": true,
  "model":   {"path", "size_bytes", "sha256", "sha256_verified": bool | null},
  "runtime": {"name": "ai_edge_litert" | "tflite_runtime", "version", "numpy_version",
              "threads": int | null, "xnnpack": "default" | "off"},
  "options": {"runs", "warmup", "max_secs", "threads", "xnnpack", "input", "input_dist", "seed"},
  "inputs":  [{"name", "index", "shape", "dtype", "quantization": [scale, zero_point], "source"}],
  "outputs": [{"name", "index", "shape", "dtype"}],
  "timings_ns": {"import_runtime", "load", "allocate", "first_inference",
                 "warmup": [int, ...], "invoke": [int, ...]},   # invoke = the timed runs, raw
  "runs_completed": int, "stopped_by": "runs" | "max_secs",
  "memory": {"baseline_kb", "load_kb", "allocate_kb", "first_invoke_kb", "timed_peak_kb",  # VmRSS, kB
             "model_peak_kb", "code_kb", "harness_kb", "process_peak_kb", "method", "code_method", "vm_hwm_kb",
             "vm_rss_kb",
             "stages": {"start"|"import"|"baseline"|"load"|"allocate"|"first_invoke"|"end":
                        {"vm_rss_kb", "vm_hwm_kb", "rss_anon_kb", "rss_file_kb", "code_kb"}}},
             # baseline_kb: VmRSS once Python, numpy and the runtime are imported (and the numpy code the agent
             # runs later paged in: stage "baseline" after "import"), before the model loads;
             # load/allocate/first_invoke_kb: VmRSS after that stage; timed_peak_kb: VmHWM over the timed loop;
             # model_peak_kb: what this model costs on this runtime: the peak of (RSS - resident machine code) from
             # the baseline to the end, minus its value at the baseline (the model's weights, mapped from its file,
             # count; the runtime's code pages do not: how many are resident depends on the page cache);
             # harness_kb: the agent's own buffers sized by the run, left out of model_peak_kb (--stream: the input
             # sequence, a ring of at most 64 random steps or the --input file, and the per-step records; a whole
             # run: its copy of an --input file or of token ids; random floats go straight into the input tensor,
             # so no copy of them exists: 3.0 held one, and ~200 kB of freed float64 temporaries, in the figure);
             # code_kb: the runtime's code paged in since the baseline (file-backed pages of shared objects and
             # executable mappings); code_method: "smaps" (/proc/self/smaps, the model mapped from its file),
             # "rss-file" (no smaps: the model loaded from bytes, code = RssFile), null (not separated:
             # model_peak_kb includes the code, as in agent/2); process_peak_kb (= vm_hwm_kb): the whole process's
             # peak; method: "clear_refs" (VmHWM reset after the baseline and at every stage: measured),
             # "hwm-inferred" (no reset; the lifetime VmHWM rose past its value at the baseline, so the peak is the
             # model's), "rss-sampled" (a lower bound: the largest sampled VmRSS); null figures where /proc is
             # unreadable. Stage readings are raw (VmHWM since the last reset). See "memory" below.
  "device":  {"hostname", "machine", "cpu_model", "board", "cpu_count", "cpus_allowed", "cpu_mhz",
              "cpu_max_mhz", "mem_total_kb", "os", "os_release", "kernel", "python", "python_impl", "libc"},
  "stream":  null | {"mode": "step" | "window", "kind": "recurrent-step" | "kv-cache" | "window",
              "steps", "passes", "window", "capacity", "position_input",
              "state": [{"name", "shape", "dtype", "bytes", "requantized", "update": "carry" | "write_at_pos"}],
              "state_bytes",
              "invoke_ns": [...], "hop_ms", "deadline_met_share", "real_time_factor", "final_output": [...]}
             # with --stream, timings_ns.invoke holds whole steps (set x/pos + invoke + carry state), raw
             # kind (edgeseq.models.streamkind.StreamKind): "recurrent-step" steps with the state carried whole,
             # "kv-cache" has a position input / `<name>_at_pos` outputs, "window" re-runs the whole window
  "ops":     {"route": "sub-models" | null, "reason": str | null, "replicas", "capture", "samples",
              "overhead_ns", "seconds",       # overhead_ns: a one-op model's invoke minus its op (median)
              "ops": [{"index", "subgraph", "type", "dtypes", "output_shape", "calls", "op_ns", "one_ns",
                       "error"?}]}        # only with --ops (an optional key: no schema change); see "per-op time"
}
Schema "edgeseq.agent/2" (agent 2.x) had no code_kb / code_method: its model_peak_kb included the runtime's code
pages paged in after the baseline (~2-4 MB on x86_64, page-cache dependent). "edgeseq.agent/1" (agent 1.x) had memory
{"vm_hwm_kb", "vm_rss_kb", "stages"} only. Hosts still read both.
Errors: {"schema", "agent_version", "ok": false,
         "error": {"kind": "input" | "model" | "checksum" | "flex" | "op_unsupported" | "runtime_missing" |
                           "not_implemented" | "internal",
                   "message", "hint", "op", "op_version", "stage"},
         "runtime": {...} | null, "device": {...}}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time

# --------------------------------------------------------------------------------------------- the document
SCHEMA = "edgeseq.agent/3"
AGENT_VERSION = "3.1.0"
# stream.kind: the values of edgeseq.models.streamkind.StreamKind, spelled out here (this file imports nothing from edgeseq;
# tests/test_agent.py checks they are the enum's)
KIND_RECURRENT_STEP, KIND_KV_CACHE, KIND_WINDOW = "recurrent-step", "kv-cache", "window"
STREAM_KINDS = (KIND_RECURRENT_STEP, KIND_KV_CACHE, KIND_WINDOW)

EXIT_OK, EXIT_INPUT, EXIT_MODEL, EXIT_RUNTIME, EXIT_INTERNAL = 0, 2, 3, 4, 5
_EXIT_BY_KIND = {
    "input": EXIT_INPUT,
    "not_implemented": EXIT_INPUT,
    "model": EXIT_MODEL,
    "checksum": EXIT_MODEL,
    "flex": EXIT_MODEL,
    "op_unsupported": EXIT_MODEL,
    "runtime_missing": EXIT_RUNTIME,
    "internal": EXIT_INTERNAL,
}


class AgentError(Exception):
    def __init__(self, kind: str, message: str, hint: str | None = None, **extra):
        super().__init__(message)
        self.kind, self.message, self.hint, self.extra = kind, message, hint, extra


def _stage(name: str) -> None:
    sys.stderr.write(f"edgeseq-agent: stage={name}\n")
    sys.stderr.flush()


def _document(ok: bool, **fields) -> dict:
    """Every JSON answer: schema, agent version and ok first, then `fields` in the order given."""
    return {"schema": SCHEMA, "agent_version": AGENT_VERSION, "ok": ok, **fields}


def _measurement(model, runtime, options, inputs, outputs, timings, stopped, mem, stream=None) -> dict:
    """A measurement's document (plain or --stream); `mem` is the run's MemoryMeter."""
    return _document(
        True,
        model=model,
        runtime=runtime,
        options=options,
        inputs=inputs,
        outputs=outputs,
        timings_ns=timings,
        runs_completed=len(timings["invoke"]),
        stopped_by=stopped,
        memory=mem.block(),
        device=device_facts(),
        stream=stream,
    )


# --------------------------------------------------------------------------------------------- device facts
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


_STATUS_KEYS = {"VmRSS:": "vm_rss_kb", "VmHWM:": "vm_hwm_kb", "RssAnon:": "rss_anon_kb", "RssFile:": "rss_file_kb"}


def _proc_status_kb() -> dict:
    """VmRSS, VmHWM and the anonymous / file-backed parts of the RSS (Linux >= 4.5), kB; None where unreadable."""
    text = _read("/proc/self/status") or ""
    out = dict.fromkeys(_STATUS_KEYS.values())
    for line in text.splitlines():
        key = _STATUS_KEYS.get(line[: line.find(":") + 1])
        if key:
            out[key] = int(line.split()[1])
    return out


def device_facts() -> dict:
    """What a reader needs to know about the machine to trust (or distrust) a figure measured on it."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    cpu_model, mhz, hardware = None, None, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "processor") and not cpu_model and value and not value.isdigit():
            cpu_model = value
        elif key in ("hardware", "model") and not hardware and value and not value.isdigit():
            hardware = value
        elif key == "cpu mhz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
        elif key == "cpu part" and not cpu_model:
            cpu_model = f"ARM part {value}"
    max_mhz = None
    raw = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if raw and raw.strip().isdigit():
        max_mhz = int(raw.strip()) / 1000.0
    raw = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if raw and raw.strip().isdigit():
        mhz = int(raw.strip()) / 1000.0
    board = (_read("/proc/device-tree/model") or "").strip("\x00\n ") or hardware
    mem_total = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_total = int(line.split()[1])
    os_release = None
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_release = line.split("=", 1)[1].strip().strip('"')
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = None
    return {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "cpu_model": cpu_model or platform.processor() or None,
        "board": board,
        "cpu_count": os.cpu_count(),
        "cpus_allowed": allowed,
        "cpu_mhz": mhz,
        "cpu_max_mhz": max_mhz,
        "mem_total_kb": mem_total,
        "os": platform.system(),
        "os_release": os_release,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
    }


# --------------------------------------------------------------------------------------------- memory
# What a model costs is the process's peak minus what Python, numpy and the runtime hold before it loads (~35 MB on
# x86_64, most of any figure). Linux keeps one high-water mark per process (VmHWM); writing "5" to
# /proc/self/clear_refs (Linux >= 4.0) resets it to the current RSS, so the peak after the baseline is measured, not
# inferred. Where that write fails, the lifetime VmHWM still gives the model's peak when it rose past its value at
# the baseline ("hwm-inferred"); when it did not, only the sampled stages bound it from below ("rss-sampled").
#
# Code pages. Loading, allocating and running a first model pages in more of the runtime's shared libraries (~3 MB of
# machine code on x86_64 LiteRT). Those pages are file-backed and shared, and how many of them are already resident
# at the baseline depends on the page cache, not on the model: the kernel's fault-around maps up to 16 neighbouring
# pages per fault when they are cached, so a freshly installed venv showed 30 MB file-backed at the baseline against
# 22 MB in an old one, and the same tiny model measured 1.9 MB there and 3.3 MB here. So every stage also reads the
# resident code (`code_rss_kb`: the file-backed pages of every mapping of a shared object or with execute
# permission, /proc/self/smaps) and `model_peak_kb` is the peak of (RSS - code) over the baseline's (RSS - code).
# Both runtimes memory-map the .tflite itself (a read-only shared mapping of the model file): those pages are the
# model's weights, file-backed but not code, and stay in `model_peak_kb`. The peak is taken per interval between
# stages (the mark is reset at each stage under clear_refs) less the code resident at the interval's end: code only
# grows, so this is exact at the stage readings and at most the code paged in within one interval low in between.
# Where smaps is unreadable (kernels without CONFIG_PROC_PAGE_MONITOR, which also lack clear_refs) but
# /proc/self/status has RssFile (Linux >= 4.5), the agent loads the model from bytes instead of by path, so nothing
# file-backed is the model's, and the code is RssFile ("rss-file"). With neither, code is not separated
# (`code_method` null, `code_kb` null, `model_peak_kb` includes it as schema edgeseq.agent/2 did).
METHOD_CLEAR_REFS, METHOD_HWM, METHOD_SAMPLED = "clear_refs", "hwm-inferred", "rss-sampled"
CODE_SMAPS, CODE_RSS_FILE = "smaps", "rss-file"
_HEX = frozenset(b"0123456789abcdef")


def _is_code(perms: bytes, path: bytes) -> bool:
    """A mapping of machine code: a shared object file (name ending .so or .so.N) or any file mapped executable."""
    if not path.startswith(b"/"):
        return False  # anonymous, [heap], [stack], [vdso]: not file-backed
    if path.endswith(b" (deleted)"):
        path = path[:-10]
    if b"x" in perms:
        return True
    name = path.rsplit(b"/", 1)[-1]
    head, dot_so, tail = name.partition(b".so")
    while head and dot_so:
        if not tail or (tail[:1] == b"." and tail[1:].replace(b".", b"").isdigit()):
            return True
        head, dot_so, tail = tail.partition(b".so")
    return False


def code_rss_kb(skip_inode: int | None = None) -> int | None:
    """kB of machine code resident in this process: the file-backed pages (Rss less the copy-on-write Anonymous
    ones) of every mapping `_is_code` names, the mapping of inode `skip_inode` (the model file) never; None where
    /proc/self/smaps is unreadable."""
    try:
        fh = open("/proc/self/smaps", "rb")  # noqa: SIM115 - closed below; bytes: no decoding per line
    except OSError:
        return None
    total, code, rss = 0, False, 0
    try:
        with fh:
            for line in fh:
                if line[0] in _HEX:  # a mapping's header: "start-end perms offset dev inode [path]"
                    parts = line.split(None, 5)
                    path = parts[5].strip() if len(parts) > 5 else b""
                    code = len(parts) > 4 and _is_code(parts[1], path)
                    if code and skip_inode and parts[4].isdigit() and int(parts[4]) == skip_inode:
                        code = False
                elif code and line.startswith(b"Rss:"):
                    rss = int(line.split()[1])
                    total += rss
                elif code and line.startswith(b"Anonymous:"):
                    total -= min(rss, int(line.split()[1]))
    except (OSError, ValueError, IndexError):
        return None
    return total


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS; False where the kernel or a sandbox refuses."""
    try:
        fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return False
    try:
        return os.write(fd, b"5") == 1
    except OSError:
        return False
    finally:
        os.close(fd)


class MemoryMeter:
    """VmRSS and resident code after each stage and the peak over the rest of the run, relative to a baseline.

    `baseline()` once the runtime is imported and numpy warmed up (`warm_numpy`); `mark(stage)` after load, allocate,
    the first invoke; `start_timed()` right before the timed loop; `finish()` after it. Under clear_refs each of
    these closes an interval: its VmHWM is read with the code resident at its end, and the mark is reset for the next.
    `from_bytes` says the model must be loaded from bytes (code measured as RssFile). `block()` is the document's
    `memory` section."""

    def __init__(self, model_inode: int | None = None):
        self.model_inode = model_inode
        self.code_method = None
        if code_rss_kb(model_inode) is not None:
            self.code_method = CODE_SMAPS
        elif _proc_status_kb()["rss_file_kb"] is not None:
            self.code_method = CODE_RSS_FILE
        self.from_bytes = self.code_method == CODE_RSS_FILE
        self.stages = {"start": self._snap()}
        self.method = None
        self.base = None
        self.base_code = None
        self.hwm_before = None  # the lifetime VmHWM at the baseline
        self.intervals = []  # (VmHWM over the interval, code at its end): clear_refs only
        self.timed_peak = None  # VmHWM over the timed loop (clear_refs only)
        self.harness_kb = 0  # the agent's own buffers sized by the run (a stream's input and records)

    def _snap(self) -> dict:
        snap = _proc_status_kb()  # VmHWM first: the smaps read below must not count in the interval it closes
        if self.code_method == CODE_SMAPS:
            snap["code_kb"] = code_rss_kb(self.model_inode)
        else:
            snap["code_kb"] = snap["rss_file_kb"] if self.code_method == CODE_RSS_FILE else None
        return snap

    def baseline(self) -> None:
        code_rss_kb(self.model_inode)  # once more, so the reader's own buffers are in the baseline
        snap = self._snap()
        self.stages["baseline"] = snap
        self.base, self.hwm_before, self.base_code = snap["vm_rss_kb"], snap["vm_hwm_kb"], snap["code_kb"]
        if self.base is None or self.hwm_before is None:
            return  # no /proc: no figures, method None
        if reset_peak_rss():
            after = _proc_status_kb()["vm_hwm_kb"]
            # it took effect when the mark no longer holds an earlier, higher peak
            if after is not None and (after < self.hwm_before or self.hwm_before <= self.base + 64):
                self.method = METHOD_CLEAR_REFS
                return
        self.method = METHOD_HWM

    def _close_interval(self, snap: dict) -> None:
        if self.method == METHOD_CLEAR_REFS and snap["vm_hwm_kb"] is not None:
            self.intervals.append((snap["vm_hwm_kb"], snap["code_kb"]))
            reset_peak_rss()  # if it fails, the next reading covers this interval too: still a peak, code its end

    def mark(self, stage: str) -> None:
        snap = self._snap()
        self.stages[stage] = snap
        self._close_interval(snap)

    def start_timed(self) -> None:
        self._close_interval(self._snap())

    def finish(self) -> None:
        end = self._snap()
        self.stages["end"] = end
        if self.method == METHOD_CLEAR_REFS:
            self.timed_peak = end["vm_hwm_kb"]
        self._close_interval(end)

    def block(self) -> dict:
        end = self.stages.get("end") or {}
        samples = [self.stages[k] for k in ("load", "allocate", "first_invoke", "end") if k in self.stages]
        rss = {k: (self.stages.get(k) or {}).get("vm_rss_kb") for k in ("load", "allocate", "first_invoke")}
        code_known = self.base_code is not None and all(s.get("code_kb") is not None for s in samples)
        code_end = end.get("code_kb") if code_known else None
        base_rest = self.base - (self.base_code if code_known else 0) if self.base is not None else None

        def rest(kb, code):  # RSS less the code resident then (code not separated: RSS)
            return kb - (code if code_known else 0)

        sampled = [rest(s["vm_rss_kb"], s.get("code_kb")) for s in samples if s.get("vm_rss_kb") is not None]
        peak = model = None
        method = self.method
        if method == METHOD_CLEAR_REFS and self.intervals:
            peak = max(max(h for h, _ in self.intervals), self.hwm_before)
            model = max(rest(h, c) for h, c in self.intervals) - base_rest
        elif method in (METHOD_CLEAR_REFS, METHOD_HWM) and end.get("vm_hwm_kb") is not None and sampled:
            method = METHOD_HWM
            top = max(s["vm_rss_kb"] for s in samples if s.get("vm_rss_kb") is not None)
            peak = max(end["vm_hwm_kb"], top)  # the kernel's counters may lag a sample by a few pages
            if peak > self.hwm_before:  # the lifetime peak came after the baseline: it is the model's
                model = max(rest(peak, code_end), *sampled) - base_rest
            else:  # an earlier peak hides it; the largest sampled RSS is a lower bound
                method = METHOD_SAMPLED
                model = max(sampled) - base_rest
        return {
            "baseline_kb": self.base,
            "load_kb": rss["load"],
            "allocate_kb": rss["allocate"],
            "first_invoke_kb": rss["first_invoke"],
            "timed_peak_kb": self.timed_peak,
            "model_peak_kb": max(model - self.harness_kb, 0) if model is not None else None,
            "harness_kb": self.harness_kb,
            "code_kb": code_end - self.base_code if code_end is not None else None,
            "process_peak_kb": peak,
            "method": method,
            "code_method": self.code_method if code_known else None,
            "vm_hwm_kb": peak if peak is not None else end.get("vm_hwm_kb"),
            "vm_rss_kb": end.get("vm_rss_kb"),
            "stages": self.stages,
        }


# --------------------------------------------------------------------------------------------- runtime
def import_runtime(which: str = "auto"):
    """Return (name, version, module with Interpreter and maybe OpResolverType)."""
    errors = []
    order = ["ai_edge_litert", "tflite_runtime"] if which == "auto" else [which]
    for name in order:
        try:
            if name == "ai_edge_litert":
                import ai_edge_litert
                from ai_edge_litert import interpreter as mod

                version = getattr(ai_edge_litert, "__version__", None)
            elif name == "tflite_runtime":
                import tflite_runtime
                from tflite_runtime import interpreter as mod

                version = getattr(tflite_runtime, "__version__", None)
            else:
                raise AgentError(
                    "input", f"unknown runtime {name!r}", "use auto, ai_edge_litert or tflite_runtime"
                )
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if version is None:
            version = _dist_version(name.replace("_", "-"))
        return name, version, mod
    raise AgentError(
        "runtime_missing",
        "no TFLite runtime importable on this device (" + "; ".join(errors) + ")",
        "pip install ai-edge-litert (or tflite-runtime on armv7l / Python 3.11)",
    )


def _dist_version(dist: str) -> str | None:
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - a version is provenance, never a reason to fail
        return None


_OP_VERSION_RE = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'")
_CUSTOM_RE = re.compile(r"unresolved custom op: (\w+)", re.IGNORECASE)
_FLEX_RE = re.compile(r"\b(Flex\w+)")


def classify_runtime_error(text: str, runtime: str, version: str | None, stage: str) -> AgentError:
    """Turn a runtime's exception text into an error that names the op and the fix."""
    rt = f"{runtime} {version or ''}".strip()
    m = _OP_VERSION_RE.search(text)
    if m:
        op, ver = m.group(1), int(m.group(2))
        return AgentError(
            "op_unsupported",
            f"{rt} cannot run op {op} version {ver}: the model was written by a newer converter than this runtime",
            "install a newer runtime on the device (pip install ai-edge-litert), or convert with a recipe this "
            "runtime supports (fp32, fp16, int8 or int16x8 instead of dynamic-range)",
            op=op,
            op_version=ver,
            stage=stage,
        )
    flex = sorted(set(_FLEX_RE.findall(text)))
    if flex or "Select TensorFlow op" in text:
        return AgentError(
            "flex",
            f"the model needs TensorFlow Flex ops ({', '.join(flex) or 'Select TF ops'}), which {rt} cannot run",
            "convert with builtin ops only: fix the batch size to 1 or unroll the recurrent layer",
            op=flex[0] if flex else None,
            stage=stage,
        )
    m = _CUSTOM_RE.search(text)
    if m:
        return AgentError(
            "op_unsupported",
            f"{rt} has no kernel for custom op {m.group(1)}",
            "convert with builtin ops only, or use a runtime built with that op",
            op=m.group(1),
            stage=stage,
        )
    first = " ".join(text.strip().split())[:400]
    if stage == "load":
        return AgentError(
            "model", f"{rt} could not load the model: {first}", "is it a valid .tflite file?", stage=stage
        )
    return AgentError("model", f"{rt} failed at {stage}: {first}", None, stage=stage)


# --------------------------------------------------------------------------------------------- inputs
def _dtype_range(np, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return None


def make_inputs(np, details, args, rng, interp=None, in_place: bool = False) -> list:
    """One array per input, in input order, shaped and typed as the interpreter wants (token ids 0..V-1 for an
    Embedding's input when `interp` is given: see `input_vocab`). `in_place`: random floats are written straight
    into the interpreter's input tensor (its entry is None), so the run holds no copy of them; the values are the
    same as without it."""
    supplied = None
    if args.input:
        if not os.path.isfile(args.input):
            raise AgentError("input", f"input file not found: {args.input}")
        try:
            loaded = np.load(args.input, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for a bad file
            raise AgentError("input", f"cannot read {args.input} as .npy/.npz: {exc}") from None
        if hasattr(loaded, "files"):
            supplied = []
            for i, d in enumerate(details):
                key = d["name"] if d["name"] in loaded.files else f"arr_{i}"
                if key not in loaded.files:
                    raise AgentError(
                        "input",
                        f"{args.input} has no array for input {d['name']!r}",
                        f"keys there: {', '.join(loaded.files)}",
                    )
                supplied.append(loaded[key])
        else:
            if len(details) != 1:
                raise AgentError(
                    "input",
                    f"the model has {len(details)} inputs; a .npy holds one",
                    "pass a .npz keyed by input name",
                )
            supplied = [loaded]
    arrays = []
    for i, d in enumerate(details):
        shape, dtype = tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"])
        vocab = input_vocab(np, interp, d, args, len(details)) if interp is not None else None
        if supplied is not None:
            arr = _fit_array(np, supplied[i], shape, dtype, d)
            _check_ids(np, arr, vocab, d["name"])
            arrays.append(arr)
            continue
        if vocab:
            arrays.append(_random_ids(np, rng, shape, dtype, vocab))
            continue
        if in_place and interp is not None and np.issubdtype(dtype, np.floating):
            view = interp.tensor(d["index"])()  # the tensor's own buffer; no reference may outlive the fill
            _random_array(np, rng, shape, dtype, args.input_dist, out=view.reshape(-1))
            del view
            arrays.append(None)
            continue
        arrays.append(_random_array(np, rng, shape, dtype, args.input_dist))
    return arrays


# Ops a token id passes through between the model input and its Embedding's GATHER (Keras wraps negative ids with
# LESS/ADD/SELECT; casts and reshapes). Same rule as the host's edgeseq.quantize.tokens.
_ID_PASS_THROUGH = {"LESS", "ADD", "SELECT", "SELECT_V2", "CAST", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "STRIDED_SLICE",
                    "MAXIMUM", "MINIMUM", "NOT_EQUAL"}


def is_id_input(np, d) -> bool:
    """int32/int64 without quantization parameters: a candidate for token ids (an Embedding's input)."""
    scale = (d.get("quantization") or (0.0, 0))[0]
    return np.dtype(d["dtype"]) in (np.dtype(np.int32), np.dtype(np.int64)) and not scale


def gather_vocab(interp, index: int):
    """Rows of the GATHER table whose indices come from tensor `index` (through a few pass-through ops), else the
    smallest 2-D GATHER table of the model (a delegate can hide the path), else None."""
    try:
        ops = interp._get_ops_details()
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except Exception:  # noqa: BLE001 - old runtimes without op details: the caller keeps the full range
        return None
    producer = {}
    for op in ops:
        for o in op.get("outputs", []):
            producer[int(o)] = op

    def reaches(t, depth):
        if t == index:
            return True
        op = producer.get(t)
        if op is None or depth >= 6 or op.get("op_name") not in _ID_PASS_THROUGH:
            return False
        return any(reaches(int(i), depth + 1) for i in op.get("inputs", []) if int(i) >= 0)

    fed, any_table = [], []
    for op in ops:
        ins = [int(i) for i in op.get("inputs", [])]
        if op.get("op_name") != "GATHER" or len(ins) < 2 or ins[0] not in tensors:
            continue
        shape = [int(v) for v in tensors[ins[0]]["shape"]]
        if len(shape) >= 2 and shape[0] > 0:
            any_table.append(shape[0])
            if reaches(ins[1], 0):
                fed.append(shape[0])
    return min(fed) if fed else (min(any_table) if any_table else None)


def input_vocab(np, interp, d, args, n_inputs: int):
    """The id range of input `d`: `--vocab` for a single input (or the step model's "x"), else its GATHER table;
    None for inputs that are not token ids."""
    if not is_id_input(np, d):
        return None
    name = d["name"].split(":")[0]
    short = name[len("serving_default_"):] if name.startswith("serving_default_") else name
    if getattr(args, "vocab", None) and (n_inputs == 1 or short == "x"):
        return int(args.vocab)
    return gather_vocab(interp, d["index"])


def _random_ids(np, rng: random.Random, shape: tuple, dtype, vocab: int):
    """Seeded uniform token ids 0..vocab-1 (stdlib random, like `_random_array`)."""
    n = 1
    for s in shape:
        n *= s
    return np.array([rng.randrange(vocab) for _ in range(n)], dtype=dtype).reshape(shape)


def _check_ids(np, arr, vocab, name: str) -> None:
    if vocab and arr.size and (int(arr.max()) >= vocab or int(arr.min()) < 0):
        bad = int(arr.max()) if int(arr.max()) >= vocab else int(arr.min())
        raise AgentError("input", f"input {name!r} holds token id {bad} but the model's vocabulary has {vocab} ids "
                         f"(0..{vocab - 1})", "feed ids the model was trained with")


def _random_array(np, rng: random.Random, shape: tuple, dtype, dist: str, out=None):
    """Seeded random data from stdlib bytes: numpy.random would add ~7 MB to the peak we are measuring.

    Integer tensors get uniform values over the dtype's full range, bool tensors 0/1, float tensors N(0, 1)
    (Box-Muller) or U(-1, 1); floats into `out` (a flat array of the size) when given."""
    n = 1
    for s in shape:
        n *= s
    if dtype == np.bool_:
        return (np.frombuffer(rng.randbytes(n), dtype=np.uint8) & 1).astype(np.bool_).reshape(shape)
    if np.issubdtype(dtype, np.integer):
        return np.frombuffer(rng.randbytes(n * dtype.itemsize), dtype=dtype).reshape(shape).copy()
    if out is None:
        out = np.empty(n, dtype)
    for at in range(0, n, _CHUNK):  # in chunks: float64 temporaries of the whole tensor would be charged to the model
        k = min(_CHUNK, n - at)
        u = (np.frombuffer(rng.randbytes(8 * k), dtype=np.uint32).astype(np.float64) + 0.5) / 2.0**32
        if dist == "uniform":
            out[at : at + k] = u[:k] * 2.0 - 1.0
        else:
            out[at : at + k] = np.sqrt(-2.0 * np.log(u[:k])) * np.cos(2.0 * np.pi * u[k:])
    return out.reshape(shape)


# Values per chunk of random floats: its float64 temporaries (~20 kB) are freed and reused chunk after chunk, and
# `warm_numpy` makes one full chunk before the baseline, so the heap already holds them and a long input costs the
# model nothing beyond its own tensor (4096 left ~200 kB of freed temporaries in the heap, charged to the model).
_CHUNK = 512


def warm_numpy(np) -> None:
    """Run, on tiny arrays, the numpy code this agent runs after its memory baseline (random inputs, quantizing,
    stepping a stream), so the pages of numpy's own machine code it touches are in the baseline, not charged to the
    model (about 1.3 MB: numpy's ufunc loops load lazily, per dtype)."""
    rng = random.Random(0)
    for dt in (np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32, np.bool_):
        for dist in ("normal", "uniform"):
            _random_array(np, rng, (1, 3), np.dtype(dt), dist)
    for dist in ("normal", "uniform"):
        _random_array(np, rng, (_CHUNK,), np.dtype(np.float32), dist)
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    for dt in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dt)
        q = np.clip(np.round(np.asarray(x, np.float32) / np.float32(0.5) + 1), info.min, info.max).astype(dt)
        (q.astype(np.float32) - 1) * np.float32(0.5)
        np.full(q.shape, 1, dtype=dt).copy()
        np.clip(np.round((q.astype(np.float32) - 1) * np.float32(0.9)) + 2, info.min, info.max).astype(dt)
    buf = np.zeros([1, 2, 3], np.float32)
    buf[0, :-1] = buf[0, 1:]
    np.stack([x[0], x[0]]).reshape(-1).tolist()
    np.concatenate([x, x])
    int(np.prod(x.shape))


def _fit_array(np, arr, shape, dtype, detail):
    arr = np.asarray(arr)
    if arr.shape != shape:
        if arr.shape == shape[1:]:
            arr = arr[None, ...]
        elif len(arr.shape) == len(shape) and arr.shape[1:] == shape[1:] and arr.shape[0] > shape[0]:
            arr = arr[: shape[0]]
        else:
            raise AgentError(
                "input", f"input {detail['name']!r} wants shape {list(shape)}, the file has {list(arr.shape)}"
            )
    if np.issubdtype(dtype, np.integer) and np.issubdtype(arr.dtype, np.floating):
        scale, zero = detail.get("quantization") or (0.0, 0)
        if not scale:
            raise AgentError(
                "input", f"input {detail['name']!r} is {dtype} without quantization; the file holds floats"
            )
        lo, hi = _dtype_range(np, dtype)
        arr = np.clip(np.round(arr / scale + zero), lo, hi)
    return arr.astype(dtype)


# --------------------------------------------------------------------------------------------- measuring
def _sha256():
    # The builtin module avoids hashlib's OpenSSL import (~3.5 MB of resident memory on the device).
    for name in ("_sha2", "_sha256"):
        try:
            return __import__(name).sha256()
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.sha256()


def sha256_file(path: str) -> str:
    # 64 KiB chunks stay below glibc's initial mmap threshold (128 KiB). A larger read buffer is mmap'd, and freeing
    # it raises that threshold for good, so the runtime's later allocations pile up on the brk heap instead:
    # 1 MiB chunks cost 0.4-0.9 MB of the peak RSS this agent reports (measured with ai-edge-litert 2.3, glibc 2.36).
    h = _sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor_info(d: dict, np) -> dict:
    q = d.get("quantization") or (0.0, 0)
    return {
        "name": d.get("name"),
        "index": int(d["index"]),
        "shape": [int(s) for s in d["shape"]],
        "dtype": np.dtype(d["dtype"]).name,
        "quantization": [float(q[0]), int(q[1])],
    }


def measure(args) -> dict:
    model_path = args.model
    if not os.path.isfile(model_path):
        raise AgentError("model", f"model file not found: {model_path}", stage="check")
    mem = MemoryMeter(os.stat(model_path).st_ino)
    size = os.path.getsize(model_path)
    digest = sha256_file(model_path)
    verified = None
    if args.expect_sha256:
        verified = digest == args.expect_sha256.lower()
        if not verified:
            raise AgentError(
                "checksum",
                f"checksum mismatch for {model_path}: expected {args.expect_sha256[:12]}..., found {digest[:12]}...",
                "the copy on the device is truncated or stale; push it again",
                stage="check",
            )
    with open(model_path, "rb") as fh:
        head = fh.read(8)
    if size < 8 or head[4:8] != b"TFL3":
        raise AgentError(
            "model",
            f"{os.path.basename(model_path)} is not a TFLite flatbuffer (no TFL3 identifier)",
            "pass a .tflite file written by the converter",
            stage="check",
        )

    _stage("import")
    t0 = time.perf_counter_ns()
    import numpy as np

    rt_name, rt_version, rt = import_runtime(args.runtime)
    t_import = time.perf_counter_ns() - t0
    mem.mark("import")
    warm_numpy(np)
    mem.baseline()
    runtime = {
        "name": rt_name,
        "version": rt_version,
        "numpy_version": np.__version__,
        "threads": args.threads,
        "xnnpack": "off" if args.no_xnnpack else "default",
    }
    _RUNTIME_SEEN.update(runtime)

    kwargs = {"model_path": model_path}
    if mem.from_bytes:  # no smaps: nothing file-backed may be the model's (see "memory")
        with open(model_path, "rb") as fh:
            kwargs = {"model_content": fh.read()}
    if args.threads is not None:
        kwargs["num_threads"] = args.threads
    if args.no_xnnpack:
        resolver = getattr(rt, "OpResolverType", None)
        if resolver is None or not hasattr(resolver, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            raise AgentError(
                "input",
                f"{rt_name} {rt_version} cannot switch XNNPACK off",
                "drop --no-xnnpack",
                stage="load",
            )
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    _stage("load")
    t0 = time.perf_counter_ns()
    try:
        interp = rt.Interpreter(**kwargs)
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), rt_name, rt_version, "load") from None
    t_load = time.perf_counter_ns() - t0
    mem.mark("load")

    _stage("allocate")
    t0 = time.perf_counter_ns()
    try:
        for d in interp.get_input_details():
            sig = d.get("shape_signature")
            if sig is not None and any(int(s) < 0 for s in sig):
                interp.resize_tensor_input(d["index"], [1 if int(s) < 0 else int(s) for s in sig])
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), rt_name, rt_version, "allocate") from None
    t_alloc = time.perf_counter_ns() - t0
    mem.mark("allocate")

    in_details = interp.get_input_details()
    out_details = interp.get_output_details()
    if args.stream:
        model = {"path": model_path, "size_bytes": size, "sha256": digest, "sha256_verified": verified}
        timings = {"import_runtime": t_import, "load": t_load, "allocate": t_alloc}
        return _stream_measure(np, interp, args, {"model": model, "runtime": runtime, "timings": timings,
                                                  "mem": mem})
    rng = random.Random(args.seed)
    # random floats go straight into the input tensors (None here); any other array is the agent's own copy, so it
    # is left out of the model's memory (harness_kb), as its input is under --stream
    arrays = make_inputs(np, in_details, args, rng, interp, in_place=True)
    inputs, harness, arr = [], 0, None
    for i, d in enumerate(in_details):
        arr = arrays[i]
        info = _tensor_info(d, np)
        vocab = input_vocab(np, interp, d, args, len(in_details))
        if vocab:
            info["vocab"] = vocab
        if args.input:
            info["source"] = f"file:{os.path.basename(args.input)}"
        elif vocab:
            info["source"] = "random-ids"
        elif np.issubdtype(np.dtype(d["dtype"]), np.floating):
            info["source"] = f"random-{args.input_dist}"
        else:
            info["source"] = "random-full-range"
        inputs.append(info)
        if arr is not None:
            interp.set_tensor(d["index"], arr)
            harness += arr.nbytes
    del arrays, arr
    mem.harness_kb = harness // 1024

    invoke = interp.invoke
    clock = time.perf_counter_ns
    _stage("first_inference")
    try:
        t0 = clock()
        invoke()
        t_first = clock() - t0
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), rt_name, rt_version, "invoke") from None
    mem.mark("first_invoke")

    deadline = None if not args.max_secs else clock() + int(args.max_secs * 1e9)
    _stage("warmup")
    warm = []
    for _ in range(args.warmup):
        t0 = clock()
        invoke()
        t1 = clock()
        warm.append(t1 - t0)
        if deadline is not None and t1 >= deadline:
            break

    _stage("timed")
    samples = []
    stopped = "runs"
    append = samples.append
    mem.start_timed()
    for _ in range(args.runs):
        t0 = clock()
        invoke()
        t1 = clock()
        append(t1 - t0)
        if deadline is not None and t1 >= deadline:
            stopped = "max_secs"
            break
    for d in out_details:  # read outputs once, so a runtime that defers work cannot skip it
        interp.get_tensor(d["index"])
    mem.finish()
    _stage("done")

    return _measurement(
        model={"path": model_path, "size_bytes": size, "sha256": digest, "sha256_verified": verified},
        runtime=runtime,
        options={
            "runs": args.runs,
            "warmup": args.warmup,
            "max_secs": args.max_secs,
            "threads": args.threads,
            "xnnpack": not args.no_xnnpack,
            "input": os.path.basename(args.input) if args.input else None,
            "input_dist": args.input_dist,
            "seed": args.seed,
        },
        inputs=inputs,
        outputs=[_tensor_info(d, np) for d in out_details],
        timings={
            "import_runtime": t_import,
            "load": t_load,
            "allocate": t_alloc,
            "first_inference": t_first,
            "warmup": warm,
            "invoke": samples,
        },
        stopped=stopped,
        mem=mem,
    )


_RUNTIME_SEEN: dict = {}


# --------------------------------------------------------------------------------------------- streaming
# Step models (edgeseq convert --stream) follow a naming contract, read from the signature, never from tensor
# order: an input whose name is also an output name is state, fed back from that output on the next step; an output
# named "<input>_at_pos" is one new slot of that input (a KV cache), written at index pos of axis 2; "x" is the
# step's features, "pos" (if present) the step index from 0, "y" the output. A model with one [1, W, F] input and
# no state is the sliding-window baseline: the window shifts by one step and the whole model re-runs. The host's
# validation (edgeseq.quantize.stream.convert) imports StreamStepper from this file, so device and host step alike.
def signature_details(interp) -> tuple:
    """({name: input detail}, {name: output detail}) of the default signature; tensor names when there is none."""
    try:
        sigs = interp.get_signature_list()
    except Exception:  # noqa: BLE001 - old runtimes without signatures
        sigs = {}
    if sigs:
        runner = interp.get_signature_runner(next(iter(sigs)))
        return runner.get_input_details(), runner.get_output_details()

    def short(d):
        name = d["name"].split(":")[0]
        return name[len("serving_default_") :] if name.startswith("serving_default_") else name

    return ({short(d): d for d in interp.get_input_details()}, {short(d): d for d in interp.get_output_details()})


class StreamStepper:
    """One stream through a step model (state carried by name, int8 state requantized) or a window model."""

    def __init__(self, np, interp):
        self.np, self.interp = np, interp
        ins, outs = signature_details(interp)
        self.ins, self.outs = ins, outs
        self.carried = sorted(n for n in ins if n in outs)  # fed back whole
        self.slotted = sorted(n for n in ins if f"{n}_at_pos" in outs)  # KV caches: one new slot written at pos
        self.state = self.carried + self.slotted
        if self.state or "pos" in ins:
            if "x" not in ins or "y" not in outs:
                raise AgentError("input", "a step model needs an input 'x' and an output 'y' in its signature",
                                 "export it with edgeseq convert --stream")
            self.mode = "step"
            self.x = ins["x"]
            self.y = outs["y"]
        else:
            if len(ins) != 1:
                raise AgentError("input", f"--stream needs a step model (state inputs named like outputs) or a "
                                 f"one-input window model; this model has inputs {sorted(ins)}",
                                 "export it with edgeseq convert --stream")
            self.mode = "window"
            self.x = next(iter(ins.values()))
            self.y = outs.get("y") or next(iter(outs.values()))
            if len(self.x["shape"]) != (2 if is_id_input(np, self.x) else 3):
                raise AgentError("input", f"a window model takes [1, W, F] (or token ids [1, W]); this one takes "
                                 f"{list(self.x['shape'])}")
        self.pos = ins.get("pos")
        self.ids = is_id_input(np, self.x)  # token ids: one int id per step (x [1], or a window [1, W])
        shape = [int(s) for s in self.x["shape"]]
        self.features = 1 if self.ids else shape[-1]
        self.window = shape[1] if self.mode == "window" else None
        # (output index, input index, name, requantize multiplier or None, (zp_out, zp_in, lo, hi, dtype) or None)
        self.links = []
        for name in self.state:
            i, o = ins[name], outs[name if name in self.carried else f"{name}_at_pos"]
            self.links.append((o["index"], i["index"], name) + self._requant(o, i))
        self._zero = {name: self._zeros(ins[name]) for name in self.state}
        caches = [int(ins[n]["shape"][2]) for n in self.slotted if len(ins[n]["shape"]) == 4]
        self.capacity = min(caches) if caches else self.window
        self.reset()

    def _zeros(self, d):
        np = self.np
        dtype = np.dtype(d["dtype"])
        scale, zero = d.get("quantization") or (0.0, 0)
        fill = zero if (np.issubdtype(dtype, np.integer) and scale) else 0
        return np.full([int(s) for s in d["shape"]], fill, dtype=dtype)

    def _requant(self, out_d, in_d):
        np = self.np
        so, zo = out_d.get("quantization") or (0.0, 0)
        si, zi = in_d.get("quantization") or (0.0, 0)
        dt_in, dt_out = np.dtype(in_d["dtype"]), np.dtype(out_d["dtype"])
        if dt_in == dt_out and (not np.issubdtype(dt_in, np.integer) or (so == si and zo == zi)):
            return (None, None)
        if np.issubdtype(dt_in, np.integer) and np.issubdtype(dt_out, np.integer):
            info = np.iinfo(dt_in)
            return (np.float32(so / si), (zo, zi, info.min, info.max, dt_in))
        return ("convert", (out_d, in_d))

    def _quantize(self, x, d):
        np = self.np
        dtype = np.dtype(d["dtype"])
        scale, zero = d.get("quantization") or (0.0, 0)
        if not np.issubdtype(dtype, np.integer) or not scale:  # floats, and integers as they are (token ids)
            return np.asarray(x).astype(dtype, copy=False)
        info = np.iinfo(dtype)
        return np.clip(np.round(np.asarray(x, np.float32) / scale + zero), info.min, info.max).astype(dtype)

    def dequantize(self, y, d):
        np = self.np
        scale, zero = d.get("quantization") or (0.0, 0)
        if np.issubdtype(y.dtype, np.integer) and scale:
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32)

    @property
    def kind(self) -> str:
        """One of STREAM_KINDS: a window re-run whole, a KV cache (a position input or `<name>_at_pos` outputs), or
        a recurrent step (the state carried whole)."""
        if self.mode == "window":
            return KIND_WINDOW
        if self.slotted or self.pos is not None:
            return KIND_KV_CACHE
        return KIND_RECURRENT_STEP

    @property
    def state_bytes(self) -> int:
        if self.mode == "window":
            return int(self.np.prod(self.x["shape"])) * self.np.dtype(self.x["dtype"]).itemsize
        return int(sum(self._zero[n].nbytes for n in self.state))

    def describe(self) -> list:
        out = []
        for k, name in enumerate(self.state):
            d, link = self.ins[name], self.links[k]
            out.append({"name": name, "shape": [int(s) for s in d["shape"]], "dtype": self.np.dtype(d["dtype"]).name,
                        "bytes": int(self._zero[name].nbytes), "requantized": link[3] is not None,
                        "update": "carry" if name in self.carried else "write_at_pos"})
        return out

    def reset(self) -> None:
        self.t = 0
        self.cache = {name: self._zero[name].copy() for name in self.slotted}
        for name in self.state:
            self.interp.set_tensor(self.ins[name]["index"], self._zero[name])
        if self.mode == "window":
            dtype = self.np.dtype(self.x["dtype"]) if self.ids else self.np.float32
            self.buffer = self.np.zeros([int(s) for s in self.x["shape"]], dtype)

    def prepare(self, x_t):
        """The x tensor for the next step (quantized; for a window model, the shifted window)."""
        if self.mode == "window":
            buf = self.buffer
            buf[0, :-1] = buf[0, 1:]
            buf[0, -1] = x_t
            return self._quantize(buf, self.x)
        return self._quantize(self.np.reshape(x_t, self.x["shape"]), self.x)

    def step(self, x_t, clock=None):
        """Run one step; returns (step_ns, invoke_ns) when `clock` is given. Outputs stay in the interpreter."""
        interp, np = self.interp, self.np
        t0 = clock() if clock else 0
        interp.set_tensor(self.x["index"], self.prepare(x_t))
        if self.pos is not None:
            interp.set_tensor(self.pos["index"], np.full(self.pos["shape"], self.t, dtype=self.pos["dtype"]))
        t1 = clock() if clock else 0
        interp.invoke()
        t2 = clock() if clock else 0
        for out_i, in_i, name, mult, zp in self.links:
            v = interp.get_tensor(out_i)
            if mult == "convert":
                v = self._quantize(self.dequantize(v, zp[0]), zp[1])
            elif mult is not None:
                zo, zi, lo, hi, dt = zp
                v = np.clip(np.round((v.astype(np.float32) - zo) * mult) + zi, lo, hi).astype(dt)
            if name in self.cache:  # a KV cache: write the step's slot at pos, then feed the whole cache
                buf = self.cache[name]
                buf[:, :, self.t] = v[:, :, 0]
                v = buf
            interp.set_tensor(in_i, v)
        self.t += 1
        if clock:
            t3 = clock()
            return t3 - t0, t2 - t1
        return None

    def output(self):
        return self.dequantize(self.interp.get_tensor(self.y["index"]), self.y)

    def run(self, seq, collect: bool = False):
        """Feed a whole (T, F) sequence (token ids: (T,)) from a fresh state; the last step's output (or, with
        `collect`, every step's, stacked: what a per-step model's parity compares)."""
        self.reset()
        ys = []
        for x_t in seq:
            self.step(x_t)
            if collect:
                ys.append(self.output()[0].copy())
        return self.np.stack(ys) if collect else self.output()[0].copy()


STREAM_RING = 64  # distinct random steps a stream cycles through (--stream without --input)


def _stream_steps(args, stepper) -> int:
    """How long a stream of random steps runs: --steps, else the KV cache's capacity, else 256."""
    return args.steps or stepper.capacity or 256


def _stream_sequence(np, args, stepper, rng):
    """(T, F) float32: the --input sequence (.npy [T, F] or [1, T, F]) or seeded random steps; for a token-id step
    model (T,) ids: the --input ids (.npy [T] or [1, T]) or seeded random ids 0..V-1."""
    if stepper.ids:
        return _stream_ids(np, args, stepper, rng)
    if args.input:
        seq = _load_sequence(np, args.input)
        seq = np.asarray(seq, np.float32)
        if seq.ndim == 3:
            seq = seq[0]
        if seq.ndim != 2 or seq.shape[1] != stepper.features:
            raise AgentError("input", f"--stream wants a [T, {stepper.features}] sequence, the file has "
                             f"{list(seq.shape)}")
        if args.steps:
            if args.steps > len(seq):
                reps = -(-args.steps // len(seq))
                seq = np.concatenate([seq] * reps)
            seq = seq[: args.steps]
        return seq
    steps = _stream_steps(args, stepper)
    # a ring of distinct random steps, read modulo its length: what the device holds of a live stream is the step
    # at hand, so the agent's own input must not grow with the stream (a 2048-step stream would add 128 KB here)
    return _random_array(np, rng, (min(steps, STREAM_RING), stepper.features), np.dtype(np.float32), args.input_dist)


def _load_sequence(np, path: str):
    """The array in a .npy (or the first of an .npz) given to --stream --input; AgentError when unreadable."""
    if not os.path.isfile(path):
        raise AgentError("input", f"input file not found: {path}")
    try:
        seq = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for a bad file
        raise AgentError("input", f"cannot read {path} as .npy: {exc}") from None
    return seq[seq.files[0]] if hasattr(seq, "files") else seq


def _stream_ids(np, args, stepper, rng):
    n_inputs = len(stepper.ins)
    vocab = input_vocab(np, stepper.interp, dict(stepper.x, name="x"), args, n_inputs)
    dtype = np.dtype(stepper.x["dtype"])
    if args.input:
        seq = _load_sequence(np, args.input)
        seq = np.asarray(seq)
        if seq.ndim == 2 and seq.shape[0] == 1:
            seq = seq[0]
        if seq.ndim != 1 or not np.issubdtype(seq.dtype, np.integer):
            raise AgentError("input", f"--stream on a token-id model wants a [T] array of integer ids, the file has "
                             f"{seq.dtype} {list(seq.shape)}")
        _check_ids(np, seq, vocab, "x")
        if args.steps:
            if args.steps > len(seq):
                seq = np.concatenate([seq] * -(-args.steps // len(seq)))
            seq = seq[: args.steps]
        return seq.astype(dtype)
    steps = min(_stream_steps(args, stepper), STREAM_RING)  # a ring, as for random features
    if not vocab:
        raise AgentError("input", "cannot tell this token-id model's vocabulary (no Embedding GATHER table found)",
                         "pass --vocab V or --input ids.npy")
    return _random_ids(np, rng, (steps,), dtype, vocab)


def _stream_measure(np, interp, args, base: dict) -> dict:
    """--stream: feed a sequence step by step, carrying state; per-step latency, state bytes, deadline share."""
    _stage("stream_setup")
    stepper = StreamStepper(np, interp)
    seq = _stream_sequence(np, args, stepper, random.Random(args.seed))
    ring = len(seq)
    steps = len(seq) if args.input else _stream_steps(args, stepper)
    if stepper.pos is not None and stepper.capacity and steps > stepper.capacity:
        raise AgentError("input", f"{steps} steps exceed the KV cache's capacity of {stepper.capacity} positions",
                         "pass --steps <= the capacity, or export with a larger --kv-capacity")
    clock = time.perf_counter_ns
    _stage("first_inference")
    try:
        t_first, _ = stepper.step(seq[0], clock)
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), base["runtime"]["name"], base["runtime"]["version"], "invoke") from None
    mem = base["mem"]
    mem.mark("first_invoke")
    deadline = None if not args.max_secs else clock() + int(args.max_secs * 1e9)
    _stage("warmup")
    warm = []
    for i in range(1, args.warmup + 1):
        warm.append(stepper.step(seq[i % steps % ring], clock)[0])
        if (i + 1) % steps == 0:
            stepper.reset()
    _stage("timed")
    stepper.reset()
    total = max(args.runs, steps)
    # the records are preallocated and, with the input sequence, left out of the model's memory (harness_kb)
    step_ns, invoke_ns = np.zeros(total, np.int64), np.zeros(total, np.int64)
    mem.harness_kb = (seq.nbytes + step_ns.nbytes + invoke_ns.nbytes) // 1024
    mem.start_timed()
    final, passes, done = None, 0, 0
    stopped = "runs"
    for i in range(total):
        t = i % steps
        if t == 0 and i:
            stepper.reset()
        step_ns[i], invoke_ns[i] = stepper.step(seq[t % ring], clock)
        done = i + 1
        if t == steps - 1:
            passes += 1
            if final is None:
                final = stepper.output().reshape(-1).tolist()
        if deadline is not None and clock() >= deadline and final is not None:
            stopped = "max_secs"
            break
    mem.finish()
    _stage("done")
    step_ns, invoke_ns = step_ns[:done].tolist(), invoke_ns[:done].tolist()
    hop_ns = int(args.hop_ms * 1e6) if args.hop_ms else None
    stream = {
        "mode": stepper.mode,
        "kind": stepper.kind,
        "steps": steps,
        "passes": passes,
        "window": stepper.window,
        "capacity": None,  # KV cache positions, or the window
        "position_input": stepper.pos is not None,
        "state": stepper.describe(),
        "state_bytes": stepper.state_bytes,
        "invoke_ns": invoke_ns,
        "hop_ms": args.hop_ms,
        "deadline_met_share": (sum(1 for s in step_ns if s <= hop_ns) / len(step_ns)) if hop_ns else None,
        "real_time_factor": (sum(step_ns) / len(step_ns) / hop_ns) if hop_ns else None,
        "final_output": final,
    }
    stream["capacity"] = stepper.capacity
    inputs = []
    for name, d in sorted(stepper.ins.items()):
        info = _tensor_info(d, np)
        info["name"] = name
        info["source"] = ("state" if name in stepper.state else "position" if name == "pos"
                          else f"file:{os.path.basename(args.input)}" if args.input
                          else "random-ids" if stepper.ids else f"random-{args.input_dist}")
        inputs.append(info)
    outputs = []
    for name, d in sorted(stepper.outs.items()):
        info = _tensor_info(d, np)
        info["name"] = name
        outputs.append(info)
    return _measurement(
        model=base["model"],
        runtime=base["runtime"],
        options={
            "runs": args.runs, "warmup": args.warmup, "max_secs": args.max_secs, "threads": args.threads,
            "xnnpack": not args.no_xnnpack, "input": os.path.basename(args.input) if args.input else None,
            "input_dist": args.input_dist, "seed": args.seed, "stream": True, "steps": args.steps,
            "hop_ms": args.hop_ms,
        },
        inputs=inputs,
        outputs=outputs,
        timings={**base["timings"], "first_inference": t_first, "warmup": warm, "invoke": step_ns},
        stopped=stopped,
        mem=mem,
        stream=stream,
    )


# --------------------------------------------------------------------------------------------- per-op time
# `--ops PACK` (edgeseq profile --ops) times every op on its own, after the whole-model measurement (whose figures it
# leaves alone). PACK is a zip the host cut from this model (edgeseq.quantize.op_slices): per op one model holding
# the op once and one holding it R times side by side. What to feed them comes from one full invoke with the run's
# inputs on the builtin kernels with every tensor kept (XNNPACK keeps its partitions' tensors to itself); a WHILE
# loop's cond and body run as models of their own from the loop's first state, which counts the trips and gives the
# first iteration's tensors. An op's time per call is (T_R - T_1) / (R - 1), from the medians of alternating blocks
# of invokes of the two models, so the invoke's fixed cost (Python, interpreter, a delegate's entry) cancels.
OPS_ROUTE = "sub-models"
OPS_BLOCK = 10  # invokes per block; blocks alternate between the op-once and op-R-times models
OPS_MAX_TRIPS = 1_000_000


def _median(values: list) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _read_pack(path: str, sha256: str):
    import zipfile

    try:
        z = zipfile.ZipFile(path)
        pack = json.loads(z.read("slices.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise AgentError("input", f"cannot read the op slices {os.path.basename(path)}: {exc}") from None
    if not isinstance(pack, dict) or pack.get("schema") != "edgeseq.op_slices/1":
        raise AgentError("input", f"{os.path.basename(path)} is not an edgeseq.op_slices/1 pack")
    if pack.get("model_sha256") != sha256:
        raise AgentError("input", "the op slices were cut from another model (sha256 differs)")
    return z, pack


def _ops_interpreter(rt, args, capture: bool, **source):
    kwargs = dict(source)
    if args.threads is not None:
        kwargs["num_threads"] = args.threads
    resolver = getattr(getattr(rt, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
    if resolver is not None and (capture or args.no_xnnpack):
        kwargs["experimental_op_resolver_type"] = resolver
    if capture:
        kwargs["experimental_preserve_all_tensors"] = True
    return rt.Interpreter(**kwargs)


def _feed(interp, values: list, by_name: bool, allocate: bool = True) -> None:
    """Set the inputs, by tensor index or by the name 't<index>'; resized and allocated first when needed."""
    details = interp.get_input_details()
    pairs = []
    for key, value in values:
        if by_name:
            d = next((d for d in details if d["name"] == f"t{key}"), None)
            if d is None:
                raise AgentError("input", f"op slice has no input t{key}")
        else:
            d = next((d for d in details if int(d["index"]) == key), None)
            if d is None:
                raise AgentError("input", f"capture model has no input tensor {key}")
        if list(d["shape"]) != list(value.shape):
            interp.resize_tensor_input(d["index"], list(value.shape))
            allocate = True
        pairs.append((d["index"], value))
    if allocate:
        interp.allocate_tensors()
    for index, value in pairs:
        interp.set_tensor(index, value)


def _capture(np, rt, args, z, pack) -> tuple:
    """({(subgraph, tensor): array} for every tensor an op reads, {WHILE op: trips}, how the tensors were made)."""
    need: dict[int, set] = {}
    for op in pack["ops"]:
        need.setdefault(op["subgraph"], set()).update(op["feeds"])
    for loop in pack["loops"]:
        need.setdefault(0, set()).update(loop["inputs"])
    full = _ops_interpreter(rt, args, True, model_path=args.model)
    for d in full.get_input_details():
        sig = d.get("shape_signature")
        if sig is not None and any(int(s) < 0 for s in sig):
            full.resize_tensor_input(d["index"], [1 if int(s) < 0 else int(s) for s in sig])
    full.allocate_tensors()
    details = full.get_input_details()
    arrays = make_inputs(np, details, args, random.Random(args.seed), full)  # the timed run's inputs, regenerated
    for i, d in enumerate(details):
        arr = arrays[i]
        full.set_tensor(d["index"], arr)
    full.invoke()
    values = {(0, t): np.array(full.get_tensor(t)) for t in need.get(0, ())}
    del full
    trips = {}
    for loop in pack["loops"]:
        cond = _ops_interpreter(rt, args, True, model_content=z.read(loop["cond_file"]))
        body = _ops_interpreter(rt, args, True, model_content=z.read(loop["body_file"]))
        state = [values[(0, t)] for t in loop["inputs"]]
        n = 0
        while True:
            _feed(cond, list(zip(loop["cond_inputs"], state)), False, n == 0)  # noqa: B905 - Python 3.9
            cond.invoke()
            if n == 0:
                values.update({(loop["cond"], t): np.array(cond.get_tensor(t)) for t in need.get(loop["cond"], ())})
            if not bool(np.asarray(cond.get_tensor(loop["cond_output"])).reshape(-1)[0]):
                break
            _feed(body, list(zip(loop["body_inputs"], state)), False, n == 0)  # noqa: B905 - Python 3.9
            body.invoke()
            if n == 0:
                values.update({(loop["body"], t): np.array(body.get_tensor(t)) for t in need.get(loop["body"], ())})
            state = [np.array(body.get_tensor(t)) for t in loop["body_outputs"]]
            n += 1
            if n > OPS_MAX_TRIPS:
                raise AgentError("model", f"the WHILE loop at op {loop['op']} ran past {OPS_MAX_TRIPS} trips")
        trips[loop["op"]] = n
    kind = "builtin-kernels" if getattr(rt, "OpResolverType", None) is not None else "default-delegates"
    return values, trips, kind


def _time_pair(np, rt, args, one: bytes, many: bytes, feeds: list, samples: int) -> tuple:
    """Medians (ns) of one invoke of the op-once and the op-R-times models, timed in alternating blocks."""
    a = _ops_interpreter(rt, args, False, model_content=one)
    b = _ops_interpreter(rt, args, False, model_content=many)
    _feed(a, feeds, True)
    _feed(b, feeds, True)
    clock = time.perf_counter_ns
    runs = ([], a.invoke), ([], b.invoke)
    for _, invoke in runs:
        for _ in range(3):
            invoke()
    for _ in range(-(-samples // OPS_BLOCK)):
        for out, invoke in runs:
            for _ in range(OPS_BLOCK):
                t0 = clock()
                invoke()
                out.append(clock() - t0)
    return _median(runs[0][0]), _median(runs[1][0])


def measure_ops(args, doc: dict) -> dict:
    """The document's `ops` section. Per op: index, subgraph, type, dtypes, output_shape, calls (per invoke of the
    model: a WHILE body's ops once per trip, its cond's once more), op_ns (one call) and one_ns (T_1), or an error.
    Anything that stops the route before the ops are timed gives route None and the reason."""
    t_start = time.perf_counter()
    _stage("ops")
    try:
        import numpy as np

        z, pack = _read_pack(args.ops, doc["model"]["sha256"])
        _, _, rt = import_runtime(doc["runtime"]["name"])
        values, trips, kind = _capture(np, rt, args, z, pack)
    except AgentError as exc:
        return {"route": None, "reason": exc.message}
    except Exception as exc:  # noqa: BLE001 - the whole-model figures stand; say why the ops could not be timed
        return {"route": None, "reason": f"capturing the op inputs failed: {type(exc).__name__}: {exc}"[:400]}
    replicas = int(pack.get("replicas") or 9)
    samples = max(2 * OPS_BLOCK, min(args.runs, 100))
    ops = []
    for op in pack["ops"]:
        loop = op.get("loop")
        calls = 1 if not loop else trips[loop["while"]] + (1 if loop["role"] == "cond" else 0)
        entry = {k: op.get(k) for k in ("index", "subgraph", "type", "dtypes", "output_shape")}
        entry.update(calls=calls, op_ns=None, one_ns=None)
        ops.append(entry)
        if calls == 0 or (not op["feeds"] and op.get("type") == "DEQUANTIZE"):
            entry["op_ns"] = 0.0  # never runs, or dequantizes constant weights once (at the first invoke)
            continue
        try:
            feeds = [(t, values[(op["subgraph"], t)]) for t in op["feeds"]]
            t1, tr = _time_pair(np, rt, args, z.read(op["one"]), z.read(op["many"]), feeds, samples)
        except Exception as exc:  # noqa: BLE001 - one op that cannot run alone leaves the others' figures
            entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        entry["one_ns"] = t1
        entry["op_ns"] = max(0.0, (tr - t1) / (replicas - 1))
    fixed = [e["one_ns"] - e["op_ns"] for e in ops if e["one_ns"] is not None]
    return {"route": OPS_ROUTE, "reason": None, "replicas": replicas, "capture": kind, "samples": samples,
            "overhead_ns": _median(fixed) if fixed else None,
            "seconds": round(time.perf_counter() - t_start, 3), "ops": ops}


# --------------------------------------------------------------------------------------------- CLI
def _formatter(prog: str) -> argparse.HelpFormatter:
    # argparse's default formatter asks shutil for the terminal's width, and importing shutil loads bz2, lzma and
    # zlib: ~0.4 MB of the peak RSS this agent reports, for help text that only --help prints.
    return argparse.HelpFormatter(prog, width=100)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeseq-agent", description="Time one .tflite model; print JSON.", formatter_class=_formatter
    )
    p.add_argument("--model")
    p.add_argument("--expect-sha256", dest="expect_sha256")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-secs", dest="max_secs", type=float, default=None)
    p.add_argument("--no-xnnpack", dest="no_xnnpack", action="store_true")
    p.add_argument("--input")
    p.add_argument("--input-dist", dest="input_dist", choices=["normal", "uniform"], default="normal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=None, help="token-id input: random ids 0..V-1 (default: the GATHER table)")
    p.add_argument("--runtime", choices=["auto", "ai_edge_litert", "tflite_runtime"], default="auto")
    p.add_argument("--facts", action="store_true")
    p.add_argument("--stream", action="store_true", help="feed a sequence step by step, carrying state")
    p.add_argument("--steps", type=int, default=None, help="--stream: steps per stream (default: the input's)")
    p.add_argument("--hop-ms", dest="hop_ms", type=float, default=None, help="--stream: input period (deadline)")
    p.add_argument("--ops", help="time every op on its own: the op slices cut from this model (a zip)")
    p.add_argument("--version", action="store_true")
    return p


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit 2; we want JSON
        raise _ArgError(message)


def _validate(args) -> None:
    if args.stream and args.steps is not None and args.steps < 1:
        raise AgentError("input", f"--steps must be at least 1, got {args.steps}")
    if args.hop_ms is not None and args.hop_ms <= 0:
        raise AgentError("input", f"--hop-ms must be > 0, got {args.hop_ms}")
    if not args.model:
        raise AgentError("input", "--model is required")
    if args.runs < 1:
        raise AgentError("input", f"--runs must be at least 1, got {args.runs}")
    if args.warmup < 0:
        raise AgentError("input", f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1 and args.threads != -1:
        raise AgentError(
            "input", f"--threads must be >= 1 (or -1 for the runtime's choice), got {args.threads}"
        )
    if args.max_secs is not None and args.max_secs <= 0:
        raise AgentError("input", f"--max-secs must be > 0, got {args.max_secs}")
    if args.vocab is not None and args.vocab < 1:
        raise AgentError("input", f"--vocab must be at least 1, got {args.vocab}")
    if args.ops and args.stream:
        raise AgentError("input", "--ops times the ops of a plain model run; drop --stream")


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    base = _parser()
    parser = _Parser(prog=base.prog, description=base.description, formatter_class=_formatter)
    for action in base._actions:
        if action.dest != "help":
            parser._add_action(action)
    try:
        args = parser.parse_args(argv)
        if args.version:
            _emit(_document(True))
            return EXIT_OK
        if args.facts:
            try:
                name, version, _ = import_runtime(args.runtime)
                import numpy as np

                warm_numpy(np)  # so `memory` is the baseline a measurement starts from
                runtime = {"name": name, "version": version, "numpy_version": np.__version__}
            except AgentError as exc:
                runtime = {"name": None, "version": None, "error": exc.message}
            _emit(_document(True, runtime=runtime, device=device_facts(), memory=_proc_status_kb()))
            return EXIT_OK
        _validate(args)
        result = measure(args)
        if args.ops:
            result["ops"] = measure_ops(args, result)
    except _ArgError as exc:
        return _fail(AgentError("input", f"bad agent option: {exc}"))
    except AgentError as exc:
        return _fail(exc)
    except MemoryError:
        return _fail(
            AgentError(
                "model",
                "out of memory while running the model",
                "raise the memory limit or use a smaller model",
            )
        )
    except Exception as exc:  # noqa: BLE001 - the host must always get JSON, never a bare traceback
        return _fail(AgentError("internal", f"{type(exc).__name__}: {exc}"))
    _emit(result)
    return EXIT_OK


def _fail(err: AgentError) -> int:
    error = {
        "kind": err.kind,
        "message": err.message,
        "hint": err.hint,
        "op": None,
        "op_version": None,
        "stage": None,
    }
    error.update(err.extra)
    try:
        facts = device_facts()
    except Exception:  # noqa: BLE001 - the error document must go out even when the facts cannot be read
        facts = None
    _emit(_document(False, error=error, runtime=dict(_RUNTIME_SEEN) or None, device=facts))
    return _EXIT_BY_KIND.get(err.kind, EXIT_INTERNAL)


# Run as `python agent.py`, CPython keeps the script's whole syntax tree in memory until the script returns
# (pyrun_file frees its parser arena only after run_mod), which adds ~2 MB to the peak RSS this agent reports. So the
# script execs the interpreter once more on this file through compile() + exec(), which frees the tree right after
# compiling. execv keeps the pid (cgroup limits, timeouts and process groups still apply), VmHWM starts afresh with
# the new image, and the interpreter's flags (-X importtime, -I, ...) are passed on. Cost: one more interpreter
# start and compile (~45 ms here). Imported as a module (edgeseq.targets.agent) or run with -m, nothing changes.
_BOOT = (
    "import sys\n"
    "p = sys.argv[1]\n"
    "del sys.argv[0]\n"
    "if sys.path and sys.path[0] == '':\n"  # as for a script: its folder first on sys.path, not the cwd
    "    sys.path[0] = p.rpartition('/')[0] or '/'\n"
    "with open(p, 'rb') as f:\n"
    "    c = compile(f.read(), p, 'exec')\n"
    "exec(c, {'__name__': '__main__', '__file__': p, '_EDGESEQ_AGENT_REEXEC': True})\n"
)


def _reexec_without_script_tree() -> None:
    if globals().get("_EDGESEQ_AGENT_REEXEC") or globals().get("__spec__") is not None:
        return  # already re-executed, or run with -m (compiled by importlib: no tree kept)
    path = globals().get("__file__")
    if os.name != "posix" or not sys.executable or not path or not os.path.isfile(path):
        return
    try:
        import subprocess

        flags = subprocess._args_from_interpreter_flags()
    except Exception:  # noqa: BLE001 - a private helper; without it, run on as we are
        return
    try:
        os.execv(sys.executable, [sys.executable, *flags, "-c", _BOOT, os.path.abspath(path), *sys.argv[1:]])
    except OSError:
        return  # run on as we are: the figure is ~2 MB higher, nothing else differs


if __name__ == "__main__":
    _reexec_without_script_tree()
    sys.exit(main())
