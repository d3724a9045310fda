"""`edgeseq quant-report`: every op of a quantized file with its error against the float model, the ranking (a
broken input range names the first op it feeds), convert's summary line on failed parity, and the report's table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _tiny_tflite import dense_model
from _zoo_cache import small_zoo

from edgeseq.cli import main
from edgeseq.quantize.quant_match import CONVERSIONS, rank
from edgeseq.quantize.quant_report import finish, sidecar_path
from edgeseq.report.quant import quant_report_section

T, F, CLASSES = 12, 3, 4


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def op(index: int, kind: str, local_snr: float | None, **kw) -> dict:
    return {"index": index, "type": kind, "layer": None, "mse": 1.0, "cosine": 0.9, "snr_db": 1.0,
            "local_mse": 0.0 if local_snr is None else 10 ** (-local_snr / 10), "local_cosine": 1.0,
            "local_snr_db": local_snr, **kw}


def test_ops_rank_by_local_snr_and_near_ties_in_graph_order():
    ops = [op(0, "QUANTIZE", -5.0), op(1, "FULLY_CONNECTED", 0.0), op(2, "ADD", 0.0), op(9, "RSQRT", -0.2),
           op(10, "SOFTMAX", 30.0), op(11, "MUL", 31.5), op(12, "ADD", None)]
    order = [o["index"] for o in rank(ops)]
    # the broken input range zeroes 1, 2 and 9 alike: the first of them is where it starts; conversions unranked
    assert order == [1, 2, 9, 10, 11, 12]
    raw = {"ops": ops, "output": {"mse": 0.1, "cosine": 0.5, "snr_db": 0.6}, "samples": 3, "matched": 7, "total": 7}
    done = finish(raw)
    assert done["ranked"] == order and done["summary"].startswith(
        "worst ops by local SNR: #1 FULLY_CONNECTED 0.0 dB, #2 ADD 0.0 dB, #9 RSQRT -0.2 dB; model output SNR 0.6 dB")


def test_a_float_file_has_nothing_to_report(tmp_path, capsys):
    path = tmp_path / "dense-fp32.tflite"
    path.write_bytes(dense_model())
    code, _, err = cli(capsys, "quant-report", str(path), "--dataset", "random")
    assert code == 2 and "is a float file: no quantized op to report on" in err


def test_the_report_shows_saved_tables_and_says_how_to_make_the_missing_ones(tmp_path):
    a, b = tmp_path / "m-int8.tflite", tmp_path / "m-dynamic.tflite"
    rep = finish({"ops": [op(1, "FULLY_CONNECTED", 30.0, layer="dense")], "output": {"mse": 0.0, "cosine": 1.0,
                  "snr_db": 40.0}, "samples": 5, "matched": 1, "total": 1})
    rep |= {"schema": "edgeseq.quant-report/1", "dataset": "toy", "reference": "x"}
    sidecar_path(a).write_text(json.dumps(rep))
    rows = [{"model_path": str(a), "recipe": "int8"}, {"model_path": str(b), "recipe": "dynamic"},
            {"model_path": str(tmp_path / "m-fp32.tflite"), "recipe": "fp32"}]
    page = quant_report_section(rows, "html")
    assert "<h3>m-int8.tflite</h3>" in page and "<td>dense</td>" in page and "30.0" in page
    assert "quant-report " + str(b) in page and "m-fp32" not in page
    assert "### m-int8.tflite" in quant_report_section(rows, "md") and quant_report_section(rows, "csv") == ""


def toy_npz(path: Path, broken_channel: int | None = None, seq_len: int = T, features: int = F) -> Path:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((160, seq_len, features)).astype(np.float32)
    y = (X[:, -1, 0] > 0).astype(np.int64) + 2 * (X[:, -2, 1] > 0).astype(np.int64)
    X_train = X[:96].copy()
    if broken_channel is not None:
        X_train[:, :, broken_channel] *= 1000.0  # calibration sees this channel 1000x larger than it is
    np.savez(path, X_train=X_train, y_train=y[:96], X_test=X[96:], y_test=y[96:])
    return path


@pytest.fixture(scope="module")
def tiny_transformer(tmp_path_factory) -> Path:
    import keras

    from edgeseq.models.zoo import build_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("qr") / "tr.keras"
    build_model("transformer", "tiny", seq_len=T, num_features=F, num_outputs=CLASSES).save(path)
    return path


@pytest.mark.slow
def test_every_op_gets_its_error_and_layer_and_the_report_is_saved(tiny_transformer, tmp_path, capsys):
    data = toy_npz(tmp_path / "toy.npz")
    out = tmp_path / "out"
    code, _, err = cli(capsys, "convert", str(tiny_transformer), "--recipe", "fp32,int8", "--granularity", "channel",
                       "--dataset", str(data), "--out", str(out))
    assert code == 0, err
    code, text, err = cli(capsys, "quant-report", str(out / "tr-int8-pc.tflite"), "--dataset", str(data), "--json",
                          "--samples", "20")
    assert code == 0, err
    r = json.loads(text)
    assert r["schema"] == "edgeseq.quant-report/1" and r["samples"] == 20 and r["dataset"] == "toy.npz"
    assert r["matched"] == r["total"] == len(r["ops"]) and "tr-fp32-pc.tflite" in r["reference"]
    for o in r["ops"]:
        assert {"mse", "cosine", "snr_db"} <= set(o), o
        assert o["type"] in CONVERSIONS or "local_mse" in o, o
    assert r["ops"][1]["type"] == "FULLY_CONNECTED" and r["ops"][1]["layer"] == "input_proj"
    assert r["summary"].startswith("worst ops by local SNR: #") and Path(r["written"]) == sidecar_path(
        out / "tr-int8-pc.tflite")
    code, text, _ = cli(capsys, "quant-report", str(out / "tr-int8-pc.tflite"), "--dataset", str(data),
                        "--samples", "5", "--top", "3")
    assert code == 0 and text.splitlines()[-2].startswith("worst ops") and len(text.splitlines()) == 2 + 3 + 2


@pytest.mark.slow
def test_a_broken_input_range_is_named_where_it_is_fed_first(tiny_transformer, tmp_path, capsys):
    data = toy_npz(tmp_path / "broken.npz", broken_channel=1)
    args = ["convert", str(tiny_transformer), "--recipe", "int8", "--granularity", "channel", "--dataset", str(data)]
    code, out, err = cli(capsys, *args, "--out", str(tmp_path / "strict"))
    assert code == 4 and "failed parity" in err, err
    assert "worst ops by local SNR: #1 FULLY_CONNECTED (input_proj)" in err, err  # convert says where
    code, _, err = cli(capsys, *args, "--out", str(tmp_path / "kept"), "--no-strict")
    assert code == 0 and "worst ops by local SNR: #1 FULLY_CONNECTED (input_proj)" in err, err
    code, text, err = cli(capsys, "quant-report", str(tmp_path / "kept" / "tr-int8-pc.tflite"), "--dataset",
                          str(data), "--json", "--samples", "20")
    assert code == 0, err
    r = json.loads(text)
    assert "converted fp32 now" in r["reference"]  # no fp32 file beside it: the source model, converted
    worst = next(o for o in r["ops"] if o["index"] == r["ranked"][0])
    assert worst["index"] == 1 and worst["layer"] == "input_proj"


@pytest.mark.slow
def test_every_int8_file_of_the_small_zoo_lists_every_op_with_its_error(conversions, tmp_path, capsys):
    """Every whole-sequence int8 file of the small zoo: the RNNs' loops (or fused LSTM) and the Transformer. The
    unrolled files (one copy of the cell per step: ~5 minutes of one-op models on a 2-core runner) join with
    EDGESEQ_TEST_UNROLLED=1 (every op of all three matched when quant-report was built)."""
    files = [p for p in small_zoo(conversions) if "int8" in p.name and p.suffix == ".tflite"]
    data = toy_npz(tmp_path / "zoo.npz", seq_len=64, features=16)
    assert len([p for p in files if "-step" not in p.name]) >= 7
    unrolled = os.environ.get("EDGESEQ_TEST_UNROLLED") == "1"
    for path in files:
        if "step" in path.name or ("unroll" in path.name and not unrolled):
            continue  # step models take (x, state): the report compares whole-sequence files
        copy = tmp_path / path.name  # the cache is read-only: report on copies (with their manifests)
        copy.write_bytes(path.read_bytes())
        for sibling in (path.with_suffix(".json"), path.parent / f"{path.name.split('-')[0]}-fp32.tflite",
                        path.parent / f"{path.name.split('-')[0]}-fp32.json"):
            if sibling.exists() and not (tmp_path / sibling.name).exists():
                (tmp_path / sibling.name).write_bytes(sibling.read_bytes())
        code, text, err = cli(capsys, "quant-report", str(copy), "--dataset", str(data), "--json", "--samples", "8")
        assert code == 0, f"{path.name}: {err}"
        r = json.loads(text)
        assert r["matched"] == r["total"] and r["ranked"], (path.name, [o for o in r["ops"] if "unmatched" in o])
        assert all("mse" in o for o in r["ops"]), path.name
