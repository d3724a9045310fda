"""Calibration and validation inputs: a registered data set, an .npz, a loaded Dataset, or (said so) random inputs.

Selection is deterministic (seeded indices into the training split) and recorded, so a quantized model can be
reproduced from its manifest: data set name, split, seed, the indices and their sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseq.core.errors import DatasetError, InputError

CALIBRATION_SEED = 0
VALIDATION_SAMPLES = 1000  # cap on held-out samples used for parity and accuracy
RANDOM_VALIDATION_SAMPLES = 64


@dataclass(frozen=True)
class Inputs:
    """What conversion and validation need from a data set; `dataset` is None for random inputs."""

    dataset: Any
    name: str
    task: str | None
    X_val: np.ndarray
    y_val: np.ndarray | None
    validation_record: dict
    vocab: int | None = None  # token-id models: ids are 0..vocab-1 (X is int32 [N, T])
    specs: list | None = None  # several inputs (quantize/multi_input.py): X_val is {input name: array}

    @property
    def tokens(self) -> bool:
        return not isinstance(self.X_val, dict) and self.X_val.ndim == 2

    def calibration(self, samples: int, seed: int = CALIBRATION_SEED) -> tuple[Any, dict]:
        """`samples` seeded calibration inputs from the training split, and the record that reproduces them."""
        if self.specs is not None:
            return _calibration_multi(self, samples, seed)
        if self.dataset is None:
            rng = np.random.default_rng(seed)
            if self.tokens:
                X = random_ids(rng, (samples, *self.X_val.shape[1:]), self.vocab)
                return X, {"source": "random-ids", "note": f"uniform ids 0..{self.vocab - 1}, not data (--dataset random); "
                           "pass --dataset DATASET for a faithful int8 model", "samples": samples, "seed": seed}
            X = rng.standard_normal((samples, *self.X_val.shape[1:])).astype(np.float32)
            return X, {"source": "random-normal", "note": "N(0,1) inputs, not data (--dataset random); pass "
                       "--dataset DATASET for a faithful int8 model", "samples": samples, "seed": seed}
        X_train = self.dataset.X_train
        idx = select_indices(len(X_train), samples, seed)
        dtype = np.int32 if self.tokens else np.float32
        X, guard = guard_constant_steps(np.ascontiguousarray(X_train[idx], dtype=dtype), seed, self.vocab)
        return X, {
            "source": "dataset",
            "dataset": self.name,
            "split": "train",
            "samples": int(len(idx)),
            "seed": seed,
            "indices": idx.tolist(),
            "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest(),
            "constant_step_guard": guard,
        }


def _calibration_multi(self: Inputs, samples: int, seed: int) -> tuple[dict, dict]:
    """Several inputs: the same seeded rows of every input (or random ones per input), constant steps guarded on
    each time-axis input (the other inputs repeat their first row in the extra sample)."""
    from edgeseq.quantize.multi_input import random_inputs, take

    vocab = {s["name"]: self.vocab for s in self.specs if s["kind"] == "token-ids"}
    if self.dataset is None:
        X = random_inputs(self.specs, samples, np.random.default_rng(seed), vocab)
        return X, {"source": "random-normal", "note": "no calibration data given: random inputs per input (N(0,1), "
                   "ids 0..V-1); pass --calibration DATASET for a faithful int8 model", "samples": samples,
                   "seed": seed, "inputs": [s["name"] for s in self.specs]}
    train = self.dataset.inputs["train"]
    idx = select_indices(len(next(iter(train.values()))), samples, seed)
    from edgeseq.quantize.multi_input import check_data

    X = take(check_data(self.name, train, self.specs, "train"), idx)
    guards = {}
    for s in self.specs:
        if s["kind"] == "static":
            continue
        guarded, guard = guard_constant_steps(X[s["name"]], seed, self.vocab)
        if guard:
            guards[s["name"]] = guard
            X = {k: guarded if k == s["name"] else np.concatenate([v, v[:1]]) for k, v in X.items()}
    return X, {"source": "dataset", "dataset": self.name, "split": "train", "samples": int(len(idx)), "seed": seed,
               "indices": idx.tolist(), "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest(),
               "constant_step_guard": guards or None, "inputs": [s["name"] for s in self.specs]}


def prepare_multi_inputs(source: Any, specs: list[dict], vocab: int | None = None,
                         seed: int = CALIBRATION_SEED) -> Inputs:
    """Validation inputs for a model with several inputs (`specs`: quantize/multi_input.py): the test split of a data
    set with one array per input name, or random inputs per input's shape and dtype."""
    from edgeseq.quantize.multi_input import check_data, random_inputs, take

    if source is None:
        ids = {s["name"]: vocab for s in specs if s["kind"] == "token-ids"}
        X = random_inputs(specs, RANDOM_VALIDATION_SAMPLES, np.random.default_rng(seed + 1), ids)
        record = {"source": "random-normal", "samples": RANDOM_VALIDATION_SAMPLES, "seed": seed + 1,
                  "note": "no data set given: parity checked on random inputs per input, no accuracy"}
        return Inputs(None, "random", None, X, None, record, vocab, specs)
    ds = _load(source)
    name = getattr(ds, "name", str(source))
    if getattr(ds, "inputs", None) is None:
        raise InputError(f"the model has {len(specs)} inputs ({', '.join(s['name'] for s in specs)}) but data set "
                         f"{name} holds one X", "give an .npz with X_train_<input> and X_test_<input> for each input")
    test = check_data(name, ds.inputs["test"], specs, "test")
    check_data(name, ds.inputs["train"], specs, "train")
    for s in specs:
        if s["kind"] == "token-ids":
            check_ids(test[s["name"]], vocab, f"data set {name} (X_test_{s['name']})")
    n = len(ds.y_test)
    idx = np.arange(n) if n <= VALIDATION_SAMPLES else select_indices(n, VALIDATION_SAMPLES, seed)
    record = {"source": "dataset", "dataset": name, "split": "test", "samples": int(len(idx)),
              "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest(),
              "inputs": [s["name"] for s in specs]}
    return Inputs(ds, name, ds.task, take(test, idx), ds.y_test[idx], record, vocab, specs)


def guard_constant_steps(X: np.ndarray, seed: int, vocab: int | None = None) -> tuple[np.ndarray, dict | None]:
    """Append one jittered sample when some time steps are identical in every calibration sample.

    Why: pre-padded data (JapaneseVowels) leaves the first steps, and the recurrent state through them, at exactly
    one value in every sample; the calibrator then records zero-width ranges, and LiteRT's XNNPACK delegate aborts
    (double free) while preparing such an int8 graph. A copy of one sample with N(0, 1% of the data's std) added on
    those steps gives them a tiny, valid range and leaves every real range as it was. Token ids (int [N, T], padding
    ids in every row) get random ids 0..vocab-1 on those steps instead.
    """
    tokens = X.ndim == 2
    constant = np.all(X == X[:1], axis=0 if tokens else (0, 2))
    if len(X) < 2 or not constant.any():
        return X, None
    rng = np.random.default_rng(seed + 7)
    extra = X[:1].copy()
    if tokens:
        high = vocab or int(X.max()) + 1
        extra[:, constant] = random_ids(rng, extra[:, constant].shape, high)
        return np.concatenate([X, extra]), {"constant_steps": int(constant.sum()), "extra_samples": 1,
                                            "random_ids_below": high}
    sigma = 0.01 * float(X.std() or 1.0)
    extra[:, constant] += rng.normal(0.0, sigma, extra[:, constant].shape).astype(np.float32)
    return np.concatenate([X, extra]), {"constant_steps": int(constant.sum()), "extra_samples": 1, "sigma": sigma}


def random_ids(rng: np.random.Generator, shape: tuple, vocab: int | None) -> np.ndarray:
    """Uniform int32 token ids 0..vocab-1."""
    if not vocab:
        raise InputError("cannot tell this token-id model's vocabulary size (no Embedding layer found)",
                         "pass --calibration DATA with real ids")
    return rng.integers(0, vocab, size=shape, dtype=np.int64).astype(np.int32)


def check_ids(X: np.ndarray, vocab: int | None, what: str) -> None:
    """InputError (one line, exit 2) naming the largest id when `X` holds ids outside 0..vocab-1."""
    if vocab is None or X.size == 0:
        return
    top, low = int(X.max()), int(X.min())
    if top >= vocab:
        raise InputError(f"{what} has token id {top} but the model's vocabulary has {vocab} ids (0..{vocab - 1})",
                         f"use the data the model was trained on, or map unknown tokens to an id below {vocab}")
    if low < 0:
        raise InputError(f"{what} has a negative token id ({low})", "ids must be 0..vocabulary-1")


def select_indices(total: int, samples: int, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Sorted, seeded sample without replacement; all rows when fewer exist than asked for."""
    if total <= 0:
        raise DatasetError("the calibration data set has no training samples")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=min(samples, total), replace=False)).astype(np.int64)


def _load(spec: Any) -> Any:
    if isinstance(spec, str):
        from edgeseq.datasets import load_dataset

        return load_dataset(spec)
    if all(hasattr(spec, a) for a in ("X_train", "X_test", "y_test", "task")):
        return spec
    raise InputError(f"cannot use {type(spec).__name__} as calibration data", "pass a data set name or an .npz path")


def prepare_inputs(source: Any, *, seq_len: int, num_features: int | None, vocab: int | None = None,
                   seed: int = CALIBRATION_SEED) -> Inputs:
    """Load `source` (None: random) and check it fits a model with input [1, seq_len, num_features], or token ids
    [1, seq_len] when `num_features` is None (ids below `vocab`, when known)."""
    tokens = num_features is None
    if source is None:
        rng = np.random.default_rng(seed + 1)
        if tokens:
            X = random_ids(rng, (RANDOM_VALIDATION_SAMPLES, seq_len), vocab)
            record = {"source": "random-ids", "samples": len(X), "seed": seed + 1, "vocab": vocab,
                      "note": "no data set given: parity checked on uniform random ids, no accuracy"}
        else:
            X = rng.standard_normal((RANDOM_VALIDATION_SAMPLES, seq_len, num_features)).astype(np.float32)
            record = {"source": "random-normal", "samples": len(X), "seed": seed + 1,
                      "note": "no data set given: parity checked on N(0,1) inputs, no accuracy"}
        return Inputs(None, "random", None, X, None, record, vocab)
    ds = _load(source)
    name = getattr(ds, "name", str(source))
    data_tokens = ds.X_test.ndim == 2
    if data_tokens != tokens:
        raise InputError(
            f"data set {name} holds {'token ids [N, T]' if data_tokens else 'features [N, T, F]'} but the model takes "
            f"{'token ids [batch, time]' if tokens else 'features [batch, time, features]'}",
            "use the data set the model was trained on")
    t = ds.X_test.shape[1]
    f = None if tokens else ds.X_test.shape[2]
    if (t, f) != (seq_len, num_features):
        hint = (f"convert with --seq-len {t}" if f == num_features else "use the data set the model was trained on")
        have, want = ([t] if f is None else [t, f]), ([seq_len] if tokens else [seq_len, num_features])
        raise InputError(f"data set {name} has sequences of shape {have} but the model takes {want}", hint)
    if tokens:
        for split in ("X_train", "X_test"):
            check_ids(getattr(ds, split), vocab, f"data set {name} ({split})")
    n = len(ds.X_test)
    idx = np.arange(n) if n <= VALIDATION_SAMPLES else select_indices(n, VALIDATION_SAMPLES, seed)
    record = {"source": "dataset", "dataset": name, "split": "test", "samples": int(len(idx)),
              "indices_sha256": hashlib.sha256(idx.astype(np.int64).tobytes()).hexdigest()}
    X_val = np.ascontiguousarray(ds.X_test[idx], np.int32 if tokens else np.float32)
    return Inputs(ds, name, ds.task, X_val, ds.y_test[idx], record, vocab)
