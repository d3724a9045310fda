"""State inside: a host-carried step .tflite rewritten so that its state lives in resource variables (conversion child
only: it edits through TF's schema object API, `quantize/tflite/edit.py`).

    data, record = internalize(step_tflite_bytes)      # what `edgeseq convert --stream --state internal` writes

The step model edgeseq exports carries its state through the host by a naming contract (edgeseq.models.streaming):
an input whose name is also an output name is state, an output `<input>_at_pos` is one new KV-cache slot written at
index `pos` of axis 2, `pos` counts the steps. `internalize` keeps every op of that graph and moves the contract into
the graph itself, the way kws_streaming's internal-state mode and microWakeWord's models hold it:

- one resource variable per state tensor (shared name = the state's name) and one int32 `pos` counter where the
  graph has a position input, created by VAR_HANDLE and read by READ_VARIABLE into the very tensor that was the
  input (so every consumer reads what it read before);
- at the end of the graph ASSIGN_VARIABLE writes the state output back; a KV slot is written with
  DYNAMIC_UPDATE_SLICE at [0, 0, pos, 0] into the cache it was read from, and pos becomes pos + 1;
- CALL_ONCE (op 0) runs an initialiser subgraph that assigns every variable its zero state (the tensor's own zero
  point for an integer state; zeros of 1 KB or more are a FILL op rather than bytes in the file); the same subgraph
  is the file's `reset` signature: invoking it starts a new stream (neither `reset_all_variables` nor
  `allocate_tensors` resets resource variables; re-creating the interpreter does);
- the signature keeps `x` and `y` (and nothing else): a device writes the input, invokes, reads the output.

An int8 state whose output scale differs from its input's (the converter calibrates them apart) is requantized in
the graph by a QUANTIZE op before it is written back (`requantize_in_graph`, which the host-carried export gets too,
so that the host copies state bytes as they are instead of requantizing them in Python).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.core.errors import ConversionError
from edgeseq.quantize.tflite.edit import _NP, _const, _fb, _opcode_index, dump, fill_op, load, type_name

RESET_SIGNATURE = "reset"
FILL_MIN_BYTES = 1024  # smaller zero states are constants in the initialiser; larger ones a FILL op
_VERSIONS = {"QUANTIZE": 2, "MUL": 1, "ADD": 1, "DYNAMIC_UPDATE_SLICE": 1, "VAR_HANDLE": 1, "READ_VARIABLE": 1,
             "ASSIGN_VARIABLE": 1, "CALL_ONCE": 1}


def _name(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _quant(t: Any) -> tuple:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return ()
    return (tuple(float(s) for s in q.scale), tuple(int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [])))


def _tensor(sg: Any, name: str, shape, ttype: int, quantization: Any = None) -> int:
    fb = _fb()
    t = fb.TensorT()
    t.shape, t.type, t.buffer, t.quantization, t.name = np.asarray(shape, np.int32), ttype, 0, quantization, name.encode()
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _op(model: Any, name: str, inputs, outputs, options_type: str | None = None, options: Any = None) -> Any:
    fb = _fb()
    op = fb.OperatorT()
    op.opcodeIndex = _opcode_index(model, getattr(fb.BuiltinOperator, name), _VERSIONS.get(name, 1))
    op.inputs, op.outputs = np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
    if options_type is not None:
        op.builtinOptionsType, op.builtinOptions = getattr(fb.BuiltinOptions, options_type), options
    return op


def _handle(model: Any, sg: Any, name: str) -> tuple[Any, int]:
    """A VAR_HANDLE op for the variable `name` and its RESOURCE tensor."""
    fb = _fb()
    res = _tensor(sg, f"{name}_handle", [], fb.TensorType.RESOURCE)
    opts = fb.VarHandleOptionsT()
    opts.container, opts.sharedName = b"", name.encode()
    return _op(model, "VAR_HANDLE", [], [res], "VarHandleOptions", opts), res


def _contract(model: Any) -> tuple[Any, Any, dict, dict, list, list]:
    """(main subgraph, its signature, {input name: tensor}, {output name: tensor}, carried names, KV names)."""
    if not model.signatureDefs:
        raise ConversionError("the step model has no signature: its state cannot be found by name")
    sig = model.signatureDefs[0]
    sg = model.subgraphs[sig.subgraphIndex]
    ins = {_name(m.name): int(m.tensorIndex) for m in sig.inputs}
    outs = {_name(m.name): int(m.tensorIndex) for m in sig.outputs}
    carried = sorted(n for n in ins if n in outs)
    slotted = sorted(n for n in ins if f"{n}_at_pos" in outs)
    return sg, sig, ins, outs, carried, slotted


def _retarget(sg: Any, sig: Any, name: str, old: int, new: int) -> None:
    sg.outputs = np.asarray([new if int(i) == old else int(i) for i in sg.outputs], np.int32)
    for m in sig.outputs:
        if _name(m.name) == name:
            m.tensorIndex = new


def requantize_in_graph(model: Any) -> list[str]:
    """A QUANTIZE op (int8 -> int8 at the input's scale) after each state output whose quantization differs from its
    input's; the signature then names the requantized tensor. Returns the states requantized."""
    sg, sig, ins, outs, carried, slotted = _contract(model)
    done = []
    for name in carried + slotted:
        out_name = name if name in carried else f"{name}_at_pos"
        src, dst = sg.tensors[outs[out_name]], sg.tensors[ins[name]]
        if src.type != dst.type or type_name(dst.type) not in ("INT8", "INT16", "UINT8") or _quant(src) == _quant(dst):
            continue
        q = _tensor(sg, f"{out_name}_requantized", list(src.shape), dst.type, dst.quantization)
        sg.operators.append(_op(model, "QUANTIZE", [outs[out_name]], [q], "QuantizeOptions", _fb().QuantizeOptionsT()))
        _retarget(sg, sig, out_name, outs[out_name], q)
        done.append(name)
    return done


def _zero_value(t: Any) -> int | float:
    q = _quant(t)
    return int(q[1][0]) if q and q[1] and type_name(t.type).startswith(("INT", "UINT")) else 0


def internalize(data: bytes) -> tuple[bytes, dict]:
    """The step model with its state inside (see the module docstring); returns (file, record for the manifest)."""
    fb = _fb()
    model = load(data)
    requantized = requantize_in_graph(model)
    sg, sig, ins, outs, carried, slotted = _contract(model)
    pos = ins.get("pos")
    if not carried and not slotted:
        raise ConversionError("the step model carries no state (no input named like an output): nothing to move "
                              "inside")
    names = carried + slotted + (["pos"] if pos is not None else [])
    # the initialiser (and reset signature): every variable assigned its zero state
    init = fb.SubGraphT()
    init.tensors, init.inputs, init.outputs, init.operators, init.name = [], np.zeros(0, np.int32), np.zeros(
        0, np.int32), [], b"init_state"
    model.subgraphs.append(init)
    init_index = len(model.subgraphs) - 1
    state = []
    for name in names:
        t = sg.tensors[ins[name]]
        tname = type_name(t.type)
        if tname not in _NP:
            raise ConversionError(f"state {name!r} is {tname}: edgeseq keeps float32, int8, int16 and int32 state")
        shape = [int(s) for s in t.shape]
        handle_op, res = _handle(model, init, name)
        zero = np.full(shape, _zero_value(t), _NP[tname])
        if zero.nbytes >= FILL_MIN_BYTES:
            value = _tensor(init, f"{name}_zero", shape, t.type, t.quantization)
            ops = [handle_op, fill_op(model, init, value, zero.flat[0].item())]
        else:
            value = _const(model, init, zero, t.type, t.quantization, f"{name}_zero")
            ops = [handle_op]
        init.operators += ops + [_op(model, "ASSIGN_VARIABLE", [res, value], [])]
        state.append({"name": name, "shape": shape, "dtype": tname.lower(), "bytes": int(zero.nbytes),
                      "update": "write_at_pos" if name in slotted else "counter" if name == "pos" else "carry"})
    # main: read every variable into the tensor that was its input, write it back at the end
    opts = fb.CallOnceOptionsT()
    opts.initSubgraphIndex = init_index
    head, tail, handles = [_op(model, "CALL_ONCE", [], [], "CallOnceOptions", opts)], [], {}
    for name in names:
        handle_op, res = _handle(model, sg, name)
        handles[name] = res
        head += [handle_op, _op(model, "READ_VARIABLE", [res], [ins[name]])]
        sg.tensors[ins[name]].name = name.encode()  # the value read is named as the state (agents report it so)
    for name in carried:
        tail.append(_op(model, "ASSIGN_VARIABLE", [handles[name], outs[name]], []))
    if slotted:
        if pos is None:
            raise ConversionError("a KV-cache step model without a 'pos' input: the slot to write is unknown")
        axis = _const(model, sg, np.asarray([0, 0, 1, 0], np.int32), fb.TensorType.INT32, None, "kv_slot_axis")
        at = _tensor(sg, "kv_slot_index", [4], fb.TensorType.INT32)
        tail.append(_op(model, "MUL", [pos, axis], [at], "MulOptions", fb.MulOptionsT()))
        for name in slotted:
            cache = sg.tensors[ins[name]]
            new = _tensor(sg, f"{name}_updated", list(cache.shape), cache.type, cache.quantization)
            tail += [_op(model, "DYNAMIC_UPDATE_SLICE", [ins[name], outs[f"{name}_at_pos"], at], [new],
                         "DynamicUpdateSliceOptions", fb.DynamicUpdateSliceOptionsT()),
                     _op(model, "ASSIGN_VARIABLE", [handles[name], new], [])]
    if pos is not None:
        one = _const(model, sg, np.ones([int(s) for s in sg.tensors[pos].shape], np.int32), fb.TensorType.INT32, None,
                     "pos_one")
        nxt = _tensor(sg, "pos_next", list(sg.tensors[pos].shape), fb.TensorType.INT32)
        tail += [_op(model, "ADD", [pos, one], [nxt], "AddOptions", fb.AddOptionsT()),
                 _op(model, "ASSIGN_VARIABLE", [handles["pos"], nxt], [])]
    sg.operators = head + list(sg.operators) + tail
    # the contract leaves the signature: x in, y out
    gone_in = {ins[n] for n in names}
    gone_out = {outs[n] for n in carried} | {outs[f"{n}_at_pos"] for n in slotted}
    sg.inputs = np.asarray([int(i) for i in sg.inputs if int(i) not in gone_in], np.int32)
    sg.outputs = np.asarray([int(i) for i in sg.outputs if int(i) not in gone_out], np.int32)
    sig.inputs = [m for m in sig.inputs if int(m.tensorIndex) not in gone_in]
    sig.outputs = [m for m in sig.outputs if int(m.tensorIndex) not in gone_out]
    reset = fb.SignatureDefT()
    reset.signatureKey, reset.subgraphIndex, reset.inputs, reset.outputs = RESET_SIGNATURE.encode(), init_index, [], []
    model.signatureDefs.append(reset)
    record = {"variables": state, "state_bytes": int(sum(s["bytes"] for s in state)),  # as an agent counts them
              "init": f"CALL_ONCE runs subgraph {init_index} (every variable set to its zero state) on the first "
                      "invoke",
              "reset": {"signature": RESET_SIGNATURE,
                        "how": f"invoke the '{RESET_SIGNATURE}' signature (or load the model afresh) before a new "
                               "stream; reset_all_variables() and allocate_tensors() leave resource variables as "
                               "they are"},
              "requantized_in_graph": requantized}
    return dump(model), record
