"""`--float-ops OPS|auto` on int8 recipes: which TFLite op types stay float, and how `auto` chooses them.

The converter does the work: TF's MLIR quantizer takes a denylist of op types (`denylisted_ops`, the mechanism
`tf.lite.experimental.QuantizationDebugger` uses for selective quantization) and leaves those ops float with
DEQUANTIZE / QUANTIZE at their edges; everything else is int8 as in the plain int8 recipe (`denylisted` below wraps
the quantizer call inside `TFLiteConverter.convert()`, in the conversion child).

`auto` keeps float the op types whose int8 kernel is slower than float on the profiling target:
1. measured, from the target's stored `edgeseq profile --ops` runs: per op type, the median time of one call of its
   int8 ops against its float32 ops of the same output shape (any model, any run of that target); an op stays int8
   only when its int8 call takes under KEEP_INT8_BELOW of the float call, because leaving the int8 island costs a
   DEQUANTIZE and a QUANTIZE at each edge (on the zoo Transformer, TRANSPOSE at 1.00x cost 8 us of 52 when kept int8
   between float neighbours);
2. op types no stored run measured in both dtypes: the default table of the target's CPU (DEFAULT_TABLES) where it
   has one;
3. otherwise the op stays int8.
The manifest records the request, the ops kept float, and for each the figure or table line that decided it.
"""

from __future__ import annotations

import contextlib
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from edgeseq.core.errors import InputError, did_you_mean

AUTO = "auto"
KEEP_INT8_BELOW = 0.9  # int8 per-call time / float per-call time under which an op stays int8
NOT_CANDIDATES = ("QUANTIZE", "DEQUANTIZE", "WHILE", "CALL_ONCE", "IF")

# Per CPU: the op types whose int8 kernel was slower than float on LiteRT 2.3 (XNNPACK on, 1 thread), and where the
# figures come from. x86_64: `edgeseq profile --ops` of the zoo Transformer small (T=29, F=12) int8 against fp32 on
# this project's 2-core x86-64 machines, per call int8 / float (median over output shapes): BATCH_MATMUL 8.2x,
# SQUARED_DIFFERENCE 66x, SOFTMAX 2.1x, RSQRT 68x, MUL 3.1x, ADD 3.3x, MEAN 1.5x, GELU 1.1x, TRANSPOSE 1.1x
# (FULLY_CONNECTED 0.43x and RESHAPE 0.46x stay int8). These int8 kernels run outside XNNPACK, the float ones inside.
# aarch64: not measured (no ARM device here); read from LiteRT's kernels: XNNPACK delegates no int8 BATCH_MATMUL,
# SOFTMAX, SQUARED_DIFFERENCE or RSQRT, and the builtin int8 SQUARED_DIFFERENCE and RSQRT kernels are the
# per-element reference code, so those four are kept float; `edgeseq profile --ops` on the device replaces this.
DEFAULT_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "x86_64": (("ADD", "BATCH_MATMUL", "GELU", "MEAN", "MUL", "RSQRT", "SOFTMAX", "SQUARED_DIFFERENCE", "TRANSPOSE"),
               "measured: zoo Transformer small int8 vs fp32, `edgeseq profile --ops`, LiteRT 2.3, x86-64"),
    "aarch64": (("BATCH_MATMUL", "RSQRT", "SOFTMAX", "SQUARED_DIFFERENCE"),
                "read from LiteRT's kernels, not measured: int8 outside XNNPACK on arm64"),
}
_MACHINES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


def builtin_op_names() -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    return sorted(k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int))


def canonical(names: Sequence[str] | str) -> tuple[str, ...]:
    """('auto',) or the sorted, upper-case TFLite builtin op names; InputError naming an unknown one."""
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if str(n).strip()]
    if not items:
        return ()
    if any(n.lower() == AUTO for n in items):
        if len(items) > 1:
            raise InputError("--float-ops auto takes no op names beside it", "pass auto, or a list of op types")
        return (AUTO,)
    known = builtin_op_names()
    out = set()
    for n in items:
        name = n.upper()
        if name not in known:
            raise InputError(f"--float-ops: {n!r} is not a TFLite builtin op", did_you_mean(name, known, "ops"))
        if name in NOT_CANDIDATES:
            raise InputError(f"--float-ops: {name} has no int8 or float kernel of its own to choose",
                             "name compute ops such as BATCH_MATMUL or SOFTMAX")
        out.add(name)
    return tuple(sorted(out))


def machine_name(machine: str | None) -> str | None:
    if not machine:
        return None
    m = str(machine).lower()
    return _MACHINES.get(m, m)


def measured(op_rows: Sequence[dict]) -> dict[str, dict]:
    """Per op type measured in both dtypes with the same output shape: int8 and float per-call medians (µs), their
    ratio and how many shapes were paired. `op_rows`: the per-op entries of stored runs (profiling/ops.py)."""
    calls: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: {"int8": [], "float32": []})
    for op in op_rows:
        kind = str(op.get("dtypes") or "").split("->")[0].split(",")[0]
        us = op.get("per_call_us")
        if kind in ("int8", "float32") and isinstance(us, int | float) and us > 0 and op.get("type"):
            calls[(str(op["type"]), tuple(op.get("output_shape") or ()))][kind].append(float(us))
    per_type: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (kind, _shape), both in calls.items():
        if both["int8"] and both["float32"] and kind not in NOT_CANDIDATES:
            per_type[kind].append((statistics.median(both["int8"]), statistics.median(both["float32"])))
    out = {}
    for kind, pairs in per_type.items():
        i8, f32 = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        out[kind] = {"int8_us": round(i8, 4), "float_us": round(f32, 4), "ratio": round(i8 / f32, 3),
                     "shapes": len(pairs)}
    return out


def resolve(requested: Sequence[str], evidence: dict | None = None, machine: str | None = None) -> dict:
    """The record of what stays float: {"requested", "ops", "source", "why": {op: reason}}. `evidence`: the
    profiling target's stored per-op rows ({"target", "machine", "runs", "ops"}) or None; `machine`: the CPU whose
    default table applies when nothing was measured (the target's, else this host's)."""
    requested = canonical(requested)
    if requested != (AUTO,):
        return {"requested": list(requested), "ops": list(requested), "source": "--float-ops",
                "why": {op: "named in --float-ops" for op in requested}}
    evidence = evidence or {}
    found = measured(evidence.get("ops") or [])
    arch = machine_name(evidence.get("machine") or machine)
    table, table_from = DEFAULT_TABLES.get(arch or "", ((), None))
    why: dict[str, str] = {}
    target = evidence.get("target") or "this host"
    for kind, f in sorted(found.items()):
        if f["ratio"] >= KEEP_INT8_BELOW:
            why[kind] = (f"int8 {f['int8_us']:.3g} µs vs float {f['float_us']:.3g} µs per call ({f['ratio']:.2g}x, "
                         f"{f['shapes']} shape(s)) in stored runs on {target}")
    for kind in table:
        if kind not in found:
            why[kind] = f"the {arch} default table"
    sources = []
    if found:
        sources.append(f"stored per-op profiles of {target} ({evidence.get('runs', 0)} runs, {len(found)} op types "
                       "measured in int8 and float)")
    if any(kind not in found for kind in table):
        sources.append(f"the {arch} default table ({table_from}) for op types not measured there")
    if not sources:
        raise InputError(f"--float-ops auto: no stored per-op profiles of {target} and no default table for its CPU "
                         f"({arch or 'unknown'}; tables: {', '.join(DEFAULT_TABLES)})",
                         f"run `edgeseq profile INT8.tflite FP32.tflite --ops --target {target}` first, or name the "
                         "ops: --float-ops BATCH_MATMUL,SOFTMAX")
    return {"requested": AUTO, "ops": sorted(why), "source": "; ".join(sources), "why": why,
            "measured": found, "machine": arch, "keep_int8_below": KEEP_INT8_BELOW}


def float_in_file(info: dict) -> list[str]:
    """The op types that run in float32 in a converted file (inspect's dtype coverage), Q/DQ left out."""
    by_type = (info.get("ops") or {}).get("by_type") or {}
    return sorted(k for k, v in by_type.items()
                  if "float32" in (v.get("dtypes") or {}) and k not in ("QUANTIZE", "DEQUANTIZE"))


@contextlib.contextmanager
def denylisted(ops: Sequence[str]) -> Iterator[None]:
    """Within this block, TFLiteConverter.convert() quantizes with `ops` kept float (conversion child only; the
    private hook the WHILE calibration workaround also wraps, checked to exist)."""
    if not ops:
        yield
        return
    from tensorflow.lite.python import lite

    if not hasattr(lite, "_mlir_quantize"):
        raise RuntimeError("this TensorFlow has no quantizer hook for --float-ops")
    original = lite._mlir_quantize

    def quantize(*args: Any, **kwargs: Any) -> Any:
        kwargs["denylisted_ops"] = list(ops)
        return original(*args, **kwargs)

    lite._mlir_quantize = quantize
    try:
        yield
    finally:
        lite._mlir_quantize = original
