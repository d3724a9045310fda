"""The deploy runtime on the host: ai-edge-litert's Interpreter, else tflite-runtime's; never TensorFlow's.

Validation and evaluation run here, because numerics differ between runtimes (an int8 file can agree with Keras on
LiteRT and disagree on TF's own interpreter).
"""

from __future__ import annotations

import os
from typing import Any

from edgeseq.errors import ModelError, RuntimeMissing


def interpreter_class() -> tuple[Any, str, str]:
    """(Interpreter class, runtime name, version); RuntimeMissing when neither runtime imports."""
    try:
        from ai_edge_litert import interpreter as litert

        try:
            from importlib.metadata import version

            ver = version("ai-edge-litert")
        except Exception:  # pragma: no cover - metadata missing in odd installs
            ver = "unknown"
        return litert.Interpreter, "ai-edge-litert", ver
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as tfl_rt

        return tfl_rt.Interpreter, "tflite-runtime", getattr(tfl_rt, "__version__", "unknown")
    except ImportError as exc:
        raise RuntimeMissing(
            "no TFLite runtime: neither ai-edge-litert nor tflite-runtime can be imported",
            "pip install ai-edge-litert",
        ) from exc


def load_interpreter(
    model_path: str | os.PathLike | None = None, *, model_content: bytes | None = None, num_threads: int = 1
) -> Any:
    """An allocated interpreter; a file the runtime cannot load or allocate becomes a one-line ModelError."""
    cls, name, _ = interpreter_class()
    try:
        if model_content is not None:
            interp = cls(model_content=model_content, num_threads=num_threads)
        else:
            interp = cls(model_path=str(model_path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())[:240]
        raise ModelError(f"{name} cannot run {model_path or 'the converted model'}: {first}") from exc
    return interp
