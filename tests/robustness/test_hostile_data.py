"""Hostile data and options, through every verb that reads them: one `error:` line, exit 2, no traceback, bounded
time and memory, nothing written (see _harness.run_hostile).

The corpus is generated here, at test time: .npz files written byte by byte (zip headers, deflate streams and .npy
headers crafted to lie), so no binary is checked in. A zip bomb is a deflate stream of zeros built from one flushed
block repeated (1 GiB of zeros in ~1 MB, made in well under a second), so the bomb cases cost no compression time.

Every case runs through `datasets show`, `train`, `convert --calibration` and `evaluate --dataset`; all of them reach
the data before TensorFlow, so a case costs a Python start-up, not a TensorFlow import. The .tflite `evaluate` needs
is a hand-built flatbuffer (one MEAN op), so nothing here imports TensorFlow except the @slow cases.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from _harness import run, run_hostile

GiB = 1 << 30
T, F, C = 7, 3, 3
# `datasets show` imports numpy and click only: a refused bomb must cost no more than that.
SHOW_RSS_MB = 150.0
# train/convert/evaluate refuse before TensorFlow is imported: the same bound holds there.
VERB_RSS_MB = 250.0


# ------------------------------------------------------------------------------------------------ corpus: pieces
def good_arrays(**over) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(12, T, F)).astype(np.float32), "y_train": np.arange(12) % C,
              "X_test": rng.normal(size=(6, T, F)).astype(np.float32), "y_test": np.arange(6) % C}
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple, fortran: bool = False, version: int = 1) -> bytes:
    """A .npy header saying whatever we like (numpy's own layout: padded to 64 bytes, newline-terminated)."""
    body = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}".encode("latin1")
    return raw_npy_header(body, version)


def raw_npy_header(body: bytes, version: int = 1) -> bytes:
    prefix = 10 if version == 1 else 12
    pad = -(prefix + len(body) + 1) % 64
    body = body + b" " * pad + b"\n"
    length = struct.pack("<H", len(body)) if version == 1 else struct.pack("<I", len(body))
    return b"\x93NUMPY" + bytes([version, 0]) + length + body


def member(name: str, payload: bytes, *, deflate: bool = True, file_size: int | None = None,
           crc: int | None = None, method: int | None = None, flags: int = 0) -> dict:
    """One zip member; sizes and CRC are the honest ones unless overridden."""
    data = _deflate(payload) if deflate else payload
    return {"name": name, "data": data, "method": method if method is not None else (8 if deflate else 0),
            "crc": zlib.crc32(payload) if crc is None else crc,
            "file_size": len(payload) if file_size is None else file_size, "flags": flags}


def _deflate(payload: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(payload) + c.flush()


def zeros_stream(prefix: bytes, zeros: int, chunk: int = 1 << 20) -> tuple[bytes, int]:
    """(raw deflate stream of `prefix` + `zeros` zero bytes, its CRC-32), built from one repeated flushed block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    assert again == block, "a fully flushed block of zeros must compress the same each time"
    n, rest = divmod(zeros, chunk)
    tail = c.compress(bytes(rest)) + c.flush()
    crc, zero_chunk = zlib.crc32(prefix), bytes(chunk)
    for _ in range(n):
        crc = zlib.crc32(zero_chunk, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return head + block * n + tail, crc


def bomb_member(name: str, nbytes: int, *, file_size: int | None = None, crc: int | None = None) -> dict:
    """`name` holding a float32 array of nbytes zeros, deflated ~1000x."""
    header = npy_header("<f4", (nbytes // (4 * T * F), T, F))
    stream, real_crc = zeros_stream(header, nbytes)
    return {"name": name, "data": stream, "method": 8, "crc": real_crc if crc is None else crc,
            "file_size": len(header) + nbytes if file_size is None else file_size, "flags": 0}


def write_zip(path: Path, members: list[dict]) -> Path:
    """A zip written by hand: local headers, data, central directory, end record (sizes < 4 GiB, no zip64)."""
    out, central = bytearray(), bytearray()
    for m in members:
        name = m["name"].encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m["flags"], m["method"], 0, 0x21, m["crc"],
                           len(m["data"]), m["file_size"], len(name), 0) + name + m["data"]
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m["flags"], m["method"], 0, 0x21, m["crc"],
                               len(m["data"]), m["file_size"], len(name), 0, 0, 0, 0, 0, offset) + name
    cd_offset = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), cd_offset, 0)
    path.write_bytes(bytes(out))
    return path


def npz_with(path: Path, replace: dict[str, dict] | None = None, extra: list[dict] = (), **arrays) -> Path:
    """The good arrays (overridden by `arrays`), with members swapped for crafted ones by key."""
    members = {f"{k}.npy": member(f"{k}.npy", npy_bytes(v)) for k, v in good_arrays(**arrays).items()}
    for key, m in (replace or {}).items():
        members[f"{key}.npy"] = m
    return write_zip(path, [*members.values(), *extra])


# ------------------------------------------------------------------------------------------------ corpus: cases
def _header_1tb(d: Path) -> Path:  # a header claiming a terabyte over 20 bytes of data
    return npz_with(d / "tb.npz", {"X_train": member("X_train.npy", npy_header("<f4", (2**38, T, F)) + bytes(20))})


def _header_more_than_held(d: Path) -> Path:  # a small claim that still does not match the member's size
    return npz_with(d / "short.npz", {"X_train": member("X_train.npy", npy_header("<f4", (100, T, F)) + bytes(80))})


def _header_garbage(d: Path) -> Path:  # numpy's parser raised tokenize.TokenError on this one
    body = b"{'descr': '<f4', 'fortran_order': False, 'shape': (12, 7, 3\x00\xff''' "
    return npz_with(d / "garbage.npz", {"X_train": member("X_train.npy", raw_npy_header(body) + bytes(1008))})


def _header_not_a_dict(d: Path) -> Path:
    return npz_with(d / "notdict.npz", {"y_train": member("y_train.npy", raw_npy_header(b"[1, 2, 3]") + bytes(96))})


def _header_huge_length(d: Path) -> Path:  # a v2 header claiming a 4 GB dictionary
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{'descr': '<f4'" + bytes(100)
    return npz_with(d / "hugelen.npz", {"X_test": member("X_test.npy", data)})


def _bad_magic(d: Path) -> Path:
    return npz_with(d / "magic.npz", {"X_train": member("X_train.npy", b"NOTNUMPY" + bytes(200))})


def _object_array(d: Path) -> Path:
    return npz_with(d / "pickled.npz", y_train=np.array([{"a": 1}] * 12, dtype=object))


def _structured_dtype(d: Path) -> Path:
    return npz_with(d / "struct.npz", X_train=np.zeros((12, T, F), dtype=[("a", "<f4"), ("b", "<i4")]))


def _bomb(d: Path) -> Path:  # 1 GiB of zeros in ~1 MB: the compression ratio gives it away before inflating
    return npz_with(d / "bomb.npz", {"X_train": bomb_member("X_train.npy", GiB)})


def _bomb_lying_size(d: Path) -> Path:  # declares the size of a small array, inflates to 1 GiB: the CRC gives it away
    small = npy_bytes(good_arrays()["X_train"])
    return npz_with(d / "liar.npz", {"X_train": bomb_member("X_train.npy", GiB, file_size=len(small))})


def _declared_over_limit(d: Path) -> Path:  # two stored members whose directory entries claim 3.5 GiB each
    claims = {k: member(f"{k}.npy", npy_bytes(good_arrays()[k]), deflate=False, file_size=3584 << 20)
              for k in ("X_train", "X_test")}
    return npz_with(d / "claims.npz", claims)


def _crc_mismatch(d: Path) -> Path:
    return npz_with(d / "crc.npz", {"X_train": member("X_train.npy", npy_bytes(good_arrays()["X_train"]), crc=1234)})


def _corrupt_deflate(d: Path) -> Path:
    m = member("X_train.npy", npy_bytes(good_arrays()["X_train"]))
    m["data"] = m["data"][:40] + bytes(b ^ 0xFF for b in m["data"][40:80]) + m["data"][80:]
    return npz_with(d / "flipped.npz", {"X_train": m})


def _truncated(d: Path) -> Path:
    path = npz_with(d / "whole.npz")
    cut = d / "truncated.npz"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    path.unlink()
    return cut


def _unknown_method(d: Path) -> Path:
    return npz_with(d / "method.npz", {"y_test": member("y_test.npy", npy_bytes(np.arange(6) % C), method=99)})


def _encrypted(d: Path) -> Path:
    return npz_with(d / "encrypted.npz", {"y_test": member("y_test.npy", npy_bytes(np.arange(6) % C), flags=1)})


def _duplicate_key(d: Path) -> Path:
    return npz_with(d / "dup.npz", extra=[member("y_train.npy", npy_bytes(np.zeros(12, np.int64)))])


def _missing_key(d: Path) -> Path:
    return npz_with(d / "missing.npz", {"X_test": member("X_test_old.npy", npy_bytes(good_arrays()["X_test"]))})


def _huge_label(d: Path) -> Path:
    y = np.arange(12) % C
    y[3] = 2_000_000_001
    return npz_with(d / "label.npz", y_train=y)


def _wrong_rank(d: Path) -> Path:
    return npz_with(d / "rank.npz", X_train=np.zeros((12, T * F), np.float32))


def _feature_mismatch(d: Path) -> Path:
    return npz_with(d / "features.npz", X_test=np.zeros((6, T, F + 1), np.float32))


def _nan_values(d: Path) -> Path:
    x = good_arrays()["X_train"]
    x[0, 0, 0] = np.nan
    return npz_with(d / "nan.npz", X_train=x)


def _inf_targets(d: Path) -> Path:
    return npz_with(d / "inf.npz", y_train=np.full(12, np.inf), y_test=np.zeros(6))


def _not_a_zip(d: Path) -> Path:
    (d / "text.npz").write_text("X_train,y_train\n1,2\n")
    return d / "text.npz"


CASES = {  # id: (builder, words the one error line must hold)
    "header-claims-1TB": (_header_1tb, ("X_train", "limit")),
    "header-claims-more-than-held": (_header_more_than_held, ("X_train", "corrupt")),
    "header-garbage": (_header_garbage, ("X_train", "malformed .npy header")),
    "header-not-a-dict": (_header_not_a_dict, ("y_train", "malformed .npy header")),
    "header-length-4GB": (_header_huge_length, ("X_test", "malformed .npy header")),
    "bad-npy-magic": (_bad_magic, ("X_train", "malformed .npy header")),
    "object-array": (_object_array, ("y_train", "pickled")),
    "structured-dtype": (_structured_dtype, ("X_train", "structured")),
    "zip-bomb-1GiB": (_bomb, ("X_train", "inflates", "savez")),
    "zip-bomb-lying-size": (_bomb_lying_size, ("X_train", "corrupt")),
    "declared-3.5GiB": (_declared_over_limit, ("limit", "EDGESEQ_MAX_DATA_BYTES")),
    "crc-mismatch": (_crc_mismatch, ("X_train", "corrupt")),
    "corrupt-deflate": (_corrupt_deflate, ("X_train", "corrupt")),
    "truncated": (_truncated, ("truncated",)),
    "unknown-compression": (_unknown_method, ("y_test", "cannot be opened")),
    "encrypted": (_encrypted, ("y_test", "encrypted")),
    "duplicate-key": (_duplicate_key, ("y_train", "more than once")),
    "missing-key": (_missing_key, ("missing key", "X_test")),
    "label-2e9": (_huge_label, ("2,000,000,001", "100,000 classes")),
    "wrong-rank": (_wrong_rank, ("X_train", "rank 2")),
    "feature-mismatch": (_feature_mismatch, ("features",)),
    "nan-values": (_nan_values, ("X_train", "NaN")),
    "inf-targets": (_inf_targets, ("y_train", "NaN/inf")),
    "not-a-zip": (_not_a_zip, ("not an .npz",)),
}


def tiny_tflite(path: Path) -> Path:
    """A valid [1, T, F] -> [1, F] float model (one MEAN over time), written with the flatbuffers object API."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name, shape, dtype, buf):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, dtype, buf
        return t

    axis = s.BufferT()
    axis.data = list(np.array([1], np.int32).tobytes())
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.MEAN
    code.version = 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 2], [1]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.ReducerOptions, s.ReducerOptionsT()
    graph = s.SubGraphT()
    graph.tensors = [tensor("inputs", [1, T, F], s.TensorType.FLOAT32, 1),
                     tensor("probs", [1, F], s.TensorType.FLOAT32, 2), tensor("axis", [1], s.TensorType.INT32, 3)]
    graph.inputs, graph.outputs, graph.operators, graph.name = [0], [1], [op], "main"
    model = s.ModelT()
    model.version, model.description, model.subgraphs = 3, "edgeseq hostile-input test", [graph]
    model.buffers, model.operatorCodes = [s.BufferT(), s.BufferT(), s.BufferT(), axis], [code]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Every hostile file, plus a good one, a .tflite and a stand-in .keras, in a folder the cases only read."""
    d = tmp_path_factory.mktemp("hostile-corpus")
    files = {case: build(d) for case, (build, _) in CASES.items()}
    files["good"] = npz_with(d / "good.npz")
    files["tflite"] = tiny_tflite(d / "mean.tflite")
    # convert loads --calibration before the model, so a hostile file is refused before any TensorFlow work; the
    # stand-in is never read in these cases (the @slow cases below use a real model).
    files["keras"] = d / "M.keras"
    files["keras"].write_bytes(b"not read: the data is refused first")
    return files


def verb_args(verb: str, data: Path, corpus: dict[str, Path]) -> list[str]:
    return {
        "show": ["datasets", "show", str(data)],
        "train": ["train", "--model", "gru", "--preset", "tiny", "--dataset", str(data), "--epochs", "1",
                  "--out", "runs/x"],
        "convert": ["convert", str(corpus["keras"]), "--calibration", str(data), "--recipe", "int8", "--out", "art"],
        "evaluate": ["evaluate", str(corpus["tflite"]), "--dataset", str(data)],
    }[verb]


# ------------------------------------------------------------------------------------------------ data matrix
@pytest.mark.parametrize("verb", ["show", "train", "convert", "evaluate"])
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_npz_through_every_verb(case, verb, corpus, tmp_path):
    _, words = CASES[case]
    run_hostile(verb_args(verb, corpus[case], corpus), cwd=tmp_path, code=2, contains=words,
                watch=(corpus["good"].parent,), max_rss_mb=SHOW_RSS_MB if verb == "show" else VERB_RSS_MB,
                timeout=60)


def test_the_good_file_passes_where_the_hostile_ones_fail(corpus, tmp_path):
    """The control: the corpus's good file loads and evaluates, so each refusal above is the crafted part's."""
    from _harness import run

    show = run(["datasets", "show", str(corpus["good"]), "--json"], cwd=tmp_path)
    assert show.returncode == 0 and '"num_classes": 3' in show.stdout, show.stderr
    ev = run(["evaluate", str(corpus["tflite"]), "--dataset", str(corpus["good"])], cwd=tmp_path)
    assert ev.returncode == 0 and "accuracy" in ev.stdout, ev.stderr


def test_the_data_limit_is_overridable_and_stated(corpus, tmp_path):
    res = run_hostile(["datasets", "show", str(corpus["good"])], cwd=tmp_path, code=2,
                      env={"EDGESEQ_MAX_DATA_BYTES": "1K"}, contains=("1.0 KiB", "EDGESEQ_MAX_DATA_BYTES"))
    assert "raise EDGESEQ_MAX_DATA_BYTES" in res.stderr
    run_hostile(["datasets", "show", str(corpus["good"])], cwd=tmp_path, code=2,
                env={"EDGESEQ_MAX_DATA_BYTES": "lots"}, contains="is not a size")


@pytest.mark.parametrize("spec, words", [
    ("electricity:test_fraction=nan", ("test_fraction", "finite")),
    ("electricity:test_fraction=inf", ("test_fraction", "finite")),
    ("adding:n_train=1000000000", ("adding", "limit")),
])
def test_registered_data_set_parameters(spec, words, tmp_path):
    run_hostile(["datasets", "show", spec], cwd=tmp_path, code=2, contains=words, max_rss_mb=SHOW_RSS_MB)


# ------------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("extra, words", [
    (["--lr", "nan"], ("--lr", "finite")),
    (["--lr", "0"], ("--lr", "> 0")),
    (["--lr", "-1"], ("--lr",)),
    (["--lr", "inf"], ("--lr",)),
    (["--lr", "1e999"], ("--lr",)),
    (["--validation-split", "nan"], ("--validation-split",)),
    (["--validation-split", "0.95"], ("--validation-split",)),
    (["--seed", "-1"], ("--seed",)),
    (["--set", "units=0"], ("units", "positive")),
    (["--set", "units=-64"], ("units", "positive")),
    (["--set", "dropout=NaN"], ("dropout", "finite")),
    (["--set", "dropout=1.5"], ("dropout",)),
    (["--set", "units=100000000"], ("parameters", "memory")),
    (["--set", "num_layers=100000", "--set", "units=4096"], ("parameters", "memory")),
    (["--out", "afile"], ("--out", "file")),
    (["--out", "afile/run"], ("--out", "afile")),
])
def test_train_options(extra, words, corpus, tmp_path):
    (tmp_path / "afile").write_text("results already stored")
    args = ["train", "--model", "gru", "--preset", "tiny", "--dataset", str(corpus["good"]), "--epochs", "1",
            "--out", "runs/x", *extra]
    run_hostile(args, cwd=tmp_path, code=2, contains=words, max_rss_mb=VERB_RSS_MB, timeout=60)


def test_transformer_settings(corpus, tmp_path):
    base = ["train", "--model", "transformer", "--preset", "tiny", "--dataset", str(corpus["good"]), "--out", "r"]
    run_hostile([*base, "--set", "norm_epsilon=Infinity"], cwd=tmp_path, code=2, contains="norm_epsilon",
                max_rss_mb=VERB_RSS_MB)
    run_hostile([*base, "--set", "max_len=100000000000"], cwd=tmp_path, code=2, contains="memory",
                max_rss_mb=VERB_RSS_MB)


@pytest.mark.parametrize("extra, words", [
    (["--out", "afile"], ("--out", "is a file")),
    (["--out", "afile/sub"], ("--out", "afile is a file")),
    (["--name", "../x"], ("--name", "'../x'")),
    (["--name", "a/b"], ("--name",)),
    (["--name", ".."], ("--name",)),
    (["--stream", "--name", "../x"], ("--name",)),
    (["--calibration-samples", "0"], ("--calibration-samples",)),
    (["--seq-len", "-1"], ("--seq-len",)),
])
def test_convert_refuses_before_any_work(extra, words, corpus, tmp_path):
    """Refused in milliseconds, before the model is read (the stand-in .keras would fail otherwise)."""
    (tmp_path / "afile").write_text("results already stored")
    res = run_hostile(["convert", str(corpus["keras"]), "--out", "art", *extra], cwd=tmp_path, code=2,
                      contains=words, max_rss_mb=VERB_RSS_MB, timeout=60)
    assert res.wall_s < 20


def test_demo_and_evaluate_options(corpus, tmp_path):
    run_hostile(["demo", "--runs", "0", "--out", "d"], cwd=tmp_path, code=2, contains="--runs")
    run_hostile(["demo", "--epochs", "-3", "--out", "d"], cwd=tmp_path, code=2, contains="--epochs")
    run_hostile(["evaluate", str(corpus["tflite"]), "--dataset", "electricity:test_fraction=nan"], cwd=tmp_path,
                code=2, contains="test_fraction")


# ------------------------------------------------------------------------------------------------ with TensorFlow
@pytest.mark.slow
def test_train_that_fails_after_training_leaves_no_run_directory(tmp_path):
    """A run that diverges fails after TensorFlow trained for a while: no traceback, no runs/ folder at all.

    Progress lines come first here (one per epoch, by design); the failure itself is still one `error:` line."""
    from _harness import run, snapshot

    data = npz_with(tmp_path.parent / f"{tmp_path.name}-regression.npz", y_train=np.linspace(0, 1, 12),
                    y_test=np.linspace(0, 1, 6))  # regression: a 1e30 step overflows the MSE to inf
    before = snapshot(tmp_path)
    res = run(["train", "--model", "gru", "--preset", "tiny", "--dataset", str(data), "--epochs", "3", "--lr", "1e30",
               "--out", "runs/diverged"], cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    *progress, last = res.stderr_lines
    assert last.startswith("error: training diverged") and all(" epoch " in ln for ln in progress), res.stderr
    after = {p: v for p, v in snapshot(tmp_path).items() if not p.startswith(str(tmp_path / ".tmp"))}
    assert after == {p: v for p, v in before.items() if not p.startswith(str(tmp_path / ".tmp"))}
    assert not (tmp_path / "runs").exists() and not list((tmp_path / ".tmp").iterdir())


@pytest.fixture(scope="module")
def per_step_model(tmp_path_factory) -> Path:
    """GRU(return_sequences=True) -> Dense per step, the model the streaming export cannot validate yet."""
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("per-step") / "per-step.keras"
    code = ("import keras; keras.utils.set_random_seed(0); "
            f"i = keras.Input(({T}, {F})); "
            "m = keras.Model(i, keras.layers.Dense(1)(keras.layers.GRU(8, return_sequences=True)(i))); "
            f"m.save({str(path)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, capture_output=True)
    return path


@pytest.mark.slow
def test_stream_export_of_a_per_step_model_with_calibration_has_no_traceback(per_step_model, tmp_path):
    """It died in metrics_for with a traceback; per-step outputs now stream (tests/test_user_models.py has more)."""
    data = tmp_path.parent / f"{tmp_path.name}-per-step.npz"
    np.savez(data, X_train=np.zeros((12, T, F), np.float32), y_train=np.zeros((12, T), np.float32),
             X_test=np.zeros((6, T, F), np.float32), y_test=np.zeros((6, T), np.float32))
    res = run(["convert", str(per_step_model), "--stream", "--calibration", str(data), "--out", "art"],
              cwd=tmp_path, timeout=300)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert [p.suffix for p in sorted((tmp_path / "art").iterdir())] == [".json", ".tflite"]
