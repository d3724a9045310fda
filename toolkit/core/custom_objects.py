"""The user's own Keras layers: `--custom-objects PATH.py|module` (repeatable), an explicit opt-in like --trust-model.

Importing the module runs the user's code, which is what registers its classes with Keras
(`@keras.saving.register_keras_serializable(package=...)`); registered classes then load in safe mode (a Lambda still
needs --trust-model). `use(specs)` imports each module in this process and records them in `$EDGESEQ_CUSTOM_OBJECTS`
(os.pathsep-separated), which every child process inherits; `import_all()`, called by every loader before it loads
a Keras file, imports what that variable lists (once per process). A path is imported under its file stem with its
folder on sys.path while it runs (so `from my_utils import x` beside it works); a module name is imported as is.
No Keras import here.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path

from edgeseq.core.errors import InputError, ModelError

ENV = "EDGESEQ_CUSTOM_OBJECTS"
# How long one module may take to import before it is called hung (a module that waits on a network, a lock, input):
# seconds, from $EDGESEQ_IMPORT_TIMEOUT_S. Bounded with SIGALRM in the main thread; elsewhere not bounded.
IMPORT_TIMEOUT_S = 120.0
_imported: dict[str, str] = {}  # spec -> module name


class _ImportHung(BaseException):  # not an Exception: a module catching those cannot swallow it
    pass


@contextlib.contextmanager
def _deadline(spec: str):
    """Raise _ImportHung in the importing code after the timeout (main thread only: signals go there)."""
    try:
        seconds = float(os.environ.get("EDGESEQ_IMPORT_TIMEOUT_S", IMPORT_TIMEOUT_S))
    except ValueError:
        seconds = IMPORT_TIMEOUT_S
    if threading.current_thread() is not threading.main_thread() or not seconds > 0:
        yield
        return

    def hung(_signum, _frame):
        raise _ImportHung(spec)

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep or "/") in spec


def _import_one(spec: str) -> str:
    if spec in _imported:
        return _imported[spec]
    try:
        with _deadline(spec):
            return _import_bounded(spec)
    except _ImportHung:
        sys.modules.pop(Path(spec).stem if _is_path(spec) else spec, None)
        limit = os.environ.get("EDGESEQ_IMPORT_TIMEOUT_S", f"{IMPORT_TIMEOUT_S:g}")
        raise ModelError(f"importing --custom-objects {spec} did not finish within {limit} s (it hangs on import)",
                         "make the module import without waiting (no network, input or locks at import time); "
                         "EDGESEQ_IMPORT_TIMEOUT_S sets the limit") from None


def _import_bounded(spec: str) -> str:
    try:
        if _is_path(spec):
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise InputError(f"--custom-objects {spec}: no such file", "give the .py file that defines your layers, "
                                 "or an importable module name")
            name = path.stem
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise InputError(f"--custom-objects {spec}: not a Python module", "give a .py file")
            module = importlib.util.module_from_spec(module_spec)
            sys.path.insert(0, str(path.parent))
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent))
        else:
            name = spec
            importlib.import_module(spec)
    except InputError:
        raise
    except ModuleNotFoundError as exc:
        if not _is_path(spec) and exc.name == spec.split(".")[0]:
            raise InputError(f"--custom-objects {spec}: no module named {spec!r}",
                             "give a path to the .py file, or put its folder on PYTHONPATH") from None
        raise ModelError(f"importing --custom-objects {spec} failed: {exc}", "fix the module (it must import "
                         "cleanly on its own)") from None
    except SystemExit as exc:  # sys.exit() in the user's module must not end edgeseq with the module's status
        sys.modules.pop(Path(spec).stem if _is_path(spec) else spec, None)
        raise ModelError(f"importing --custom-objects {spec} failed: the module called sys.exit({exc.code!r})",
                         "a module given to --custom-objects must only define and register layers") from None
    except _ImportHung:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module can raise anything; its line names where
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(Path(spec).name)]
        where = f" (line {frames[-1].lineno})" if frames else ""
        sys.modules.pop(Path(spec).stem if _is_path(spec) else spec, None)
        raise ModelError(f"importing --custom-objects {spec} failed{where}: {type(exc).__name__}: {exc}",
                         "fix the module (it must import cleanly on its own)") from None
    _imported[spec] = name
    return name


def use(specs: Iterable[str] | None) -> list[str]:
    """Check `specs` (a path must be a file) and hand them to this process's loaders and every child's
    (`$EDGESEQ_CUSTOM_OBJECTS`); the loaders import them before loading (`import_all`), once Keras's backend is
    pinned. The resolved specs; an empty list leaves the environment as it is."""
    specs = [str(s) for s in (specs or [])]
    if not specs:
        return []
    resolved = []
    for spec in specs:
        if _is_path(spec):
            path = Path(spec).expanduser().resolve()
            if not path.is_file() or path.suffix != ".py":
                raise InputError(f"--custom-objects {spec}: {'no such file' if not path.exists() else 'not a .py file'}",
                                 "give the .py file that defines your layers, or an importable module name")
            spec = str(path)
        resolved.append(spec)
    os.environ[ENV] = os.pathsep.join(dict.fromkeys([*listed(), *resolved]))
    return resolved


def import_all() -> list[str]:
    """Import what `$EDGESEQ_CUSTOM_OBJECTS` lists (set by `use` in this process or a parent); module names."""
    return [_import_one(s) for s in os.environ.get(ENV, "").split(os.pathsep) if s]


def listed() -> list[str]:
    """What `$EDGESEQ_CUSTOM_OBJECTS` lists (for manifests)."""
    return [s for s in os.environ.get(ENV, "").split(os.pathsep) if s]
