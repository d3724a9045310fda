"""Read a .tflite flatbuffer without TensorFlow (only `flatbuffers` and the schema that ships in ai-edge-litert).

One checked reader (`read_model_bytes`: regular files only, never a FIFO or a device, at most MAX_MODEL_BYTES) and
one checked parser (`parse_bytes`: the flatbuffer, then every index and size it holds, see `tflite_verify`). Every
way a file can be wrong (missing, special, huge, empty, truncated, not a TFLite model, corrupt or inconsistent
tables) becomes one ModelError, so `inspect`, `evaluate`, the manifest writer and LiteRT itself only ever see a
structurally sound model.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import ModelError
from edgeseq.quantize.tflite.flatbuffer import verify_flatbuffer
from edgeseq.quantize.tflite.verify import HINT, ITEMSIZE, opcode_names, verify_model

# A flatbuffer addresses at most 2 GiB; larger models put their weights after it (the offset layout), which this
# reader does not support. Also the bound on what one read may cost in memory.
MAX_MODEL_BYTES = 2**31
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
    """A parsed, verified model: the object-API tree plus helpers to name ops and dtypes and read constant data."""

    path: str
    data: bytes
    model: Any
    op_names: list[str]  # per operator_codes index: builtin name, or the custom code (e.g. 'FlexTensorListReserve')
    dtype_names: dict[int, str]
    _const: set[int] = field(default_factory=set, repr=False)  # buffer indices that hold data

    def __post_init__(self) -> None:
        for b, buf in enumerate(self.model.buffers or []):
            if b > 0 and ((buf.offset > 1 and buf.size > 0) or (buf.offset <= 1 and buf.data is not None
                                                                 and len(buf.data) > 0)):
                self._const.add(b)

    def tensor_dtype(self, tensor: Any) -> str:
        return self.dtype_names.get(tensor.type, f"TYPE_{tensor.type}").lower()

    def tensor_bytes(self, tensor: Any) -> int:
        elements = 1
        for d in tensor.shape if tensor.shape is not None else []:
            elements *= max(int(d), 1)
        return elements * ITEMSIZE.get(self.dtype_names.get(tensor.type, ""), 4)

    def is_constant(self, tensor: Any) -> bool:
        return tensor.buffer in self._const

    def buffer_data(self, index: int) -> bytes:
        """Constant data of buffer `index` (b'' for activations); handles the >2 GB offset layout."""
        if index not in self._const:
            return b""
        buf = self.model.buffers[index]
        if buf.offset > 1:  # verified to lie inside the file
            return self.data[buf.offset : buf.offset + buf.size]
        return buf.data.tobytes() if hasattr(buf.data, "tobytes") else bytes(buf.data)

    def constant(self, tensor: Any) -> np.ndarray | None:
        """The value of a constant tensor (sizes are verified: the data matches shape x dtype), else None."""
        dtype = _NUMPY.get(self.dtype_names.get(tensor.type, ""))
        raw = self.buffer_data(tensor.buffer) if dtype is not None else b""
        if not raw or len(raw) % np.dtype(dtype).itemsize:
            return None
        arr = np.frombuffer(raw, dtype=dtype)
        shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
        return arr.reshape(shape) if int(np.prod(shape, dtype=np.int64)) == arr.size else arr

    def is_flex(self) -> list[str]:
        return sorted({name for name in self.op_names if name.startswith("Flex")})


def parse_bytes(data: bytes, path: str = "<bytes>") -> TFLiteFile:
    """Parse and verify a whole .tflite; ModelError naming the problem for anything LiteRT could not load safely."""
    schema = _schema()
    data = bytes(data)
    if len(data) == 0:
        raise ModelError(f"{path}: empty file, not a model", "convert a model first: edgeseq convert MODEL.keras")
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ModelError(f"{path}: not a TFLite model (no TFL3 identifier)", "pass a .tflite file")
    if len(data) > MAX_MODEL_BYTES:
        raise _too_big(path, len(data))
    verify_flatbuffer(schema, data, path, HINT)  # offsets, sizes, alignment: what LiteRT's loader verifies
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:  # pragma: no cover - the verifier leaves nothing for the reader to trip on
        raise ModelError(f"{path}: corrupt or truncated TFLite file ({type(exc).__name__} reading its tables)",
                         HINT) from exc
    # Outside the catch-all on purpose: the checks below read a well-typed tree, so an exception there is a bug
    # (which the fuzz test would see), not a property of the file.
    op_names = opcode_names(schema, model, path)
    verify_model(schema, model, data, path, op_names)
    return TFLiteFile(path=path, data=data, model=model, op_names=op_names, dtype_names=_names(schema.TensorType))


def _too_big(path: str | os.PathLike, size: int) -> ModelError:
    return ModelError(f"{path}: {size / 2**30:.1f} GiB, over the {MAX_MODEL_BYTES // 2**30} GiB flatbuffer limit of a "
                      ".tflite file", "check the path; the >2 GiB external-weights layout is not supported")


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a model file the user named: a regular file (after symlinks), at most MAX_MODEL_BYTES.

    A FIFO, socket or device (e.g. a symlink to /dev/zero) is refused before it is read, and the file is opened
    non-blocking and checked again on the open descriptor, so nothing here can hang or read without bound.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ModelError(f"{p}: does not exist", "check the path") from None
    except OSError as exc:
        raise ModelError(f"{p}: cannot be read: {exc.strerror or exc}", "check the path and its permissions") from None
    _check_kind(p, st)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModelError(f"{p}: cannot be read: {exc.strerror or exc}", "check the path and its permissions") from None
    try:
        st = os.fstat(fd)
        _check_kind(p, st)  # the path may have been swapped since the stat
        chunks, total = [], 0
        while total <= MAX_MODEL_BYTES:
            # The whole file in one read when its size is known (no copy to join); 1 MiB steps otherwise.
            want = st.st_size + 1 if not chunks and st.st_size else 1 << 20
            chunk = os.read(fd, min(want, MAX_MODEL_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise ModelError(f"{p}: cannot be read: {exc.strerror or exc}", "check the path and its permissions") from None
    finally:
        os.close(fd)
    if total > MAX_MODEL_BYTES:
        raise _too_big(p, total)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_kind(p: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(f"{p}: a directory, not a .tflite file", "pass the .tflite file inside it")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
        target = os.path.realpath(p)
        if target != os.path.abspath(p):
            kind += f" ({target})"
        raise ModelError(f"{p}: {kind}, not a regular file", "pass a .tflite file")
    if st.st_size > MAX_MODEL_BYTES:
        raise _too_big(p, st.st_size)


def read_tflite(path: str | os.PathLike) -> TFLiteFile:
    """Read (see `read_model_bytes`) and parse (see `parse_bytes`) the .tflite at `path`."""
    return parse_bytes(read_model_bytes(path), str(path))
