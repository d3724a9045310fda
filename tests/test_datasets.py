"""The datasets layer: bundled and generated sets, FSDD features/cache/downloader, user .npz checks, the CLI."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeseq.cli import cli
from edgeseq.core.errors import DatasetError
from edgeseq.datasets import Dataset, fsdd, list_datasets, load_dataset

EDGESEQ = Path(sys.executable).parent / "edgeseq"
SUBSET = [f"{d}_{s}_{i}.wav" for d in (0, 1) for s in ("jackson", "nicolas") for i in (0, 1, 5, 6)]


@pytest.fixture
def cache(edgeseq_cache, monkeypatch) -> Path:
    """Route edgeseq's cache to the session's private folder and hide any EDGESEQ_DATA_DIR of the caller."""
    monkeypatch.setenv("EDGESEQ_CACHE_DIR", str(edgeseq_cache))
    monkeypatch.delenv("EDGESEQ_DATA_DIR", raising=False)
    return edgeseq_cache


@pytest.fixture
def small_fsdd(fsdd_dir, tmp_path) -> Path:
    """A 16-file FSDD copy (train takes 5-6 and test takes 0-1 of two digits and two speakers)."""
    rec = tmp_path / "small" / "recordings"
    rec.mkdir(parents=True)
    for name in SUBSET:
        shutil.copy(fsdd_dir / "recordings" / name, rec / name)
    return tmp_path / "small"


def _check(ds: Dataset, task: str, train: tuple, test: tuple, out: int) -> None:
    assert isinstance(ds, Dataset) and ds.task == task
    assert ds.X_train.shape == train and ds.X_test.shape == test
    assert ds.X_train.dtype == np.float32 and ds.X_test.dtype == np.float32
    assert np.isfinite(ds.X_train).all() and np.isfinite(ds.X_test).all()
    assert ds.output_dim == out and ds.seq_len == train[1] and ds.num_features == train[2]
    if task == "classification":
        assert ds.y_train.dtype == np.int64 and ds.y_train.shape == (train[0],) and ds.y_test.shape == (test[0],)
        assert ds.num_classes == out and len(ds.class_names) == out
        assert set(np.unique(ds.y_train)) == set(range(out)) and ds.y_test.max() < out
    else:
        assert ds.y_train.dtype == np.float32 and ds.y_train.shape == (train[0], out)
        assert ds.y_test.shape == (test[0], out) and ds.num_classes is None
    json.dumps(ds.meta)  # meta must be JSON-serializable (manifests embed it)
    for key in ("source", "license", "citation", "preprocessing"):
        assert key in ds.meta


# ---- bundled and generated sets ----------------------------------------------------------------------------------

def test_basic_motions():
    ds = load_dataset("basic_motions")
    _check(ds, "classification", (40, 100, 6), (40, 100, 6), 4)
    assert ds.class_names == ("Standing", "Running", "Walking", "Badminton")
    assert np.allclose(ds.X_train.reshape(-1, 6).mean(0), 0, atol=1e-5)
    raw = load_dataset("basic_motions:normalize=false")
    assert raw.name == "basic_motions:normalize=false" and raw.meta["preprocessing"]["normalization"] is None
    assert raw.X_train.std() > 2  # raw sensor units


def test_japanese_vowels_pre_padding():
    ds = load_dataset("japanese_vowels")
    _check(ds, "classification", (270, 29, 12), (370, 29, 12), 9)
    pre = ds.meta["preprocessing"]
    lengths = np.array(pre["lengths_train"])
    assert pre["padding"]["side"] == "pre" and pre["length_range"] == [7, 29] and lengths.min() >= 7
    for x, n in zip(ds.X_train, lengths, strict=True):
        assert not x[: 29 - n].any() and x[-1].any()  # zeros first, the real last frame at the final step
    post = load_dataset("japanese_vowels:padding=post")
    n = pre["lengths_test"][0]
    np.testing.assert_array_equal(post.X_test[0, :n], ds.X_test[0, 29 - n :])
    assert not post.X_test[0, n:].any()


def test_electricity_windows_and_denormalization():
    ds = load_dataset("electricity")
    _check(ds, "regression", (3178, 48, 1), (806, 48, 1), 1)
    norm = ds.meta["preprocessing"]["normalization"]
    assert ds.y_test[-1, 0] * norm["std"] + norm["mean"] == pytest.approx(23132.0, abs=0.5)  # last point of taylor
    assert ds.y_train[0, 0] == ds.X_train[1, -1, 0]  # windows slide by one step
    long = load_dataset("electricity:window=96,horizon=4")
    assert long.X_train.shape[1:] == (96, 1) and long.y_test.shape[1] == 4 and long.name.startswith("electricity:")
    with pytest.raises(DatasetError, match="window"):
        load_dataset("electricity:window=5000")


def test_adding_problem():
    ds = load_dataset("adding:length=50,n_train=2000,n_test=300,seed=3")
    _check(ds, "regression", (2000, 50, 2), (300, 50, 2), 1)
    assert ds.name == "adding:length=50,n_train=2000,n_test=300,seed=3"
    markers = ds.X_train[:, :, 1]
    assert (markers.sum(1) == 2).all() and markers[:, :25].sum(1).min() == 1
    np.testing.assert_allclose(ds.y_train[:, 0], (ds.X_train[:, :, 0] * markers).sum(1), rtol=1e-6)
    assert abs(float(((ds.y_train - 1.0) ** 2).mean()) - ds.meta["baseline"]["mse"]) < 0.02
    again = load_dataset("adding:length=50,n_train=2000,n_test=300,seed=3")
    np.testing.assert_array_equal(again.X_test, ds.X_test)
    assert not np.array_equal(load_dataset("adding:length=50,n_test=300").X_test, ds.X_test)


@pytest.mark.parametrize("spec, words", [
    ("nope", "unknown data set"),
    ("adding:lenght=3", "lenght"),
    ("adding:length=abc", "length"),
    ("basic_motions:normalize=maybe", "normalize"),
    ("japanese_vowels:padding=middle", "padding"),
])
def test_bad_specs(spec, words):
    with pytest.raises(DatasetError, match=words):
        load_dataset(spec)


def test_list_datasets_without_fsdd(cache):
    rows = {r["name"]: r for r in list_datasets()}
    assert set(rows) == {"basic_motions", "japanese_vowels", "fsdd", "electricity", "adding"}
    assert rows["fsdd"]["status"] == "not downloaded" and rows["fsdd"]["train_shape"] == [2700, 49, 32]
    assert rows["japanese_vowels"]["num_classes"] == 9 and rows["adding"]["test_shape"] == [1000, 100, 2]
    json.dumps(rows)


# ---- FSDD ---------------------------------------------------------------------------------------------------------

def test_fsdd_full_split_and_features(fsdd_dir, cache, monkeypatch):
    monkeypatch.setenv("EDGESEQ_DATA_DIR", str(fsdd_dir.parent))  # a folder holding fsdd/recordings
    ds = load_dataset("fsdd")
    _check(ds, "classification", (2700, 49, 32), (300, 49, 32), 10)
    assert np.bincount(ds.y_test).tolist() == [30] * 10
    pre = ds.meta["preprocessing"]
    assert (pre["n_mels"], pre["frame_length"], pre["hop_length"], pre["n_fft"]) == (32, 320, 160, 512)
    assert np.allclose(ds.X_train.mean((0, 1)), 0, atol=1e-4) and np.allclose(ds.X_train.std((0, 1)), 1, atol=1e-3)
    t0 = time.perf_counter()
    again = load_dataset("fsdd", data_dir=str(fsdd_dir))
    warm = time.perf_counter() - t0
    np.testing.assert_array_equal(again.X_test, ds.X_test)
    assert warm < 3.0, f"warm load took {warm:.2f}s"  # < 1 s on an idle machine


def test_fsdd_feature_cache_reuse_and_key(small_fsdd, cache):
    arrays, path, hit = fsdd.features(small_fsdd)
    assert arrays["features"].shape == (16, 49, 32) and path.is_file() and path.parent == cache / "features"
    arrays2, path2, hit2 = fsdd.features(small_fsdd)
    assert hit2 and path2 == path
    np.testing.assert_array_equal(arrays2["features"], arrays["features"])
    (small_fsdd / "recordings" / SUBSET[0]).unlink()  # a different file list gets a different cache entry
    arrays3, path3, hit3 = fsdd.features(small_fsdd)
    assert not hit3 and path3 != path and arrays3["features"].shape[0] == 15
    ds = load_dataset("fsdd", data_dir=str(small_fsdd))
    assert ds.X_train.shape == (8, 49, 32) and ds.X_test.shape == (7, 49, 32)


def test_fsdd_missing_names_download_and_data_dir(cache, tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("fsdd")
    line = err.value.one_line()
    assert "edgeseq datasets download fsdd" in line and "--data-dir" in line
    with pytest.raises(DatasetError, match="data-dir"):
        load_dataset("fsdd", data_dir=str(tmp_path))


def _tarball(path: Path, fsdd_dir: Path, names: list[str], extra: list[tarfile.TarInfo] = ()) -> str:
    with tarfile.open(path, "w:gz") as tar:
        top = "free-spoken-digit-dataset-1.0.10"
        readme = b"# FSDD\n"
        info = tarfile.TarInfo(f"{top}/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        for name in names:
            tar.add(fsdd_dir / "recordings" / name, arcname=f"{top}/recordings/{name}")
        for member in extra:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path.as_uri()


def test_download_from_file_url(fsdd_dir, cache, tmp_path):
    url = _tarball(tmp_path / "fsdd.tar.gz", fsdd_dir, SUBSET)
    target = fsdd.download_fsdd(url=url)  # default destination: the cache
    assert target == cache / "fsdd" / "recordings"
    assert sorted(p.name for p in target.iterdir()) == sorted(SUBSET)
    assert [p.name for p in (cache / "fsdd").iterdir()] == ["recordings"]  # temp files cleaned up
    assert fsdd.find_recordings() == target
    ds = load_dataset("fsdd")
    assert ds.X_train.shape == (8, 49, 32)
    # already there: no download (a bad URL is not even opened) unless forced
    assert fsdd.download_fsdd(url="file:///nonexistent.tar.gz") == target
    with pytest.raises(DatasetError, match="download"):
        fsdd.download_fsdd(url=(tmp_path / "missing.tar.gz").as_uri(), force=True)
    assert sorted(p.name for p in target.iterdir()) == sorted(SUBSET)  # a failed forced download keeps the old copy
    shutil.rmtree(cache / "fsdd")


def test_download_rejects_unsafe_archives(fsdd_dir, tmp_path):
    evil = tarfile.TarInfo("free-spoken-digit-dataset-1.0.10/recordings/../../evil.wav")
    evil.size = 4
    url = _tarball(tmp_path / "evil.tar.gz", fsdd_dir, SUBSET[:2], [evil])
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match="unsafe"):
        fsdd.download_fsdd(dest, url=url)
    link = tarfile.TarInfo("top/recordings/0_jackson_9.wav")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(DatasetError, match="regular file"):
        fsdd.download_fsdd(dest, url=_tarball(tmp_path / "link.tar.gz", fsdd_dir, [], [link]))
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DatasetError, match="tar"):
        fsdd.download_fsdd(dest, url=(tmp_path / "junk.tar.gz").as_uri())
    with pytest.raises(DatasetError, match="no recordings"):
        fsdd.download_fsdd(dest, url=_tarball(tmp_path / "empty.tar.gz", fsdd_dir, []))
    assert not (tmp_path / "evil.wav").exists() and not (dest / "recordings").exists()
    assert list(dest.iterdir()) == []  # no temp leftovers


# ---- bring your own .npz ------------------------------------------------------------------------------------------

def _good(**over) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(12, 7, 3)), "y_train": np.arange(12) % 3,
              "X_test": rng.normal(size=(6, 7, 3)), "y_test": np.arange(6) % 3}
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def _save(tmp_path: Path, arrays: dict, name: str = "mine.npz") -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_user_npz_classification_and_regression(tmp_path):
    ds = load_dataset(_save(tmp_path, _good(class_names=np.array(["a", "b", "c"]))))
    _check(ds, "classification", (12, 7, 3), (6, 7, 3), 3)
    assert ds.name == "mine.npz" and ds.class_names == ("a", "b", "c") and len(ds.meta["sha256"]) == 64
    reg = load_dataset(_save(tmp_path, _good(y_train=np.linspace(0, 1, 12), y_test=np.zeros(6)), "reg.npz"))
    _check(reg, "regression", (12, 7, 3), (6, 7, 3), 1)
    multi = load_dataset(_save(tmp_path, _good(y_train=np.zeros((12, 4), np.float32), y_test=np.ones((6, 4))), "h.npz"))
    assert multi.output_dim == 4 and multi.y_test.dtype == np.float32


X_NAN = np.random.default_rng(1).normal(size=(6, 7, 3))
X_NAN[0, 0, 0] = np.nan
X_NAN[1, 1, 1] = np.inf


@pytest.mark.parametrize("arrays, words", [
    (_good(y_test=None, X_test=None), "missing key.*X_test, y_test"),
    (_good(X_train=np.zeros((12, 7))), "'X_train' has rank 2"),
    (_good(X_test=X_NAN), "'X_test' has 2 NaN/inf"),
    (_good(y_train=np.full(12, np.nan)), "'y_train' has 12 NaN/inf"),
    (_good(y_train=np.arange(12) % 3 - 1), "'y_train' has 4 negative"),
    (_good(y_test=np.array([0, 1, 2, 3, 0, 1])), r"'y_test' has label\(s\) \[3\]"),
    (_good(y_train=np.arange(12) % 3 * 2, y_test=np.array([0, 1, 2, 3, 0, 2])), r"'y_test' has label\(s\) \[1, 3\]"),
    (_good(X_test=np.zeros((6, 7, 4))), "'X_train' has 3 features but 'X_test' has 4"),
    (_good(X_test=np.zeros((6, 9, 3))), "'X_train' has length 7 but 'X_test' has 9"),
    (_good(X_train=np.zeros((0, 7, 3)), y_train=np.zeros(0, np.int64)), "'X_train' is empty"),
    (_good(y_train=np.arange(11) % 3), "'y_train' has 11 samples but 'X_train' has 12"),
    (_good(y_test=np.linspace(0, 1, 6)), "disagree"),
    (_good(y_train=np.eye(3, dtype=np.int64)[np.arange(12) % 3]), "'y_train' has integer shape"),
    (_good(X_train=np.array(["a"] * 252).reshape(12, 7, 3)), "'X_train' has dtype"),
    (_good(class_names=np.array(["a", "b"])), "'class_names'"),
])
def test_user_npz_errors_name_the_key(tmp_path, arrays, words):
    with pytest.raises(DatasetError, match=words) as err:
        load_dataset(_save(tmp_path, arrays))
    assert err.value.hint and "\n" not in err.value.one_line()


def test_user_npz_file_level_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "absent.npz"))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DatasetError, match="not an .npz"):
        load_dataset(str(tmp_path / "text.npz"))
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(DatasetError, match="single .npy"):
        load_dataset(str(tmp_path / "single.npy"))
    pickled = _good(y_train=np.array([{"a": 1}] * 12, dtype=object))
    path = tmp_path / "pickled.npz"
    np.savez(path, **pickled)
    with pytest.raises(DatasetError, match="'y_train' is an object"):
        load_dataset(str(path))


# ---- the safe .npz reader: limits, lying headers, zip bombs ---------------------------------------------------------

def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes], compress: bool = False) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return str(path)


def _members(**over: bytes) -> dict[str, bytes]:
    members = {f"{k}.npy": _npy(v) for k, v in _good().items()}
    members.update({f"{k}.npy": v for k, v in over.items()})
    return members


def _header(text: bytes) -> bytes:
    text = text + b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


def test_reader_matches_numpy_on_every_layout(tmp_path):
    from edgeseq.datasets.npz import read_npz

    arrays = {"f": np.asfortranarray(np.arange(24, dtype=">f8").reshape(2, 3, 4)), "b": np.array([True, False]),
              "u": np.array(["ab", "cde"]), "i": np.arange(5, dtype=np.int16), "e": np.zeros((0, 3), np.float32),
              "s": np.float32(3.5)}
    np.savez_compressed(tmp_path / "all.npz", **arrays)
    got = read_npz(tmp_path / "all.npz", None)
    with np.load(tmp_path / "all.npz") as ref:
        assert sorted(got) == sorted(ref.files)
        for k in ref.files:
            np.testing.assert_array_equal(got[k], ref[k])
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape


GARBAGE = b"{'descr': '<f4', 'fortran_order': False, 'shape': (12, 7, 3\xff" + b"'" * 3 + b" "


@pytest.mark.parametrize("over, words", [
    ({"X_train": _header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 7, 3), }") + bytes(8)},
     "declares shape .* over the data limit of 4.0 GiB"),
    ({"X_train": _header(b"{'descr': '<f4', 'fortran_order': False, 'shape': (12, 7, 4), }") + bytes(1008)},
     "holds 1008 bytes of data: the file is corrupt or truncated"),
    ({"X_train": _header(GARBAGE) + bytes(1008)}, "'X_train' has a malformed .npy header"),
    ({"y_train": _header(b"{'descr': '|O', 'fortran_order': False, 'shape': (12,), }") + bytes(96)},
     r"'y_train' is an object \(pickled\) array"),
    ({"y_test": b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{"}, "'y_test' has a malformed .npy header"),
    ({"X_test": b"\x93NUMPY\x09\x00" + bytes(100)}, "unknown .npy format version 9.0"),
])
def test_lying_or_broken_headers_are_one_line_errors(tmp_path, over, words):
    with pytest.raises(DatasetError, match=words) as err:
        load_dataset(_zip(tmp_path / "h.npz", _members(**over)))
    assert err.value.hint and "\n" not in err.value.one_line()


def test_data_limit_and_compression_ratio(tmp_path, monkeypatch):
    from edgeseq.datasets import npz as datasets_npz
    from edgeseq.datasets.base import format_bytes, max_data_bytes

    path = _save(tmp_path, _good())
    monkeypatch.setenv("EDGESEQ_MAX_DATA_BYTES", "1500")
    with pytest.raises(DatasetError, match="inflate to .* over the data limit of 1.5 KiB .*EDGESEQ_MAX_DATA_BYTES"):
        load_dataset(path)
    for raw, value in (("8G", 8 << 30), ("512 MiB", 512 << 20), ("1000000", 10**6), ("1.5k", 1536)):
        monkeypatch.setenv("EDGESEQ_MAX_DATA_BYTES", raw)
        assert max_data_bytes() == value
    for raw in ("lots", "0", "-1G", "nan", "inf"):
        monkeypatch.setenv("EDGESEQ_MAX_DATA_BYTES", raw)
        with pytest.raises(DatasetError, match="is not a size"):
            max_data_bytes()
    monkeypatch.delenv("EDGESEQ_MAX_DATA_BYTES")
    assert max_data_bytes() == 4 << 30 and format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 bytes"
    monkeypatch.setattr(datasets_npz, "RATIO_FLOOR_BYTES", 1000)
    zeros = _members(X_train=_npy(np.zeros((12, 7, 300), np.float32)), X_test=_npy(np.zeros((6, 7, 300), np.float32)))
    with pytest.raises(DatasetError, match=r"'X_train' inflates [\d,]+x .* over the 200x limit") as err:
        load_dataset(_zip(tmp_path / "zeros.npz", zeros, compress=True))
    assert "save it uncompressed with numpy.savez" in err.value.hint
    stored = load_dataset(_zip(tmp_path / "stored.npz", zeros))  # the same zeros, uncompressed: accepted
    assert stored.X_train.shape == (12, 7, 300)


def test_label_that_would_size_a_huge_head_is_refused(tmp_path):
    y = np.arange(12) % 3
    y[0] = 100_000
    with pytest.raises(DatasetError, match=r"num_classes = max\(y_train\) \+ 1 = 100,001, over edgeseq's limit"):
        load_dataset(_save(tmp_path, _good(y_train=y, y_test=np.arange(6) % 3)))


def test_damaged_cache_file_reads_as_value_error(tmp_path):
    from edgeseq.datasets.base import load_npz

    bad = _zip(tmp_path / "cache.npz", {"features.npy": _header(b"{'descr': nonsense") + bytes(10)})
    with pytest.raises(ValueError, match="malformed"):
        load_npz(Path(bad))


@pytest.mark.parametrize("spec, words", [
    ("electricity:test_fraction=nan", "must be a finite float"),
    ("electricity:test_fraction=-inf", "must be a finite float"),
    ("adding:n_train=1000000000", "over the data limit"),
])
def test_registered_parameters_must_be_finite_and_fit(spec, words):
    with pytest.raises(DatasetError, match=words):
        load_dataset(spec)


# ---- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_table_json_show_and_download(fsdd_dir, cache, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["datasets"])
    assert res.exit_code == 0, res.output
    assert "japanese_vowels" in res.output and "270x29x12" in res.output and "not downloaded" in res.output
    res = runner.invoke(cli, ["datasets", "--json"])
    rows = json.loads(res.output)["datasets"]
    assert res.exit_code == 0 and {r["name"] for r in rows} >= {"fsdd", "adding", "electricity"}
    res = runner.invoke(cli, ["datasets", "--data-dir", str(fsdd_dir), "--json"])
    assert next(r for r in json.loads(res.output)["datasets"] if r["name"] == "fsdd")["status"].startswith("available")
    res = runner.invoke(cli, ["datasets", "show", "fsdd", "--data-dir", str(fsdd_dir)])
    assert res.exit_code == 0 and "2700, 49, 32" in res.output
    res = runner.invoke(cli, ["datasets", "show", "adding:length=20,n_train=10,n_test=5", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["dataset"]["train_shape"] == [10, 20, 2]
    res = runner.invoke(cli, ["datasets", "--json", "show", "adding:length=20,n_train=10,n_test=5"])  # group's flag
    assert res.exit_code == 0 and json.loads(res.output)["schema"] == "edgeseq.datasets/1"
    url = _tarball(tmp_path / "fsdd.tar.gz", fsdd_dir, SUBSET[:4])
    res = runner.invoke(cli, ["datasets", "download", "fsdd", "--dest", str(tmp_path / "d"), "--url", url])
    assert res.exit_code == 0, res.output
    assert "4 recordings" in res.output and len(list((tmp_path / "d" / "recordings").glob("*.wav"))) == 4
    res = runner.invoke(cli, ["datasets", "show", str(tmp_path / "absent.npz")])
    assert isinstance(res.exception, DatasetError)


def test_cli_subprocess_exit_codes(tmp_path):
    ok = subprocess.run([str(EDGESEQ), "datasets"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "basic_motions" in ok.stdout
    bad = tmp_path / "bad.npz"
    np.savez(bad, X_train=np.zeros((2, 3)))
    res = subprocess.run([str(EDGESEQ), "datasets", "show", str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr and "missing key" in lines[0]


def test_import_is_numpy_only():
    code = ("import sys, edgeseq.datasets, edgeseq.datasets.fsdd, edgeseq.datasets.npz, edgeseq.commands.datasets; "
            "bad = [m for m in ('tensorflow', 'keras', 'scipy', 'pandas', 'aeon') if m in sys.modules]; "
            "sys.exit(str(bad) if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
