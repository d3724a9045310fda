"""Keep TensorFlow's native start-up lines off the user's terminal, whatever the CPU.

TensorFlow 2.21 logs through absl from C++ while `import tensorflow` loads its shared libraries: on CPUs with
AVX-512 it prints `WARNING: All log messages before absl::InitializeLog() is called are written to STDERR` and
`I0000 ... port.cc:153] oneDNN custom operations are on ...` (twice), and `TF_CPP_MIN_LOG_LEVEL` does not reach
them. Those lines break the one-line error contract and tell the user nothing. So the first import of `tensorflow`
in any edgeseq process (the CLI, the conversion and stream children, a user's script that imports edgeseq) runs
with file descriptor 2 pointed at a temporary file; afterwards the captured text is replayed on stderr minus the
known start-up notices, so a real import failure or warning still shows. `install()` adds the import hook; it is
called once from `edgeseq/__init__.py`. A user who wants every line sets `TF_CPP_MIN_LOG_LEVEL=0`.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# Start-up notices, not problems: absl's preamble, INFO lines in absl's format, and cpu_feature_guard's advice.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .*"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|.*rebuild TensorFlow with the appropriate compiler flags\.?)$"
)


def filter_noise(text: str) -> str:
    """`text` without TensorFlow's start-up notices (the lines that carry no problem for the user)."""
    kept = [ln for ln in text.splitlines(keepends=True) if not _NOISE.match(ln.rstrip("\r\n"))]
    return "".join(kept)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner: Any):
        self.inner = inner

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with native_quiet():
            self.inner.exec_module(module)


@contextlib.contextmanager
def native_quiet() -> Iterator[None]:
    """File descriptor 2 pointed at a temporary file while the block runs (native libraries write there, below
    Python's sys.stderr); afterwards what was written is replayed on stderr minus the known notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            rest = filter_noise(sink.read().decode(errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of one top-level module (`tensorflow`), once."""

    def __init__(self, module: str = "tensorflow"):
        self.module = module

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.module or name in sys.modules:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install(module: str = "tensorflow") -> None:
    """Add the hook unless `module` is already imported or the user asked for its logs (TF_CPP_MIN_LOG_LEVEL=0)."""
    if module in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() == "0":
        return
    if not any(isinstance(f, _Finder) and f.module == module for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(module))
