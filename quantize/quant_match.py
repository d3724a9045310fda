"""Where a quantized file loses accuracy, op by op: the engine of `edgeseq quant-report` (numpy and LiteRT only).

Two files of one model, the quantized one (Q) and its float reference (F, the same network converted fp32 by the
same route), run side by side on the same inputs with every intermediate tensor kept (LiteRT's
`experimental_preserve_all_tensors`, builtin kernels without delegates, which the preserved tensors need).

Matching: the main graphs are walked in execution order; an op of Q matches the first unmatched op of F with the same
type whose non-constant inputs are the matched tensors of Q's, position for position, after looking through
QUANTIZE / DEQUANTIZE (a value and its quantized copy are one value). Graph inputs match by position. Q's
QUANTIZE / DEQUANTIZE ops then match the F tensor of the value they convert. An op with nothing to match (an op the
float graph does not have) is listed with the reason.

Figures per op, over every sample and element of its first output, against the matched F tensor:
- end to end (`mse`, `cosine`, `snr_db`): Q's own output, dequantized: what the op's output carries from everything
  before it;
- local (`local_*`): the op alone, fed F's values of its inputs quantized to the scales Q's op reads them at, against
  F's output: what this op adds, its inputs' quantization included. A one-op model per op (Q with its main graph cut
  to that op; a WHILE keeps its loop subgraphs) gives it.
Ops are ranked by local SNR (lowest first; within TIE_DB of each other, in graph order); QUANTIZE / DEQUANTIZE are
listed but not ranked: their error is charged to the op that reads their output, so a badly calibrated input names
the first op that input feeds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CONVERSIONS = ("QUANTIZE", "DEQUANTIZE")
TIE_DB = 1.0  # local SNRs this close rank in graph order (see `rank`)


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


class Graph:
    """The main subgraph of a .tflite: op types, inputs, outputs, producers, constants."""

    def __init__(self, data: bytes):
        s = _schema()
        self.data = data
        self.model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
        names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
        codes = self.model.operatorCodes or []
        self.sg = self.model.subgraphs[0]
        self.types = [names.get(max(int(codes[op.opcodeIndex].builtinCode),
                                    int(codes[op.opcodeIndex].deprecatedBuiltinCode)), "CUSTOM")
                      for op in self.sg.operators or []]
        self.ins = [[int(i) for i in (op.inputs if op.inputs is not None else [])] for op in self.sg.operators or []]
        self.outs = [[int(i) for i in (op.outputs if op.outputs is not None else [])] for op in self.sg.operators or []]
        self.producer = {t: k for k, outs in enumerate(self.outs) for t in outs}
        buffers = self.model.buffers or []
        self.constant = {i for i, t in enumerate(self.sg.tensors or [])
                         if buffers[t.buffer].data is not None and len(buffers[t.buffer].data)}
        self.inputs = [int(i) for i in self.sg.inputs]
        self.outputs = [int(i) for i in self.sg.outputs]
        read = {i for ins in self.ins for i in ins} | set(self.outputs)
        int_types = (s.TensorType.INT32, s.TensorType.INT64, s.TensorType.BOOL)
        # the output an op is judged by: the first one read later that is not an integer counter or index (a WHILE
        # returns its trip counter first)
        self.main = [next((o for o in outs if o >= 0 and o in read and self.sg.tensors[o].type not in int_types),
                          outs[0] if outs else -1) for outs in self.outs]

    def value(self, t: int) -> int:
        """The tensor `t` is a (de)quantized copy of, through any chain of QUANTIZE / DEQUANTIZE."""
        while t in self.producer and self.types[self.producer[t]] in CONVERSIONS:
            t = self.ins[self.producer[t]][0]
        return t

    def live_inputs(self, k: int) -> list[int]:
        return [i for i in self.ins[k] if i >= 0 and i not in self.constant]

    def one_op(self, k: int) -> bytes:
        """This file with its main graph cut to op `k` (inputs: the op's non-constant inputs; loops keep theirs)."""
        from edgeseq.quantize.slim import pack_model

        m = _schema().ModelT.InitFromPackedBuf(bytearray(self.data), 0)
        sg = m.subgraphs[0]
        sg.operators = [sg.operators[k]]
        sg.inputs = list(dict.fromkeys(self.live_inputs(k)))
        sg.outputs = [o for o in self.outs[k] if o >= 0]
        m.signatureDefs = None
        return pack_model(m, len(self.data) + 4096)


def match(q: Graph, f: Graph) -> dict[int, int]:
    """Q tensor -> F tensor for every matched value (graph inputs, op outputs, Q's conversions' outputs)."""
    tmap = {qi: fi for qi, fi in zip(q.inputs, f.inputs, strict=False)}
    used: set[int] = set()
    ops = {}
    for k, kind in enumerate(q.types):
        if kind in CONVERSIONS:
            continue
        want = [tmap.get(q.value(i)) for i in q.live_inputs(k)]
        for j, fkind in enumerate(f.types):
            if j in used or fkind != kind:
                continue
            if [f.value(i) for i in f.live_inputs(j)] == want and None not in want:
                used.add(j)
                ops[k] = j
                for qo, fo in zip(q.outs[k], f.outs[j], strict=False):
                    if qo >= 0 and fo >= 0:
                        tmap[qo] = fo
                break
    for k, kind in enumerate(q.types):  # a conversion's output carries the value it converts
        if kind in CONVERSIONS and q.value(q.outs[k][0]) in tmap:
            tmap[q.outs[k][0]] = tmap[q.value(q.outs[k][0])]
    return tmap


def _dequant(x: np.ndarray, detail: dict) -> np.ndarray:
    scales, zeros = detail["quantization_parameters"]["scales"], detail["quantization_parameters"]["zero_points"]
    if np.issubdtype(x.dtype, np.integer) and len(scales) == 1 and scales[0]:
        return (x.astype(np.float64) - zeros[0]) * scales[0]
    return x.astype(np.float64)


def _quant(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    scales, zeros = detail["quantization_parameters"]["scales"], detail["quantization_parameters"]["zero_points"]
    if np.issubdtype(dtype, np.integer) and len(scales) == 1 and scales[0]:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scales[0] + zeros[0]), info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


class _Sums:
    """Streaming sums for MSE, cosine similarity and SNR of one tensor against its reference."""

    def __init__(self):
        self.n = 0
        self.err = self.ref = self.got = self.dot = 0.0

    def add(self, got: np.ndarray, ref: np.ndarray) -> None:
        got, ref = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
        if got.shape != ref.shape:
            return
        self.n += got.size
        self.err += float(np.sum((got - ref) ** 2))
        self.ref += float(np.sum(ref * ref))
        self.got += float(np.sum(got * got))
        self.dot += float(np.sum(got * ref))

    def figures(self, prefix: str = "") -> dict:
        if not self.n:
            return {}
        cos = self.dot / math.sqrt(self.ref * self.got) if self.ref > 0 and self.got > 0 else (
            1.0 if self.err == 0 else 0.0)
        snr = None if self.err == 0 else (10 * math.log10(self.ref / self.err) if self.ref > 0 else -math.inf)
        return {f"{prefix}mse": self.err / self.n, f"{prefix}cosine": round(cos, 6),
                f"{prefix}snr_db": None if snr is None else round(max(snr, -999.0), 2)}


def _interpreter(data: bytes, preserve: bool) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, experimental_preserve_all_tensors=preserve,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def compare(q_data: bytes, f_data: bytes, X: np.ndarray, layers: list | None = None) -> dict:
    """The per-op report (unranked figures per op of Q's main graph, the model output's figures, the match)."""
    q, f = Graph(q_data), Graph(f_data)
    tmap = match(q, f)
    qi, fi = _interpreter(q_data, True), _interpreter(f_data, True)
    qd = {d["index"]: d for d in qi.get_tensor_details()}
    todo = [k for k in range(len(q.types)) if q.main[k] in tmap]
    singles = {}
    for k in todo:
        if q.types[k] in CONVERSIONS:
            continue
        try:
            it = _interpreter(q.one_op(k), False)
        except (ValueError, RuntimeError):
            continue  # listed with its end-to-end figures only
        # the one-op model keeps the file's tensor list: its tensors are addressed by Q's indices (names may be empty)
        out = next(d for d in it.get_output_details() if d["index"] == q.main[k])
        singles[k] = (it, {d["index"]: d for d in it.get_input_details()}, out)
    e2e = {k: _Sums() for k in todo}
    local = {k: _Sums() for k in singles}
    out_sums = _Sums()
    q_in, f_in = qi.get_input_details()[0], fi.get_input_details()[0]
    for x in X:
        x = x[None]
        qi.set_tensor(q_in["index"], _quant(x, q_in))
        fi.set_tensor(f_in["index"], x.astype(f_in["dtype"]))
        qi.invoke()
        fi.invoke()
        fv: dict[int, np.ndarray] = {}

        def ref(t: int, fv=fv) -> np.ndarray:
            if t not in fv:
                fv[t] = fi.get_tensor(t)
            return fv[t]

        for k in todo:
            o = q.main[k]
            e2e[k].add(_dequant(qi.get_tensor(o), qd[o]), ref(tmap[o]))
        for k, (it, feeds, out) in singles.items():
            for t in dict.fromkeys(q.live_inputs(k)):
                detail = feeds[t]
                src = tmap.get(q.value(t))
                value = qi.get_tensor(t) if src is None else _quant(ref(src), detail)
                it.set_tensor(detail["index"], value.reshape(detail["shape"]))
            it.invoke()
            local[k].add(_dequant(it.get_tensor(out["index"]), out), ref(tmap[q.main[k]]))
        qo, fo = qi.get_output_details()[0], fi.get_output_details()[0]
        out_sums.add(_dequant(qi.get_tensor(qo["index"]), qo), fi.get_tensor(fo["index"]))
    ops = []
    for k, kind in enumerate(q.types):
        o = q.main[k]
        entry: dict[str, Any] = {"index": k, "type": kind,
                                 "layer": layers[k] if layers and k < len(layers) else None,
                                 "output_dtype": str(np.dtype(qd[o]["dtype"]).name) if o in qd else None,
                                 "shape": [int(d) for d in qd[o]["shape"]] if o in qd else None}
        if k in e2e:
            entry.update(e2e[k].figures())
            entry.update(local[k].figures("local_") if k in local else {})
        else:
            entry["unmatched"] = "no op of the float reference computes this value"
        ops.append(entry)
    return {"ops": ops, "output": out_sums.figures(), "samples": int(len(X)),
            "matched": sum(1 for o in ops if "unmatched" not in o), "total": len(ops)}


def rank(ops: list[dict], tie_db: float = TIE_DB) -> list[dict]:
    """Compute ops with local figures, worst first: by local SNR, where ops within `tie_db` of the worst one left
    go in graph order (the earliest of the ops that lose that much is where the loss starts: a broken input range
    zeroes every op downstream that was calibrated on it, each at ~0 dB), exact ones last."""
    left = sorted((o for o in ops if o["type"] not in CONVERSIONS and "local_mse" in o),
                  key=lambda o: (o["local_snr_db"] is None, o["local_snr_db"] or 0.0, -o["local_mse"]))
    out: list[dict] = []
    while left and left[0]["local_snr_db"] is not None:
        worst = left[0]["local_snr_db"]
        group = [o for o in left if o["local_snr_db"] is not None and o["local_snr_db"] <= worst + tie_db]
        out += sorted(group, key=lambda o: o["index"])
        left = left[len(group):]
    return out + left


def op_layers(data: bytes, layer_names: set[str] | list[str]) -> list[str | None]:
    """Per op of the main graph, the Keras layer it came from: the deepest component of its first output's name
    (the converter's `model/layer_1/...` paths, Keras's `_1` suffixes dropped) that names a layer of the model.
    Read before `slim.compact` shortens the names; op indices do not change there."""
    import re

    names, g = set(layer_names), Graph(data)
    out: list[str | None] = []
    for k in range(len(g.types)):
        found = None
        for o in g.outs[k][:1]:
            raw = g.sg.tensors[o].name if o >= 0 else b""
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
            for part in text.split(";")[0].split("/"):
                base = re.sub(r"_\d+$", "", part)
                found = part if part in names else base if base in names else found
        out.append(found)
    return out
