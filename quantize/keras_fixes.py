"""Keras 3's TensorFlow `add` made safe for batch-1 graphs (what every conversion and step model traces).

Root cause of the Keras timeseries-classification Transformer failing to convert (issue 21): Keras 3's TensorFlow
backend turns `ops.add(x1, x2)` into `tf.nn.bias_add` whenever `x2` squeezes to one axis whose size matches axis 1
or the last axis of `x1` (keras/src/backend/tensorflow/numpy.py `add`, "Special case of tf.add"). With a free batch
a residual `x + inputs` of shape `[None, 96, 1]` squeezes to two axes and stays an `Add`. Rebuilt at batch 1 it is
`[1, 96, 1]`, squeezes to `[96]`, matches axis 1 and becomes `BiasAdd(data_format="NCHW")` on a rank-3 tensor, which
TF's converter lowers with a rank-4 transpose: "'tf.Transpose' op x should be of the same rank with y, got x of
rank 3, and y of rank 4". Any univariate (F=1) model with a residual add fails the same way. Worse, when both
candidate axes have the same size (`[1, 8, 8] + [1, 8, 1]`) Keras picks NHWC and adds along the wrong axis: Keras
itself computes different numbers at batch 1 than at any other batch size.

`batch1_safe_add()` keeps the special case only where it equals broadcasting (a rank-1 bias, Dense's own bias) and
uses `tf.add` for every operand of rank > 1: the same numbers as numpy broadcasting, at every batch size. It is
installed for the duration of a conversion's trace (conversion and streaming children) and around the host's
reference predictions. Imports Keras and TensorFlow: children and the host's reference pass only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0
_original: Any = None


def _safe_add(x1: Any, x2: Any) -> Any:
    import tensorflow as tf
    from keras.src.backend.common import dtypes
    from keras.src.backend.tensorflow import numpy as tfnp

    if isinstance(x1, int | float) or isinstance(x2, int | float):
        return _original(x1, x2)
    a, b = tfnp.convert_to_tensor(x1), tfnp.convert_to_tensor(x2)
    if len(b.shape) <= 1:  # a true bias vector: bias_add is what broadcasting does
        return _original(a, b)
    dtype = dtypes.result_type(a.dtype, b.dtype)
    return tf.add(tfnp.convert_to_tensor(a, dtype), tfnp.convert_to_tensor(b, dtype))


def _module() -> Any:
    from keras.src.backend.tensorflow import numpy as tfnp

    return tfnp


def _enter() -> None:
    global _depth, _original
    with _lock:
        tfnp = _module()
        if _depth == 0:
            _original = tfnp.add
            tfnp.add = _safe_add
        _depth += 1


def _exit() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0:
            _module().add = _original


@contextlib.contextmanager
def batch1_safe_add() -> Iterator[None]:
    """While active, Keras's TensorFlow `add` never becomes a `BiasAdd` for an operand of rank > 1 (see the module
    docstring). Re-entrant; restores Keras's own function on exit."""
    _enter()
    try:
        yield
    finally:
        _exit()


def install() -> None:
    """For the rest of this (child) process."""
    _enter()
