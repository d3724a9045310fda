"""GPU training check (not a test): the zoo's small models trained on FSDD with JAX or PyTorch, on a GPU and on the CPU.

    python benchmarks/gpu_train.py --backend jax --device gpu            # GPU run, then the same run on the CPU
    python benchmarks/gpu_train.py --backend torch --device gpu --archs gru transformer
    python benchmarks/gpu_train.py --backend jax --device cpu            # the CPU run alone (what was run here)

Meant for a machine with a GPU and JAX (a CUDA jaxlib: `pip install 'jax[cuda12]'`) or PyTorch (a CUDA wheel), and
**no TensorFlow**: it imports only edgeseq's data sets and its training host (`edgeseq.models.backend_run`), every
model trains in a `train_child` process with TensorFlow blocked, and the script checks at the end that TensorFlow was
never loaded. Needs numpy, keras and the backend, and edgeseq installed without its dependencies
(`pip install --no-deps -e .` in a checkout). FSDD: the recordings folder (`--data-dir`, else $EDGESEQ_DATA_DIR, else the shared
copy next to the checkout); the numpy log-mel front end imports no TensorFlow either.

For each architecture (small preset) it trains a fixed number of epochs (no early stopping: both devices do the
same work) and reports samples/s (training samples x epochs / the fit's wall time), the run's wall time including
the child's start, the test accuracy, and the GPU's speed-up over the CPU. Every run directory (model.keras,
training.json, reference.npz: the outputs computed on the device that trained it) goes under --out, so that on a
CPU machine with TensorFlow

    edgeseq convert OUT/gpu/gru/model.keras --recipe fp32,int8 --dataset fsdd

converts it and checks the .tflite against the GPU-computed outputs ("vs the jax-trained reference").

Status in this repository: run with `--device cpu` on JAX (2-core x86 CPU, no GPU); figures in docs/training.md
("The GPU benchmark"). **No GPU run happened in the session that wrote this script** (no GPU machine was lent), so
the GPU branch (`--device gpu`: the backend's default device, checked to be a GPU first) is unexercised here; on
this machine it stops in one line ("jax sees no GPU on this machine ...").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("rnn", "lstm", "gru", "transformer")


def device_env(backend: str, device: str) -> dict:
    """Environment that pins the training child to `device` on `backend` (GPU: the backend's own choice)."""
    if device == "gpu":
        return {}
    return {"JAX_PLATFORMS": "cpu"} if backend == "jax" else {"CUDA_VISIBLE_DEVICES": ""}


GPU_PROBE = {
    "jax": "import jax; print(jax.devices()[0].platform)",
    "torch": "import torch; print('cuda' if torch.cuda.is_available() else 'mps' if getattr(torch.backends, 'mps', "
             "None) and torch.backends.mps.is_available() else 'cpu')",
}


def check_gpu(backend: str) -> str:
    """The accelerator `backend` sees ('gpu', 'cuda', 'mps'); exits in one line when it sees none."""
    from edgeseq.core.fsio import childproc

    proc = childproc.run([sys.executable, "-c", GPU_PROBE[backend]], timeout=120)
    platform = (proc.stdout.strip().splitlines() or ["cpu"])[-1]
    if proc.returncode != 0 or platform == "cpu":
        raise SystemExit(f"error: {backend} sees no GPU on this machine (install its GPU build: README 'Training on "
                         "a GPU'), or run with --device cpu")
    return platform


def train_one(arch: str, data, args, device: str) -> dict:
    from edgeseq.models.backend_run import train_on_backend
    from edgeseq.models.run_dir import TrainOptions

    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, patience=args.epochs, seed=args.seed,
                           mixed_precision=args.mixed_precision)
    started = time.perf_counter()
    result = train_on_backend(arch, data, Path(args.out) / device / arch, backend=args.backend, preset=args.preset,
                              options=options, overwrite=True, env=device_env(args.backend, device))
    wall = time.perf_counter() - started
    rec = result.record
    seen = rec["backend"]["kind"]
    if (device == "gpu") != ("gpu" in seen):
        raise SystemExit(f"asked for {device}, but {args.backend} trained on {seen} ({rec['backend']['devices']}): "
                         "install the backend's GPU build (README 'Training on a GPU')")
    fit_s = rec["wall_time_s"]
    samples = rec["dataset"]["n_train"] * rec["epochs_run"]
    return {"arch": arch, "preset": args.preset, "backend": args.backend, "device": device,
            "devices": rec["backend"]["devices"], "strategy": rec["backend"]["strategy"],
            "epochs": rec["epochs_run"], "train_samples": rec["dataset"]["n_train"],
            "samples_per_s": round(samples / fit_s, 1), "fit_s": fit_s, "wall_s": round(wall, 2),
            "test_metrics": rec["test_metrics"], "parameters": rec["parameters"],
            "model": str(result.model_path), "backend_version": rec["backend"]["version"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("jax", "torch"), default="jax")
    ap.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    ap.add_argument("--no-cpu-baseline", action="store_true", help="with --device gpu: skip the same run on the CPU")
    ap.add_argument("--archs", nargs="*", default=list(ARCHS))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mixed-precision", action="store_true")
    ap.add_argument("--dataset", default="fsdd", help="data set spec or .npz (default: FSDD)")
    ap.add_argument("--data-dir", default=os.environ.get("EDGESEQ_DATA_DIR") or _shared_fsdd())
    ap.add_argument("--out", default="runs/gpu_train")
    args = ap.parse_args()

    from edgeseq.core.errors import EdgeseqError
    from edgeseq.datasets import load_dataset
    from edgeseq.models.backend import require_installed

    try:
        require_installed(args.backend)
        if args.device == "gpu":
            print(f"{args.backend} sees {check_gpu(args.backend)}", file=sys.stderr)
        started = time.perf_counter()
        data = load_dataset(args.dataset, data_dir=args.data_dir)
        print(f"{data!r} loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        devices = [args.device] + (["cpu"] if args.device == "gpu" and not args.no_cpu_baseline else [])
        rows = []
        for arch in args.archs:
            for device in devices:
                row = train_one(arch, data, args, device)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    except EdgeseqError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    loaded = sys.modules.get("tensorflow") is not None
    summary = {"rows": rows, "tensorflow_loaded": loaded, "dataset": data.name, "host_cpus": os.cpu_count()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(summary, indent=2))
    print("| model | device | samples/s | fit s | wall s | test accuracy | speed-up |\n|---|---|---|---|---|---|---|")
    for row in rows:
        cpu = next((r for r in rows if r["arch"] == row["arch"] and r["device"] == "cpu"), None)
        speed = f"{row['samples_per_s'] / cpu['samples_per_s']:.1f}x" if cpu and row is not cpu else "-"
        acc = row["test_metrics"].get("accuracy", row["test_metrics"].get("mse"))
        print(f"| {row['arch']}-{row['preset']} | {args.backend} {row['device']} ({', '.join(row['devices'])}) | "
              f"{row['samples_per_s']:.0f} | {row['fit_s']:.1f} | {row['wall_s']:.1f} | {acc:.3f} | {speed} |")
    print(f"tensorflow loaded: {loaded}; run directories under {args.out}/; results in {args.out}/results.json")
    return 1 if loaded else 0


def _shared_fsdd() -> str | None:
    shared = REPO.parent / "shared" / "datasets" / "fsdd"
    return str(shared) if (shared / "recordings").is_dir() else None


if __name__ == "__main__":
    sys.exit(main())
