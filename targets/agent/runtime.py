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
