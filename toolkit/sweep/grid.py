"""The sweep's grid: what `edgeseq sweep` measures, from flags or a TOML file, expanded into keyed cells.

    spec = spec_from_options({"arch": "gru,transformer", "seq_len": "16,32,...,2048", "mode": "cost"})
    cells = expand(spec)          # one Cell per arch x size x length x recipe x form x target

A cell is one measurement: one model (architecture, size, sequence length; trained in `full` mode, seeded and
untrained in `cost` mode), converted with one recipe, in one form (`whole`: the whole sequence per invoke; `stream`:
one step per invoke, with the RNN's state or the causal Transformer's KV cache carried), profiled on one target. Its
key is the sha256 of its whole configuration and the tool versions, so a cell measured once is never measured
again, and a change of edgeseq, TensorFlow, Keras or LiteRT measures it anew. Cells share their model (`model_key`)
and their converted file (`artifact_key`): a model is built once for every recipe and target.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from edgeseq.core.errors import InputError, did_you_mean
from edgeseq.models.streamkind import StreamKind
from edgeseq.targets.agent import AGENT_VERSION

MODES = ("cost", "full", "estimate")  # estimate: cost-mode files, latency from `edgeseq estimate`, no run
FORMS = ("whole", "stream")
# the zoo's architectures, plus the causal Transformer (whose stream form is a KV cache)
SWEEP_ARCHS = ("rnn", "lstm", "gru", "transformer", "transformer-causal")
RECURRENT = ("rnn", "lstm", "gru")
MAX_CELLS = 100_000


@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep asks for; `check()` refuses what cannot run before anything is built."""

    archs: tuple[str, ...] = ("gru", "transformer")
    presets: tuple[str, ...] = ("small",)
    sets: tuple[tuple[str, str], ...] = ()  # --set key=value, applied to every preset
    seq_lens: tuple[int, ...] = (16, 64, 256)
    recipes: tuple[str, ...] = ("fp32",)
    stream: bool = False
    targets: tuple[str, ...] = ("local",)
    mode: str = "cost"
    dataset: str | None = None  # full mode: trained on it; cost mode: its shape (features, classes) when given
    data_dir: str | None = None  # a local copy of a downloadable data set (not part of any key)
    features: int = 16  # cost mode without a data set
    classes: int = 10
    epochs: int = 10
    seed: int = 0
    runs: int = 50
    warmup: int = 5
    threads: int = 1
    hop_ms: float | None = None
    out: str = "sweep-out"
    db: str | None = None
    jobs: int = 1
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    retry_failed: bool = False

    def check(self) -> SweepSpec:
        from edgeseq.models.zoo import PRESETS
        from edgeseq.quantize.recipes import get_recipe

        for a in self.archs:
            if a not in SWEEP_ARCHS:
                raise InputError(f"unknown architecture {a!r}{did_you_mean(a, SWEEP_ARCHS)}",
                                 f"choose from {', '.join(SWEEP_ARCHS)}")
        for p in self.presets:
            if p not in PRESETS:
                raise InputError(f"unknown preset {p!r}{did_you_mean(p, PRESETS)}", f"choose from {', '.join(PRESETS)}")
        for r in self.recipes:
            get_recipe(r)
        for name in ("mode", "dataset", "data_dir", "out", "db", "executor", "ray_address"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise InputError(f"sweep setting {name} must be a non-empty string, got {value!r}")
        if self.mode not in MODES:
            raise InputError(f"unknown sweep mode {self.mode!r}", "choose --mode full (train), cost (untrained) or estimate (no run)")
        if self.mode == "full" and not self.dataset:
            raise InputError("--mode full trains every model and needs a data set", "pass --dataset NAME")
        if self.dataset:
            from edgeseq.datasets import is_path, parse_spec

            if not is_path(self.dataset):
                parse_spec(self.dataset)  # an unknown name or parameter is one line, before anything is built
            elif not Path(self.dataset).is_file():
                raise InputError(f"no data set file at {self.dataset}", "pass a registered name or an .npz path")
        if not (self.archs and self.presets and self.seq_lens and self.recipes and self.targets):
            raise InputError("the sweep grid is empty", "give at least one --arch, --seq-len, --recipe and --target")
        if any(n < 2 or n > 65536 for n in self.seq_lens):
            raise InputError(f"sequence lengths must be 2..65536, got {list(self.seq_lens)}")
        for name, value, lo, hi in (("--features", self.features, 1, 4096), ("--classes", self.classes, 2, 100000),
                                    ("--epochs", self.epochs, 1, 10000), ("--runs", self.runs, 1, 100000),
                                    ("--warmup", self.warmup, 0, 100000), ("--threads", self.threads, 1, 256),
                                    ("--jobs", self.jobs, 1, 256)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InputError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
        if self.hop_ms is not None and not (isinstance(self.hop_ms, int | float) and math.isfinite(self.hop_ms)
                                            and self.hop_ms > 0):
            raise InputError(f"--hop-ms must be a finite positive number, got {self.hop_ms!r}")
        if self.executor not in ("local", "ray"):
            raise InputError(f"unknown executor {self.executor!r}", "choose --executor local or ray")
        if self.executor == "ray" and not self.ray_address:
            raise InputError("--executor ray needs the cluster's address", "pass --ray-address HOST:PORT")
        for k, _ in self.sets:
            if k in ("causal", "max_len"):
                raise InputError(f"--set {k} is the sweep's to decide", "use --arch transformer-causal")
        return self

    @property
    def overrides(self) -> dict:
        from edgeseq.models.config import parse_overrides

        return parse_overrides(tuple(f"{k}={v}" for k, v in self.sets))

    def size_label(self, preset: str) -> str:
        return preset + "".join(f"+{k}={v}" for k, v in self.sets)


@dataclass(frozen=True)
class Cell:
    """One measurement of the grid; `config` is what its key hashes."""

    key: str
    model_key: str
    artifact_key: str
    config: dict

    def __getattr__(self, name: str):
        try:
            return self.config[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def label(self) -> str:
        c = self.config
        return f"{c['arch']}-{c['size']} n={c['seq_len']} {c['recipe']} {c['form']} @ {c['target']}"


def tool_versions() -> dict:
    """The versions a measurement depends on, read from package metadata (no import of TensorFlow)."""
    from importlib.metadata import PackageNotFoundError, version

    from edgeseq import __version__

    out = {"edgeseq": __version__}
    for key, names in (("tensorflow", ("tensorflow", "tensorflow-cpu")), ("keras", ("keras",)),
                       ("litert", ("ai-edge-litert",))):
        for n in names:
            try:
                out[key] = version(n)
                break
            except PackageNotFoundError:
                continue
    return out


def _hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def stream_kind(arch: str) -> StreamKind | None:
    """The step-wise stream form of a sweep architecture (a recurrent state or a KV cache), None without one: a
    non-causal Transformer streams only by re-running its window, whose per-step cost is its whole-sequence cell's."""
    if arch in RECURRENT:
        return StreamKind.RECURRENT_STEP
    return StreamKind.KV_CACHE if arch == "transformer-causal" else None


def zoo_model(model: dict) -> tuple[str, dict]:
    """(zoo architecture, config overrides) of a cell's model: `--set` values, and for a Transformer its causal
    mask and a positional table as long as the cell."""
    arch = model["arch"]
    overrides = dict(model.get("set") or {})
    if arch.startswith("transformer"):
        overrides.update(causal=stream_kind(arch) is StreamKind.KV_CACHE, max_len=model["seq_len"])
    return arch.split("-")[0], overrides


def expand(spec: SweepSpec, versions: dict | None = None, agent: str = AGENT_VERSION) -> list[Cell]:
    """Every cell of the grid, in a stable order (model by model, so a model's cells finish together). The agent's
    version keys the measurement only: a new agent measures again, with the same models and files."""
    versions = versions if versions is not None else tool_versions()
    overrides = spec.overrides
    cells = []
    for arch in spec.archs:
        for preset in spec.presets:
            for n in sorted(set(spec.seq_lens)):
                mode = "cost" if spec.mode == "estimate" else spec.mode  # estimate: the cost sweep's files
                model = {"mode": mode, "dataset": spec.dataset, "arch": arch, "preset": preset,
                         "set": overrides, "size": spec.size_label(preset), "seq_len": int(n), "seed": spec.seed,
                         "epochs": spec.epochs if spec.mode == "full" else None,
                         "features": None if spec.dataset else spec.features,
                         "classes": None if spec.dataset else spec.classes, "versions": versions}
                model_key = _hash(model)
                for recipe in spec.recipes:
                    for form in ("whole", "stream") if spec.stream and stream_kind(arch) else ("whole",):
                        artifact = {**model, "recipe": recipe, "form": form}
                        artifact_key = _hash(artifact)
                        for target in spec.targets:
                            config = {**artifact, "target": target, "runs": spec.runs, "warmup": spec.warmup,
                                      "threads": spec.threads, "hop_ms": spec.hop_ms, "agent": agent}
                            if spec.mode == "estimate":  # its own cells, on the same files as a cost sweep
                                config["estimate"] = True
                            cells.append(Cell(_hash(config), model_key, artifact_key, config))
                            if len(cells) > MAX_CELLS:
                                raise InputError(f"the grid has more than {MAX_CELLS:,} cells",
                                                 "split it into several sweeps")
    return cells


# ------------------------------------------------------------------------------------------ options and files
def _split(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list | tuple):
        out: list = []
        for v in value:
            out.extend(_split(v) if isinstance(v, str) else [v])
        return tuple(out)
    return (value,)


def _lengths(value) -> tuple[int, ...]:
    from edgeseq.streams.profile import parse_contexts

    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return tuple(parse_contexts(str(value)))


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"sweep setting {name} must be true or false, got {value!r}", f"write {name} = true")
    return value


def _sets(value) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        return tuple((str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items())
    out = []
    for item in _split(value):
        k, eq, v = str(item).partition("=")
        if not eq or not k.strip():
            raise InputError(f"cannot read --set {item!r}", "write --set key=value, e.g. --set units=64")
        out.append((k.strip(), v.strip()))
    return tuple(out)


_FIELDS = {
    "arch": ("archs", lambda v: tuple(str(a).lower() for a in _split(v))),
    "preset": ("presets", lambda v: tuple(str(p) for p in _split(v))),
    "set": ("sets", _sets),
    "seq_len": ("seq_lens", _lengths),
    "recipe": ("recipes", lambda v: tuple(str(r) for r in _split(v))),
    "target": ("targets", lambda v: tuple(str(t) for t in _split(v))),
    "stream": ("stream", lambda v: _flag("stream", v)),
    "retry_failed": ("retry_failed", lambda v: _flag("retry_failed", v)),
    **{k: (k, None) for k in ("mode", "dataset", "features", "classes", "epochs", "seed", "runs", "warmup",
                              "threads", "hop_ms", "out", "db", "jobs", "executor", "ray_address", "data_dir")},
}


def spec_from_options(options: dict, base: SweepSpec | None = None) -> SweepSpec:
    """A spec from flag-like values (None = not given), over `base` (a file's spec) or the defaults."""
    changes = {}
    for key, value in options.items():
        if value is None or value == ():
            continue
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise InputError(f"unknown sweep setting {key!r}{did_you_mean(name, list(_FIELDS))}",
                             f"settings: {', '.join(_FIELDS)}")
        field_name, convert = _FIELDS[name]
        changes[field_name] = convert(value) if convert else value
    for name in ("archs", "presets", "recipes", "targets", "seq_lens"):
        if name in changes:
            changes[name] = tuple(dict.fromkeys(changes[name]))  # a value given twice is one value
    return replace(base or SweepSpec(), **changes)


def spec_from_file(path: str | Path) -> SweepSpec:
    """A sweep.toml: the flags' names as keys (lists or comma-separated strings), e.g.
    `arch = ["gru", "transformer"]`, `seq_len = "16,32,...,2048"`, `[set] units = 64`."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise InputError("sweep files need Python 3.11 (tomllib)", "pass the grid as flags instead") from None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no sweep file at {p}", "pass a sweep.toml, or the grid as flags")
    if p.stat().st_size > 1 << 20:
        raise InputError(f"{p} is larger than 1 MiB; a sweep file is a few lines", "pass the right file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read {p}: {exc}", "fix the TOML (see README 'Sweeps')") from None
    return spec_from_options(data)


def describe(spec: SweepSpec, cells: list[Cell]) -> str:
    """The grid in words, for --dry-run and the start of a sweep."""
    models = len({c.model_key for c in cells})
    artifacts = len({c.artifact_key for c in cells})
    lines = [f"sweep ({spec.mode} mode): {len(cells)} cells = {models} models x recipes/forms "
             f"({artifacts} files) x {len(spec.targets)} target(s)",
             f"  architectures {', '.join(spec.archs)}; sizes {', '.join(spec.size_label(p) for p in spec.presets)}",
             f"  lengths {', '.join(map(str, sorted(set(spec.seq_lens))))}; recipes {', '.join(spec.recipes)}; "
             f"forms {'whole, stream' if spec.stream else 'whole'}; targets {', '.join(spec.targets)}",
             f"  data: {spec.dataset or f'shapes only ({spec.features} features, {spec.classes} classes)'}; "
             f"artifacts under {spec.out}"]
    if spec.stream and "transformer" in spec.archs:
        lines.append("  note: a non-causal transformer streams only by window recompute (its whole-sequence cell is "
                     "that cost); use transformer-causal for a KV cache")
    return "\n".join(lines)

