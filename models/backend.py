"""Which Keras backend trains a model (TensorFlow, JAX or PyTorch), and where it runs on that backend.

Keras reads `KERAS_BACKEND` once, when it is first imported, so a process trains on one backend only: the CLI's own
process trains on TensorFlow, and any other backend trains in a child process (`models/train_child.py`) started with
the variable set. This module imports no Keras and no backend at import time: the host checks the choice and the
install in milliseconds.

Placement per backend (the child calls `placement_for`):
- tensorflow: `models/device.py` (several GPUs -> MirroredStrategy, one -> that GPU, none -> the CPU);
- jax: several devices -> `keras.distribution.DataParallel` over all of them (the batch is split across devices),
  one -> that device (GPU when a CUDA jaxlib is installed, else the CPU);
- torch: one device always (CUDA, else Apple MPS, else the CPU): Keras 3 has no multi-device training for PyTorch,
  and the record says so.
Mixed precision is Keras's `mixed_float16` policy on every backend (Keras wraps the optimizer in loss scaling).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from typing import Any

from edgeseq.core.errors import InputError, ModelError, did_you_mean

BACKENDS: tuple[str, ...] = ("tensorflow", "jax", "torch")
# The module each backend needs, and the extra that installs its CPU build.
MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
EXTRAS = {"tensorflow": "pip install edgeseq (TensorFlow is a core dependency)", "jax": "pip install 'edgeseq[jax]'",
          "torch": "pip install 'edgeseq[torch]'"}
GPU_INSTALL = {"jax": "for a GPU: pip install 'jax[cuda12]' (Linux)",
               "torch": "for a GPU: the CUDA wheel from pytorch.org (Linux, Windows); Apple MPS is in the stock wheel"}
ENV = "KERAS_BACKEND"


def resolve_backend(name: str | None) -> str:
    """`--backend` text -> one of BACKENDS. None means `KERAS_BACKEND` when it is set, else tensorflow."""
    source = "--backend"
    if name is None:
        name, source = os.environ.get(ENV) or "tensorflow", ENV
    value = name.strip().lower()
    if value == "pytorch":
        value = "torch"
    if value not in BACKENDS:
        raise InputError(f"{source} {name!r} is not a Keras backend edgeseq trains on", did_you_mean(value, BACKENDS))
    return value


def require_installed(backend: str) -> None:
    """A one-line InputError naming the extra to install when the backend's package is missing."""
    module = MODULES[backend]
    try:
        # PathFinder, not importlib.util.find_spec: the latter would consume edgeseq.core.fsio.tfquiet's one-shot import
        # hook for tensorflow without importing it, and TF's start-up lines would then reach the terminal.
        found = sys.modules.get(module) is not None or importlib.machinery.PathFinder.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as missing
        found = False
    if not found:
        gpu = f"; {GPU_INSTALL[backend]}" if backend in GPU_INSTALL else ""
        raise InputError(f"training on {backend} needs the {module} package, which is not installed",
                         f"{EXTRAS[backend]}{gpu}")


def keras_backend_here() -> str:
    """The backend Keras uses (or will use when first imported) in this process."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras.backend.backend()
    return resolve_backend(os.environ.get(ENV) or "tensorflow")


def block_tensorflow() -> None:
    """Training on JAX or PyTorch runs exactly as on a GPU machine without TensorFlow: Keras imports TF lazily when it
    is installed (saving probes `tf.io.gfile`), which would cost seconds and ~600 MB for nothing. A None entry in
    sys.modules is Python's own "absent" marker: `import tensorflow` raises ImportError and
    `importlib.util.find_spec("tensorflow")` answers None (PyTorch's dynamo asks that way)."""
    sys.modules.setdefault("tensorflow", None)


def tensorflow_loaded() -> bool:
    return sys.modules.get("tensorflow") is not None


def use_tensorflow_keras(purpose: str) -> None:
    """Conversion runs Keras on TensorFlow whatever `KERAS_BACKEND` says (the converter takes TensorFlow graphs):
    pins this process and its children to it before Keras loads; a process whose Keras already runs on another
    backend gets a one-line ModelError instead of a converter failure deep inside."""
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ[ENV] = "tensorflow"
        return
    if keras.backend.backend() != "tensorflow":
        raise ModelError(f"{purpose} needs Keras on TensorFlow, but Keras in this process runs on "
                         f"{keras.backend.backend()}", "run it in a fresh process, e.g. with KERAS_BACKEND=tensorflow")


def backend_version(backend: str) -> str:
    module = importlib.import_module(MODULES[backend])
    return str(getattr(module, "__version__", "unknown"))


def placement_for(backend: str, *, mixed_precision: bool = False, devices: list[str] | None = None) -> Any:
    """The `Placement` training uses on `backend` (see the module docstring). `devices` overrides discovery on
    TensorFlow (tests pass [])."""
    from edgeseq.models.device import Placement, select_placement

    if backend == "tensorflow":
        return select_placement(mixed_precision=mixed_precision, gpus=devices)
    if backend == "jax":
        import jax
        import keras

        found = jax.devices()
        names = tuple(f"{d.platform}:{d.id}" for d in found)
        kind = "cpu" if found[0].platform == "cpu" else "gpu"
        if len(found) > 1:
            distribution = keras.distribution.DataParallel(devices=found)
            keras.distribution.set_distribution(distribution)
            return Placement(strategy=None, kind=f"multi-{kind}", devices=names, mixed_precision=mixed_precision,
                             backend="jax", strategy_name="DataParallel",
                             note=f"keras.distribution.DataParallel over {len(found)} devices")
        return Placement(strategy=None, kind=kind, devices=names, mixed_precision=mixed_precision, backend="jax",
                         strategy_name="single-device")
    import torch

    if torch.cuda.is_available():
        kind, name = "gpu", f"cuda:0 ({torch.cuda.get_device_name(0)})"
        count = torch.cuda.device_count()
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        kind, name, count = "gpu", "mps", 1
    else:
        kind, name, count = "cpu", "cpu", 1
    note = "one device: Keras 3 has no multi-device training for PyTorch"
    if count > 1:
        note += f"; {count} CUDA devices seen, cuda:0 used"
    return Placement(strategy=None, kind=kind, devices=(name,), mixed_precision=mixed_precision, backend="torch",
                     strategy_name="single-device", note=note)


def backend_record(backend: str, placement: Any) -> dict:
    """training.json's `backend` section: name, version, devices, strategy, mixed precision, and whether
    TensorFlow was loaded in the training process at all."""
    return {"name": backend, "version": backend_version(backend), "devices": list(placement.devices),
            "kind": placement.kind, "strategy": placement.strategy_name, "mixed_precision": placement.mixed_precision,
            "note": placement.note, "tensorflow_loaded": tensorflow_loaded()}
