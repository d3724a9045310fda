"""Per-op time: `measure_ops()`, `--ops`, each op of the model timed as one-op models fed real tensors.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import json
import os
import random
import time

from .document import AgentError, _stage
from .inputs import make_inputs
from .runtime import import_runtime

# `--ops PACK` (edgeseq profile --ops) times every op on its own, after the whole-model measurement (whose figures it
# leaves alone). PACK is a zip the host cut from this model (edgeseq.quantize.op_slices): per op one model holding
# the op once and one holding it R times side by side. What to feed them comes from one full invoke with the run's
# inputs on the builtin kernels with every tensor kept (XNNPACK keeps its partitions' tensors to itself); a WHILE
# loop's cond and body run as models of their own from the loop's first state: once to count the trips N, then again
# to trip N // 2, whose tensors feed the loop's ops. The middle trip, not the first: a converter writes a layer's
# output sequence by slicing the sequence around step i and concatenating, so at trip 0 the prefix is empty (shape
# [0, ...], which LiteRT's get_tensor refuses: "Invalid tensor size"), and an op whose work grows with i costs, on
# average over the trips, what it costs at the middle one. An empty tensor is read as an empty array; a tensor that
# cannot be read at all leaves the ops it feeds with an error naming it, never the whole route. An op's time per call is (T_R - T_1) / (R - 1), from the medians of alternating blocks
# of invokes of the two models, so the invoke's fixed cost (Python, interpreter, a delegate's entry) cancels.
# A model with its state in resource variables: CALL_ONCE's initialiser comes as a whole model ("init"), timed on
# fresh interpreters' first invokes (what the real model's first invoke pays once: variables created and zeroed);
# it is called 0 times per invoke after the first, so it reports `once_ns` and op_ns 0.
OPS_ROUTE = "sub-models"
INIT_TRIES = 5
OPS_BLOCK = 10  # invokes per block; blocks alternate between the op-once and op-R-times models
OPS_MAX_TRIPS = 1_000_000


def _median(values: list) -> float:
    s = sorted(values)
    n = len(s)
    return float(s[n // 2]) if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def _read_pack(path: str, sha256: str):
    import zipfile

    try:
        z = zipfile.ZipFile(path)
        pack = json.loads(z.read("slices.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise AgentError("input", f"cannot read the op slices {os.path.basename(path)}: {exc}") from None
    if not isinstance(pack, dict) or pack.get("schema") != "edgeseq.op_slices/1":
        raise AgentError("input", f"{os.path.basename(path)} is not an edgeseq.op_slices/1 pack")
    if pack.get("model_sha256") != sha256:
        raise AgentError("input", "the op slices were cut from another model (sha256 differs)")
    return z, pack


def _ops_interpreter(rt, args, capture: bool, **source):
    kwargs = dict(source)
    if args.threads is not None:
        kwargs["num_threads"] = args.threads
    resolver = getattr(getattr(rt, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
    if resolver is not None and (capture or args.no_xnnpack):
        kwargs["experimental_op_resolver_type"] = resolver
    if capture:
        kwargs["experimental_preserve_all_tensors"] = True
    return rt.Interpreter(**kwargs)


def _feed(interp, values: list, by_name: bool, allocate: bool = True) -> None:
    """Set the inputs, by tensor index or by the name 't<index>'; resized and allocated first when needed."""
    details = interp.get_input_details()
    pairs = []
    for key, value in values:
        if by_name:
            d = next((d for d in details if d["name"] == f"t{key}"), None)
            if d is None:
                raise AgentError("input", f"op slice has no input t{key}")
        else:
            d = next((d for d in details if int(d["index"]) == key), None)
            if d is None:
                raise AgentError("input", f"capture model has no input tensor {key}")
        if list(d["shape"]) != list(value.shape):
            interp.resize_tensor_input(d["index"], list(value.shape))
            allocate = True
        pairs.append((d["index"], value))
    if allocate:
        interp.allocate_tensors()
    for index, value in pairs:
        interp.set_tensor(index, value)


def _read(np, interp, t: int, errors: dict, key: tuple):
    """Tensor t as an array: zero-size tensors (LiteRT's get_tensor refuses them) as empty arrays of their shape;
    one that cannot be read is noted in `errors` under key and gives None."""
    try:
        return np.array(interp.get_tensor(t))
    except ValueError as exc:
        detail = next((d for d in interp.get_tensor_details() if int(d["index"]) == t), None)
        if detail is not None and 0 in [int(n) for n in detail["shape"]]:
            return np.zeros([int(n) for n in detail["shape"]], detail["dtype"])
        errors[key] = f"{type(exc).__name__}: {exc}"
        return None


def _run_loop(np, cond, body, loop: dict, state: list, stop: int | None):
    """Run the loop from `state`: to its end (stop None; returns the trip count) or up to trip `stop`, where it
    returns with cond and body just invoked on that trip's state (True, or False when the loop ended before)."""
    n = 0
    while True:
        _feed(cond, list(zip(loop["cond_inputs"], state)), False, n == 0)  # noqa: B905 - Python 3.9
        cond.invoke()
        if not bool(np.asarray(cond.get_tensor(loop["cond_output"])).reshape(-1)[0]):
            return n if stop is None else False
        _feed(body, list(zip(loop["body_inputs"], state)), False, n == 0)  # noqa: B905 - Python 3.9
        body.invoke()
        if n == stop:
            return True
        state = [np.array(body.get_tensor(t)) for t in loop["body_outputs"]]
        n += 1
        if n > OPS_MAX_TRIPS:
            raise AgentError("model", f"the WHILE loop at op {loop['op']} ran past {OPS_MAX_TRIPS} trips")


def _capture(np, rt, args, z, pack) -> tuple:
    """({(subgraph, tensor): array} for every tensor an op reads, {WHILE op: trips}, how the tensors were made,
    {(subgraph, tensor): why it could not be read})."""
    need: dict[int, set] = {}
    for op in pack["ops"]:
        need.setdefault(op["subgraph"], set()).update(op["feeds"])
    for loop in pack["loops"]:
        need.setdefault(0, set()).update(loop["inputs"])
    full = _ops_interpreter(rt, args, True, model_path=args.model)
    for d in full.get_input_details():
        sig = d.get("shape_signature")
        if sig is not None and any(int(s) < 0 for s in sig):
            full.resize_tensor_input(d["index"], [1 if int(s) < 0 else int(s) for s in sig])
    full.allocate_tensors()
    details = full.get_input_details()
    arrays = make_inputs(np, details, args, random.Random(args.seed), full)  # the timed run's inputs, regenerated
    for i, d in enumerate(details):
        arr = arrays[i]
        full.set_tensor(d["index"], arr)
    full.invoke()
    errors: dict = {}
    values = {(0, t): _read(np, full, t, errors, (0, t)) for t in need.get(0, ())}
    del full
    trips = {}
    for loop in pack["loops"]:
        missing = [t for t in loop["inputs"] if values[(0, t)] is None]
        if missing:
            raise AgentError("model", f"the WHILE loop at op {loop['op']}: its input tensor {missing[0]} cannot be "
                                      f"read ({errors[(0, missing[0])]})")
        try:
            cond = _ops_interpreter(rt, args, True, model_content=z.read(loop["cond_file"]))
            body = _ops_interpreter(rt, args, True, model_content=z.read(loop["body_file"]))
            state = [values[(0, t)] for t in loop["inputs"]]
            trips[loop["op"]] = n = _run_loop(np, cond, body, loop, state, None)
            again = _run_loop(np, cond, body, loop, state, n // 2) if n else True
        except AgentError:
            raise
        except Exception as exc:  # noqa: BLE001 - the reason names the loop that could not run on its own
            raise AgentError("model", f"the WHILE loop at op {loop['op']} (cond subgraph {loop['cond']}, body "
                                      f"{loop['body']}) failed when run on its own: {type(exc).__name__}: {exc}") from None
        if not again:
            raise AgentError("model", f"the WHILE loop at op {loop['op']} ran {n} trips once, fewer the next time")
        for sg, interp in ((loop["cond"], cond), (loop["body"], body))[: 2 if n else 1]:  # no trip: the body never ran
            values.update({(sg, t): _read(np, interp, t, errors, (sg, t)) for t in need.get(sg, ())})
    kind = "builtin-kernels" if getattr(rt, "OpResolverType", None) is not None else "default-delegates"
    return values, trips, kind, errors


def _time_pair(np, rt, args, one: bytes, many: bytes, feeds: list, samples: int) -> tuple:
    """Medians (ns) of one invoke of the op-once and the op-R-times models, timed in alternating blocks."""
    a = _ops_interpreter(rt, args, False, model_content=one)
    b = _ops_interpreter(rt, args, False, model_content=many)
    _feed(a, feeds, True)
    _feed(b, feeds, True)
    clock = time.perf_counter_ns
    runs = ([], a.invoke), ([], b.invoke)
    for _, invoke in runs:
        for _ in range(3):
            invoke()
    for _ in range(-(-samples // OPS_BLOCK)):
        for out, invoke in runs:
            for _ in range(OPS_BLOCK):
                t0 = clock()
                invoke()
                out.append(clock() - t0)
    return _median(runs[0][0]), _median(runs[1][0])


def _time_once(rt, args, data: bytes) -> float:
    """Median over INIT_TRIES fresh interpreters of the first invoke of `data` (a CALL_ONCE initialiser)."""
    clock, times = time.perf_counter_ns, []
    for _ in range(INIT_TRIES):
        interp = _ops_interpreter(rt, args, False, model_content=data)
        interp.allocate_tensors()
        t0 = clock()
        interp.invoke()
        times.append(clock() - t0)
    return _median(times)


def measure_ops(args, doc: dict) -> dict:
    """The document's `ops` section. Per op: index, subgraph, type, dtypes, output_shape, calls (per invoke of the
    model: a WHILE body's ops once per trip, its cond's once more), op_ns (one call) and one_ns (T_1), or an error.
    Anything that stops the route before the ops are timed gives route None and the reason."""
    t_start = time.perf_counter()
    _stage("ops")
    try:
        import numpy as np

        z, pack = _read_pack(args.ops, doc["model"]["sha256"])
        _, _, rt = import_runtime(doc["runtime"]["name"])
        values, trips, kind, unread = _capture(np, rt, args, z, pack)
    except AgentError as exc:
        return {"route": None, "reason": exc.message}
    except Exception as exc:  # noqa: BLE001 - the whole-model figures stand; say why the ops could not be timed
        return {"route": None, "reason": f"capturing the op inputs failed: {type(exc).__name__}: {exc}"[:400]}
    replicas = int(pack.get("replicas") or 9)
    samples = max(2 * OPS_BLOCK, min(args.runs, 100))
    ops = []
    for op in pack["ops"]:
        loop = op.get("loop")
        calls = 1 if not loop else trips[loop["while"]] + (1 if loop["role"] == "cond" else 0)
        entry = {k: op.get(k) for k in ("index", "subgraph", "type", "dtypes", "output_shape")}
        entry.update(calls=calls, op_ns=None, one_ns=None)
        ops.append(entry)
        if op.get("init"):  # CALL_ONCE: its initialiser runs once per stream, on the first invoke
            entry.update(calls=0, op_ns=0.0)
            try:
                entry["once_ns"] = _time_once(rt, args, z.read(op["init"]))
            except Exception as exc:  # noqa: BLE001 - an initialiser that cannot run alone leaves the others
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        if calls == 0 or (not op["feeds"] and op.get("type") == "DEQUANTIZE"):
            entry["op_ns"] = 0.0  # never runs, or dequantizes constant weights once (at the first invoke)
            continue
        bad = [t for t in op["feeds"] if values.get((op["subgraph"], t)) is None]
        if bad:  # an input the capture could not read: this op has no figure, and says which input and why
            why = unread.get((op["subgraph"], bad[0]), "not captured")
            entry["error"] = f"{op.get('type')} (op {op.get('index')}): its input tensor {bad[0]} could not be read: {why}"[:300]
            continue
        try:
            feeds = [(t, values[(op["subgraph"], t)]) for t in op["feeds"]]
            t1, tr = _time_pair(np, rt, args, z.read(op["one"]), z.read(op["many"]), feeds, samples)
        except Exception as exc:  # noqa: BLE001 - one op that cannot run alone leaves the others' figures
            entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        entry["one_ns"] = t1
        entry["op_ns"] = max(0.0, (tr - t1) / (replicas - 1))
    fixed = [e["one_ns"] - e["op_ns"] for e in ops if e["one_ns"] is not None]
    return {"route": OPS_ROUTE, "reason": None, "replicas": replicas, "capture": kind, "samples": samples,
            "overhead_ns": _median(fixed) if fixed else None,
            "seconds": round(time.perf_counter() - t_start, 3), "ops": ops}
