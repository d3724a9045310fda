"""The int4w recipe: 4-bit weights by ai-edge-quantizer on the fp32 graph, large float tables in float16, the RNN
loop's constant size, and the refusal on tflite-runtime 2.14 (which computes wrong outputs on such files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_agent
from _tiny_tflite import TFLiteBuilder, dense_model

from edgeseq.quantize.capabilities import refusal
from edgeseq.quantize.int4 import FP16_TABLE_MIN, _fp16_tables, int4_weights
from edgeseq.quantize.recipes import Recipe, get_recipe
from edgeseq.quantize.slim import compact
from edgeseq.targets.agent.runtime import int4_tensors


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def add_table_model(n: int) -> bytes:
    """[1, n] + a constant [1, n] table: what a position table added to the input looks like."""
    b = TFLiteBuilder()
    sg = b.subgraph()
    x = b.tensor(sg, "x", [1, n])
    table = b.tensor(sg, "table", [1, n], data=np.sin(np.arange(n, dtype=np.float32))[None])
    y = b.tensor(sg, "y", [1, n])
    b.op(sg, "ADD", [x, table], [y], b.s.AddOptionsT())
    sg.inputs, sg.outputs = [x], [y]
    return b.finish()


def test_the_recipe_is_data_like_the_others():
    r = get_recipe("int4w")
    assert r.slug == "int4w" and not r.calibrated and "4-bit weights" in r.description
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert refusal({"recurrent", "token-ids"}, "int4w", "batch") is None


def test_dense_weights_become_int4_and_the_outputs_stay_close(tmp_path):
    fp32 = dense_model(seq=8, features=4, hidden=32)
    report: dict = {}
    q = int4_weights(fp32, report)
    assert report["int4"]["int4_tensors"] == 2 and report["int4"]["ops"]["FULLY_CONNECTED"] == "dynamic"
    path = tmp_path / "dense-int4w.tflite"
    path.write_bytes(q)
    assert int4_tensors(str(path)) == 2 and int4_tensors(str(tmp_path / "missing.tflite")) == 0
    (tmp_path / "dense.tflite").write_bytes(fp32)
    assert int4_tensors(str(tmp_path / "dense.tflite")) == 0
    x = np.random.default_rng(0).standard_normal((1, 8, 4)).astype(np.float32)
    want, got = run(fp32, x), run(q, x)
    assert np.abs(got - want).max() < 0.05 and got.argmax() == want.argmax()


def test_large_float_tables_go_float16_and_small_ones_stay():
    x = np.random.default_rng(1).standard_normal((1, FP16_TABLE_MIN)).astype(np.float32)
    big = add_table_model(FP16_TABLE_MIN)
    out, done = _fp16_tables(big)
    assert len(done) == 1 and done[0]["bytes_saved"] == 2 * FP16_TABLE_MIN
    assert len(compact(out)) < len(compact(big)) - FP16_TABLE_MIN  # as convert writes them: the old buffer dropped
    np.testing.assert_allclose(run(out, x), run(big, x), atol=1e-3)
    small = add_table_model(FP16_TABLE_MIN - 1)
    assert _fp16_tables(small) == (small, [])


@pytest.mark.slow
def test_tflite_runtime_214_is_refused_before_it_computes_wrong_outputs(tmp_path, tflite_runtime_python):
    path = tmp_path / "dense-int4w.tflite"
    path.write_bytes(int4_weights(dense_model(), {}))
    rc, d, _ = test_agent.run_agent("--model", str(path), "--runs", "5", python=tflite_runtime_python)
    assert rc == 3 and d["error"]["kind"] == "op_unsupported", d
    assert "4-bit weights" in d["error"]["message"] and "ai-edge-litert" in d["error"]["hint"]
    rc, d, _ = test_agent.run_agent("--model", str(path), "--runs", "5")  # ai-edge-litert runs it
    assert rc == 0, d


@pytest.mark.slow
def test_a_looped_gru_keeps_its_loop_and_its_size_in_t(tmp_path):
    import keras

    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.convert import convert_model

    keras.utils.set_random_seed(0)
    path = tmp_path / "gru.keras"
    build_model("gru", "small", seq_len=None, num_features=8, num_outputs=4).save(path)
    sizes = {}
    for steps in (16, 64):
        results = convert_model(path, ["fp32", "int4w"], out_dir=tmp_path / f"t{steps}", seq_len=steps)
        fp32, int4 = (r.manifest for r in results)
        assert int4["route"]["rnn"] == "loop" and int4["route"]["int4"]["int4_tensors"] >= 2
        assert results[1].validation["passed"]
        sizes[steps] = (fp32["artifact"]["bytes"], int4["artifact"]["bytes"])
    assert sizes[16][1] == sizes[64][1], sizes  # constant in T, like the loop it keeps
    assert sizes[64][1] <= 0.25 * sizes[64][0], sizes
