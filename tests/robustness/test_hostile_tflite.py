"""Hostile .tflite files through every verb that reads one (`inspect`, `evaluate`, `profile --target local`).

Each case must end the way the contract says: one `error: <path>: <problem> (<fix>)` line, exit 2, no traceback,
bounded time and memory, nothing written (not even the results store), nothing left in TMPDIR. The corpus is
generated here: realistic small models from tests/_tiny_tflite.py (a dense classifier and a three-subgraph WHILE
loop, shaped for japanese_vowels so an accepted file would really be evaluated), edited through the flatbuffers
object API or at the byte level, plus special files (FIFO, /dev/zero symlink, directory, 3 GiB sparse file).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from _harness import run_hostile
from _tiny_tflite import chain_model, conv_int8_model, dense_model, while_model
from ai_edge_litert import schema_py_generated as schema

from edgeseq.core.errors import ModelError
from edgeseq.quantize.tflite.reader import parse_bytes

SEQ, FEATURES, CLASSES = 29, 12, 9  # japanese_vowels
VERBS = {
    "inspect": lambda p: ["inspect", p],
    "evaluate": lambda p: ["evaluate", p, "--dataset", "japanese_vowels"],
    "profile": lambda p: ["profile", p, "--target", "local", "--runs", "3", "--warmup", "1"],
    "deploy": lambda p: ["deploy", p, "--target", "local"],
}


def _dense() -> bytes:
    return dense_model(SEQ, FEATURES, 16, CLASSES)


def _while() -> bytes:
    return while_model(SEQ, FEATURES, 8, CLASSES)


def _edit(data: bytes, fn) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    fn(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _set(obj, **fields):
    for k, v in fields.items():
        setattr(obj, k, v)


def _main_op(m, name: str, sg: int = 0):
    codes = {i for i, c in enumerate(m.operatorCodes) if c.builtinCode == getattr(schema.BuiltinOperator, name)}
    return next(op for op in m.subgraphs[sg].operators if op.opcodeIndex in codes)


def _while_cycle(m) -> None:
    """The body (subgraph 2) runs a WHILE whose body is itself: every arity matches, only the call graph loops."""
    body = m.subgraphs[2]
    outs = []
    for t in body.inputs:
        clone = schema.TensorT()
        src = body.tensors[t]
        _set(clone, name=src.name + b"/inner", shape=src.shape, type=src.type, buffer=0)
        body.tensors.append(clone)
        outs.append(len(body.tensors) - 1)
    loop = schema.OperatorT()
    opts = schema.WhileOptionsT()
    _set(opts, condSubgraphIndex=1, bodySubgraphIndex=2)
    _set(loop, opcodeIndex=_main_op(m, "WHILE").opcodeIndex, inputs=list(body.inputs), outputs=outs,
         builtinOptionsType=schema.BuiltinOptions.WhileOptions, builtinOptions=opts)
    body.operators.append(loop)


def _if_else_out_of_range(m) -> None:
    code = schema.OperatorCodeT()
    _set(code, builtinCode=schema.BuiltinOperator.IF, deprecatedBuiltinCode=schema.BuiltinOperator.IF, version=1)
    m.operatorCodes.append(code)
    op = _main_op(m, "WHILE")
    opts = schema.IfOptionsT()
    _set(opts, thenSubgraphIndex=1, elseSubgraphIndex=5)
    _set(op, opcodeIndex=len(m.operatorCodes) - 1, builtinOptionsType=schema.BuiltinOptions.IfOptions,
         builtinOptions=opts)


def _shared_subgraphs(copies: int = 20000) -> bytes:
    """One real subgraph referenced `copies` times: 100 KB on disk, ~10 million objects if unpacked naively."""
    m = schema.ModelT.InitFromPackedBuf(bytearray(chain_model(200)), 0)
    b = flatbuffers.Builder(0)
    sg = m.subgraphs[0].Pack(b)
    codes = [c.Pack(b) for c in m.operatorCodes]
    bufs = [x.Pack(b) for x in m.buffers]

    def vec(start, items):
        start(b, len(items))
        for off in reversed(items):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    codes_v = vec(schema.ModelStartOperatorCodesVector, codes)
    sgs_v = vec(schema.ModelStartSubgraphsVector, [sg] * copies)
    bufs_v = vec(schema.ModelStartBuffersVector, bufs)
    schema.ModelStart(b)
    schema.ModelAddVersion(b, 3)
    schema.ModelAddOperatorCodes(b, codes_v)
    schema.ModelAddSubgraphs(b, sgs_v)
    schema.ModelAddBuffers(b, bufs_v)
    b.Finish(schema.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _two_byte_flips(data: bytes) -> bytes:
    """Flip the high byte of two tensor indices of the first FULLY_CONNECTED (inputs [6, 2, 3] in dense_model)."""
    at = data.find(struct.pack("<4i", 3, 6, 2, 3))
    assert at > 0
    out = bytearray(data)
    out[at + 7] ^= 0x40
    out[at + 11] ^= 0x40
    return bytes(out)


def _cases() -> dict[str, tuple]:
    """name -> (bytes builder, substring of the error line). Names say what is wrong."""
    dense, loop = _dense, _while
    return {
        # control flow
        "while-body-out-of-range": (lambda: _edit(loop(), lambda m: _set(
            _main_op(m, "WHILE").builtinOptions, bodySubgraphIndex=7)), "body subgraph 7, but the file has 3"),
        "while-cond-out-of-range": (lambda: _edit(loop(), lambda m: _set(
            _main_op(m, "WHILE").builtinOptions, condSubgraphIndex=9)), "cond subgraph 9"),
        "while-without-options": (lambda: _edit(loop(), lambda m: _set(
            _main_op(m, "WHILE"), builtinOptions=None, builtinOptionsType=0)), "no WhileOptions"),
        "while-arity": (lambda: _edit(loop(), lambda m: _set(m.subgraphs[1], inputs=list(m.subgraphs[1].inputs)[:2])),
                        "cond subgraph 1, which takes 2"),
        "while-cycle": (lambda: _edit(loop(), _while_cycle), "calls itself"),
        "if-else-out-of-range": (lambda: _edit(loop(), _if_else_out_of_range), "else subgraph 5"),
        # indices
        "subgraph-input-out-of-range": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0], inputs=[99])),
                                        "input names tensor 99"),
        "subgraph-output-out-of-range": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0], outputs=[-4])),
                                         "output names tensor -4"),
        "tensor-buffer-out-of-range": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0].tensors[2],
                                                                             buffer=10**6)), "buffer 1000000"),
        "negative-tensor-index": (lambda: _edit(dense(), lambda m: _set(_main_op(m, "SOFTMAX"), inputs=[-5])),
                                  "tensor -5"),
        "absent-required-input": (lambda: _edit(dense(), lambda m: _set(_main_op(m, "SOFTMAX"), inputs=[-1])),
                                  "no optional inputs"),
        "opcode-index-out-of-range": (lambda: _edit(dense(), lambda m: _set(_main_op(m, "SOFTMAX"), opcodeIndex=40)),
                                      "operator code 40"),
        "unknown-builtin-op": (lambda: _edit(dense(), lambda m: _set(m.operatorCodes[-1], builtinCode=250,
                                                                     deprecatedBuiltinCode=127)), "unknown op"),
        "fully-connected-one-input": (lambda: _edit(dense(), lambda m: _set(
            _main_op(m, "FULLY_CONNECTED"), inputs=list(_main_op(m, "FULLY_CONNECTED").inputs)[:1])),
            "FULLY_CONNECTED"),
        "reads-unwritten-tensor": (lambda: _edit(dense(), lambda m: m.subgraphs[0].operators.reverse()),
                                   "no earlier operator produces"),
        "output-never-written": (lambda: _edit(dense(), lambda m: m.subgraphs[0].operators.pop()), "never written"),
        "two-byte-flips": (lambda: _two_byte_flips(dense()), "names input tensor 1073741830"),
        # tensors and data
        "tensor-name-not-utf8": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0].tensors[0],
                                                                       name=b"\xff\xfeinput")), "UTF-8"),
        "reshape-shape-3-bytes": (lambda: _edit(dense(), lambda m: _set(
            m.buffers[m.subgraphs[0].tensors[1].buffer], data=np.zeros(3, np.uint8))), "needs 8 bytes"),
        "weights-truncated": (lambda: _edit(dense(), lambda m: _set(
            m.buffers[m.subgraphs[0].tensors[2].buffer], data=np.zeros(100, np.uint8))), "but its buffer holds 100"),
        "constant-claims-1e18-parameters": (lambda: _edit(dense(), lambda m: _set(
            m.subgraphs[0].tensors[2], shape=[1_000_000, 1_000_000, 1_150_000])), "more than 2**40 bytes"),
        "negative-dimension": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0].tensors[7], shape=[1, -16])),
                               "negative dimension"),
        "reshape-changes-dtype": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0].tensors[0], type=11)),
                                  "turns complex128 tensor 0 into float32"),
        "unknown-tensor-type": (lambda: _edit(dense(), lambda m: _set(m.subgraphs[0].tensors[7], type=99)),
                                "type 99"),
        "quantization-zero-points": (lambda: _edit(conv_int8_model(), lambda m: _set(
            m.subgraphs[0].tensors[1].quantization, zeroPoint=[0, 0, 0])), "zero points"),
        "schema-version": (lambda: _edit(dense(), lambda m: _set(m, version=7)), "schema version 7"),
        # flatbuffer level
        "shared-tables": (_shared_subgraphs, "shared tables"),
        "truncated": (lambda: dense()[: len(dense()) // 2], "corrupt TFLite file"),
        "vtable-outside-file": (lambda: dense()[:4] + b"TFL3" + dense()[8:12] + b"\xff\xff\xff\x7f" + dense()[16:],
                                "corrupt TFLite file"),
        "empty": (lambda: b"", "empty file"),
        "text": (lambda: b"hello, I am not a model\n" * 10, "not a TFLite model"),
    }


CASES = _cases()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-tflite")
    for name, (build, _) in CASES.items():
        (root / f"{name}.tflite").write_bytes(build())
    os.mkfifo(root / "fifo.tflite")
    (root / "zero.tflite").symlink_to("/dev/zero")
    (root / "dir.tflite").mkdir()
    (root / "dangling.tflite").symlink_to(root / "absent-target")
    with open(root / "huge.tflite", "wb") as fh:  # a real model's header, then 3 GiB of holes: nothing on disk
        fh.write(_dense())
        fh.truncate(3 * 2**30)
    return root


SPECIAL = {"fifo": "FIFO", "zero": "device (/dev/zero)", "dir": "directory", "dangling": "does not exist",
           "huge": "over the 2 GiB"}
# profile checks existence and file type itself, first, with its own words (still one line, exit 2).
PROFILE_OWN = {"fifo": "not a file", "zero": "not a file", "dir": "is a directory", "dangling": "model not found",
               "empty": "not a TFLite model", "text": "not a TFLite model"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parser_names_the_inconsistency(case):
    with pytest.raises(ModelError) as exc:
        parse_bytes(CASES[case][0](), f"{case}.tflite")
    line = exc.value.one_line()
    assert CASES[case][1].lower() in line.lower(), line
    assert line.startswith(f"{case}.tflite: ") and "\n" not in line


@pytest.mark.parametrize("verb", sorted(VERBS))
@pytest.mark.parametrize("case", sorted(CASES) + sorted(SPECIAL))
def test_every_verb_refuses_with_one_line(case, verb, corpus, tmp_path):
    path = str(corpus / f"{case}.tflite")
    needle = PROFILE_OWN.get(case) if verb == "profile" else None
    needle = needle or SPECIAL.get(case) or CASES[case][1]
    run_hostile(VERBS[verb](path), cwd=tmp_path, code=2, contains=needle, timeout=60)


def test_the_bases_are_sound_and_run(tmp_path):
    """The unedited models parse, and `evaluate` really runs the WHILE one on LiteRT (the checked bytes)."""
    from edgeseq.cli import main

    for build in (_dense, _while, conv_int8_model):
        parse_bytes(build(), "base.tflite")
    path = tmp_path / "while.tflite"
    path.write_bytes(_while())
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(path), "--dataset", "japanese_vowels", "--json"])
    assert exc.value.code == 0
