"""Token-id inputs of a .tflite file: is the input int ids, and how many ids does its Embedding table hold. No
TensorFlow.

The vocabulary comes from the manifest (`source.input.vocab_size`, written by `edgeseq convert`) when there is one,
else from the file itself: the rows of the table of the GATHER op whose indices come from the input (through the
ops Keras puts before it: LESS/ADD/SELECT for negative ids, CAST, RESHAPE). The agent reads it the same way on the
device (targets/agent/inputs.py `gather_vocab`).
"""

from __future__ import annotations

import os
from typing import Any

from edgeseq.quantize.tflite.reader import TFLiteFile

# Ops an id passes through between the model input and its GATHER (Keras: negative-index wrap, casts, reshapes).
PASS_THROUGH = {"LESS", "ADD", "SELECT", "SELECT_V2", "CAST", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "STRIDED_SLICE",
                "MAXIMUM", "MINIMUM", "NOT_EQUAL"}
MAX_DEPTH = 6


def is_id_input(tensor: dict) -> bool:
    """An inspect-style tensor record that is integer ids: int32/int64 without quantization parameters."""
    return tensor.get("dtype") in ("int32", "int64") and tensor.get("scale") is None


def gather_tables(f: TFLiteFile) -> list[dict]:
    """The tables of the main subgraph's GATHER ops fed by its first input (within a few pass-through ops): rows,
    shape and dtype of each (an int8 recipe quantizes the Embedding table like any weight)."""
    sg = f.model.subgraphs[0]
    if sg.inputs is None or len(sg.inputs) == 0:
        return []
    source = int(sg.inputs[0])
    producer: dict[int, Any] = {}
    for op in sg.operators or []:
        for o in op.outputs if op.outputs is not None else []:
            producer[int(o)] = op

    def reaches_input(index: int, depth: int) -> bool:
        if index == source:
            return True
        op = producer.get(index)
        if op is None or depth >= MAX_DEPTH or f.op_names[op.opcodeIndex] not in PASS_THROUGH:
            return False
        return any(reaches_input(int(i), depth + 1) for i in (op.inputs if op.inputs is not None else []) if i >= 0)

    tables = []
    for op in sg.operators or []:
        ins = [int(i) for i in op.inputs] if op.inputs is not None else []
        if f.op_names[op.opcodeIndex] != "GATHER" or len(ins) < 2:
            continue
        table = sg.tensors[ins[0]]
        shape = [int(d) for d in table.shape] if table.shape is not None else []
        if len(shape) >= 2 and reaches_input(ins[1], 0):
            tables.append({"rows": shape[0], "shape": shape, "dtype": f.tensor_dtype(table)})
    return tables


def gather_vocab(f: TFLiteFile) -> int | None:
    """Rows of the GATHER table fed by the main subgraph's first input (the smallest if several), else None."""
    rows = [t["rows"] for t in gather_tables(f)]
    return min(rows) if rows else None


def vocab_of(path: str | os.PathLike, f: TFLiteFile) -> tuple[int | None, str | None]:
    """(vocabulary size, where it came from: 'manifest' | 'gather-table') of a token-id model's file."""
    from edgeseq.quantize.manifest import read_manifest

    manifest = read_manifest(path, strict=False) or {}
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    record = source.get("input") if isinstance(source.get("input"), dict) else {}
    vocab = record.get("vocab_size")
    if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0:
        return vocab, "manifest"
    found = gather_vocab(f)
    return (found, "gather-table") if found else (None, None)
