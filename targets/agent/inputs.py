"""Inputs: random or file inputs, shaped, typed and quantized for the interpreter.

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import os
import random

from .document import AgentError


def _dtype_range(np, dtype):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return int(info.min), int(info.max)
    return None


def make_inputs(np, details, args, rng, interp=None, in_place: bool = False) -> list:
    """One array per input, in input order, shaped and typed as the interpreter wants (token ids 0..V-1 for an
    Embedding's input when `interp` is given: see `input_vocab`). `in_place`: random floats are written straight
    into the interpreter's input tensor (its entry is None), so the run holds no copy of them; the values are the
    same as without it."""
    supplied = None
    if args.input:
        if not os.path.isfile(args.input):
            raise AgentError("input", f"input file not found: {args.input}")
        try:
            loaded = np.load(args.input, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for a bad file
            raise AgentError("input", f"cannot read {args.input} as .npy/.npz: {exc}") from None
        if hasattr(loaded, "files"):
            supplied = []
            for i, d in enumerate(details):
                key = d["name"] if d["name"] in loaded.files else f"arr_{i}"
                if key not in loaded.files:
                    raise AgentError(
                        "input",
                        f"{args.input} has no array for input {d['name']!r}",
                        f"keys there: {', '.join(loaded.files)}",
                    )
                supplied.append(loaded[key])
        else:
            if len(details) != 1:
                raise AgentError(
                    "input",
                    f"the model has {len(details)} inputs; a .npy holds one",
                    "pass a .npz keyed by input name",
                )
            supplied = [loaded]
    arrays = []
    for i, d in enumerate(details):
        shape, dtype = tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"])
        vocab = input_vocab(np, interp, d, args, len(details)) if interp is not None else None
        if supplied is not None:
            arr = _fit_array(np, supplied[i], shape, dtype, d)
            _check_ids(np, arr, vocab, d["name"])
            arrays.append(arr)
            continue
        if vocab:
            arrays.append(_random_ids(np, rng, shape, dtype, vocab))
            continue
        if in_place and interp is not None and np.issubdtype(dtype, np.floating):
            view = interp.tensor(d["index"])()  # the tensor's own buffer; no reference may outlive the fill
            _random_array(np, rng, shape, dtype, args.input_dist, out=view.reshape(-1))
            del view
            arrays.append(None)
            continue
        arrays.append(_random_array(np, rng, shape, dtype, args.input_dist))
    return arrays


# Ops a token id passes through between the model input and its Embedding's GATHER (Keras wraps negative ids with
# LESS/ADD/SELECT; casts and reshapes). Same rule as the host's edgeseq.quantize.tokens.
_ID_PASS_THROUGH = {"LESS", "ADD", "SELECT", "SELECT_V2", "CAST", "RESHAPE", "EXPAND_DIMS", "SQUEEZE", "STRIDED_SLICE",
                    "MAXIMUM", "MINIMUM", "NOT_EQUAL"}


def is_id_input(np, d) -> bool:
    """int32/int64 without quantization parameters: a candidate for token ids (an Embedding's input)."""
    scale = (d.get("quantization") or (0.0, 0))[0]
    return np.dtype(d["dtype"]) in (np.dtype(np.int32), np.dtype(np.int64)) and not scale


def gather_vocab(interp, index: int):
    """Rows of the GATHER table whose indices come from tensor `index` (through a few pass-through ops), else the
    smallest 2-D GATHER table of the model (a delegate can hide the path), else None."""
    try:
        ops = interp._get_ops_details()
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except Exception:  # noqa: BLE001 - old runtimes without op details: the caller keeps the full range
        return None
    producer = {}
    for op in ops:
        for o in op.get("outputs", []):
            producer[int(o)] = op

    def reaches(t, depth):
        if t == index:
            return True
        op = producer.get(t)
        if op is None or depth >= 6 or op.get("op_name") not in _ID_PASS_THROUGH:
            return False
        return any(reaches(int(i), depth + 1) for i in op.get("inputs", []) if int(i) >= 0)

    fed, any_table = [], []
    for op in ops:
        ins = [int(i) for i in op.get("inputs", [])]
        if op.get("op_name") != "GATHER" or len(ins) < 2 or ins[0] not in tensors:
            continue
        shape = [int(v) for v in tensors[ins[0]]["shape"]]
        if len(shape) >= 2 and shape[0] > 0:
            any_table.append(shape[0])
            if reaches(ins[1], 0):
                fed.append(shape[0])
    return min(fed) if fed else (min(any_table) if any_table else None)


def input_vocab(np, interp, d, args, n_inputs: int):
    """The id range of input `d`: `--vocab` for a single input (or the step model's "x"), else its GATHER table;
    None for inputs that are not token ids."""
    if not is_id_input(np, d):
        return None
    name = d["name"].split(":")[0]
    short = name[len("serving_default_"):] if name.startswith("serving_default_") else name
    if getattr(args, "vocab", None) and (n_inputs == 1 or short == "x"):
        return int(args.vocab)
    return gather_vocab(interp, d["index"])


def _random_ids(np, rng: random.Random, shape: tuple, dtype, vocab: int):
    """Seeded uniform token ids 0..vocab-1 (stdlib random, like `_random_array`)."""
    n = 1
    for s in shape:
        n *= s
    return np.array([rng.randrange(vocab) for _ in range(n)], dtype=dtype).reshape(shape)


def _check_ids(np, arr, vocab, name: str) -> None:
    if vocab and arr.size and (int(arr.max()) >= vocab or int(arr.min()) < 0):
        bad = int(arr.max()) if int(arr.max()) >= vocab else int(arr.min())
        raise AgentError("input", f"input {name!r} holds token id {bad} but the model's vocabulary has {vocab} ids "
                         f"(0..{vocab - 1})", "feed ids the model was trained with")


def _random_array(np, rng: random.Random, shape: tuple, dtype, dist: str, out=None):
    """Seeded random data from stdlib bytes: numpy.random would add ~7 MB to the peak we are measuring.

    Integer tensors get uniform values over the dtype's full range, bool tensors 0/1, float tensors N(0, 1)
    (Box-Muller) or U(-1, 1); floats into `out` (a flat array of the size) when given."""
    n = 1
    for s in shape:
        n *= s
    if dtype == np.bool_:
        return (np.frombuffer(rng.randbytes(n), dtype=np.uint8) & 1).astype(np.bool_).reshape(shape)
    if np.issubdtype(dtype, np.integer):
        return np.frombuffer(rng.randbytes(n * dtype.itemsize), dtype=dtype).reshape(shape).copy()
    if out is None:
        out = np.empty(n, dtype)
    for at in range(0, n, _CHUNK):  # in chunks: float64 temporaries of the whole tensor would be charged to the model
        k = min(_CHUNK, n - at)
        u = (np.frombuffer(rng.randbytes(8 * k), dtype=np.uint32).astype(np.float64) + 0.5) / 2.0**32
        if dist == "uniform":
            out[at : at + k] = u[:k] * 2.0 - 1.0
        else:
            out[at : at + k] = np.sqrt(-2.0 * np.log(u[:k])) * np.cos(2.0 * np.pi * u[k:])
    return out.reshape(shape)


# Values per chunk of random floats: its float64 temporaries (~20 kB) are freed and reused chunk after chunk, and
# `warm_numpy` makes one full chunk before the baseline, so the heap already holds them and a long input costs the
# model nothing beyond its own tensor (4096 left ~200 kB of freed temporaries in the heap, charged to the model).
_CHUNK = 512


def warm_numpy(np) -> None:
    """Run, on tiny arrays, the numpy code this agent runs after its memory baseline (random inputs, quantizing,
    stepping a stream), so the pages of numpy's own machine code it touches are in the baseline, not charged to the
    model (about 1.3 MB: numpy's ufunc loops load lazily, per dtype)."""
    rng = random.Random(0)
    for dt in (np.float32, np.float64, np.int8, np.uint8, np.int16, np.int32, np.bool_):
        for dist in ("normal", "uniform"):
            _random_array(np, rng, (1, 3), np.dtype(dt), dist)
    for dist in ("normal", "uniform"):
        _random_array(np, rng, (_CHUNK,), np.dtype(np.float32), dist)
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    for dt in (np.int8, np.uint8, np.int16):
        info = np.iinfo(dt)
        q = np.clip(np.round(np.asarray(x, np.float32) / np.float32(0.5) + 1), info.min, info.max).astype(dt)
        (q.astype(np.float32) - 1) * np.float32(0.5)
        np.full(q.shape, 1, dtype=dt).copy()
        np.clip(np.round((q.astype(np.float32) - 1) * np.float32(0.9)) + 2, info.min, info.max).astype(dt)
    buf = np.zeros([1, 2, 3], np.float32)
    buf[0, :-1] = buf[0, 1:]
    np.stack([x[0], x[0]]).reshape(-1).tolist()
    np.concatenate([x, x])
    int(np.prod(x.shape))


def _fit_array(np, arr, shape, dtype, detail):
    arr = np.asarray(arr)
    if arr.shape != shape:
        if arr.shape == shape[1:]:
            arr = arr[None, ...]
        elif len(arr.shape) == len(shape) and arr.shape[1:] == shape[1:] and arr.shape[0] > shape[0]:
            arr = arr[: shape[0]]
        else:
            raise AgentError(
                "input", f"input {detail['name']!r} wants shape {list(shape)}, the file has {list(arr.shape)}"
            )
    if np.issubdtype(dtype, np.integer) and np.issubdtype(arr.dtype, np.floating):
        scale, zero = detail.get("quantization") or (0.0, 0)
        if not scale:
            raise AgentError(
                "input", f"input {detail['name']!r} is {dtype} without quantization; the file holds floats"
            )
        lo, hi = _dtype_range(np, dtype)
        arr = np.clip(np.round(arr / scale + zero), lo, hi)
    return arr.astype(dtype)
