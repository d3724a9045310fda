"""Host side of the agent: push it and the model to any Target, run it with an argv list, parse its JSON, clean up.

Target-agnostic on purpose: it uses only the Target protocol (workdir/push/run/cleanup), so local, ssh and adb
(with a Python on the device) all go through `run_agent`. The agent checks the model's sha256 on the device
(`--expect-sha256`) before it measures, so a truncated or stale copy is an error, never a figure. The agent goes
as one file, the zipapp edgeseq.targets.agent_build makes of targets/agent/ (`python3 edgeseq_agent.pyz ...`); its
sha256 is recorded with every run (`agent_sha256`, beside the agent's version).
"""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from edgeseq.core.errors import EdgeseqError, InputError, ModelError, RuntimeMissing, TargetError
from edgeseq.core.fsio import sha256_file
from edgeseq.targets.agent_build import PYZ_NAME, agent_pyz
from edgeseq.targets.base import RunResult, Target

AGENT_SCHEMA_PREFIX = "edgeseq.agent/3"  # what the agent pushed from this edgeseq prints (stored /1, /2 rows stay readable)
AGENT_REMOTE_NAME = PYZ_NAME  # edgeseq_agent.pyz


def agent_path() -> Path:
    """The single file pushed to devices: the agent's zipapp, built from the current sources (cached)."""
    return agent_pyz()[0]


@dataclass(frozen=True)
class AgentOptions:
    """What the agent is asked to do; stored with every run as provenance."""

    runs: int = 100
    warmup: int = 10
    threads: int | None = 1
    max_secs: float | None = None
    xnnpack: bool = True
    input: str | None = None  # host path of a .npy/.npz
    input_dist: str = "normal"
    seed: int = 0
    runtime: str = "auto"
    stream: bool = False  # feed a sequence step by step, carrying state (step models; see edgeseq.quantize.stream.convert)
    steps: int | None = None  # --stream: steps per stream (the context)
    hop_ms: float | None = None  # --stream: the input period; the agent reports the share of steps that met it
    ops: bool = False  # then time every op on its own (the op slices: edgeseq.quantize.op_slices)

    def check(self) -> None:
        if self.runs < 1:
            raise InputError(f"--runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise InputError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}")
        if self.max_secs is not None and self.max_secs <= 0:
            raise InputError(f"--max-secs must be positive, got {self.max_secs}")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"--steps must be at least 1, got {self.steps}")
        if self.hop_ms is not None and self.hop_ms <= 0:
            raise InputError(f"--hop-ms must be positive, got {self.hop_ms}")
        if (self.steps is not None or self.hop_ms is not None) and not self.stream:
            raise InputError("--steps and --hop-ms need --stream")
        if self.ops and self.stream:
            raise InputError("--ops times the ops of a plain run, not a stream", "drop --stream or --ops")
        if self.input is not None and not Path(self.input).is_file():
            raise InputError(f"input file not found: {self.input}", "pass a .npy or .npz")

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["input"]:
            d["input"] = Path(d["input"]).name
        return d

    def default_timeout(self) -> float:
        if self.max_secs:
            return 120.0 + 2 * self.max_secs
        return 600.0




def agent_argv(
    python: str, agent: str, model: str, sha256: str, opts: AgentOptions, input_remote: str | None,
    ops_remote: str | None = None, vocab: int | None = None,
):
    argv = [
        python,
        agent,
        "--model",
        model,
        "--expect-sha256",
        sha256,
        "--runs",
        str(opts.runs),
        "--warmup",
        str(opts.warmup),
        "--input-dist",
        opts.input_dist,
        "--seed",
        str(opts.seed),
        "--runtime",
        opts.runtime,
    ]
    if opts.threads is not None:
        argv += ["--threads", str(opts.threads)]
    if opts.max_secs is not None:
        argv += ["--max-secs", repr(float(opts.max_secs))]
    if not opts.xnnpack:
        argv.append("--no-xnnpack")
    if input_remote:
        argv += ["--input", input_remote]
    if opts.stream:
        argv.append("--stream")
        if opts.steps is not None:
            argv += ["--steps", str(opts.steps)]
        if opts.hop_ms is not None:
            argv += ["--hop-ms", repr(float(opts.hop_ms))]
    if ops_remote:
        argv += ["--ops", ops_remote]
    if vocab:
        argv += ["--vocab", str(int(vocab))]
    return argv


def manifest_vocab(model: Path) -> int | None:
    """A token-id model's vocabulary size from its manifest (`source.input.vocab_size`), for the agent's random ids;
    None without one (the agent then reads the Embedding's GATHER table)."""
    from edgeseq.quantize.manifest import read_manifest

    source = (read_manifest(model, strict=False) or {}).get("source")
    record = source.get("input") if isinstance(source, dict) else None
    vocab = record.get("vocab_size") if isinstance(record, dict) else None
    return vocab if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0 else None


def run_agent(
    target: Target, model: Path | str, opts: AgentOptions, timeout: float | None = None, ops_pack: Path | None = None
) -> dict:
    """Measure one model on one target; returns the agent's JSON (schema edgeseq.agent/3) as a dict.

    Raises ModelError (missing, corrupt, Flex ops), RuntimeMissing (no runtime, op too new for it), InputError,
    or TargetError (transport failed, checksum mismatch, the agent crashed or was killed).
    """
    model = Path(model)
    opts.check()
    if not model.is_file():
        raise ModelError(f"model not found: {model}")
    digest = sha256_file(model)
    agent, agent_sha256 = agent_pyz()
    wd = target.workdir()
    try:
        remote_agent = str(PurePosixPath(wd) / AGENT_REMOTE_NAME)
        remote_model = str(PurePosixPath(wd) / _safe_name(model.name))
        target.push(agent, remote_agent)
        target.push(model, remote_model)
        remote_input = None
        if opts.input:
            src = Path(opts.input)
            remote_input = str(PurePosixPath(wd) / ("input" + (src.suffix or ".npy")))
            target.push(src, remote_input)
        remote_ops = None
        if ops_pack is not None:  # the op slices cut from this model (profile --ops)
            remote_ops = str(PurePosixPath(wd) / "op_slices.zip")
            target.push(Path(ops_pack), remote_ops)
        argv = agent_argv(target.spec.python, remote_agent, remote_model, digest, opts, remote_input, remote_ops,
                          manifest_vocab(model))
        result = target.run(argv, timeout if timeout is not None else opts.default_timeout())
    finally:
        try:
            target.cleanup(wd)
        except EdgeseqError:
            pass
    data = parse_agent_output(result, model.name)
    data["model"]["host_path"] = str(model)
    data["agent_sha256"] = agent_sha256  # which agent file measured it (stored in the run's agent_json)
    return data


def agent_facts(target: Target, timeout: float = 60.0) -> dict:
    """Device facts and runtime (agent --facts), without a model."""
    agent, agent_sha256 = agent_pyz()
    wd = target.workdir()
    try:
        remote_agent = str(PurePosixPath(wd) / AGENT_REMOTE_NAME)
        target.push(agent, remote_agent)
        result = target.run([target.spec.python, remote_agent, "--facts"], timeout)
    finally:
        try:
            target.cleanup(wd)
        except EdgeseqError:
            pass
    data = parse_agent_output(result, "(facts)")
    data["agent_sha256"] = agent_sha256
    return data


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.lstrip(".") or "model.tflite"


def _find_json(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and str(obj.get("schema", "")).startswith("edgeseq.agent/"):
            return obj
    return None


def _last_stage(stderr: str) -> str | None:
    stage = None
    for line in stderr.splitlines():
        if line.startswith("edgeseq-agent: stage="):
            stage = line.split("=", 1)[1].strip()
    return stage


def _notes(stderr: str) -> list[str]:
    return [
        line.split(":", 1)[1].strip() for line in stderr.splitlines() if line.startswith("edgeseq-local:")
    ]


def _stderr_tail(stderr: str) -> str:
    lines = [
        ln.strip()
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("edgeseq-agent:", "edgeseq-local:", "INFO:"))
    ]
    return lines[-1][:300] if lines else ""


def parse_agent_output(result: RunResult, label: str) -> dict:
    data = _find_json(result.stdout)
    if data is None:
        stage = _last_stage(result.stderr)
        notes = _notes(result.stderr)
        where = f" during {stage}" if stage else ""
        if result.returncode < 0:
            try:
                sig = signal.Signals(-result.returncode).name
            except ValueError:
                sig = f"signal {-result.returncode}"
            why = "; ".join(notes) if notes else "the runtime crashed on this model"
            raise TargetError(
                f"the agent died with {sig}{where} of {label}: {why} (only the agent's process was lost)",
                "check the model with `edgeseq inspect`; a Flex-free, batch-1 conversion usually runs",
            )
        tail = _stderr_tail(result.stderr)
        if result.returncode == 127 or "No such file or directory" in tail:
            raise TargetError(
                f"cannot run the agent on the target: {tail or 'command not found'}",
                "is python3 installed there? set the target's python",
            )
        if "No module named 'numpy'" in tail:
            raise RuntimeMissing("numpy is missing on the target", "pip install numpy ai-edge-litert there")
        raise TargetError(
            f"the agent gave no result for {label} (exit {result.returncode}){where}: {tail or 'no output'}"
        )
    schema = str(data.get("schema"))
    if schema != AGENT_SCHEMA_PREFIX:
        raise TargetError(
            f"the agent on the target speaks {schema}, this edgeseq reads {AGENT_SCHEMA_PREFIX}",
            "push the agent from this edgeseq",
        )
    if not data.get("ok"):
        raise _error_from(data.get("error") or {}, label)
    return data


def _error_from(err: dict, label: str) -> EdgeseqError:
    kind = err.get("kind")
    msg = f"{label}: {err.get('message', 'unknown agent error')}"
    hint = err.get("hint")
    if kind in ("input", "not_implemented"):
        return InputError(msg, hint)
    if kind in ("model", "flex"):
        return ModelError(msg, hint)
    if kind in ("op_unsupported", "runtime_missing"):
        return RuntimeMissing(msg, hint)
    return TargetError(msg, hint)
