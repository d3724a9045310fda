"""One-off: vendor the small real data sets edgeseq bundles, as compact float32 .npz files (no pickles).

    python scripts/vendor_uea.py [--aeon-wheel PATH] [--pmdarima-wheel PATH]

Reads straight from the downloaded wheels (nothing is installed or imported from them):
- aeon 1.6.0: BasicMotions and JapaneseVowels in the UEA/UCR `.ts` format -> toolkit/datasets/data/{basic_motions,japanese_vowels}.npz
- pmdarima 2.1.1: the `taylor` half-hourly electricity demand series (a literal list in taylor.py) -> toolkit/datasets/data/electricity.npz

The .npz files hold raw values; any normalization happens at load time in edgeseq (with train-set statistics).
JapaneseVowels is ragged (7-29 frames): it is stored pre-padded with zeros to 29 frames (real frames at the END), with
the true lengths in `lengths_train` / `lengths_test`. The license notices (toolkit/datasets/data/NOTICE-*.txt) are kept by hand.
"""

from __future__ import annotations

import argparse
import ast
import glob
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "toolkit" / "datasets" / "data"
UEA_PREFIX = "aeon/datasets/data"


def parse_ts(text: str) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Parse a `.ts` file: returns per-sample arrays [T, F] (float64), string labels, and the declared class order."""
    series: list[np.ndarray] = []
    labels: list[str] = []
    declared: list[str] = []
    in_data = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@classlabel"):
                parts = line.split()
                declared = parts[2:] if len(parts) > 2 and parts[1].lower() == "true" else []
            elif low.startswith("@data"):
                in_data = True
            continue
        *dims, label = line.split(":")
        channels = [np.array([float("nan") if v == "?" else float(v) for v in d.split(",")]) for d in dims]
        lengths = {len(c) for c in channels}
        if len(lengths) != 1:
            raise ValueError(f"channels of unequal length in one sample: {sorted(lengths)}")
        series.append(np.stack(channels, axis=1))  # [T, F]
        labels.append(label.strip())
    return series, labels, declared


def _pre_pad(series: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    n_feat = series[0].shape[1]
    out = np.zeros((len(series), length, n_feat), dtype=np.float32)
    lengths = np.array([s.shape[0] for s in series], dtype=np.int64)
    for i, s in enumerate(series):
        out[i, length - s.shape[0] :] = s
    return out, lengths


def _save(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())
    check = np.load(path, allow_pickle=False)
    assert sorted(check.files) == sorted(arrays), "round trip failed"
    print(f"wrote {path.relative_to(DATA.parents[2])} ({path.stat().st_size / 1024:.0f} KiB): "
          + ", ".join(f"{k}{list(v.shape)}" for k, v in arrays.items()))


def vendor_uea(wheel: zipfile.ZipFile, problem: str, out_name: str, pad_to: int | None) -> None:
    parts = {}
    classes: list[str] = []
    for split in ("TRAIN", "TEST"):
        text = wheel.read(f"{UEA_PREFIX}/{problem}/{problem}_{split}.ts").decode("utf-8")
        series, labels, declared = parse_ts(text)
        classes = classes or declared or sorted(set(labels))
        y = np.array([classes.index(lab) for lab in labels], dtype=np.int64)
        parts[split.lower()] = (series, y)
    arrays: dict[str, np.ndarray] = {}
    for split, (series, y) in parts.items():
        if pad_to is None:
            arrays[f"X_{split}"] = np.stack(series).astype(np.float32)
        else:
            arrays[f"X_{split}"], arrays[f"lengths_{split}"] = _pre_pad(series, pad_to)
        arrays[f"y_{split}"] = y
    arrays["class_names"] = np.array(classes)
    _save(DATA / out_name, **arrays)


def vendor_taylor(wheel: zipfile.ZipFile) -> None:
    source = wheel.read("pmdarima/datasets/taylor.py").decode("utf-8")
    values = None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "array" and node.args:
            values = ast.literal_eval(node.args[0])
            break
    if values is None or len(values) != 4032:
        raise SystemExit("taylor series not found (expected 4032 values)")
    _save(DATA / "electricity.npz", series=np.asarray(values, dtype=np.float32))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aeon-wheel", default="/tmp/wheels/aeon-1.6.0-py3-none-any.whl")
    ap.add_argument("--pmdarima-wheel", default=(glob.glob("/tmp/wheels/pmdarima-2.1.1-*.whl") or [""])[0])
    args = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.aeon_wheel) as wheel:
        vendor_uea(wheel, "BasicMotions", "basic_motions.npz", pad_to=None)
        vendor_uea(wheel, "JapaneseVowels", "japanese_vowels.npz", pad_to=29)
    with zipfile.ZipFile(args.pmdarima_wheel) as wheel:
        vendor_taylor(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
