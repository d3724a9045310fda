"""`StreamStepper`: one stream through a streaming .tflite, with nothing per step but set input, invoke, read output.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only.

Four forms, told apart from the model itself (signature names and ops), never from a file name:
- state carried by the host (`recurrent-step`): every input whose name is also an output name is state, fed back
  from that output on the next step;
- KV cache (`kv-cache`): an output named `<input>_at_pos` is one new slot of that input, written at index `pos` of
  its axis 2; `pos` (if present) is the step index from 0;
- state inside (`internal-state`): the model keeps its state in resource variables (VAR_HANDLE / READ_VARIABLE /
  ASSIGN_VARIABLE, initialised by CALL_ONCE), as edgeseq's `--state internal` exports, kws_streaming's internal
  state mode and microWakeWord write them: no state inputs; frames per invoke come from the input shape ([1, K, F]:
  K frames, [1, F]: one); reset by the file's `reset` signature, or else by a fresh interpreter (neither
  `reset_all_variables` nor `allocate_tensors` resets resource variables);
- window (`window`): one [1, W, F] input and no state: the window shifts by one step and the whole model re-runs.

How a step stays cheap: the input sequence is quantized once, before the loop, into one array per invoke; the
stepper holds numpy views of the interpreter's input and output buffers and calls the runtime's own `Invoke` (the
public `invoke()` refuses to run while such views exist, and costs a reference-count check besides), so a step is
one copy into the input, the invoke, one copy per carried state (a KV cache: one slot) and one copy of the output.
Static step models keep their buffers where allocation put them; the views are re-taken on every reset and their
addresses checked after the first invoke (`check_views`). A state whose output scale differs from its input's (an
int8 file from an older export) is requantized through a 256-entry table, or in numpy for wider types: that is the
only quantization left in the loop, and edgeseq's own exports requantize in the graph instead.
"""

from __future__ import annotations

from .document import KIND_INTERNAL, KIND_KV_CACHE, KIND_RECURRENT_STEP, KIND_WINDOW, AgentError
from .inputs import is_id_input

STATE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")
RESET_SIGNATURE = "reset"


def signature_details(interp) -> tuple:
    """({name: input detail}, {name: output detail}) of the default signature; tensor names when there is none."""
    try:
        sigs = interp.get_signature_list()
    except Exception:  # noqa: BLE001 - old runtimes without signatures
        sigs = {}
    keys = [k for k in sigs if k != RESET_SIGNATURE]
    if keys:
        runner = interp.get_signature_runner(keys[0])
        ins, outs = runner.get_input_details(), runner.get_output_details()
        del runner  # a live runner holds the interpreter: the public invoke() would refuse to run
        return ins, outs

    def short(d):
        name = d["name"].split(":")[0]
        return name[len("serving_default_") :] if name.startswith("serving_default_") else name

    return ({short(d): d for d in interp.get_input_details()}, {short(d): d for d in interp.get_output_details()})


def resource_state(np, interp) -> tuple:
    """(state ops present, [{name, shape, dtype, bytes}] of each variable the main graph reads) of a model that keeps
    its state in resource variables; ((), []) for any other. The variables are told by the READ_VARIABLE outputs
    (one per variable handle), named as the file names them."""
    try:
        ops = interp._get_ops_details()
        tensors = {int(d["index"]): d for d in interp.get_tensor_details()}
    except Exception:  # noqa: BLE001 - a runtime without op details: no state inside can be told
        return (), []
    present = tuple(sorted({o["op_name"] for o in ops if o.get("op_name") in STATE_OPS}))
    seen, state = set(), []
    for o in ops:
        if o.get("op_name") != "READ_VARIABLE" or len(o.get("inputs", ())) < 1 or len(o.get("outputs", ())) < 1:
            continue
        handle, out = int(o["inputs"][0]), int(o["outputs"][0])
        if handle in seen or out not in tensors:
            continue
        seen.add(handle)
        d = tensors[out]
        shape = [int(s) for s in d["shape"]]
        dtype = np.dtype(d["dtype"])
        state.append({"name": d["name"].split(":")[0], "shape": shape, "dtype": dtype.name,
                      "bytes": int(np.prod(shape)) * dtype.itemsize if shape else dtype.itemsize,
                      "update": "inside"})
    return present, state


def _bytes(a):
    """A flat byte view of a C-contiguous array: `dst[:] = src` between two of these is one memcpy, about half the
    cost of numpy's own assignment for the small tensors a step moves."""
    return memoryview(a).cast("B")


class StreamStepper:
    """One stream through a step model (state carried by name, KV slots written at pos), a model that keeps its state
    inside (resource variables) or a window model. `reload()` (optional) gives a fresh allocated interpreter of the
    same file: how a model with state inside and no reset signature is reset."""

    def __init__(self, np, interp, reload=None):
        self.np, self.interp, self._reload = np, interp, reload
        ins, outs = signature_details(interp)
        self.ins, self.outs = ins, outs
        self.carried = sorted(n for n in ins if n in outs)  # fed back whole
        self.slotted = sorted(n for n in ins if f"{n}_at_pos" in outs)  # KV caches: one new slot written at pos
        self.state = self.carried + self.slotted
        self.state_ops, self.inside = (), []
        if not self.state and "pos" not in ins:
            self.state_ops, self.inside = resource_state(np, interp)
        try:
            self.reset_signature = RESET_SIGNATURE in interp.get_signature_list()
        except Exception:  # noqa: BLE001 - old runtimes without signatures
            self.reset_signature = False
        self.frames = 1  # frames per invoke
        if self.state or "pos" in ins:
            if "x" not in ins or "y" not in outs:
                raise AgentError("input", "a step model needs an input 'x' and an output 'y' in its signature",
                                 "export it with edgeseq convert --stream")
            self.mode, self.x, self.y = "step", ins["x"], outs["y"]
        elif self.state_ops:
            if len(ins) != 1 and "x" not in ins:
                raise AgentError("input", f"a model with its state inside takes one input (or one named 'x'); this "
                                 f"one takes {sorted(ins)}")
            self.mode = "internal"
            self.x = ins["x"] if "x" in ins else next(iter(ins.values()))
            self.y = outs.get("y") or next(iter(outs.values()))
        else:
            if len(ins) != 1:
                raise AgentError("input", f"--stream needs a step model (state inputs named like outputs), a model "
                                 f"with its state inside (resource variables) or a one-input window model; this "
                                 f"model has inputs {sorted(ins)}", "export it with edgeseq convert --stream")
            self.mode = "window"
            self.x = next(iter(ins.values()))
            self.y = outs.get("y") or next(iter(outs.values()))
            if len(self.x["shape"]) != (2 if is_id_input(np, self.x) else 3):
                raise AgentError("input", f"a window model takes [1, W, F] (or token ids [1, W]); this one takes "
                                 f"{list(self.x['shape'])}")
        self.pos = ins.get("pos")
        # any other input is held: static features, the same at every step of a stream (zeros until `hold`)
        self.held = sorted(n for n in ins if n not in ("x", "pos") and n not in self.state) if self.mode == "step" \
            else []
        for name in self.held:
            interp.set_tensor(ins[name]["index"], self._zeros(ins[name]))
        self.ids = is_id_input(np, self.x)  # token ids: one int id per frame
        shape = [int(s) for s in self.x["shape"]]
        if self.mode != "window":  # [1, F]: one frame per invoke; [1, K, F]: K (token ids: [1] or [1, K])
            if len(shape) == (2 if self.ids else 3):
                self.frames = shape[1]
            elif len(shape) != (1 if self.ids else 2):
                raise AgentError("input", f"a step model takes [1, F] or [1, K, F] frames (token ids: [1] or "
                                 f"[1, K]); this one takes {shape}")
        self.features = 1 if self.ids else shape[-1]
        self.window = shape[1] if self.mode == "window" else None
        self._zero = {name: self._zeros(ins[name]) for name in self.state}
        caches = [int(ins[n]["shape"][2]) for n in self.slotted if len(ins[n]["shape"]) == 4]
        caches += [int(s["shape"][2]) for s in self.inside
                   if s["name"].startswith(("k_cache_", "v_cache_")) and len(s["shape"]) == 4]
        self.capacity = min(caches) if caches else self.window
        self.requantized = {name: self._requant(outs[name if name in self.carried else f"{name}_at_pos"], ins[name])
                            for name in self.state}
        self.xs, self.t, self._views = [], 0, None

    # ---------------------------------------------------------------------------------------------- quantization
    def _zeros(self, d):
        np = self.np
        dtype = np.dtype(d["dtype"])
        scale, zero = d.get("quantization") or (0.0, 0)
        fill = zero if (np.issubdtype(dtype, np.integer) and scale) else 0
        return np.full([int(s) for s in d["shape"]], fill, dtype=dtype)

    def _requant(self, out_d, in_d):
        """None when the output can be copied into the input as it is; else a function(src, dst) doing the rest."""
        np = self.np
        so, zo = out_d.get("quantization") or (0.0, 0)
        si, zi = in_d.get("quantization") or (0.0, 0)
        dt_in, dt_out = np.dtype(in_d["dtype"]), np.dtype(out_d["dtype"])
        if dt_in == dt_out and (not np.issubdtype(dt_in, np.integer) or (so == si and zo == zi)):
            return None
        if np.issubdtype(dt_in, np.integer) and np.issubdtype(dt_out, np.integer):
            info = np.iinfo(dt_in)
            if dt_out.itemsize == 1:  # every value the output can hold, requantized once: a 256-entry table
                codes = np.arange(np.iinfo(dt_out).min, np.iinfo(dt_out).max + 1, dtype=np.float32)
                table = np.clip(np.round((codes - zo) * np.float32(so / si)) + zi, info.min, info.max).astype(dt_in)
                table = np.roll(table, -(np.iinfo(dt_out).min % 256))  # indexed by the output's bits as uint8
                return lambda src, dst: dst.__setitem__(Ellipsis, table[src.view(np.uint8)])
            mult = np.float32(so / si)
            return lambda src, dst: np.copyto(
                dst, np.clip(np.round((src.astype(np.float32) - zo) * mult) + zi, info.min, info.max), casting="unsafe")
        return lambda src, dst: np.copyto(dst, self.quantize(self.dequantize(src, out_d), in_d), casting="unsafe")

    def quantize(self, x, d):
        np = self.np
        dtype = np.dtype(d["dtype"])
        scale, zero = d.get("quantization") or (0.0, 0)
        if not np.issubdtype(dtype, np.integer) or not scale:  # floats, and integers as they are (token ids)
            return np.asarray(x).astype(dtype, copy=False)
        info = np.iinfo(dtype)
        return np.clip(np.round(np.asarray(x, np.float32) / scale + zero), info.min, info.max).astype(dtype)

    def dequantize(self, y, d):
        np = self.np
        scale, zero = d.get("quantization") or (0.0, 0)
        if np.issubdtype(y.dtype, np.integer) and scale:
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32)

    # ---------------------------------------------------------------------------------------------- what it is
    @property
    def kind(self) -> str:
        """One of STREAM_KINDS: a window re-run whole, a KV cache (a position input or `<name>_at_pos` outputs), state
        inside the model (resource variables), or a recurrent step (the state carried whole)."""
        if self.mode == "window":
            return KIND_WINDOW
        if self.mode == "internal":
            return KIND_INTERNAL
        if self.slotted or self.pos is not None:
            return KIND_KV_CACHE
        return KIND_RECURRENT_STEP

    @property
    def state_bytes(self) -> int:
        """Bytes of state: carried by the host (step), kept inside (internal), the window itself (window)."""
        if self.mode == "window":
            return int(self.np.prod(self.x["shape"])) * self.np.dtype(self.x["dtype"]).itemsize
        if self.mode == "internal":
            return int(sum(s["bytes"] for s in self.inside))
        return int(sum(self._zero[n].nbytes for n in self.state))

    @property
    def reset_method(self) -> str | None:
        """How the state is reset between streams: written by the host (zeros), the `reset` signature, or a fresh
        interpreter ("reload")."""
        if self.mode != "internal":
            return "host"
        return "signature" if self.reset_signature else "reload"

    def describe(self) -> list:
        if self.mode == "internal":
            return [dict(s) for s in self.inside]
        out = []
        for name in self.state:
            d = self.ins[name]
            out.append({"name": name, "shape": [int(s) for s in d["shape"]], "dtype": self.np.dtype(d["dtype"]).name,
                        "bytes": int(self._zero[name].nbytes), "requantized": self.requantized[name] is not None,
                        "update": "carry" if name in self.carried else "write_at_pos"})
        return out

    # ---------------------------------------------------------------------------------------------- the stream
    def load(self, seq) -> int:
        """Quantize a stream once, before it runs: (T, F) frames (token ids: (T,)) -> one input array per invoke
        (frames per invoke K: T // K invokes; a window model: one frame per step). Returns the invokes loaded."""
        np = self.np
        seq = np.asarray(seq)
        if self.mode == "window":
            q = self.quantize(seq.reshape(len(seq), *([] if self.ids else [self.features])), self.x)
            self.xs = list(np.ascontiguousarray(q))
            if self._views is not None:
                self.step = self._make_step()
            return len(self.xs)
        n = len(seq) // self.frames
        if n < 1:
            raise AgentError("input", f"the stream has {len(seq)} frames; this model takes {self.frames} per invoke")
        q = self.quantize(seq[: n * self.frames].reshape(n, *[int(s) for s in self.x["shape"]]), self.x)
        self.xs = [_bytes(a) for a in np.ascontiguousarray(q)]
        if self._views is not None:
            self.step = self._make_step()
        return n

    def _bind(self) -> None:
        """Views of the interpreter's buffers (re-taken after every reset: a fresh interpreter has new ones)."""
        np, interp = self.np, self.interp
        raw = getattr(interp, "_interpreter", None)
        self.invoke = getattr(raw, "Invoke", None)
        if self.invoke is None:
            raise AgentError("runtime_missing", "this TFLite runtime has no raw Invoke (ai_edge_litert and "
                             "tflite_runtime have)", "pip install ai-edge-litert")

        def view(d):
            return interp.tensor(d["index"])()

        self.xv, self.yv = view(self.x), view(self.y)
        self.yb = np.empty_like(self.yv)
        self.posv = view(self.pos) if self.pos is not None else None
        self.xm, self.ym, self.ybm = _bytes(self.xv), _bytes(self.yv), _bytes(self.yb)
        copies, slots, slow = [], [], []
        for name in self.state:
            src = view(self.outs[name if name in self.carried else f"{name}_at_pos"])
            dst = view(self.ins[name])
            fn = self.requantized[name]
            if name in self.slotted:  # cache slot t along axis 2: dst[t] after moving that axis first
                slots.append((np.moveaxis(dst, 2, 0), src[:, :, 0], fn, self._zero[name].flat[0]))
            elif fn is None:
                copies.append((_bytes(dst), _bytes(src)))
            else:
                slow.append((src, dst, fn))
        self.copies, self.slots, self.slow = tuple(copies), tuple(slots), tuple(slow)
        if self.mode == "window":
            shape = [2 * self.window] + ([] if self.ids else [self.features])
            self.ring = np.zeros(shape, self.xv.dtype)
        self._views = [self.xv, self.yv]
        self.step = self._make_step()

    def check_views(self) -> None:
        """The held views still point at the interpreter's buffers (after an invoke); AgentError if one moved."""
        for held, d in ((self.xv, self.x), (self.yv, self.y)):
            if self.interp.tensor(d["index"])().ctypes.data != held.ctypes.data:
                raise AgentError("model", f"the runtime moved tensor {d['name']!r} during invoke (a dynamic tensor): "
                                 "the agent cannot step this model through views of its buffers")

    def release(self) -> None:
        """Drop every view, so the interpreter's public calls (invoke, allocate_tensors) work again."""
        self._views = None
        self.xv = self.yv = self.posv = self.ring = self.xm = self.ym = self.ybm = None
        self.copies = self.slots = self.slow = ()
        self.step = None

    def reset(self) -> None:
        """A fresh stream: state zeroed (host), reset signature or a fresh interpreter (inside), window emptied."""
        self.t = 0
        if self.mode == "internal" and self._views is not None:
            if self.reset_signature:
                self.interp.get_signature_runner(RESET_SIGNATURE)()
            elif self._reload is not None:
                self.release()
                self.interp = self._reload()
            else:
                raise AgentError("input", "this model keeps its state inside and has no reset signature; the "
                                 "stepper was given no way to load it afresh")
        if self._views is None:
            self._bind()
        for name in self.carried:
            self.interp.tensor(self.ins[name]["index"])()[...] = self._zero[name]
        for cache, _, _, zero in self.slots:
            cache[...] = zero
        if self.mode == "window":
            self.ring[...] = 0
            self.xv[...] = 0

    def _make_step(self):
        """step(i, t) -> (step_ns, invoke_ns): input number i of the loaded stream at position t; the output is read
        into `self.yb`. One closure per form, so nothing in it tests what the model is."""
        from time import perf_counter_ns as clock

        xs, xv, invoke = self.xs, self.xv, self.invoke
        xm, ym, ybm = self.xm, self.ym, self.ybm  # flat byte views: a slice assignment is one memcpy
        if self.mode == "internal":
            def step(i, t):
                t0 = clock()
                xm[:] = xs[i]
                t1 = clock()
                invoke()
                t2 = clock()
                ybm[:] = ym
                t3 = clock()
                return t3 - t0, t2 - t1
        elif self.mode == "window":
            ring, w = self.ring, self.window

            def step(i, t):
                t0 = clock()
                s = t % w
                ring[s] = ring[s + w] = xs[i]
                xv[0] = ring[s + 1 : s + 1 + w]
                t1 = clock()
                invoke()
                t2 = clock()
                ybm[:] = ym
                t3 = clock()
                return t3 - t0, t2 - t1
        elif not self.slots and not self.slow and self.posv is None:  # recurrent state, carried whole
            copies = self.copies

            def step(i, t):
                t0 = clock()
                xm[:] = xs[i]
                t1 = clock()
                invoke()
                t2 = clock()
                for dst, src in copies:
                    dst[:] = src
                ybm[:] = ym
                t3 = clock()
                return t3 - t0, t2 - t1
        else:
            copies, slots, slow, posv = self.copies, self.slots, self.slow, self.posv

            def step(i, t):
                t0 = clock()
                xm[:] = xs[i]
                if posv is not None:
                    posv[...] = t
                t1 = clock()
                invoke()
                t2 = clock()
                for dst, src in copies:
                    dst[:] = src
                for cache, slot, fn, _ in slots:
                    if fn is None:
                        cache[t] = slot
                    else:
                        fn(slot, cache[t])
                for src, dst, fn in slow:
                    fn(src, dst)
                ybm[:] = ym
                t3 = clock()
                return t3 - t0, t2 - t1
        return step

    def output(self):
        """The last step's output, dequantized (a copy)."""
        return self.dequantize(self.yb, self.y)

    def hold(self, values) -> None:
        """Set the held (static) inputs, {name: array of the input's shape}, for the steps that follow."""
        for name in self.held:
            if name not in values:
                raise AgentError("input", f"no value for the held input {name!r}", f"give one for each of {self.held}")
            d = self.ins[name]
            self.interp.set_tensor(d["index"], self.quantize(self.np.reshape(values[name], d["shape"]), d))

    def run(self, seq, collect: bool = False, held=None):
        """Feed a whole (T, F) sequence (token ids: (T,)) from a fresh state; the last invoke's output (or, with
        `collect`, every invoke's, stacked: what a per-step model's parity compares; a model that takes K frames per
        invoke and gives K outputs gives them all, in order). `held`: the static inputs, set after the reset."""
        np = self.np
        n = self.load(seq)
        self.reset()
        if held is not None:
            self.hold(held)
        ys = []
        step = self.step
        for i in range(n):
            step(i, i)
            if collect:
                ys.append(self.output()[0])
        if not collect:
            return self.output()[0]
        if self.frames > 1 and ys and ys[0].ndim >= 2 and ys[0].shape[0] == self.frames:
            return np.concatenate(ys)
        return np.stack(ys)
