"""The deploy runtime on the host: ai-edge-litert's Interpreter, else tflite-runtime's; never TensorFlow's.

Validation and evaluation run here, because numerics differ between runtimes (an int8 file can agree with Keras on
LiteRT and disagree on TF's own interpreter).
"""

from __future__ import annotations

import os
from typing import Any

from edgeseq.core.errors import ModelError, RuntimeMissing


def interpreter_class() -> tuple[Any, str, str]:
    """(Interpreter class, runtime name, version); RuntimeMissing when neither runtime imports."""
    try:
        from ai_edge_litert import interpreter as litert

        try:
            from importlib.metadata import PackageNotFoundError, version

            ver = version("ai-edge-litert")
        except PackageNotFoundError:  # pragma: no cover - metadata missing in odd installs
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
    """An allocated interpreter; a file the runtime cannot load or allocate becomes a one-line ModelError.

    The model goes through edgeseq's own checked reader and parser first (`tflite_file.read_tflite`/`parse_bytes`),
    so a special, huge, corrupt or inconsistent file is refused before LiteRT sees it (LiteRT can abort the process
    on some corrupt inputs); LiteRT then gets the very bytes that were checked.
    """
    from edgeseq.quantize.tflite.reader import parse_bytes, read_model_bytes

    if model_path is None and model_content is None:
        raise ModelError("no model given to load", "pass a .tflite path or its bytes")
    label = str(model_path) if model_path is not None else "the converted model"
    data = bytes(model_content) if model_content is not None else read_model_bytes(model_path)
    parse_bytes(data, label)
    cls, name, _ = interpreter_class()
    try:
        interp = cls(model_content=data, num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = " ".join(str(exc).split())[:240]
        raise ModelError(f"{name} cannot run {label}: {first}") from exc
    return interp
