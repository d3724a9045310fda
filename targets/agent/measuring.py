"""Measuring: sha256 check, load, allocate, first inference, warm-up, the timed loop: `measure()`.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import os
import random
import time

from .document import AgentError, _measurement, _stage, _tensor_info
from .inputs import input_vocab, make_inputs, warm_numpy
from .memory import MemoryMeter
from .runtime import classify_runtime_error, import_runtime, int4_tensors
from .streaming import _stream_measure


def _sha256():
    # The builtin module avoids hashlib's OpenSSL import (~3.5 MB of resident memory on the device).
    for name in ("_sha2", "_sha256"):
        try:
            return __import__(name).sha256()
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.sha256()


def sha256_file(path: str) -> str:
    # 64 KiB chunks stay below glibc's initial mmap threshold (128 KiB). A larger read buffer is mmap'd, and freeing
    # it raises that threshold for good, so the runtime's later allocations pile up on the brk heap instead:
    # 1 MiB chunks cost 0.4-0.9 MB of the peak RSS this agent reports (measured with ai-edge-litert 2.3, glibc 2.36).
    h = _sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def measure(args) -> dict:
    model_path = args.model
    if not os.path.isfile(model_path):
        raise AgentError("model", f"model file not found: {model_path}", stage="check")
    mem = MemoryMeter(os.stat(model_path).st_ino)
    size = os.path.getsize(model_path)
    digest = sha256_file(model_path)
    verified = None
    if args.expect_sha256:
        verified = digest == args.expect_sha256.lower()
        if not verified:
            raise AgentError(
                "checksum",
                f"checksum mismatch for {model_path}: expected {args.expect_sha256[:12]}..., found {digest[:12]}...",
                "the copy on the device is truncated or stale; push it again",
                stage="check",
            )
    with open(model_path, "rb") as fh:
        head = fh.read(8)
    if size < 8 or head[4:8] != b"TFL3":
        raise AgentError(
            "model",
            f"{os.path.basename(model_path)} is not a TFLite flatbuffer (no TFL3 identifier)",
            "pass a .tflite file written by the converter",
            stage="check",
        )

    int4 = int4_tensors(model_path)

    _stage("import")
    t0 = time.perf_counter_ns()
    import numpy as np

    rt_name, rt_version, rt = import_runtime(args.runtime)
    t_import = time.perf_counter_ns() - t0
    if int4 and rt_name == "tflite_runtime":
        raise AgentError(
            "op_unsupported",
            f"{rt_name} {rt_version} cannot run 4-bit weights ({int4} INT4 tensors): its last release (2.14) loads "
            "such a file and computes wrong outputs without an error",
            "install ai-edge-litert on the device (pip install ai-edge-litert), or convert with int8 or dynamic",
            op="INT4 weights",
            stage="load",
        )
    mem.mark("import")
    warm_numpy(np)
    mem.baseline()
    runtime = {
        "name": rt_name,
        "version": rt_version,
        "numpy_version": np.__version__,
        "threads": args.threads,
        "xnnpack": "off" if args.no_xnnpack else "default",
    }
    _RUNTIME_SEEN.update(runtime)

    kwargs = {"model_path": model_path}
    if mem.from_bytes:  # no smaps: nothing file-backed may be the model's (see "memory")
        with open(model_path, "rb") as fh:
            kwargs = {"model_content": fh.read()}
    if args.threads is not None:
        kwargs["num_threads"] = args.threads
    if args.no_xnnpack:
        resolver = getattr(rt, "OpResolverType", None)
        if resolver is None or not hasattr(resolver, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
            raise AgentError(
                "input",
                f"{rt_name} {rt_version} cannot switch XNNPACK off",
                "drop --no-xnnpack",
                stage="load",
            )
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    _stage("load")
    t0 = time.perf_counter_ns()
    try:
        interp = rt.Interpreter(**kwargs)
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), rt_name, rt_version, "load") from None
    t_load = time.perf_counter_ns() - t0
    mem.mark("load")

    _stage("allocate")
    t0 = time.perf_counter_ns()
    try:
        for d in interp.get_input_details():
            sig = d.get("shape_signature")
            if sig is not None and any(int(s) < 0 for s in sig):
                interp.resize_tensor_input(d["index"], [1 if int(s) < 0 else int(s) for s in sig])
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), rt_name, rt_version, "allocate") from None
    t_alloc = time.perf_counter_ns() - t0
    mem.mark("allocate")

    in_details = interp.get_input_details()
    out_details = interp.get_output_details()
    if args.stream:
        model = {"path": model_path, "size_bytes": size, "sha256": digest, "sha256_verified": verified}
        timings = {"import_runtime": t_import, "load": t_load, "allocate": t_alloc}

        def reload():  # a fresh interpreter: how a model with its state inside and no reset signature starts over
            fresh = rt.Interpreter(**kwargs)
            fresh.allocate_tensors()
            return fresh

        held = [interp]
        del interp  # the stepper owns the interpreter from here (and may replace it)
        return _stream_measure(np, held.pop(), args, {"model": model, "runtime": runtime, "timings": timings,
                                                      "mem": mem}, reload)
    rng = random.Random(args.seed)
    # random floats go straight into the input tensors (None here); any other array is the agent's own copy, so it
    # is left out of the model's memory (harness_kb), as its input is under --stream
    arrays = make_inputs(np, in_details, args, rng, interp, in_place=True)
    inputs, harness, arr = [], 0, None
    for i, d in enumerate(in_details):
        arr = arrays[i]
        info = _tensor_info(d, np)
        vocab = input_vocab(np, interp, d, args, len(in_details))
        if vocab:
            info["vocab"] = vocab
        if args.input:
            info["source"] = f"file:{os.path.basename(args.input)}"
        elif vocab:
            info["source"] = "random-ids"
        elif np.issubdtype(np.dtype(d["dtype"]), np.floating):
            info["source"] = f"random-{args.input_dist}"
        else:
            info["source"] = "random-full-range"
        inputs.append(info)
        if arr is not None:
            interp.set_tensor(d["index"], arr)
            harness += arr.nbytes
    del arrays, arr
    mem.harness_kb = harness // 1024

    invoke = interp.invoke
    clock = time.perf_counter_ns
    _stage("first_inference")
    try:
        t0 = clock()
        invoke()
        t_first = clock() - t0
    except Exception as exc:  # noqa: BLE001 - runtimes raise ValueError/RuntimeError with the reason in text
        raise classify_runtime_error(str(exc), rt_name, rt_version, "invoke") from None
    mem.mark("first_invoke")

    deadline = None if not args.max_secs else clock() + int(args.max_secs * 1e9)
    _stage("warmup")
    warm = []
    for _ in range(args.warmup):
        t0 = clock()
        invoke()
        t1 = clock()
        warm.append(t1 - t0)
        if deadline is not None and t1 >= deadline:
            break

    _stage("timed")
    samples = []
    stopped = "runs"
    append = samples.append
    mem.start_timed()
    for _ in range(args.runs):
        t0 = clock()
        invoke()
        t1 = clock()
        append(t1 - t0)
        if deadline is not None and t1 >= deadline:
            stopped = "max_secs"
            break
    for d in out_details:  # read outputs once, so a runtime that defers work cannot skip it
        interp.get_tensor(d["index"])
    mem.finish()
    _stage("done")

    return _measurement(
        model={"path": model_path, "size_bytes": size, "sha256": digest, "sha256_verified": verified},
        runtime=runtime,
        options={
            "runs": args.runs,
            "warmup": args.warmup,
            "max_secs": args.max_secs,
            "threads": args.threads,
            "xnnpack": not args.no_xnnpack,
            "input": os.path.basename(args.input) if args.input else None,
            "input_dist": args.input_dist,
            "seed": args.seed,
        },
        inputs=inputs,
        outputs=[_tensor_info(d, np) for d in out_details],
        timings={
            "import_runtime": t_import,
            "load": t_load,
            "allocate": t_alloc,
            "first_inference": t_first,
            "warmup": warm,
            "invoke": samples,
        },
        stopped=stopped,
        mem=mem,
    )


_RUNTIME_SEEN: dict = {}
