"""The document: SCHEMA, AgentError, `_document` (the header every answer starts with), `_measurement` and
`_tensor_info`.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import sys

from .facts import device_facts

SCHEMA = "edgeseq.agent/3"
AGENT_VERSION = "3.3.1"  # 3.2: the stream loop with the state inside; 3.3: INT4 weights refused on tflite_runtime; 3.3.1: a loop's ops timed on its middle trip
# stream.kind: the values of edgeseq.models.streamkind.StreamKind, spelled out here (this file imports nothing from edgeseq;
# tests/test_agent.py checks they are the enum's)
KIND_RECURRENT_STEP, KIND_KV_CACHE, KIND_WINDOW = "recurrent-step", "kv-cache", "window"
KIND_INTERNAL = "internal-state"  # the state lives in the model (resource variables): nothing carried by the host
STREAM_KINDS = (KIND_RECURRENT_STEP, KIND_KV_CACHE, KIND_WINDOW, KIND_INTERNAL)

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


def _tensor_info(d: dict, np) -> dict:
    q = d.get("quantization") or (0.0, 0)
    return {
        "name": d.get("name"),
        "index": int(d["index"]),
        "shape": [int(s) for s in d["shape"]],
        "dtype": np.dtype(d["dtype"]).name,
        "quantization": [float(q[0]), int(q[1])],
    }
