"""Streaming: `StreamStepper` (state carried by name, KV caches, windows) and `--stream` measuring.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import os
import random
import time

from .document import (
    KIND_KV_CACHE,
    KIND_RECURRENT_STEP,
    KIND_WINDOW,
    AgentError,
    _measurement,
    _stage,
    _tensor_info,
)
from .inputs import _check_ids, _random_array, _random_ids, input_vocab, is_id_input
from .runtime import classify_runtime_error


# Step models (edgeseq convert --stream) follow a naming contract, read from the signature, never from tensor
# order: an input whose name is also an output name is state, fed back from that output on the next step; an output
# named "<input>_at_pos" is one new slot of that input (a KV cache), written at index pos of axis 2; "x" is the
# step's features, "pos" (if present) the step index from 0, "y" the output. A model with one [1, W, F] input and
# no state is the sliding-window baseline: the window shifts by one step and the whole model re-runs. The host's
# validation (edgeseq.quantize.stream) imports StreamStepper from this file, so device and host step alike.
def signature_details(interp) -> tuple:
    """({name: input detail}, {name: output detail}) of the default signature; tensor names when there is none."""
    try:
        sigs = interp.get_signature_list()
    except Exception:  # noqa: BLE001 - old runtimes without signatures
        sigs = {}
    if sigs:
        runner = interp.get_signature_runner(next(iter(sigs)))
        return runner.get_input_details(), runner.get_output_details()

    def short(d):
        name = d["name"].split(":")[0]
        return name[len("serving_default_") :] if name.startswith("serving_default_") else name

    return ({short(d): d for d in interp.get_input_details()}, {short(d): d for d in interp.get_output_details()})


class StreamStepper:
    """One stream through a step model (state carried by name, int8 state requantized) or a window model."""

    def __init__(self, np, interp):
        self.np, self.interp = np, interp
        ins, outs = signature_details(interp)
        self.ins, self.outs = ins, outs
        self.carried = sorted(n for n in ins if n in outs)  # fed back whole
        self.slotted = sorted(n for n in ins if f"{n}_at_pos" in outs)  # KV caches: one new slot written at pos
        self.state = self.carried + self.slotted
        if self.state or "pos" in ins:
            if "x" not in ins or "y" not in outs:
                raise AgentError("input", "a step model needs an input 'x' and an output 'y' in its signature",
                                 "export it with edgeseq convert --stream")
            self.mode = "step"
            self.x = ins["x"]
            self.y = outs["y"]
        else:
            if len(ins) != 1:
                raise AgentError("input", f"--stream needs a step model (state inputs named like outputs) or a "
                                 f"one-input window model; this model has inputs {sorted(ins)}",
                                 "export it with edgeseq convert --stream")
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
        self.ids = is_id_input(np, self.x)  # token ids: one int id per step (x [1], or a window [1, W])
        shape = [int(s) for s in self.x["shape"]]
        self.features = 1 if self.ids else shape[-1]
        self.window = shape[1] if self.mode == "window" else None
        # (output index, input index, name, requantize multiplier or None, (zp_out, zp_in, lo, hi, dtype) or None)
        self.links = []
        for name in self.state:
            i, o = ins[name], outs[name if name in self.carried else f"{name}_at_pos"]
            self.links.append((o["index"], i["index"], name) + self._requant(o, i))
        self._zero = {name: self._zeros(ins[name]) for name in self.state}
        caches = [int(ins[n]["shape"][2]) for n in self.slotted if len(ins[n]["shape"]) == 4]
        self.capacity = min(caches) if caches else self.window
        self.reset()

    def _zeros(self, d):
        np = self.np
        dtype = np.dtype(d["dtype"])
        scale, zero = d.get("quantization") or (0.0, 0)
        fill = zero if (np.issubdtype(dtype, np.integer) and scale) else 0
        return np.full([int(s) for s in d["shape"]], fill, dtype=dtype)

    def _requant(self, out_d, in_d):
        np = self.np
        so, zo = out_d.get("quantization") or (0.0, 0)
        si, zi = in_d.get("quantization") or (0.0, 0)
        dt_in, dt_out = np.dtype(in_d["dtype"]), np.dtype(out_d["dtype"])
        if dt_in == dt_out and (not np.issubdtype(dt_in, np.integer) or (so == si and zo == zi)):
            return (None, None)
        if np.issubdtype(dt_in, np.integer) and np.issubdtype(dt_out, np.integer):
            info = np.iinfo(dt_in)
            return (np.float32(so / si), (zo, zi, info.min, info.max, dt_in))
        return ("convert", (out_d, in_d))

    def _quantize(self, x, d):
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

    @property
    def kind(self) -> str:
        """One of STREAM_KINDS: a window re-run whole, a KV cache (a position input or `<name>_at_pos` outputs), or
        a recurrent step (the state carried whole)."""
        if self.mode == "window":
            return KIND_WINDOW
        if self.slotted or self.pos is not None:
            return KIND_KV_CACHE
        return KIND_RECURRENT_STEP

    @property
    def state_bytes(self) -> int:
        if self.mode == "window":
            return int(self.np.prod(self.x["shape"])) * self.np.dtype(self.x["dtype"]).itemsize
        return int(sum(self._zero[n].nbytes for n in self.state))

    def describe(self) -> list:
        out = []
        for k, name in enumerate(self.state):
            d, link = self.ins[name], self.links[k]
            out.append({"name": name, "shape": [int(s) for s in d["shape"]], "dtype": self.np.dtype(d["dtype"]).name,
                        "bytes": int(self._zero[name].nbytes), "requantized": link[3] is not None,
                        "update": "carry" if name in self.carried else "write_at_pos"})
        return out

    def reset(self) -> None:
        self.t = 0
        self.cache = {name: self._zero[name].copy() for name in self.slotted}
        for name in self.state:
            self.interp.set_tensor(self.ins[name]["index"], self._zero[name])
        if self.mode == "window":
            dtype = self.np.dtype(self.x["dtype"]) if self.ids else self.np.float32
            self.buffer = self.np.zeros([int(s) for s in self.x["shape"]], dtype)

    def prepare(self, x_t):
        """The x tensor for the next step (quantized; for a window model, the shifted window)."""
        if self.mode == "window":
            buf = self.buffer
            buf[0, :-1] = buf[0, 1:]
            buf[0, -1] = x_t
            return self._quantize(buf, self.x)
        return self._quantize(self.np.reshape(x_t, self.x["shape"]), self.x)

    def step(self, x_t, clock=None):
        """Run one step; returns (step_ns, invoke_ns) when `clock` is given. Outputs stay in the interpreter."""
        interp, np = self.interp, self.np
        t0 = clock() if clock else 0
        interp.set_tensor(self.x["index"], self.prepare(x_t))
        if self.pos is not None:
            interp.set_tensor(self.pos["index"], np.full(self.pos["shape"], self.t, dtype=self.pos["dtype"]))
        t1 = clock() if clock else 0
        interp.invoke()
        t2 = clock() if clock else 0
        for out_i, in_i, name, mult, zp in self.links:
            v = interp.get_tensor(out_i)
            if mult == "convert":
                v = self._quantize(self.dequantize(v, zp[0]), zp[1])
            elif mult is not None:
                zo, zi, lo, hi, dt = zp
                v = np.clip(np.round((v.astype(np.float32) - zo) * mult) + zi, lo, hi).astype(dt)
            if name in self.cache:  # a KV cache: write the step's slot at pos, then feed the whole cache
                buf = self.cache[name]
                buf[:, :, self.t] = v[:, :, 0]
                v = buf
            interp.set_tensor(in_i, v)
        self.t += 1
        if clock:
            t3 = clock()
            return t3 - t0, t2 - t1
        return None

    def output(self):
        return self.dequantize(self.interp.get_tensor(self.y["index"]), self.y)

    def hold(self, values) -> None:
        """Set the held (static) inputs, {name: array of the input's shape}, for the steps that follow."""
        for name in self.held:
            if name not in values:
                raise AgentError("input", f"no value for the held input {name!r}", f"give one for each of {self.held}")
            d = self.ins[name]
            self.interp.set_tensor(d["index"], self._quantize(self.np.reshape(values[name], d["shape"]), d))

    def run(self, seq, collect: bool = False, held=None):
        """Feed a whole (T, F) sequence (token ids: (T,)) from a fresh state; the last step's output (or, with
        `collect`, every step's, stacked: what a per-step model's parity compares). `held`: the static inputs."""
        self.reset()
        if held is not None:
            self.hold(held)
        ys = []
        for x_t in seq:
            self.step(x_t)
            if collect:
                ys.append(self.output()[0].copy())
        return self.np.stack(ys) if collect else self.output()[0].copy()


STREAM_RING = 64  # distinct random steps a stream cycles through (--stream without --input)


def _stream_steps(args, stepper) -> int:
    """How long a stream of random steps runs: --steps, else the KV cache's capacity, else 256."""
    return args.steps or stepper.capacity or 256


def _stream_sequence(np, args, stepper, rng):
    """(T, F) float32: the --input sequence (.npy [T, F] or [1, T, F]) or seeded random steps; for a token-id step
    model (T,) ids: the --input ids (.npy [T] or [1, T]) or seeded random ids 0..V-1."""
    if stepper.ids:
        return _stream_ids(np, args, stepper, rng)
    if args.input:
        seq = _load_sequence(np, args.input)
        seq = np.asarray(seq, np.float32)
        if seq.ndim == 3:
            seq = seq[0]
        if seq.ndim != 2 or seq.shape[1] != stepper.features:
            raise AgentError("input", f"--stream wants a [T, {stepper.features}] sequence, the file has "
                             f"{list(seq.shape)}")
        if args.steps:
            if args.steps > len(seq):
                reps = -(-args.steps // len(seq))
                seq = np.concatenate([seq] * reps)
            seq = seq[: args.steps]
        return seq
    steps = _stream_steps(args, stepper)
    # a ring of distinct random steps, read modulo its length: what the device holds of a live stream is the step
    # at hand, so the agent's own input must not grow with the stream (a 2048-step stream would add 128 KB here)
    return _random_array(np, rng, (min(steps, STREAM_RING), stepper.features), np.dtype(np.float32), args.input_dist)


def _load_sequence(np, path: str):
    """The array in a .npy (or the first of an .npz) given to --stream --input; AgentError when unreadable."""
    if not os.path.isfile(path):
        raise AgentError("input", f"input file not found: {path}")
    try:
        seq = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for a bad file
        raise AgentError("input", f"cannot read {path} as .npy: {exc}") from None
    return seq[seq.files[0]] if hasattr(seq, "files") else seq


def _stream_ids(np, args, stepper, rng):
    n_inputs = len(stepper.ins)
    vocab = input_vocab(np, stepper.interp, dict(stepper.x, name="x"), args, n_inputs)
    dtype = np.dtype(stepper.x["dtype"])
    if args.input:
        seq = _load_sequence(np, args.input)
        seq = np.asarray(seq)
        if seq.ndim == 2 and seq.shape[0] == 1:
            seq = seq[0]
        if seq.ndim != 1 or not np.issubdtype(seq.dtype, np.integer):
            raise AgentError("input", f"--stream on a token-id model wants a [T] array of integer ids, the file has "
                             f"{seq.dtype} {list(seq.shape)}")
        _check_ids(np, seq, vocab, "x")
        if args.steps:
            if args.steps > len(seq):
                seq = np.concatenate([seq] * -(-args.steps // len(seq)))
            seq = seq[: args.steps]
        return seq.astype(dtype)
    steps = min(_stream_steps(args, stepper), STREAM_RING)  # a ring, as for random features
    if not vocab:
        raise AgentError("input", "cannot tell this token-id model's vocabulary (no Embedding GATHER table found)",
                         "pass --vocab V or --input ids.npy")
    return _random_ids(np, rng, (steps,), dtype, vocab)


def _stream_measure(np, interp, args, base: dict) -> dict:
    """--stream: feed a sequence step by step, carrying state; per-step latency, state bytes, deadline share."""
    _stage("stream_setup")
    stepper = StreamStepper(np, interp)
    seq = _stream_sequence(np, args, stepper, random.Random(args.seed))
    ring = len(seq)
    steps = len(seq) if args.input else _stream_steps(args, stepper)
    if stepper.pos is not None and stepper.capacity and steps > stepper.capacity:
        raise AgentError("input", f"{steps} steps exceed the KV cache's capacity of {stepper.capacity} positions",
                         "pass --steps <= the capacity, or export with a larger --kv-capacity")
    clock = time.perf_counter_ns
    _stage("first_inference")
    try:
        t_first, _ = stepper.step(seq[0], clock)
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), base["runtime"]["name"], base["runtime"]["version"], "invoke") from None
    mem = base["mem"]
    mem.mark("first_invoke")
    deadline = None if not args.max_secs else clock() + int(args.max_secs * 1e9)
    _stage("warmup")
    warm = []
    for i in range(1, args.warmup + 1):
        warm.append(stepper.step(seq[i % steps % ring], clock)[0])
        if (i + 1) % steps == 0:
            stepper.reset()
    _stage("timed")
    stepper.reset()
    total = max(args.runs, steps)
    # the records are preallocated and, with the input sequence, left out of the model's memory (harness_kb)
    step_ns, invoke_ns = np.zeros(total, np.int64), np.zeros(total, np.int64)
    mem.harness_kb = (seq.nbytes + step_ns.nbytes + invoke_ns.nbytes) // 1024
    mem.start_timed()
    final, passes, done = None, 0, 0
    stopped = "runs"
    for i in range(total):
        t = i % steps
        if t == 0 and i:
            stepper.reset()
        step_ns[i], invoke_ns[i] = stepper.step(seq[t % ring], clock)
        done = i + 1
        if t == steps - 1:
            passes += 1
            if final is None:
                final = stepper.output().reshape(-1).tolist()
        if deadline is not None and clock() >= deadline and final is not None:
            stopped = "max_secs"
            break
    mem.finish()
    _stage("done")
    step_ns, invoke_ns = step_ns[:done].tolist(), invoke_ns[:done].tolist()
    hop_ns = int(args.hop_ms * 1e6) if args.hop_ms else None
    stream = {
        "mode": stepper.mode,
        "kind": stepper.kind,
        "steps": steps,
        "passes": passes,
        "window": stepper.window,
        "capacity": None,  # KV cache positions, or the window
        "position_input": stepper.pos is not None,
        "state": stepper.describe(),
        "state_bytes": stepper.state_bytes,
        "invoke_ns": invoke_ns,
        "hop_ms": args.hop_ms,
        "deadline_met_share": (sum(1 for s in step_ns if s <= hop_ns) / len(step_ns)) if hop_ns else None,
        "real_time_factor": (sum(step_ns) / len(step_ns) / hop_ns) if hop_ns else None,
        "final_output": final,
    }
    stream["capacity"] = stepper.capacity
    inputs = []
    for name, d in sorted(stepper.ins.items()):
        info = _tensor_info(d, np)
        info["name"] = name
        info["source"] = ("state" if name in stepper.state else "position" if name == "pos"
                          else f"file:{os.path.basename(args.input)}" if args.input
                          else "random-ids" if stepper.ids else f"random-{args.input_dist}")
        inputs.append(info)
    outputs = []
    for name, d in sorted(stepper.outs.items()):
        info = _tensor_info(d, np)
        info["name"] = name
        outputs.append(info)
    return _measurement(
        model=base["model"],
        runtime=base["runtime"],
        options={
            "runs": args.runs, "warmup": args.warmup, "max_secs": args.max_secs, "threads": args.threads,
            "xnnpack": not args.no_xnnpack, "input": os.path.basename(args.input) if args.input else None,
            "input_dist": args.input_dist, "seed": args.seed, "stream": True, "steps": args.steps,
            "hop_ms": args.hop_ms,
        },
        inputs=inputs,
        outputs=outputs,
        timings={**base["timings"], "first_inference": t_first, "warmup": warm, "invoke": step_ns},
        stopped=stopped,
        mem=mem,
        stream=stream,
    )
