"""A source model whose own outputs are NaN or infinite on the validation inputs is refused before any conversion.

Converting it could only give a file whose parity is meaningless (NaN compares False with every tolerance); the
refusal names how many inputs gave NaN/inf and the first layer whose output is non-finite, so the user knows where
to look (a NaN weight, an overflow, a log of a negative number).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.core.errors import ModelError
from edgeseq.core.finite import kinds, nonfinite_rows


def first_nonfinite_layer(model: Any, X: Any) -> str | None:
    """The name of the first layer (in the model's order) whose output is NaN/inf on `X` (one or a few samples), or
    None when it cannot be told (a subclassed model, a layer with several outputs that Keras cannot expose)."""
    import keras

    try:
        layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
        outputs = [la.output for la in layers]
        probe = keras.Model(model.inputs, outputs)
        values = probe.predict(X, batch_size=64, verbose=0)
    except Exception:  # noqa: BLE001 - naming the layer is a courtesy; the refusal stands without it
        return None
    if len(layers) == 1:
        values = [values]
    for layer, value in zip(layers, values, strict=False):
        arrays = value if isinstance(value, list | tuple) else [value]
        if any(nonfinite_rows(np.asarray(a, dtype=np.float64)) for a in arrays):
            return layer.name
    return None


def refuse_nonfinite_source(model: Any, X: Any, reference: np.ndarray, label: str, where: str) -> None:
    """ModelError when `reference` (the model's outputs on `X`) holds NaN or inf. `where` says which inputs they
    were (e.g. "32 random validation inputs"); `X` is what model.predict took (an array, or a list per input), or
    None when the outputs came from another model (a window model): then no layer is named."""
    bad = nonfinite_rows(reference)
    if not bad:
        return
    rows = ~np.isfinite(np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)).all(axis=1)
    first = int(np.argmax(rows))
    layer = None
    if X is not None:
        sample = [x[first : first + 1] for x in X] if isinstance(X, list) else X[first : first + 1]
        layer = first_nonfinite_layer(model, sample)
    at = f"; the first layer with a non-finite output is {layer!r}" if layer else ""
    raise ModelError(
        f"{label}: the source model's own outputs are non-finite ({kinds(reference)}) on {bad} of {len(reference)} "
        f"{where}{at}; nothing converted",
        "check that layer's weights for NaN/inf (e.g. np.isfinite(w).all() for w in layer.get_weights()) and the "
        "input range; give real data with --dataset if random inputs are out of its domain",
    )
