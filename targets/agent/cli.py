"""CLI: options, `main()`, errors as JSON (`_fail`).

Part of the device agent (see the package docstring); standard library, numpy and a TFLite runtime only."""

from __future__ import annotations

import argparse
import json
import sys

from .document import _EXIT_BY_KIND, EXIT_INTERNAL, EXIT_OK, AgentError, _document
from .facts import _proc_status_kb, device_facts
from .inputs import warm_numpy
from .measuring import _RUNTIME_SEEN, measure
from .ops import measure_ops
from .runtime import import_runtime


def _formatter(prog: str) -> argparse.HelpFormatter:
    # argparse's default formatter asks shutil for the terminal's width, and importing shutil loads bz2, lzma and
    # zlib: ~0.4 MB of the peak RSS this agent reports, for help text that only --help prints.
    return argparse.HelpFormatter(prog, width=100)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeseq-agent", description="Time one .tflite model; print JSON.", formatter_class=_formatter
    )
    p.add_argument("--model")
    p.add_argument("--expect-sha256", dest="expect_sha256")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-secs", dest="max_secs", type=float, default=None)
    p.add_argument("--no-xnnpack", dest="no_xnnpack", action="store_true")
    p.add_argument("--input")
    p.add_argument("--input-dist", dest="input_dist", choices=["normal", "uniform"], default="normal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=None, help="token-id input: random ids 0..V-1 (default: the GATHER table)")
    p.add_argument("--runtime", choices=["auto", "ai_edge_litert", "tflite_runtime"], default="auto")
    p.add_argument("--facts", action="store_true")
    p.add_argument("--stream", action="store_true", help="feed a sequence step by step, carrying state")
    p.add_argument("--steps", type=int, default=None, help="--stream: steps per stream (default: the input's)")
    p.add_argument("--hop-ms", dest="hop_ms", type=float, default=None, help="--stream: input period (deadline)")
    p.add_argument("--ops", help="time every op on its own: the op slices cut from this model (a zip)")
    p.add_argument("--version", action="store_true")
    return p


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit 2; we want JSON
        raise _ArgError(message)


def _validate(args) -> None:
    if args.stream and args.steps is not None and args.steps < 1:
        raise AgentError("input", f"--steps must be at least 1, got {args.steps}")
    if args.hop_ms is not None and args.hop_ms <= 0:
        raise AgentError("input", f"--hop-ms must be > 0, got {args.hop_ms}")
    if not args.model:
        raise AgentError("input", "--model is required")
    if args.runs < 1:
        raise AgentError("input", f"--runs must be at least 1, got {args.runs}")
    if args.warmup < 0:
        raise AgentError("input", f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1 and args.threads != -1:
        raise AgentError(
            "input", f"--threads must be >= 1 (or -1 for the runtime's choice), got {args.threads}"
        )
    if args.max_secs is not None and args.max_secs <= 0:
        raise AgentError("input", f"--max-secs must be > 0, got {args.max_secs}")
    if args.vocab is not None and args.vocab < 1:
        raise AgentError("input", f"--vocab must be at least 1, got {args.vocab}")
    if args.ops and args.stream:
        raise AgentError("input", "--ops times the ops of a plain model run; drop --stream")


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    base = _parser()
    parser = _Parser(prog=base.prog, description=base.description, formatter_class=_formatter)
    for action in base._actions:
        if action.dest != "help":
            parser._add_action(action)
    try:
        args = parser.parse_args(argv)
        if args.version:
            _emit(_document(True))
            return EXIT_OK
        if args.facts:
            try:
                name, version, _ = import_runtime(args.runtime)
                import numpy as np

                warm_numpy(np)  # so `memory` is the baseline a measurement starts from
                runtime = {"name": name, "version": version, "numpy_version": np.__version__}
            except AgentError as exc:
                runtime = {"name": None, "version": None, "error": exc.message}
            _emit(_document(True, runtime=runtime, device=device_facts(), memory=_proc_status_kb()))
            return EXIT_OK
        _validate(args)
        result = measure(args)
        if args.ops:
            result["ops"] = measure_ops(args, result)
    except _ArgError as exc:
        return _fail(AgentError("input", f"bad agent option: {exc}"))
    except AgentError as exc:
        return _fail(exc)
    except MemoryError:
        return _fail(
            AgentError(
                "model",
                "out of memory while running the model",
                "raise the memory limit or use a smaller model",
            )
        )
    except Exception as exc:  # noqa: BLE001 - the host must always get JSON, never a bare traceback
        return _fail(AgentError("internal", f"{type(exc).__name__}: {exc}"))
    _emit(result)
    return EXIT_OK


def _fail(err: AgentError) -> int:
    error = {
        "kind": err.kind,
        "message": err.message,
        "hint": err.hint,
        "op": None,
        "op_version": None,
        "stage": None,
    }
    error.update(err.extra)
    try:
        facts = device_facts()
    except Exception:  # noqa: BLE001 - the error document must go out even when the facts cannot be read
        facts = None
    _emit(_document(False, error=error, runtime=dict(_RUNTIME_SEEN) or None, device=facts))
    return _EXIT_BY_KIND.get(err.kind, EXIT_INTERNAL)


# Run as a plain script (`python agent.py`, as agent 3.1.0 was pushed), CPython kept the script's whole syntax tree
# in memory until the script returned (pyrun_file frees its parser arena only after run_mod), ~2 MB of the peak RSS
# this agent reports, so agent.py exec'd the interpreter once more on itself through compile() + exec(). The zipapp
# needs none of that: `python3 edgeseq_agent.pyz` runs its __main__ through runpy, and zipimport compiles each module
# with compile(), which frees the tree right after compiling (importlib does the same for `python -m
# edgeseq.targets.agent`). memory.baseline_kb, median of 10 alternating runs of a tiny dense model on x86_64: 37,478
# kB with agent.py, 37,298 kB with the zipapp (Python 3.11, ai-edge-litert 2.3; model_peak_kb 100 kB both); 36,194
# and 36,334 kB on Python 3.9 with tflite-runtime 2.14 (model_peak_kb 116 and 132 kB).
