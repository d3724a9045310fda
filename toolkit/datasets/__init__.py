"""Data sets by name: `load_dataset("japanese_vowels")`, `load_dataset("adding:length=400")`, `load_dataset("mine.npz")`.

Every loader returns a `Dataset` (X float32 [N, T, F]; y int64 [N] or float32 [N, H]). This module imports numpy only;
the loaders live in datasets_uea, datasets_forecast, datasets_synthetic, fsdd and datasets_npz.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseq.core.errors import DatasetError
from edgeseq.datasets.base import LIMIT_ENV, Dataset, cache_dir, format_bytes, max_data_bytes, parse_bool

__all__ = ["Dataset", "load_dataset", "list_datasets", "parse_spec", "cache_dir", "REGISTRY"]


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    loader: str  # "module:function" under edgeseq.datasets, imported on use
    params: dict[str, Any]  # parameter -> default (its type is the parameter's type)
    source: str
    license: str
    summary: str


REGISTRY: dict[str, Entry] = {e.name: e for e in (
    Entry("basic_motions", "classification", "uea:load_basic_motions", {"normalize": True},
          "UEA (aeon 1.6.0)", "BSD-3; cite UEA", "smart-watch IMU, 4 activities"),
    Entry("japanese_vowels", "classification", "uea:load_japanese_vowels",
          {"normalize": True, "padding": "pre"},
          "UEA (aeon 1.6.0)", "BSD-3; cite UEA", "12 LPC coefficients, 7-29 frames, 9 speakers"),
    Entry("fsdd", "classification", "fsdd:load_fsdd", {"normalize": True},
          "FSDD v1.0.10", "CC BY-SA 4.0", "spoken digits, 32 log-mel bands x 49 frames"),
    Entry("electricity", "regression", "forecast:load_electricity",
          {"window": 48, "horizon": 1, "test_fraction": 0.2},
          "pmdarima `taylor`", "MIT; cite Taylor", "half-hourly demand, England & Wales 2000"),
    Entry("adding", "regression", "synthetic:load_adding",
          {"length": 100, "n_train": 5000, "n_test": 1000, "seed": 0},
          "generated", "n/a", "adding problem (Hochreiter & Schmidhuber 1997)"),
)}
ALIASES = {"basicmotions": "basic_motions", "japanesevowels": "japanese_vowels", "taylor": "electricity",
           "free_spoken_digits": "fsdd", "adding_problem": "adding"}


def is_path(spec: str) -> bool:
    """Paths: anything ending in .npz or holding a path separator, else an existing file that is not a registered name."""
    if spec.lower().endswith(".npz") or os.sep in spec or "/" in spec:
        return True
    key = spec.partition(":")[0].strip().lower().replace("-", "_")
    return key not in REGISTRY and key not in ALIASES and Path(spec).is_file()


def _convert(name: str, key: str, value: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return parse_bool(key, value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
    except ValueError:
        kind = {"float": "a finite float"}.get(type(default).__name__, type(default).__name__)
        raise DatasetError(f"{name}: parameter '{key}' must be {kind}, got {value!r}",
                           f"e.g. {name}:{key}={default}") from None
    return value


def parse_spec(spec: str) -> tuple[Entry, dict[str, Any]]:
    """'adding:length=400,seed=1' -> (registry entry, all parameters with defaults filled in)."""
    head, _, tail = spec.strip().partition(":")
    key = head.strip().lower().replace("-", "_")
    entry = REGISTRY.get(ALIASES.get(key, key))
    if entry is None:
        raise DatasetError(f"unknown data set {head!r} (known: {', '.join(REGISTRY)})",
                           "run `edgeseq datasets`, or pass the path of an .npz file")
    params = dict(entry.params)
    for item in filter(None, (p.strip() for p in tail.split(","))):
        k, eq, v = item.partition("=")
        k = k.strip().replace("-", "_")
        if not eq or k not in entry.params:
            accepted = ", ".join(f"{p}={d}" for p, d in entry.params.items())
            raise DatasetError(f"{entry.name}: unknown parameter {item!r} (accepted: {accepted})",
                               f"write {entry.name}:key=value[,key=value]")
        params[k] = _convert(entry.name, k, v.strip(), entry.params[k])
    return entry, params


def canonical_name(entry: Entry, params: dict[str, Any]) -> str:
    """The registered name plus the parameters that differ from their defaults: reloading it gives the same data."""
    changed = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()
               if v != entry.params[k]]
    return entry.name + (":" + ",".join(changed) if changed else "")


def _loader(entry: Entry):
    module, func = entry.loader.split(":")
    return getattr(importlib.import_module(f"edgeseq.datasets.{module}"), func)


def load_dataset(spec: str, *, data_dir: str | None = None) -> Dataset:
    """Load a registered data set (optionally with parameters) or a user .npz file (see README 'Data sets').

    `data_dir` only matters for data sets read from disk (fsdd): a folder holding `fsdd/recordings` or `recordings`.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError("empty data set name", "run `edgeseq datasets` to list them")
    if is_path(spec):
        from edgeseq.datasets.npz import load_user_npz

        return load_user_npz(spec)
    entry, params = parse_spec(spec)
    _check_generated_size(entry, params)
    kwargs = dict(params)
    if entry.name == "fsdd":
        kwargs["data_dir"] = data_dir
    ds = _loader(entry)(**kwargs)
    name = canonical_name(entry, params)
    meta = {**ds.meta, "spec": name, "params": params}
    return dataclasses.replace(ds, name=name, meta=meta)


def _check_generated_size(entry: Entry, params: dict[str, Any]) -> None:
    """Refuse a generated data set bigger than the data limit before generating it (adding:n_train=10**9)."""
    if entry.name != "adding":
        return
    rows = max(0, params["n_train"]) + max(0, params["n_test"])
    nbytes = rows * max(0, params["length"]) * 2 * 4  # float32 [N, length, 2]
    limit = max_data_bytes()
    if nbytes > limit:
        raise DatasetError(f"adding: {rows:,} sequences of length {params['length']:,} take {format_bytes(nbytes)}, "
                           f"over the data limit of {format_bytes(limit)} ({LIMIT_ENV})",
                           f"use smaller n_train, n_test or length, or raise {LIMIT_ENV} (bytes, e.g. 8G)")


def _shape_info(entry: Entry, data_dir: str | None) -> dict[str, Any]:
    p = entry.params
    if entry.name == "adding":
        return {"train_shape": [p["n_train"], p["length"], 2], "test_shape": [p["n_test"], p["length"], 2],
                "num_classes": None, "output_dim": 1, "status": "generated"}
    if entry.name == "fsdd":
        from edgeseq.datasets import fsdd

        try:
            rec = fsdd.find_recordings(data_dir)
        except DatasetError:
            rec = None
        return {"train_shape": list(fsdd.SHAPES["train"]), "test_shape": list(fsdd.SHAPES["test"]),
                "num_classes": 10, "output_dim": 10,
                "status": f"available ({rec})" if rec else "not downloaded"}
    ds = load_dataset(entry.name)
    return {"train_shape": list(ds.X_train.shape), "test_shape": list(ds.X_test.shape),
            "num_classes": ds.num_classes, "output_dim": ds.output_dim, "status": "bundled"}


def list_datasets(*, data_dir: str | None = None) -> list[dict]:
    """One row per registered data set (default parameters): name, task, shapes, classes, source, license, status."""
    rows = []
    for entry in REGISTRY.values():
        info = _shape_info(entry, data_dir)
        rows.append({"name": entry.name, "task": entry.task, **info, "source": entry.source,
                     "license": entry.license, "params": dict(entry.params), "summary": entry.summary})
    return rows
