"""Exact simplifications of a loaded model before it is traced for conversion (conversion child only).

A `LayerNormalization` whose normalized axes hold one element (the Keras timeseries-classification Transformer's,
over a univariate `[T, 1]` stream) computes `(x - mean(x)) * rsqrt(var + eps) * gamma + beta` with `x - mean(x)`
identically 0: its output is `beta`, whatever the input. Traced as is, it breaks int8: SQUARED_DIFFERENCE(x, mean)
is calibrated to the range [0, 0] and LiteRT aborts preparing it (`QuantizeMultiplierSmallerThanOneExp`, SIGABRT),
and in float it multiplies rounding noise by 1/sqrt(eps) (Keras's own float32 output is about 1e-4 * |x| off the
exact `beta`). `simplify_degenerate_norms` makes each such layer return `beta` broadcast to its input's shape (a
constant at a fixed shape): the exact value, in every recipe. Imports Keras.
"""

from __future__ import annotations

import math
from typing import Any


def _normalized_size(layer: Any) -> int | None:
    shape = getattr(getattr(layer, "input", None), "shape", None)
    if shape is None:
        return None
    axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
    dims = [shape[a] for a in axes]
    return None if any(d is None for d in dims) else math.prod(int(d) for d in dims)


def _walk(model: Any) -> list[Any]:
    out, stack = [], list(getattr(model, "layers", None) or [])
    while stack:
        layer = stack.pop(0)
        out.append(layer)
        stack[:0] = list(getattr(layer, "layers", None) or [])
    return out


def simplify_degenerate_norms(model: Any) -> list[str]:
    """Make every LayerNormalization over a single element return its `beta` (see the module docstring); the names
    of the layers changed. Changes the loaded layer objects in place (the child's own copy of the model)."""
    import keras
    from keras import ops

    changed = []
    for layer in _walk(model):
        if type(layer) is not keras.layers.LayerNormalization or getattr(layer, "rms_scaling", False):
            continue
        try:
            size = _normalized_size(layer)
        except (AttributeError, ValueError):  # a layer called more than once has no single input shape
            continue
        if size != 1:
            continue

        def constant_beta(inputs: Any, *args: Any, layer: Any = layer, **kwargs: Any) -> Any:
            shape = ops.shape(inputs)
            beta = layer.beta if layer.beta is not None else ops.zeros((1,), dtype=layer.compute_dtype)
            return ops.cast(ops.broadcast_to(ops.convert_to_tensor(beta), shape), layer.compute_dtype)

        layer.call = constant_beta
        changed.append(layer.name)
    return changed
