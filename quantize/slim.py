"""Re-pack a converted .tflite smaller without touching its math: every converted graph goes through `compact`.

What the converter (TF 2.21) writes that costs bytes and carries nothing the runtime needs:
- full Keras paths as tensor names ("transformer-small_fixed_1/.../block0_attn_1/Tensordot_..."): intermediate tensors
  lose their names (the main graph's inputs and outputs keep theirs; signature defs address tensors by index, and
  LiteRT names a nameless tensor ""). On an unrolled RNN there is one set per time step (GRU small, 29 steps: a
  quarter of the int8 file); on the int8 Transformer small they were 12 KB of 94; even shortened to "t123" they cost
  ~25 bytes a tensor (3.7 KB of a 20 KB int8 LSTM).
- an empty quantization table on every float tensor, tensors nothing refers to, the description and the converter's
  provenance metadata (`min_runtime_version`, `CONVERSION_METADATA`), and WHILE results nothing reads whose body
  passes the value through (marked -1, as the converter writes float loops; the int8 calibration workaround had
  given them tensors back).
- one empty buffer per activation tensor: they all point at buffer 0, which the schema reserves as the shared empty
  sentinel, and the unused ones are dropped.
- the same vector written once per tensor: per-channel zero points (int64, all 0; 12 KB of the int8 Transformer),
  shapes, per-tensor scales. `_SharingBuilder` writes each distinct vector of scalars once and points every table
  that needs it there, and identical quantization and option tables are shared the same way. Weight data is never
  shared.

Same ops, types, shapes, quantization values and weight bytes, re-packed with the 16-byte buffer alignment the
converter uses for weights (8 for constants under SMALL_BUFFER bytes), so kernels see aligned weights; outputs are
bit-identical (tests check).
"""

from __future__ import annotations

import flatbuffers
import numpy as np

SMALL_BUFFER = 64  # bytes: constants this small (shapes, axes, scalars) are 8-byte aligned, weights 16


class _SharingBuilder(flatbuffers.Builder):
    """A Builder that writes each distinct vector of scalars once and hands out the first copy's offset after that.

    A vector is shared only when it holds plain scalars: vectors of offsets (tables, strings) are relative to where
    they sit, so equal bytes there do not mean equal content. Strings and weight buffers are not shared.
    """

    def __init__(self, initial_size: int):
        super().__init__(initial_size)
        self._seen: dict[tuple[int, bytes], int] = {}
        self._mark: tuple[int, int, int] | None = None
        self.quant_tables: dict[tuple, int] = {}  # see _shared_quantization_class

    def StartVector(self, elemSize, numElems, alignment):  # noqa: N802, N803 - flatbuffers' names
        self._mark = (len(self.Bytes) - self.head, elemSize * numElems, alignment)
        return super().StartVector(elemSize, numElems, alignment)

    def keep_unique(self) -> None:
        """Called between StartVector and EndVector: this vector gets its own copy (weight data)."""
        self._mark = None

    def PrependUOffsetTRelative(self, off):  # noqa: N802 - a vector of offsets is never shared
        self._mark = None
        return super().PrependUOffsetTRelative(off)

    def CreateString(self, *args, **kwargs):  # noqa: N802
        self._mark = None
        return super().CreateString(*args, **kwargs)

    def EndVector(self, numElems=None):  # noqa: N802, N803
        offset = super().EndVector(numElems)
        mark, self._mark = self._mark, None
        if mark is None:
            return offset
        end_before, nbytes, alignment = mark
        key = (alignment, bytes(self.Bytes[self.head : self.head + 4 + nbytes]))
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = offset
            return offset
        # Forget this copy (nothing else was written since StartVector) and point at the first one.
        self.head = len(self.Bytes) - end_before
        return first


def _aligned_pack(self, builder):  # BufferT.Pack with 16-byte aligned data, like the converter writes
    from ai_edge_litert import schema_py_generated as schema

    data = None
    if self.data is not None:
        payload = np.asarray(self.data, dtype=np.uint8).tobytes()
        # weights 16-byte aligned like the converter writes them; a constant under SMALL_BUFFER bytes (a shape, an
        # axis, a scalar) needs only its element's alignment (8 covers int64/float64), not 16 bytes of padding
        small = isinstance(builder, _SharingBuilder) and len(payload) < SMALL_BUFFER  # compact only
        builder.StartVector(1, len(payload), 8 if small else 16)
        if isinstance(builder, _SharingBuilder):
            builder.keep_unique()
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


def _shared_quantization_class(schema):
    """A QuantizationParametersT whose Pack returns the earlier table for equal parameters (_SharingBuilder only)."""

    def pack(self, builder):
        cache = builder.quant_tables
        key = None
        if self.details is None:
            key = tuple(
                None if v is None else np.asarray(v).tobytes()
                for v in (self.min, self.max, self.scale, self.zeroPoint)
            )
            key += (self.quantizedDimension, self.detailsType)
            if key in cache:
                return cache[key]
        offset = schema.QuantizationParametersT.Pack(self, builder)
        if key is not None:
            cache[key] = offset
        return offset

    return type("SharedQuantizationParametersT", (schema.QuantizationParametersT,), {"Pack": pack})


def _short_names(model) -> None:
    for sg in model.subgraphs or []:
        keep = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
        keep |= {int(i) for i in (sg.outputs if sg.outputs is not None else [])}
        for i, tensor in enumerate(sg.tensors or []):
            if i not in keep:
                tensor.name = f"t{i}"


def _drop_names(model) -> None:
    """No names but the main graph's inputs and outputs (what `get_input_details` shows and the agent feeds by):
    LiteRT names a nameless tensor "", nothing reads the rest. A name costs ~25 bytes per tensor even as "t123"."""
    for k, sg in enumerate(model.subgraphs or []):
        keep = set()
        if k == 0:
            keep = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
            keep |= {int(i) for i in (sg.outputs if sg.outputs is not None else [])}
        sg.name = None  # signature defs name subgraphs by index
        for i, tensor in enumerate(sg.tensors or []):
            if i not in keep:
                tensor.name = None


def _drop_empty(model) -> None:
    """Quantization tables with nothing in them (the converter writes one on every float tensor) and tensors no op,
    graph or signature refers to (leftovers of the WHILE calibration workaround and of the converter) are dropped;
    the converter's description and its provenance metadata (min_runtime_version, CONVERSION_METADATA), which no
    runtime reads to load or run a model, go too (edgeseq's manifest says what made the file)."""
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            q = t.quantization
            if q is not None and q.details is None and all(
                    v is None or len(v) == 0 for v in (q.scale, q.zeroPoint, q.min, q.max)):
                t.quantization = None
    sigs = model.signatureDefs or []
    for k, sg in enumerate(model.subgraphs or []):
        ops = sg.operators or []
        used = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
        used |= {int(i) for i in (sg.outputs if sg.outputs is not None else [])}
        for op in ops:
            for vec in (op.inputs, op.outputs, op.intermediates):
                used |= {int(i) for i in (vec if vec is not None else [])}
        for sig in sigs:
            if int(sig.subgraphIndex) == k:
                used |= {int(m.tensorIndex) for m in (sig.inputs or []) + (sig.outputs or [])}
        n = len(sg.tensors or [])
        keep = sorted(i for i in used if 0 <= i < n)
        if len(keep) == n or any(t.isVariable for t in sg.tensors or []):
            continue
        index = {old: new for new, old in enumerate(keep)}

        def remap(vec, index=index):
            return None if vec is None else [index[int(i)] if int(i) >= 0 else int(i) for i in vec]

        sg.tensors = [sg.tensors[i] for i in keep]
        sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
        for op in ops:
            op.inputs, op.outputs, op.intermediates = remap(op.inputs), remap(op.outputs), remap(op.intermediates)
        for sig in sigs:
            if int(sig.subgraphIndex) == k:
                for m in (sig.inputs or []) + (sig.outputs or []):
                    m.tensorIndex = index[int(m.tensorIndex)]
    names = {b"min_runtime_version", b"CONVERSION_METADATA"}
    model.metadata = [m for m in model.metadata or [] if m.name not in names] or None
    model.description = None


def _shared_options(model, schema) -> None:
    """Equal builtin option tables (every FullyConnectedOptions with the same fields, ...) written once."""
    cache: dict[tuple, int] = {}

    def key(obj) -> tuple:
        return (type(obj).__name__, *sorted((k, np.asarray(v).tobytes() if isinstance(v, (list, np.ndarray)) else v)
                                            for k, v in vars(obj).items()))

    classes: dict[type, type] = {}
    for sg in model.subgraphs or []:
        for op in sg.operators or []:
            opts = op.builtinOptions
            if opts is None or any(isinstance(v, list) and v and not np.isscalar(v[0]) for v in vars(opts).values()):
                continue
            cls = type(opts)
            if cls not in classes:
                def pack(self, builder, _base=cls):
                    k = key(self)
                    if k not in cache:
                        cache[k] = _base.Pack(self, builder)
                    return cache[k]

                classes[cls] = type(f"Shared{cls.__name__}", (cls,), {"Pack": pack})
            opts.__class__ = classes[cls]


def _share_empty_buffer(model) -> None:
    """Data-less tensors point at buffer 0 (the schema's empty sentinel); buffers nobody uses any more are dropped."""
    buffers = model.buffers or []
    if not buffers or (buffers[0].data is not None and len(buffers[0].data)):
        return

    def empty(b) -> bool:
        return (b.data is None or len(b.data) == 0) and not (b.offset or 0) and not (b.size or 0)

    used = {0} | {int(md.buffer) for md in model.metadata or []}
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            if empty(buffers[tensor.buffer]):
                tensor.buffer = 0
            used.add(int(tensor.buffer))
    order = sorted(used)
    index = {old: new for new, old in enumerate(order)}
    model.buffers = [buffers[i] for i in order]
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            tensor.buffer = index[int(tensor.buffer)]
    for md in model.metadata or []:
        md.buffer = index[int(md.buffer)]


def _unpack(data: bytes):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        return None  # weights outside the flatbuffer (>2 GB models): leave the file alone
    return model


def _pack(model, size_hint: int, builder_class) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    aligned = type("AlignedBufferT", (schema.BufferT,), {"Pack": _aligned_pack})
    for buf in model.buffers or []:
        buf.__class__ = aligned
    builder = builder_class(size_hint)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def pack_model(model, size_hint: int = 4096) -> bytes:
    """A ModelT (object API) as .tflite bytes, weights 16-byte aligned like the converter writes them."""
    return _pack(model, size_hint, flatbuffers.Builder)


def strip_tensor_names(data: bytes) -> bytes:
    """Only the short names of `compact`; `data` unchanged if it uses external buffers."""
    model = _unpack(data)
    if model is None:
        return data
    _short_names(model)
    return _pack(model, len(data), flatbuffers.Builder)


def compact(data: bytes) -> bytes:
    """The same model with no intermediate names, no empty quantization tables, unused tensors or converter
    provenance, unread WHILE pass-through outputs marked absent, one shared empty buffer, equal small constants,
    option tables, scalar vectors and quantization tables written once; `data` unchanged if it uses external
    buffers."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeseq.quantize.while_calibration import drop_passthrough_outputs

    if _unpack(data) is None:
        return data
    # a WHILE result nothing reads, whose body passes the input through, becomes -1 (the converter writes float
    # loops that way; the int8 calibration workaround had given them tensors back); its tensor then goes unused
    data, _ = drop_passthrough_outputs(data)
    model = _unpack(data)
    _drop_names(model)
    _drop_empty(model)
    _share_empty_buffer(model)
    _shared_options(model, schema)
    shared = _shared_quantization_class(schema)
    for sg in model.subgraphs or []:
        for tensor in sg.tensors or []:
            if tensor.quantization is not None:
                tensor.quantization.__class__ = shared
    return _pack(model, len(data), _SharingBuilder)
