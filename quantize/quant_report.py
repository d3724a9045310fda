"""`edgeseq quant-report FILE.tflite --dataset DATA`: every op of a quantized file with its error against the float
model on the data, ranked, and the worst ops in one line (the engine: quantize/quant_match.py).

The float reference is the same network converted fp32 by the same route, so the two graphs line up op for op:
`--reference FP32.tflite` when given; else a file beside FILE whose manifest names the same source (sha256), length
and RNN route with the fp32 recipe; else the manifest's source model, converted fp32 now (a conversion child, as
`convert` does). The comparison runs in a throwaway process (`python -m edgeseq.quantize.quant_report JOBDIR`), like
every LiteRT run of the host, so a runtime abort is a one-line error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.core.errors import EdgeseqError, InputError, ModelError
from edgeseq.core.fsio import childproc

DEFAULT_SAMPLES = 100
WORST = 3  # ops named in the summary line
RUN_TIMEOUT_S = 1800
SCHEMA = "edgeseq.quant-report/1"


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where a report is kept: beside the file, <stem>.quant.json (what `edgeseq report` shows per file)."""
    return Path(path).with_suffix(".quant.json")


def _same_network(a: dict, b: dict) -> bool:
    ra, rb = a.get("route") or {}, b.get("route") or {}
    return ((a.get("source") or {}).get("sha256") == (b.get("source") or {}).get("sha256") is not None
            and ra.get("seq_len") == rb.get("seq_len") and (ra.get("rnn") == "unroll") == (rb.get("rnn") == "unroll"))


def _sibling_reference(path: Path, manifest: dict) -> Path | None:
    from edgeseq.quantize.manifest import read_manifest

    for candidate in sorted(path.parent.glob("*.json")):
        other = read_manifest(candidate, strict=False) or {}
        tflite = candidate.with_suffix(".tflite")
        if not str(other.get("schema", "")).startswith("edgeseq.manifest/") or not isinstance(other.get("recipe"),
                                                                                              dict):
            continue  # quant reports and other JSON beside the file
        if (other["recipe"].get("mode") == "fp32" and tflite.is_file() and tflite != path
                and _same_network(manifest, other)):
            return tflite
    return None


def reference_bytes(manifest: dict, *, trust_model: bool = False) -> bytes:
    """The manifest's source model converted fp32 by the manifest's route (no validation), in a child."""
    from edgeseq.quantize.loading import source_fingerprint

    source = manifest.get("source") or {}
    src = Path(source.get("path") or "")
    if not source.get("path") or not src.exists():
        raise InputError(f"no float reference: the source model {src} named in the manifest is gone",
                         "pass --reference FP32.tflite (the same model converted fp32)")
    if source.get("sha256") and source_fingerprint(src)[0] != source["sha256"]:
        raise InputError(f"no float reference: {src} changed since the file was converted (sha256)",
                         "pass --reference FP32.tflite (the same model converted fp32)")
    route = manifest.get("route") or {}
    return convert_reference(src, route.get("rnn"), route.get("seq_len"), trust_model)


def convert_reference(model_path: Path, rnn: str | None, seq_len: int | None, trust_model: bool) -> bytes:
    """`model_path` converted fp32 (no validation) by the RNN route `rnn` (a fused LSTM's float twin: the loop)."""
    from edgeseq.quantize.convert import convert_model

    recipe = "fp32-unroll" if rnn == "unroll" else "fp32-loop" if rnn not in (None, "none") else "fp32"
    with tempfile.TemporaryDirectory(prefix="edgeseq-qref-") as tmp:
        (res,) = convert_model(model_path, [recipe], out_dir=tmp, name="reference", seq_len=seq_len,
                               validate=False, trust_model=trust_model)
        return Path(res.tflite_path).read_bytes()


def failure_summary(q_data: bytes, model_path: Path, rnn: str | None, seq_len: int | None, X: np.ndarray,
                    layers: list | None, trust_model: bool) -> str:
    """`convert`'s line when a quantized recipe fails parity: where it lost, from the per-op report on `X`."""
    f_data = convert_reference(model_path, rnn, seq_len, trust_model)
    return finish(compare_isolated(q_data, f_data, X[:DEFAULT_SAMPLES], layers, "the converted file"))["summary"]


def compare_isolated(q_data: bytes, f_data: bytes, X: np.ndarray, layers: list | None, label: str) -> dict:
    """quant_match.compare in a throwaway process."""
    with tempfile.TemporaryDirectory(prefix="edgeseq-qr-") as tmp:
        job = Path(tmp)
        (job / "q.tflite").write_bytes(q_data)
        (job / "f.tflite").write_bytes(f_data)
        np.save(job / "inputs.npy", X)
        (job / "layers.json").write_text(json.dumps(layers))
        try:
            proc = childproc.run([sys.executable, "-m", "edgeseq.quantize.quant_report", str(job)],
                                 timeout=RUN_TIMEOUT_S, scratch=job)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"the per-op report of {label} took longer than {RUN_TIMEOUT_S} s") from exc
        if proc.returncode == 0 and (job / "report.json").exists():
            return json.loads((job / "report.json").read_text())
        if (job / "error.json").exists():
            raise childproc.error_from_record(json.loads((job / "error.json").read_text()), default=ModelError)
        how = childproc.signal_name(proc.returncode) if proc.returncode < 0 else f"exit {proc.returncode}"
        tail = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()][-1:] or [""]
        raise ModelError(f"the LiteRT runtime died ({how}) comparing {label} op by op {tail[0][:160]}".strip())


def finish(raw: dict) -> dict:
    """Rank the engine's figures and add the summary line."""
    from edgeseq.quantize.quant_match import rank

    ranked = rank(raw["ops"])
    for i, op in enumerate(ranked, 1):
        op["rank"] = i
    return raw | {"ranked": [op["index"] for op in ranked], "summary": summary_line(raw["ops"], ranked, raw["output"])}


def _name(op: dict) -> str:
    return f"#{op['index']} {op['type']}" + (f" ({op['layer']})" if op.get("layer") else "")


def summary_line(ops: list[dict], ranked: list[dict], output: dict) -> str:
    """'worst ops by local SNR: #54 FULLY_CONNECTED (block1_attn) 33.4 dB, ...; model output SNR 45.3 dB, cosine
    0.99999'."""
    worst = ", ".join(f"{_name(o)} {o['local_snr_db']:.1f} dB" for o in ranked[:WORST] if o["local_snr_db"] is not None)
    unmatched = sum(1 for o in ops if "unmatched" in o)
    out = (f"model output SNR {output['snr_db']:.1f} dB, cosine {output['cosine']:.5f}" if output.get("snr_db") is not None
           else "model output exact")
    return (f"worst ops by local SNR: {worst or 'none (every op exact)'}; {out}"
            + (f"; {unmatched} op(s) without a float counterpart" if unmatched else ""))


def quant_report(path: str | os.PathLike, dataset: Any, *, reference: str | os.PathLike | None = None,
                 samples: int = DEFAULT_SAMPLES, data_dir: str | None = None, trust_model: bool = False,
                 progress: Any = None) -> dict:
    """The per-op report of a quantized .tflite on the test split of `dataset` (see the module docstring)."""
    from edgeseq.quantize.calibration import prepare_inputs
    from edgeseq.quantize.inspect import analyze
    from edgeseq.quantize.manifest import read_manifest
    from edgeseq.quantize.tflite.reader import parse_bytes, read_tflite

    say = progress or (lambda _m: None)
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    path = Path(path)
    f = read_tflite(path)
    info = analyze(f)
    low = set(info["weights"].get("bytes_by_dtype") or {}) & {"int8", "int4", "int16", "float16"}
    if not (info.get("dtype_coverage") or {}).get("quantized_ops") and not low:
        raise InputError(f"{path.name} is a float file: no quantized op to report on",
                         "run quant-report on an int8, dynamic, int16x8 or int4w file")
    manifest = read_manifest(path, strict=False) or {}
    if reference is not None:
        ref_from, ref_data = str(reference), read_tflite(reference).data
    elif (sibling := _sibling_reference(path, manifest)) is not None:
        ref_from, ref_data = f"{sibling} (beside it: same source, length and route)", sibling.read_bytes()
    else:
        say(f"converting the float reference from {(manifest.get('source') or {}).get('path')}")
        ref_from, ref_data = "the manifest's source model, converted fp32 now", reference_bytes(
            manifest, trust_model=trust_model)
    parse_bytes(ref_data, "the float reference")
    shape = info["inputs"][0]["shape"]
    tokens = len(shape) == 2 and not str(info["inputs"][0].get("dtype", "")).startswith("float")
    vocab = ((manifest.get("source") or {}).get("input") or {}).get("vocab_size")
    if isinstance(dataset, str):
        from edgeseq.datasets import load_dataset

        dataset = load_dataset(dataset, data_dir=data_dir)
    inputs = prepare_inputs(dataset, seq_len=int(shape[1]), num_features=None if tokens else int(shape[2]),
                            vocab=vocab)
    X = inputs.X_val[:samples]
    say(f"comparing {path.name} with its float reference op by op on {len(X)} samples of {inputs.name}")
    raw = compare_isolated(f.data, ref_data, X, manifest.get("op_layers"), path.name)
    return finish(raw) | {"schema": SCHEMA, "model": str(path), "recipe": (manifest.get("recipe") or {}).get("slug"),
                          "reference": ref_from, "dataset": inputs.name, "split": "test",
                          "runtime": "ai-edge-litert, builtin kernels (no delegate: intermediate tensors kept)"}


def _main(job: Path) -> int:
    from edgeseq.quantize.quant_match import compare

    try:
        layers = json.loads((job / "layers.json").read_text())
        report = compare((job / "q.tflite").read_bytes(), (job / "f.tflite").read_bytes(),
                         np.load(job / "inputs.npy"), layers)
    except EdgeseqError as exc:
        (job / "error.json").write_text(json.dumps(childproc.error_record(exc)))
        return 1
    (job / "report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(_main(Path(sys.argv[1])))
