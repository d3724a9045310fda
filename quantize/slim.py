"""Shrink an unrolled graph by renaming its intermediate tensors ("t123"); inputs and outputs keep their names.

Why: an unrolled RNN has one set of tensors per time step, each named after its full Keras path; for GRU small at 29
steps the names alone were a quarter of the int8 file. Only names change: same ops, tensors and bytes of every
weight, re-packed with the 16-byte buffer alignment the converter uses, so kernels see aligned weights.
"""

from __future__ import annotations

import numpy as np


def _aligned_pack(self, builder):  # BufferT.Pack with 16-byte aligned data, like the converter writes
    from ai_edge_litert import schema_py_generated as schema

    data = None
    if self.data is not None:
        payload = np.asarray(self.data, dtype=np.uint8).tobytes()
        builder.StartVector(1, len(payload), 16)
        builder.head -= len(payload)
        builder.Bytes[builder.head : builder.head + len(payload)] = payload
        builder.vectorNumElems = len(payload)
        data = builder.EndVector()
    schema.BufferStart(builder)
    if data is not None:
        schema.BufferAddData(builder, data)
    schema.BufferAddOffset(builder, self.offset)
    schema.BufferAddSize(builder, self.size)
    return schema.BufferEnd(builder)


def strip_tensor_names(data: bytes) -> bytes:
    """The same model with short intermediate tensor names; `data` unchanged if it uses external buffers."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        return data
    for sg in model.subgraphs or []:
        keep = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
        keep |= {int(i) for i in (sg.outputs if sg.outputs is not None else [])}
        for i, tensor in enumerate(sg.tensors or []):
            if i not in keep:
                tensor.name = f"t{i}"
    aligned = type("AlignedBufferT", (schema.BufferT,), {"Pack": _aligned_pack})
    for buf in model.buffers or []:
        buf.__class__ = aligned
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
