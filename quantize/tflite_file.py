"""Read a .tflite flatbuffer without TensorFlow (only `flatbuffers` and the schema that ships in ai-edge-litert).

Every way a file can be wrong (missing, empty, truncated, not a TFLite model, corrupt tables) becomes one ModelError,
so `inspect` and the manifest writer never show a flatbuffers traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import ModelError

_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
             "INT8": 1, "FLOAT64": 8, "UINT64": 8, "UINT32": 4, "UINT16": 2, "COMPLEX64": 8, "BFLOAT16": 2}
_NUMPY = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "UINT8": np.uint8, "INT64": np.int64,
          "INT16": np.int16, "INT8": np.int8, "FLOAT64": np.float64, "BOOL": np.bool_}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - ai-edge-litert is a dependency
        raise ModelError("cannot read .tflite files: ai-edge-litert is not installed", "pip install ai-edge-litert") from exc
    return schema_py_generated


def _names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class TFLiteFile:
    """A parsed model: the object-API tree plus helpers to name ops and dtypes and read constant data."""

    path: str
    data: bytes
    model: Any
    op_names: list[str]  # per operator_codes index: builtin name, or the custom code (e.g. 'FlexTensorListReserve')
    dtype_names: dict[int, str]

    def tensor_dtype(self, tensor: Any) -> str:
        return self.dtype_names.get(tensor.type, f"TYPE_{tensor.type}").lower()

    def tensor_bytes(self, tensor: Any) -> int:
        shape = [max(int(d), 1) for d in (tensor.shape if tensor.shape is not None else [])]
        return int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE.get(self.dtype_names.get(tensor.type, ""), 4)

    def buffer_data(self, index: int) -> bytes:
        """Constant data of buffer `index` (b'' for activations); handles the >2 GB offset layout."""
        if index <= 0 or index >= len(self.model.buffers or []):
            return b""
        buf = self.model.buffers[index]
        if buf.offset and buf.offset > 1:
            if buf.offset + buf.size > len(self.data):
                raise ModelError(f"{self.path}: a weight buffer runs past the end of the file (truncated?)")
            return self.data[buf.offset : buf.offset + buf.size]
        return bytes(buf.data) if buf.data is not None else b""

    def constant(self, tensor: Any) -> np.ndarray | None:
        raw = self.buffer_data(tensor.buffer)
        dtype = _NUMPY.get(self.dtype_names.get(tensor.type, ""))
        if not raw or dtype is None:
            return None
        arr = np.frombuffer(raw, dtype=dtype)
        shape = list(tensor.shape) if tensor.shape is not None else []
        return arr.reshape(shape) if int(np.prod(shape, dtype=np.int64)) == arr.size else arr

    def is_flex(self) -> list[str]:
        return sorted({name for name in self.op_names if name.startswith("Flex")})


def parse_bytes(data: bytes, path: str = "<bytes>") -> TFLiteFile:
    schema = _schema()
    if len(data) == 0:
        raise ModelError(f"{path} is empty", "convert a model first: edgeseq convert MODEL.keras")
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError(f"{path} is not a TFLite model (no TFL3 identifier)", "pass a .tflite file")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        names = _names(schema.BuiltinOperator)
        op_names = []
        for code in model.operatorCodes or []:
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            if code.customCode:
                cc = code.customCode
                op_names.append(cc.decode() if isinstance(cc, bytes) else str(cc))
            else:
                op_names.append(names.get(builtin, f"BUILTIN_{builtin}"))
        if not model.subgraphs:
            raise ValueError("no subgraphs")
        for sg in model.subgraphs:
            n_tensors = len(sg.tensors or [])
            for op in sg.operators or []:
                if op.opcodeIndex >= len(op_names):
                    raise ValueError("operator code out of range")
                for t in list(op.inputs if op.inputs is not None else []) + list(
                    op.outputs if op.outputs is not None else []
                ):
                    if t >= n_tensors:
                        raise ValueError("tensor index out of range")
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"{path} is a corrupt or truncated TFLite file ({type(exc).__name__})", "re-convert or re-copy the model"
        ) from exc
    return TFLiteFile(path=path, data=data, model=model, op_names=op_names, dtype_names=_names(schema.TensorType))


def read_tflite(path: str | os.PathLike) -> TFLiteFile:
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p} does not exist", "check the path")
    if p.is_dir():
        raise ModelError(f"{p} is a directory, not a .tflite file", "pass the .tflite file inside it")
    return parse_bytes(p.read_bytes(), str(p))
