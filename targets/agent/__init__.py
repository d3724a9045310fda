"""edgeseq device agent: load one .tflite, time it, print one JSON document on stdout.

This package is built into one file, a zipapp (`edgeseq_agent.pyz`: edgeseq.targets.agent_build, deterministic bytes,
its sha256 recorded with every run), pushed to the device and run there by itself, so it imports only the standard
library, numpy and a TFLite runtime (`ai_edge_litert`, falling back to `tflite_runtime`), and its modules import each
other relatively. It never imports edgeseq, TensorFlow or click (tests/test_agent.py proves it). It measures and
reports raw samples; statistics are computed on the host. Needs Python >= 3.9. `python -m edgeseq.targets.agent`
runs it from the source tree.

Contents
--------
One module per section, in the order a run goes through them.
    document        SCHEMA, AgentError, `_document` (the header every answer starts with), `_measurement`
    facts           `device_facts()`: the `device` block (fields named in edgeseq.targets.facts)
    memory          `MemoryMeter`: VmRSS and resident code per stage, the model's own peak without the runtime's code
    runtime         importing ai_edge_litert / tflite_runtime; runtime errors classified (op, Flex, custom op)
    inputs          random or file inputs, shaped, typed and quantized for the interpreter
    measuring       sha256 check, load, allocate, first inference, warm-up, the timed loop: `measure()`
    stepper         `StreamStepper`: state carried by name, KV caches, state inside (resource variables), windows
    streaming       `--stream` measuring: the stream's frames, the timed loop, the `stream` block
    ops             `measure_ops()`: `--ops`, each op of the model timed as one-op models fed real tensors
    cli             options, `main()`, errors as JSON (`_fail`); `__main__` runs it

Command line
------------
    python3 agent.pyz --model M.tflite [--expect-sha256 HEX] [--threads N] [--runs N] [--warmup N]
                      [--max-secs S] [--no-xnnpack] [--input X.npy|X.npz] [--input-dist normal|uniform]
                      [--seed N] [--runtime auto|ai_edge_litert|tflite_runtime] [--vocab V]
    python3 agent.pyz --facts          # device facts and runtime only, no model
    python3 agent.pyz --version        # prints the agent version and schema
    python3 agent.pyz --model STEP.tflite --stream [--steps N] [--hop-ms H] [--input SEQ.npy] ...
                                       # streaming: one step per invoke, state carried (see the streaming module)
    python3 agent.pyz --model M.tflite --ops SLICES.zip ...
                                       # then every op timed on its own (see the ops module)

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
  "schema": "edgeseq.agent/3", "agent_version": "3.3.1", "ok": true,
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
             # unreadable. Stage readings are raw (VmHWM since the last reset). See the memory module.
  "device":  {"hostname", "machine", "cpu_model", "board", "cpu_count", "cpus_allowed", "cpu_mhz",
              "cpu_max_mhz", "mem_total_kb", "os", "os_release", "kernel", "python", "python_impl", "libc"},
  "stream":  null | {"mode": "step" | "internal" | "window",
              "kind": "recurrent-step" | "kv-cache" | "internal-state" | "window",
              "steps", "passes", "window", "capacity", "position_input", "frames_per_invoke",
              "state": [{"name", "shape", "dtype", "bytes", "requantized", "update": "carry" | "write_at_pos"
                         | "inside"}],
              "state_bytes", "state_ops": [...], "reset": "host" | "signature" | "reload",
              "invoke_ns": [...], "hop_ms", "deadline_met_share", "real_time_factor", "final_output": [...]}
             # with --stream, timings_ns.invoke holds whole steps (set the input + invoke + carry state + read the
             # output), raw; stream.invoke_ns the runtime's Invoke alone. kind
             # (edgeseq.models.streamkind.StreamKind): "recurrent-step" steps with the state carried whole,
             # "kv-cache" has a position input / `<name>_at_pos` outputs, "internal-state" keeps its state in
             # resource variables (state_ops names the VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE / CALL_ONCE
             # ops found; state lists the variables the graph reads; steps count invokes of frames_per_invoke
             # frames each; reset says how a new stream starts: its "reset" signature or a fresh interpreter),
             # "window" re-runs the whole window. Agent 3.2 added internal-state, frames_per_invoke, state_ops and
             # reset (an optional addition: no schema change), and its loop sets a pre-quantized input through a
             # view of the buffer and calls the runtime's Invoke: 3.1 quantized and copied every step.
  "ops":     {"route": "sub-models" | null, "reason": str | null, "replicas", "capture", "samples",
              "overhead_ns", "seconds",       # overhead_ns: a one-op model's invoke minus its op (median)
              "ops": [{"index", "subgraph", "type", "dtypes", "output_shape", "calls", "op_ns", "one_ns",
                       "once_ns"?, "error"?}]}  # only with --ops (an optional key: no schema change); see "per-op
                       # time"; once_ns (agent 3.2): CALL_ONCE's initialiser, timed once (calls 0 per invoke);
                       # agent 3.3.1 feeds a WHILE loop's ops its middle trip's tensors (3.2.0: the first trip's,
                       # whose empty slices failed the whole route) and an unreadable input fails only its ops
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

from .cli import main
from .document import (
    AGENT_VERSION,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_RUNTIME,
    KIND_INTERNAL,
    KIND_KV_CACHE,
    KIND_RECURRENT_STEP,
    KIND_WINDOW,
    SCHEMA,
    STREAM_KINDS,
    AgentError,
)
from .facts import device_facts
from .inputs import _random_array, gather_vocab, input_vocab, is_id_input, make_inputs, warm_numpy
from .measuring import measure, sha256_file
from .memory import MemoryMeter, code_rss_kb, reset_peak_rss
from .ops import measure_ops
from .runtime import classify_runtime_error, import_runtime
from .stepper import StreamStepper, resource_state, signature_details

__all__ = [
    "AGENT_VERSION", "EXIT_INPUT", "EXIT_INTERNAL", "EXIT_MODEL", "EXIT_OK", "EXIT_RUNTIME", "KIND_INTERNAL",
    "KIND_KV_CACHE",
    "KIND_RECURRENT_STEP", "KIND_WINDOW", "SCHEMA", "STREAM_KINDS", "AgentError", "MemoryMeter", "StreamStepper",
    "_random_array", "classify_runtime_error", "code_rss_kb", "device_facts", "gather_vocab", "import_runtime",
    "input_vocab", "is_id_input", "main", "make_inputs", "measure", "measure_ops", "reset_peak_rss", "resource_state",
    "sha256_file",
    "signature_details", "warm_numpy",
]
