"""`edgeseq deploy`: put a model on a device and prove it runs there, step by step, with a clear error at each step.

Steps: check the device can run the runner (Python + numpy + a TFLite runtime for the agent; the user's binary for
benchmark_model), make a fresh per-run directory, push, verify the model's sha256 on the device, run a short
measurement, collect the JSON, remove the directory (unless `keep`). Nothing is written to the results store: deploy
answers "does it run there?"; `edgeseq profile` measures.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path, PurePosixPath

from edgeseq.core.errors import EdgeseqError, TargetError
from edgeseq.quantize.tflite.reader import read_tflite
from edgeseq.targets import device_shell
from edgeseq.targets.limits import check_deploy_options

__all__ = ["check_deploy_options", "deploy", "deploy_to", "killed_by_signal", "with_user_paths"]

# A file in a per-run directory: edgeseq-run-XXXX (local, under $TMPDIR) or run-XXXXXXXX (on a device).
_RUN_FILE_RE = re.compile(
    r"(?:/[^\s'\"():,;]*)?/(?:edgeseq-run-|" + re.escape(device_shell.RUN_DIR_PREFIX) + r")[A-Za-z0-9_]+/"
    r"([^\s'\"():,;/]+)"
)


def deploy(
    target,
    model: Path,
    runs: int = 10,
    warmup: int = 2,
    threads: int | None = 1,
    keep: bool = False,
    timeout: float = 600.0,
    runner: str | None = None,
    benchmark_binary: str | None = None,
    log=lambda msg: None,
) -> dict:
    """Deploy `model` to `target` and run it once; returns the result (schema edgeseq.agent/1) plus `deploy` facts."""
    check_deploy_options(runs, warmup, threads, timeout)
    model = Path(model)
    from edgeseq.quantize.inspect import refuse_uninitialised_state

    # the same checked reader as inspect/evaluate/profile: a bad file never reaches a device
    refuse_uninitialised_state(read_tflite(model), model)
    try:
        return _deploy(target, model, runs, warmup, threads, keep, timeout, runner, benchmark_binary, log)
    except EdgeseqError as exc:
        raise with_user_paths(exc, model) from None


def deploy_to(target_name: str, model: Path, runs: int = 10, warmup: int = 2, threads: int | None = 1,
              timeout: float = 600.0, **options) -> dict:
    """`edgeseq deploy`: the numeric options checked first, then the target (a name, URL or `local`) opened, then
    `deploy`. Other keyword arguments are `deploy`'s."""
    from edgeseq.targets.resolve import open_target

    check_deploy_options(runs, warmup, threads, timeout)
    target = open_target(target_name)
    return deploy(target, model, runs=runs, warmup=warmup, threads=threads, timeout=timeout, **options)


def _deploy(target, model: Path, runs, warmup, threads, keep, timeout, runner, benchmark_binary, log) -> dict:
    runner = runner or getattr(target.spec, "runner", "agent") or "agent"
    started = time.monotonic()
    if runner == "benchmark_model":
        from edgeseq.targets.benchmark_model import BenchmarkOptions, run_benchmark

        binary = benchmark_binary or target.spec.benchmark_binary
        if not binary:
            from edgeseq.core.errors import InputError

            raise InputError("runner benchmark_model needs the binary", "pass --benchmark-binary PATH")
        log(f"running benchmark_model on {target.spec.name}")
        data = run_benchmark(
            target,
            model,
            Path(binary),
            BenchmarkOptions(runs=runs, warmup=warmup, threads=threads),
            timeout,
            keep,
        )
    else:
        data = _deploy_agent(target, model, runs, warmup, threads, keep, timeout, log)
    data["deploy"] = {
        "target": target.spec.name,
        "runner": runner,
        "kept": keep,
        "wall_s": time.monotonic() - started,
    }
    return data


def with_user_paths(exc: EdgeseqError, model: Path, input_path: str | Path | None = None) -> EdgeseqError:
    """`exc` with every mention of the model's (or input's) copy in a per-run directory replaced by the path the
    user gave: a message must name the user's file, not a temporary one that no longer exists."""
    from edgeseq.targets.runner import _safe_name

    names = {_safe_name(Path(model).name): str(model)}
    if input_path is not None:
        suffix = Path(input_path).suffix or ".npy"
        names["input" + suffix] = str(input_path)

    def fix(text: str | None) -> str | None:
        if not text:
            return text
        return _RUN_FILE_RE.sub(lambda m: names.get(m.group(1), m.group(0)), text)

    message, hint = fix(exc.message), fix(exc.hint)
    if (message, hint) == (exc.message, exc.hint):
        return exc
    fixed = copy.copy(exc)
    fixed.message, fixed.hint, fixed.args = message, hint, (message,)
    return fixed


def _deploy_agent(target, model: Path, runs, warmup, threads, keep, timeout, log) -> dict:
    from edgeseq.core.fsio import sha256_file
    from edgeseq.targets.agent_build import agent_pyz
    from edgeseq.targets.runner import (
        AGENT_REMOTE_NAME,
        AgentOptions,
        _safe_name,
        agent_argv,
        manifest_vocab,
        parse_agent_output,
    )

    opts = AgentOptions(runs=runs, warmup=warmup, threads=threads)
    opts.check()
    if hasattr(target, "require_runtime"):  # remote targets: name `targets setup` before pushing anything
        log(f"checking Python and the TFLite runtime on {target.spec.name}")
        target.require_runtime()
    digest = sha256_file(model)
    agent, agent_sha256 = agent_pyz()
    wd = target.workdir()
    log(f"work directory {wd}")
    try:
        remote_agent = str(PurePosixPath(wd) / AGENT_REMOTE_NAME)
        remote_model = str(PurePosixPath(wd) / _safe_name(model.name))
        target.push(agent, remote_agent)
        target.push(model, remote_model)
        log("pushed the agent and the model; verifying sha256 on the device")
        device_shell.verify_sha256(target, remote_agent, agent_sha256)
        device_shell.verify_sha256(target, remote_model, digest)
        result = target.run(
            agent_argv(target.spec.python, remote_agent, remote_model, digest, opts, None,
                       vocab=manifest_vocab(model)), timeout
        )
        killed_by_signal(target, result, f"the agent on {model.name}")
        data = parse_agent_output(result, model.name)
    finally:
        if not keep:
            try:
                target.cleanup(wd)
            except EdgeseqError:
                pass
    data["model"]["host_path"] = str(model)
    data["agent_sha256"] = agent_sha256
    if keep:
        data["remote_dir"] = wd
    return data


def killed_by_signal(target, result, what: str) -> None:
    """A remote shell reports a process killed by signal N as exit 128+N; say so, instead of 'no result'."""
    if result.returncode > 128 and '"schema"' not in result.stdout:
        import signal

        try:
            name = signal.Signals(result.returncode - 128).name
        except ValueError:
            name = f"signal {result.returncode - 128}"
        raise TargetError(
            f"{target.spec.name}: {what} was killed by {name} before it reported (exit {result.returncode})",
            "the device may have run out of memory (check dmesg there); only this run was lost",
        )
