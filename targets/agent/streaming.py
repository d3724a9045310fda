"""Streaming: `--stream` measuring (the stream's frames, the timed loop, the `stream` block); the stepping itself is
`StreamStepper` (stepper module).

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import os
import random
import time

from .document import AgentError, _measurement, _stage, _tensor_info
from .inputs import _check_ids, _random_array, _random_ids, input_vocab
from .runtime import classify_runtime_error
from .stepper import StreamStepper

STREAM_RING = 64  # distinct random steps a stream cycles through (--stream without --input)


def _stream_steps(args, stepper) -> int:
    """How many invokes a stream of random frames runs: --steps, else the KV cache's capacity, else 256."""
    return args.steps or stepper.capacity or 256


def _stream_sequence(np, args, stepper, rng):
    """(T, F) float32 frames: the --input sequence (.npy [T, F] or [1, T, F]) or seeded random frames; for a token-id
    model (T,) ids: the --input ids (.npy [T] or [1, T]) or seeded random ids 0..V-1. With --steps, a file is cut or
    repeated to that many invokes (K frames each, for a model that takes K per invoke)."""
    if stepper.ids:
        return _stream_ids(np, args, stepper, rng)
    k = stepper.frames
    if args.input:
        seq = _load_sequence(np, args.input)
        seq = np.asarray(seq, np.float32)
        if seq.ndim == 3:
            seq = seq[0]
        if seq.ndim != 2 or seq.shape[1] != stepper.features:
            raise AgentError("input", f"--stream wants a [T, {stepper.features}] sequence, the file has "
                             f"{list(seq.shape)}")
        return _fit(np, seq, args.steps * k if args.steps else None)
    steps = _stream_steps(args, stepper)
    # a ring of distinct random invokes, read modulo its length: what the device holds of a live stream is the step
    # at hand, so the agent's own input must not grow with the stream (a 2048-step stream would add 128 KB here)
    return _random_array(np, rng, (min(steps, STREAM_RING) * k, stepper.features), np.dtype(np.float32),
                         args.input_dist)


def _fit(np, seq, frames):
    """The sequence cut or repeated to `frames` frames (as it is when None)."""
    if frames:
        if frames > len(seq):
            seq = np.concatenate([seq] * -(-frames // len(seq)))
        seq = seq[:frames]
    return seq


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
    k = stepper.frames
    if args.input:
        seq = _load_sequence(np, args.input)
        seq = np.asarray(seq)
        if seq.ndim == 2 and seq.shape[0] == 1:
            seq = seq[0]
        if seq.ndim != 1 or not np.issubdtype(seq.dtype, np.integer):
            raise AgentError("input", f"--stream on a token-id model wants a [T] array of integer ids, the file has "
                             f"{seq.dtype} {list(seq.shape)}")
        _check_ids(np, seq, vocab, "x")
        return _fit(np, seq, args.steps * k if args.steps else None).astype(dtype)
    steps = min(_stream_steps(args, stepper), STREAM_RING)  # a ring, as for random features
    if not vocab:
        raise AgentError("input", "cannot tell this token-id model's vocabulary (no Embedding GATHER table found)",
                         "pass --vocab V or --input ids.npy")
    return _random_ids(np, rng, (steps * k,), dtype, vocab)


def _stream_measure(np, interp, args, base: dict, reload=None) -> dict:
    """--stream: feed a sequence invoke by invoke (state carried by the host, or kept inside the model); per-step
    latency (whole step and invoke alone), state bytes, deadline share. The loop does nothing per step but set the
    input (quantized before the loop), invoke, carry the state the host must carry and read the output."""
    _stage("stream_setup")
    stepper = StreamStepper(np, interp, reload)
    del interp  # the stepper owns it: a model reset by a fresh interpreter must not keep the first one alive
    seq = _stream_sequence(np, args, stepper, random.Random(args.seed))
    ring = stepper.load(seq)
    steps = ring if args.input else _stream_steps(args, stepper)
    if stepper.capacity and stepper.mode != "window" and steps > stepper.capacity:
        raise AgentError("input", f"{steps} steps exceed the KV cache's capacity of {stepper.capacity} positions",
                         "pass --steps <= the capacity, or export with a larger --kv-capacity")
    clock = time.perf_counter_ns
    _stage("first_inference")
    try:
        stepper.reset()
        t_first, _ = stepper.step(0, 0)  # a model with its state inside runs its CALL_ONCE initialiser here
        stepper.check_views()
    except AgentError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), base["runtime"]["name"], base["runtime"]["version"], "invoke") from None
    mem = base["mem"]
    mem.mark("first_invoke")
    deadline = None if not args.max_secs else clock() + int(args.max_secs * 1e9)
    _stage("warmup")
    warm, t, step = [], 1, stepper.step
    for _ in range(args.warmup):
        if t == steps:
            stepper.reset()
            t, step = 0, stepper.step
        warm.append(step(t % ring, t)[0])
        t += 1
    _stage("timed")
    stepper.reset()
    step = stepper.step
    total = max(args.runs, steps)
    # the records are preallocated and, with the input sequence, left out of the model's memory (harness_kb)
    step_ns, invoke_ns = np.zeros(total, np.int64), np.zeros(total, np.int64)
    loaded = sum(a.nbytes for a in stepper.xs)
    mem.harness_kb = (seq.nbytes + loaded + step_ns.nbytes + invoke_ns.nbytes) // 1024
    mem.start_timed()
    final, passes, done = None, 0, 0
    stopped = "runs"
    for i in range(total):
        t = i % steps
        if t == 0 and i:
            stepper.reset()
            step = stepper.step
        step_ns[i], invoke_ns[i] = step(t % ring, t)
        done = i + 1
        if t == steps - 1:
            passes += 1
            if final is None:
                final = stepper.output().reshape(-1).tolist()
        if deadline is not None and final is not None and clock() >= deadline:
            stopped = "max_secs"
            break
    mem.finish()
    stepper.release()
    _stage("done")
    step_ns, invoke_ns = step_ns[:done].tolist(), invoke_ns[:done].tolist()
    hop_ns = int(args.hop_ms * 1e6) if args.hop_ms else None
    stream = {
        "mode": stepper.mode,
        "kind": stepper.kind,
        "steps": steps,
        "passes": passes,
        "window": stepper.window,
        "capacity": stepper.capacity,  # KV cache positions, or the window
        "position_input": stepper.pos is not None,
        "frames_per_invoke": stepper.frames,
        "state": stepper.describe(),
        "state_bytes": stepper.state_bytes,
        "state_ops": list(stepper.state_ops),
        "reset": stepper.reset_method,
        "invoke_ns": invoke_ns,
        "hop_ms": args.hop_ms,
        "deadline_met_share": (sum(1 for s in step_ns if s <= hop_ns) / len(step_ns)) if hop_ns else None,
        "real_time_factor": (sum(step_ns) / len(step_ns) / hop_ns) if hop_ns else None,
        "final_output": final,
    }
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
