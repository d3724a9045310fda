"""One session-wide cache of built and converted models, shared read-only between tests (the `conversions` fixture
in tests/conftest.py).

Several tests convert the very same model with the very same recipes, and every conversion costs child processes
(a TensorFlow import, the converter, LiteRT for parity). An entry here is keyed by everything that decides its
files (which model: architecture, preset, lengths, seed; recipes, calibration, options) and made once per session by
the same call the test made itself before (`convert_model`, `convert_stream`), into a folder of its own that no test
writes to. Tests only read what an entry holds; a test that would change a file must copy it first. Tests whose
point is a monkeypatched or crashing conversion, or that count conversion children, still convert for themselves.

`prefetch` makes entries two at a time (blocking until its own are done, so no test of that process runs
meanwhile): each conversion spends its time in child processes, so two keep both cores of a CI machine busy while
their parent threads wait. The first test that reads the cache makes every entry the session's selected tests will
need (`planner`, `prefetch_session` below), so one pool covers them all. Models are built (seeded) in the calling
thread only: Keras keeps its seed and name state per thread, so a model built in a pool thread would get other
weights. Conversions only load the built file, predict and start children, which is safe on two threads (each has
its own output folder).

The cache is one folder for the whole session, shared by pytest-xdist's workers (`make test` runs two): an entry's
folder, result file (its return value, pickled) and lock file are named by its key, and the process that takes the
entry's file lock first makes it; the others read its result (or wait on the lock while it is being made). A
prefetching worker skips entries another worker is making, so two workers' pools share the plan's work.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import re
import shutil
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

WORKERS = 2
_DEFERRED = object()  # prefetch: another process is making this entry; `get` waits for it when a test needs it


class ConversionCache:
    def __init__(self, root: Path, workers: int = WORKERS):
        self.root = root
        self.workers = workers
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._entries: dict[Hashable, Future] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries or self._paths(key)[1].exists()

    def _paths(self, key: Hashable) -> tuple[Path, Path, Path]:
        """An entry's folder, result file and lock file: named by the key alone, so every process finds them."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(map(str, key if isinstance(key, tuple) else (key,))))
        name = f"{slug.strip('-')[:80]}-{hashlib.sha1(repr(key).encode()).hexdigest()[:10]}"
        return self.root / name, self.root / f"{name}.result", self.root / f"{name}.lock"

    def get(self, key: Hashable, make: Callable[[Path], Any]) -> Any:
        """`make(folder)` once per key and session (in a new empty folder), in whichever process asks first; every
        call returns what that one call returned, or raises what it raised (so each test that needs a failed entry
        fails with its error)."""
        while True:
            with self._lock:
                fut = self._entries.get(key)
                owner = fut is None
                if owner:
                    fut = self._entries[key] = Future()
            if owner:
                self._settle(key, make, fut, wait=True)
            value = fut.result()
            if value is not _DEFERRED:
                return value

    def _settle(self, key: Hashable, make: Callable[[Path], Any], fut: Future, wait: bool) -> None:
        try:
            value = self._obtain(key, make, wait)
            if value is _DEFERRED:
                with self._lock:
                    del self._entries[key]
            fut.set_result(value)
        except Exception as exc:  # noqa: BLE001 - kept for every test that asks for this entry
            fut.set_exception(exc)
        except BaseException:  # Ctrl-C: nothing is cached, the next run makes it again
            with self._lock:
                del self._entries[key]
            fut.cancel()
            raise

    def _obtain(self, key: Hashable, make: Callable[[Path], Any], wait: bool) -> Any:
        """The entry from its result file, or made here under its file lock (or _DEFERRED when another process holds
        that lock and `wait` is false)."""
        folder, result, lock_path = self._paths(key)
        if result.exists():
            return self._load(key, make, result)
        with open(lock_path, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return _DEFERRED
            if result.exists():
                return self._load(key, make, result)
            shutil.rmtree(folder, ignore_errors=True)  # a process stopped mid-way (Ctrl-C) left it half made
            folder.mkdir(parents=True)
            started = time.perf_counter()
            try:
                value = make(folder)
            except Exception as exc:
                self._store(result, key, "error", exc, time.perf_counter() - started)
                raise
            self._store(result, key, "ok", value, time.perf_counter() - started)
            return value

    def _store(self, result: Path, key: Hashable, kind: str, value: Any, seconds: float) -> None:
        """The result file (written whole, then renamed) and its cost beside it (for summary())."""
        try:
            blob = pickle.dumps((kind, value))
            pickle.loads(blob)
        except Exception:  # noqa: BLE001 - an error that does not pickle is kept as its text
            blob = pickle.dumps(("error", RuntimeError(f"{type(value).__name__}: {value}")) if kind == "error"
                                else ("local", None))  # a value that does not: every other process makes its own
        result.with_suffix(".cost").write_text(json.dumps({"key": repr(key), "seconds": seconds}))
        tmp = result.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(blob)
        tmp.replace(result)

    def _load(self, key: Hashable, make: Callable[[Path], Any], result: Path) -> Any:
        kind, value = pickle.loads(result.read_bytes())
        if kind == "ok":
            return value
        if kind == "error":
            raise value
        folder = self._paths(key)[0].with_name(f"{self._paths(key)[0].name}@{os.getpid()}")  # "local"
        folder.mkdir(parents=True)
        return make(folder)

    def prefetch(self, jobs: dict[Hashable, Callable[[Path], Any]]) -> None:
        """Make every job not made yet, `workers` at a time, skipping those another process is making; returns when
        this process's are done (errors stay with their entry and surface in `get`)."""
        todo = {k: m for k, m in jobs.items() if k not in self._entries}
        if not todo:
            return
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="zoo-cache")
        try:
            for f in [pool.submit(self._prefetch_one, key, make) for key, make in todo.items()]:
                f.exception()
        except BaseException:  # Ctrl-C: start nothing more, and take the running conversions' children down
            from edgeseq.core.fsio import childproc

            pool.shutdown(wait=False, cancel_futures=True)
            childproc.kill_all()
            raise
        pool.shutdown()

    def _prefetch_one(self, key: Hashable, make: Callable[[Path], Any]) -> None:
        with self._lock:
            if key in self._entries:
                return
            fut = self._entries[key] = Future()
        self._settle(key, make, fut, wait=False)


# ------------------------------------------------------------------------------------------ the session's plan
# Each test module that reads the cache registers a planner: planner(cache, items) -> {key: make} for the entries
# its selected tests (items: the session's, after -k / -m) will need, building their models in the calling thread.
# The first test that asks for the cache makes every planned entry of the session in one pool, longest first (a
# `make` may carry a `cost` attribute, in rough seconds), so both cores stay busy to the end.
_PLANNERS: dict[str, Callable[[ConversionCache, list], dict]] = {}


def summary(root: Path, top: int = 12) -> list[str]:
    """The entries that cost most, for the end of a session's output (tests/conftest.py prints it): read from the
    cache folder, so it covers every process of the session (pytest-xdist's workers made them)."""
    costs = [json.loads(p.read_text()) for p in sorted(root.glob("*.cost"))] if root.is_dir() else []
    if not costs:
        return []
    ranked = sorted(costs, key=lambda c: -c["seconds"])
    total = sum(c["seconds"] for c in costs)
    return [f"conversion cache: {len(ranked)} entries, {total:.0f} s of work (up to {WORKERS} at a time in each "
            "test process)"] + [f"  {c['seconds']:7.1f} s  {c['key']}" for c in ranked[:top]]


def planner(fn: Callable[[ConversionCache, list], dict]) -> Callable[[ConversionCache, list], dict]:
    _PLANNERS[f"{fn.__module__}.{fn.__qualname__}"] = fn
    return fn


def prefetch_session(cache: ConversionCache, request) -> None:
    """Once per session: make every entry the registered planners ask for (see above)."""
    if getattr(cache, "planned", False):
        return
    cache.planned = True
    jobs: dict = {}
    for plan in list(_PLANNERS.values()):
        try:
            jobs |= plan(cache, request.session.items)
        except Exception:  # noqa: BLE001 - its tests make their entries themselves and fail with the error there
            continue
    cache.prefetch(dict(sorted(jobs.items(), key=lambda kv: -getattr(kv[1], "cost", 10))))


def selected(items_or_request, module_name: str, names: set[str]) -> list:
    """The tests of `module_name` named in `names` that this session will run (after -k / -m deselection)."""
    items = getattr(getattr(items_or_request, "session", None), "items", items_or_request)
    return [item for item in items
            if getattr(item, "originalname", None) in names and getattr(item.module, "__name__", None) == module_name]


def params(item) -> dict:
    callspec = getattr(item, "callspec", None)
    return dict(callspec.params) if callspec else {}


# ------------------------------------------------------------------------------------------ the small zoo
SMALL_ZOO_ARCHS = ("rnn", "lstm", "gru", "transformer")


def small_zoo(cache: ConversionCache) -> list[Path]:
    """The zoo at preset small (T=64, F=16, 10 classes) as `edgeseq convert --no-validate --name ARCH` writes fp32
    and int8 (RNNs: fp32 a WHILE loop, int8 a fused LSTM or an int8 loop) and the RNNs' unrolled int8 route, plus
    the GRU's streaming step model in fp32 and int8: 13 files in one folder, in that order. Used by
    tests/test_memory_estimate.py (all of them) and tests/test_ops.py (transformer and GRU, fp32 and int8)."""
    jobs = small_zoo_jobs(cache)
    cache.prefetch(jobs)
    return [path for key, make in jobs.items() for path in cache.get(key, make)]


def small_zoo_jobs(cache: ConversionCache) -> dict[Hashable, Callable[[Path], list[Path]]]:
    """The small zoo's five conversion calls (its models built here, in the calling thread)."""
    from edgeseq.quantize.convert import convert_model
    from edgeseq.quantize.stream.convert import convert_stream

    out = cache.get(("small-zoo", "models"), _build_small_zoo)

    def batch(arch: str) -> Callable[[Path], list[Path]]:
        recipes = ["fp32", "int8"] + (["int8-unroll"] if arch != "transformer" else [])
        return lambda _: [r.tflite_path for r in convert_model(out / f"{arch}.keras", recipes, out_dir=out, name=arch,
                                                               validate=False)]

    def step(_: Path) -> list[Path]:
        return [r.tflite_path for r in convert_stream(out / "gru.keras", ["fp32", "int8"], out_dir=out, name="gru",
                                                      validate=False)]

    return {("small-zoo", arch): batch(arch) for arch in SMALL_ZOO_ARCHS} | {("small-zoo", "gru-step"): step}


def _build_small_zoo(out: Path) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from edgeseq.models.zoo import build_model

    for arch in SMALL_ZOO_ARCHS:  # one after the other, each right after its seed
        keras.utils.set_random_seed(0)
        build_model(arch, "small", seq_len=64, num_features=16, num_outputs=10).save(out / f"{arch}.keras")
    return out


def plan_table(cache: ConversionCache, items: list, module_name: str, table: dict[str, Callable]) -> dict:
    """A planner's body for a module whose tests each read a few entries: `table` maps a test's name to
    `jobs(cache, params) -> [(key, make), ...]` (its models built in the calling thread); the jobs of the
    selected tests, each `make` keeping its own `cost`."""
    jobs: dict = {}
    for item in selected(items, module_name, set(table)):
        jobs.update(table[item.originalname](cache, params(item)))
    return jobs


def costs(seconds: float, *jobs: tuple[Hashable, Callable]) -> list[tuple[Hashable, Callable]]:
    """The jobs, each `make` marked with a rough cost in seconds (the pool starts the longest first)."""
    for _, make in jobs:
        make.cost = seconds
    return list(jobs)
