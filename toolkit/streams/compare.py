"""The streaming trade-off on one RNN and one causal Transformer, measured (the demo's streaming comparison).

Exports the RNN's step model and the Transformer's KV-cache and window models per context (edgeseq.quantize.stream.convert),
profiles each in stream mode (edgeseq.streams.profile) and returns one row per (kind, context).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeseq.models.streamkind import StreamKind
from edgeseq.quantize.stream.convert import convert_stream_many
from edgeseq.streams.profile import parse_contexts, profile_contexts


def _causal_twin(rnn_path: Path, out_dir: Path, max_len: int) -> Path:
    """An (untrained) causal zoo Transformer with the RNN's input and output shape: latency does not need training."""
    import keras

    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.loading import load_keras_model

    rnn = load_keras_model(rnn_path)
    _, t, f = rnn.inputs[0].shape
    outputs = int(rnn.outputs[0].shape[-1])
    task = "classification" if outputs >= 2 and type(rnn.layers[-1]).__name__ == "Softmax" else "regression"
    keras.utils.set_random_seed(0)
    model = build_model("transformer", "small", seq_len=int(t or 64), num_features=int(f), task=task,
                        num_outputs=outputs, causal=True, max_len=max(max_len, int(t or 64)),
                        name="transformer-causal")
    path = out_dir / "transformer-causal.keras"
    model.save(path)
    return path


def stream_compare(
    rnn_model_path: str | os.PathLike,
    transformer_model_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    contexts: tuple[int, ...] | list[int] = (16, 64, 256),
    *,
    recipe: str = "fp32",
    runs: int = 100,
    hop_ms: float | None = 10.0,
    db: str | os.PathLike | None = None,
    target: str = "local",
    state: str = "external",
) -> list[dict]:
    """The streaming trade-off on one RNN and one causal Transformer: export the RNN step model, the Transformer's
    KV-cache and window models per context, profile each in stream mode, and return one row per (kind, context):
    model, kind, context, p50_us, state_bytes, peak_rss_kb, deadline_met_share, x_rnn (p50 / the RNN's p50 at
    that context). `transformer_model_path=None` builds an untrained causal twin of the RNN's shape (latency does
    not depend on the weights). `state` "both" (or "internal") adds (or takes) the step models with their state
    inside (rows of kind internal-state, paired with the host-carried ones by `form`). Runs go to `db` (default:
    out_dir/stream-results.db)."""
    out = Path(out_dir)
    from edgeseq.core.fsio.oserrors import make_dirs  # removed again if the command fails
    make_dirs(out)
    ctx = parse_contexts(list(contexts))
    tf_path = Path(transformer_model_path) if transformer_model_path else _causal_twin(Path(rnn_model_path), out,
                                                                                       max(ctx))
    common = {"recipes": [recipe], "out_dir": out, "name": None, "kv_capacity": None, "window": None,
              "seq_len": None, "calibration": None, "calibration_samples": None, "validate": False, "strict": True,
              "state": state}
    done = convert_stream_many([{**common, "model_path": rnn_model_path, "contexts": None, "windows": False},
                                {**common, "model_path": tf_path, "contexts": ctx, "windows": True}])
    if not done[0] or not done[0][0].ok:
        raise done[0][0].error
    files = [res.tflite_path for group in done for res in group if res.ok]
    rows = profile_contexts(files, ctx, runs=runs, warmup=10, hop_ms=hop_ms, target=target,
                            db=db if db is not None else out / "stream-results.db")
    rnn = {r["context"]: r["p50_us"] for r in rows if r["kind"] == r.get("form") == StreamKind.RECURRENT_STEP}
    rnn = rnn or {r["context"]: r["p50_us"] for r in rows if r.get("form") == StreamKind.RECURRENT_STEP}
    for r in rows:
        base = rnn.get(r["context"])
        r["x_rnn"] = (r["p50_us"] / base) if base and r["p50_us"] else None
    return rows
