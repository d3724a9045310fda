"""The calibration grid: which small models `edgeseq calibrate` builds, as data (the child builds them by `block`).

Each spec is one Keras block at one shape, converted fp32 and int8 with the real TF converter (the `convert` route:
WHILE loops for RNNs, the fused LSTM op where asked) and timed op by op (`profile --ops`) with XNNPACK on and off.
The shapes are the ones sequence models use: recurrent cells of 32-192 units over 8-40 features and 16-256 steps
(long loops pin what a loop pays per trip), attention over 16-512 positions at widths 32-64 (512 x 512 scores of 4
heads no longer fit the caches: the per-op lines need that side too), a causal Transformer's KV-cache step
(edgeseq's own step model), dense stacks and their activations, Conv1D and Conv2D/DepthwiseConv2D/max-pooling front
ends, a Bidirectional LSTM (two loops, REVERSE_V2), token embeddings (GATHER), and QUANTIZE/DEQUANTIZE at every int8
file's edges. `quick` is a four-model grid for tests.
"""

from __future__ import annotations

import hashlib
import json

RECIPES = ("fp32", "int8")
# calibration files live in <the store's folder>/CALIBRATION_DIR/<target>-<grid key>/: their runs feed estimates,
# and are no user's models (report tables and recommend leave them out)
CALIBRATION_DIR = "edgeseq-calibration"
GRID_VERSION = 1

# block -> parameter sets; names are derived from them, so a file name says what it holds
_FULL: dict[str, list[dict]] = {
    "rnn": [{"cell": c, "units": u, "steps": t, "features": f}
            for c in ("rnn", "gru", "lstm") for (u, t, f) in ((32, 16, 8), (64, 128, 16), (128, 24, 40), (192, 48, 16))]
    + [{"cell": "gru", "units": 32, "steps": 96, "features": 80},  # a long, wide input carried through the loop
       {"cell": "lstm", "units": 48, "steps": 256, "features": 16},
       {"cell": "lstm", "units": 32, "steps": 48, "features": 16, "bidirectional": 1}],  # two loops, REVERSE_V2
    "fused_lstm": [{"units": 32, "steps": 16, "features": 8}, {"units": 64, "steps": 16, "features": 16}],
    "attention": [{"d": 32, "heads": 2, "steps": 16, "ff": 64}, {"d": 48, "heads": 4, "steps": 64, "ff": 96},
                  {"d": 64, "heads": 4, "steps": 160, "ff": 128}, {"d": 48, "heads": 4, "steps": 256, "ff": 96},
                  {"d": 32, "heads": 4, "steps": 512, "ff": 64}],  # 4 x 512 x 512 scores: past the caches
    "kvstep": [{"d": 32, "heads": 2, "cache": 64}, {"d": 64, "heads": 4, "cache": 256}],
    "matmul": [{"steps": 32, "d": 16}, {"steps": 128, "d": 32}, {"steps": 512, "d": 16}],
    "dense": [{"steps": 1, "features": 16, "units": 32}, {"steps": 32, "features": 16, "units": 64},
              {"steps": 128, "features": 40, "units": 128}],
    "conv1d": [{"steps": 64, "features": 16, "channels": 32}, {"steps": 128, "features": 40, "channels": 64}],
    "conv2d": [{"steps": 32, "features": 16, "channels": 8}, {"steps": 64, "features": 40, "channels": 16}],
    "embedding": [{"vocab": 100, "d": 16, "steps": 32, "units": 32}, {"vocab": 1000, "d": 32, "steps": 64,
                                                                     "units": 64}],
}
_QUICK: dict[str, list[dict]] = {
    "dense": [{"steps": 4, "features": 8, "units": 16}],
    "rnn": [{"cell": "gru", "units": 16, "steps": 4, "features": 8}],
}


def is_calibration_file(path: str) -> bool:
    from pathlib import Path

    return CALIBRATION_DIR in Path(str(path)).parts


def spec_name(block: str, params: dict) -> str:
    bits = [block] + [f"{k[0]}{v}" if isinstance(v, int) else str(v) for k, v in sorted(params.items())]
    return "-".join(bits)


def grid(quick: bool = False) -> list[dict]:
    """[{"name", "block", "params"}] in a fixed order (the progress line counts them)."""
    table = _QUICK if quick else _FULL
    return [{"name": spec_name(b, p), "block": b, "params": p} for b, ps in table.items() for p in ps]


def grid_key(quick: bool = False) -> str:
    """Short hash of the grid and its version: the calibration folder's name, so a changed grid starts afresh."""
    text = json.dumps([GRID_VERSION, grid(quick)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
