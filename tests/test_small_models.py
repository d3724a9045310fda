"""Small models: the graph's own bytes stay small next to the weights (quantize/slim.py), so int8 pays there too."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_a_7k_parameter_lstm_is_under_0_45x_fp32_in_int8(tmp_path):
    """Issue 23's case: 7.3K parameters (two stacked LSTM(24), T=140, one feature, 5 classes) were 20.4 KB in int8
    against 40.0 KB in fp32 (0.51x), 13 KB of it graph: names, empty tables, metadata, unread loop results."""
    import keras

    from edgeseq.datasets.base import Dataset
    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.convert import convert_model
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.quantize.validate import run_tflite

    keras.utils.set_random_seed(0)
    model = build_model("lstm", "tiny", seq_len=140, num_features=1, num_outputs=5, units=24, num_layers=2)
    assert model.count_params() == 7325
    model.save(tmp_path / "lstm.keras")
    rng = np.random.default_rng(0)
    X = np.sin(np.linspace(0, 40, 140))[None, :, None] * rng.uniform(0.5, 2, (96, 1, 1)) \
        + 0.1 * rng.standard_normal((96, 140, 1))
    y = rng.integers(0, 5, 96)
    data = Dataset("toy", "classification", X[:64].astype(np.float32), y[:64], X[64:].astype(np.float32), y[64:],
                   num_classes=5)
    fp32, int8 = convert_model(tmp_path / "lstm.keras", ["fp32", "int8-pt"], out_dir=tmp_path / "out",
                               calibration=data, strict=False)
    assert int8.manifest["route"]["rnn"] == "loop" and fp32.validation["passed"]
    sizes = [r.tflite_path.stat().st_size for r in (fp32, int8)]
    assert sizes[1] <= 0.45 * sizes[0], sizes
    # compaction changed no output: the written fp32 file computes what Keras does, bit for bit as before
    got = run_tflite(load_interpreter(fp32.tflite_path), data.X_test[:4])
    np.testing.assert_allclose(got, model.predict(data.X_test[:4], verbose=0), atol=1e-5)
