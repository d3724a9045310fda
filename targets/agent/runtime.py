"""Runtime: importing ai_edge_litert / tflite_runtime; runtime errors classified (op, Flex, custom op).

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import re

from .document import AgentError


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


INT4 = 17  # tflite TensorType.INT4


def int4_tensors(path: str) -> int:
    """How many tensors of the .tflite at `path` hold 4-bit values, read straight from the flatbuffer (Model.subgraphs
    -> SubGraph.tensors -> Tensor.type), touching only those tables; 0 when the file cannot be walked."""
    import mmap
    import struct

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as b:

            def u32(o: int) -> int:
                return struct.unpack_from("<I", b, o)[0]

            def field(table: int, i: int):
                vt = table - struct.unpack_from("<i", b, table)[0]
                if 4 + 2 * i >= struct.unpack_from("<H", b, vt)[0]:
                    return None
                off = struct.unpack_from("<H", b, vt + 4 + 2 * i)[0]
                return table + off if off else None

            def tables(pos):
                if pos is None:
                    return []
                v = pos + u32(pos)
                return [v + 4 + 4 * k + u32(v + 4 + 4 * k) for k in range(u32(v))]

            count = 0
            for sg in tables(field(u32(0), 2)):  # Model.subgraphs
                for t in tables(field(sg, 0)):  # SubGraph.tensors
                    kind = field(t, 1)  # Tensor.type (a byte; absent: FLOAT32)
                    count += kind is not None and b[kind] == INT4
            return count
    except (OSError, ValueError, struct.error, IndexError):
        return 0
