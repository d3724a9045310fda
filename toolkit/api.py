"""edgeseq from Python: one function per verb, typed results, the CLI's own errors.

    import edgeseq.api as es
    run = es.train("gru", "japanese_vowels", preset="tiny", epochs=3, out="runs/gru")
    files = es.convert(run.model_path, "fp32,int8", dataset="japanese_vowels", out="artifacts")
    print(es.evaluate(files[1].tflite_path, "japanese_vowels").metrics)
    runs = es.profile([f.tflite_path for f in files], runs=50, db="results.db")
    es.runs("results.db")            # a pandas DataFrame when pandas is installed, else a list of dicts

Every `edgeseq` verb calls the function of the same name here and only prints what it returns, so a notebook and the
command line run the same code. Failures raise the typed `edgeseq.core.errors.EdgeseqError` subclasses that the CLI
turns into one line and an exit code (`err.one_line()`, `err.exit_code`). TensorFlow is imported only by the verbs
that need it (train, convert).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq.core.errors import InputError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Trained:
    """`train`: the run directory, its model.keras and its training record (training.json)."""

    model_path: Path
    out_dir: Path
    record: dict

    @property
    def test_metrics(self) -> dict:
        return {k: v for k, v in self.record.get("test_metrics", {}).items() if k != "n"}


@dataclass(frozen=True)
class Evaluation:
    """`evaluate`: accuracy (classification) or MSE/MAE (regression) of a .tflite on a data set's test split."""

    model: str
    dataset: str
    n: int
    metrics: dict
    per_frame: bool
    runtime: str
    raw: dict = field(repr=False)


@dataclass(frozen=True)
class Run:
    """One stored profiling run (`profile`): where, what, and the latency figures in microseconds."""

    run_id: int | None
    model: str
    target: str
    recipe: str | None
    p50_us: float | None
    p99_us: float | None
    accuracy: float | None
    raw: dict = field(repr=False)


@dataclass(frozen=True)
class Recommendation:
    """`recommend`: the stored models that meet every budget (ranked), the others with the budgets they broke."""

    target: str
    budgets: dict
    meets: list[dict]
    excluded: list[dict]
    closest: dict | None
    notes: list[str]
    raw: dict = field(repr=False)

    @property
    def best(self) -> dict | None:
        return self.meets[0] if self.meets else None


def train(arch: str, dataset: Any, *, preset: str = "small", out: PathLike | None = None, epochs: int = 60,
          batch_size: int = 32, learning_rate: float = 2e-3, patience: int = 12, validation_split: float = 0.15,
          seed: int = 0, mixed_precision: bool = False, backend: str | None = None, overrides: Sequence[str] = (),
          data_dir: str | None = None, overwrite: bool = False,
          progress: Callable[[dict], None] | None = None) -> Trained:
    """Train a zoo model on a data set (a name, NAME:key=value, a .npz or a loaded Dataset); writes model.keras and
    training.json to `out` (default runs/<arch>-<dataset>). Every cheap check runs before TensorFlow is imported."""
    from edgeseq.datasets import load_dataset
    from edgeseq.models.backend import require_installed, resolve_backend
    from edgeseq.models.config import parse_overrides
    from edgeseq.models.run_dir import TrainOptions, check_model_fits, check_zoo_data, prepare_run_dir
    from edgeseq.models.zoo import get_config

    backend = resolve_backend(backend)
    require_installed(backend)
    extra = parse_overrides(overrides)
    cfg = get_config(arch, preset, **extra)
    options = TrainOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                           validation_split=validation_split, patience=patience, seed=seed,
                           mixed_precision=mixed_precision)
    options.check()
    if out is not None:
        prepare_run_dir(out, overwrite)  # before loading data: a bad --out costs nothing
    data = dataset if hasattr(dataset, "X_train") else load_dataset(dataset, data_dir=data_dir)
    out = out or f"runs/{arch}-{_slug(data.name)}"
    prepare_run_dir(out, overwrite)  # checks only; the run directory appears when the model is written
    check_zoo_data(data)
    check_model_fits(cfg, seq_len=data.seq_len, num_features=data.num_features, num_outputs=data.output_dim)
    from edgeseq.models.backend_run import train_on_backend

    result = train_on_backend(arch, data, out, backend=backend, preset=preset, options=options, overrides=extra,
                              overwrite=overwrite, progress=progress)
    return Trained(model_path=Path(result.model_path), out_dir=Path(result.out_dir), record=result.record)


def convert(model: PathLike, recipes: str = "fp32", *, dataset: Any = None, out: PathLike = "artifacts",
            name: str | None = None, seq_len: int | None = None, io: str | None = None,
            calibration_samples: int | None = None, rnn_strategy: str | None = None, granularity: str | None = None,
            allow_flex: bool = False, validate: bool = True, strict: bool = True, trust_model: bool = False,
            data_dir: str | None = None, stream: bool = False, kv_capacity: int | None = None,
            window: int | None = None, state: str = "external", stride: int = 1, float_ops: str | None = None,
            target: str = "local", db: PathLike | None = None, custom_objects: Sequence[str] = (),
            raise_on_error: bool = True, progress: Callable[[str], None] | None = None) -> list:
    """Convert a .keras/.h5 model or a SavedModel directory with each recipe (comma-separated), validate each on
    LiteRT; returns one `ConversionResult` per recipe. `stream`, `kv_capacity` or `window` export step models;
    `state` ("external", "internal" or "both") says where a step model keeps its state, `stride` K its frames per
    invoke. `float_ops` ("BATCH_MATMUL,SOFTMAX" or "auto") keeps op types of the int8 recipe float; auto reads the
    stored `profile --ops` runs of `target` in `db` (else the default table of its CPU). With `raise_on_error` the
    first failed recipe's error is raised after every recipe was tried.
    `custom_objects`: modules (paths or names) defining the model's own layers, imported before it loads, here and
    in every child (edgeseq.core.custom_objects; it runs their code)."""
    from edgeseq.core.custom_objects import use
    from edgeseq.core.fsio import check_file_name, check_output_dir

    use(custom_objects)
    from edgeseq.quantize.recipes import parse_recipes

    # Every cheap check runs before TensorFlow is imported and before any conversion: a bad --out, --name or data
    # file costs milliseconds and writes nothing.
    recipe_list = parse_recipes(recipes, io=io, calibration_samples=calibration_samples,
                                rnn_strategy=rnn_strategy, granularity=granularity, allow_flex=allow_flex or None,
                                float_ops=float_ops)
    check_output_dir(out)
    if name is not None:
        check_file_name(name)
    calibrated = [r.slug for r in recipe_list if r.calibrated]
    if dataset is None and calibrated:
        raise InputError(f"{', '.join(calibrated)} needs calibration data and none was given",
                         "pass --dataset NAME or FILE.npz (the data the model will see), or --dataset random "
                         "to calibrate on N(0,1) inputs on purpose")
    if isinstance(dataset, str) and dataset == "random":
        dataset = None  # on purpose: the manifest's validation.data.source says random-normal
    if dataset is not None and not hasattr(dataset, "X_train"):
        from edgeseq.datasets import load_dataset

        dataset = load_dataset(dataset, data_dir=data_dir)
    common = dict(out_dir=out, name=name, seq_len=seq_len, calibration=dataset, validate=validate, strict=strict,
                  trust_model=trust_model, raise_on_error=raise_on_error, progress=progress)
    if stream or kv_capacity is not None or window is not None or state != "external" or stride != 1:
        from edgeseq.quantize.stream.convert import convert_stream

        return convert_stream(model, recipe_list, kv_capacity=kv_capacity, window=window, state=state, stride=stride,
                              **common)
    from edgeseq.quantize.convert import convert_model

    evidence = None
    if any(r.float_ops == ("auto",) for r in recipe_list):
        from edgeseq.profiling.ops import stored_op_evidence

        evidence = stored_op_evidence(db, target)
    return convert_model(model, recipe_list, op_evidence=evidence, **common)


def evaluate(path: PathLike, dataset: Any = None, *, data_dir: str | None = None) -> Evaluation:
    """Run any .tflite over a data set's test split on LiteRT (no TensorFlow). Without `dataset`, the one the
    manifest next to the file was validated on."""
    from edgeseq.quantize.evaluate import evaluate_tflite

    from_manifest = dataset is None
    if from_manifest:
        dataset = dataset_of(path)
    r = evaluate_tflite(path, dataset, data_dir=data_dir)
    r["dataset_from"] = "manifest" if from_manifest else "given"
    metrics = {k: r[k] for k in ("accuracy", "mse", "mae") if k in r}
    return Evaluation(model=r["model"], dataset=r["dataset"], n=r["n"], metrics=metrics,
                      per_frame=bool(r.get("per_frame")), runtime=f"{r['runtime']} {r['runtime_version']}", raw=r)


def quant_report(path: PathLike, dataset: Any = None, *, reference: PathLike | None = None, samples: int = 100,
                 data_dir: str | None = None, trust_model: bool = False, write: bool = True,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Every op of a quantized .tflite with its error against the float model on `dataset`'s test split (MSE,
    cosine, SNR; end to end and the op's own), ranked, and `summary`, the worst ops in one line. Without `dataset`,
    the one its manifest names; the float reference is `reference`, an fp32 file beside it, or the manifest's
    source converted fp32. With `write`, the report is also saved beside the file as <stem>.quant.json (what
    `report`'s HTML shows)."""
    from edgeseq.core.fsio import atomic_write_json
    from edgeseq.quantize.quant_report import quant_report as run_report
    from edgeseq.quantize.quant_report import sidecar_path

    r = run_report(path, dataset if dataset is not None else dataset_of(path), reference=reference,
                   samples=samples, data_dir=data_dir, trust_model=trust_model, progress=progress)
    if write:
        r["written"] = str(atomic_write_json(sidecar_path(path), r))
    return r


def profile(models: Sequence[PathLike], *, target: str | Sequence[str] = "local", runs: int = 200,
            warmup: int = 20, threads: int | None = 1, db: PathLike | None = None, **options: Any) -> list[Run]:
    """Measure each .tflite on each target (a name, ssh://, adb:// or `local`), store every run in `db`; keyword
    options are `edgeseq profile`'s (max_secs, xnnpack, input, cpus, memory_limit, cpu_quota, repeat, stream,
    steps, hop_ms, ops). Remote targets and fleets go through `profile_targets` (one failing device does not stop
    the others; its error is raised after the others' runs are stored)."""
    from edgeseq.profiling.fleet import profile_targets

    names = [target] if isinstance(target, str) else list(target)
    fleet = profile_targets([str(m) for m in models], names, runs=runs, warmup=warmup, threads=threads, db=db,
                            **options)
    if fleet.error() is not None:
        raise fleet.error()
    return [_run(r) for r in fleet.rows]


def calibrate(target: str = "local", *, db: PathLike | None = None, quick: bool = False, runs: int = 40,
              passes: int = 3, xnnpack: Sequence[bool] = (True, False)) -> dict:
    """Build the calibration grid's models and time them op by op on `target`, `passes` times (resumable); the
    summary dict."""
    from edgeseq.estimate.calibrate import calibrate as run_calibrate

    return run_calibrate(target, db=db, quick=quick, runs=runs, passes=passes, xnnpack=tuple(xnnpack))


def estimate(models: Sequence[PathLike], *, target: str, db: PathLike | None = None, xnnpack: bool = True) -> list[dict]:
    """Each .tflite's predicted p50 (with a range) and model memory on `target`, from its per-op runs; nothing runs."""
    from edgeseq.estimate.predict import estimate_files

    return estimate_files([str(m) for m in models], target, db=db, xnnpack=xnnpack)


def stream(models: Sequence[PathLike], contexts: str | Sequence[int] = "16,64,256", *, target: str = "local",
           runs: int = 200, warmup: int = 20, threads: int | None = 1, hop_ms: float | None = None,
           db: PathLike | None = None, input: PathLike | None = None, out: PathLike = "artifacts",
           on_result: Callable[[dict], None] | None = None, say: Callable[[str], None] | None = None,
           custom_objects: Sequence[str] = ()) -> list[dict]:
    """Per-step latency and memory of step models as the context grows (`profile --stream --contexts`): .tflite
    exports are profiled as they are, .keras models are exported to `out` first (their step, KV-cache and window
    models). One row per (file, context), each run stored in `db`."""
    from edgeseq.core.custom_objects import use
    from edgeseq.streams.profile import parse_contexts, profile_contexts, stream_sweep

    use(custom_objects)
    ctx = parse_contexts(contexts)
    keras_models = [m for m in models if str(m).endswith(".keras")]
    tflites = [m for m in models if not str(m).endswith(".keras")]
    rows = []
    if tflites:
        rows += profile_contexts(tflites, ctx, target=target, runs=runs, warmup=warmup, threads=threads,
                                 hop_ms=hop_ms, db=db, input=input, on_result=on_result)
    if keras_models:
        rows += stream_sweep(keras_models, ctx, out_dir=out, target=target, runs=runs, warmup=warmup,
                             threads=threads, hop_ms=hop_ms, db=db, say=say or (lambda _m: None))
    return rows


def sweep(sweep_file: PathLike | None = None, *, say: Callable[[str], None] | None = None, tty: bool = False,
          dry_run: bool = False, **settings: Any):
    """Build, convert and profile a grid (settings as `edgeseq sweep`'s flags: arch="gru,transformer",
    seq_len="16,64,256", recipe="fp32,int8", mode="cost", ...); returns the `SweepResult` (counts, failures, db),
    or with `dry_run` the grid's description (a string) without building anything."""
    from edgeseq.sweep.grid import spec_from_file, spec_from_options
    from edgeseq.sweep.run import plan, run_sweep

    base = spec_from_file(sweep_file) if sweep_file else None
    spec = spec_from_options(settings, base)
    if dry_run:
        return plan(spec)[1]
    return run_sweep(spec, say=say or (lambda _m: None), tty=tty)


def recommend(target: str, *, latency_budget_ms: float | None = None, memory_budget_mb: float | None = None,
              hop_ms: float | None = None, min_accuracy: float | None = None,
              db: PathLike | None = None, estimate_paths: Sequence[PathLike] = ()) -> Recommendation:
    """The stored models that meet every budget given on `target`, ranked by accuracy then p99; `estimate_paths`:
    files with no run there, ranked from their estimates (marked "estimated")."""
    from edgeseq.recommend import recommend as run_recommend

    r = run_recommend(db, target, latency_budget_ms=latency_budget_ms, memory_budget_mb=memory_budget_mb,
                      hop_ms=hop_ms, min_accuracy=min_accuracy,
                      estimate_paths=tuple(str(p) for p in estimate_paths))
    return Recommendation(target=r["target"], budgets=r["budgets"], meets=r["meets"], excluded=r["excluded"],
                          closest=r["closest"], notes=r["notes"], raw=r)


def report(db: PathLike | None = None, fmt: str = "html", *, out: PathLike | None = None,
           target: str | None = None, latency_budget_ms: float | None = None, memory_budget_mb: float | None = None,
           hop_ms: float | None = None, min_accuracy: float | None = None) -> Path:
    """Write report.<fmt> (html, md, csv, json, table) and its plots to `out` (default ./report); returns its path.
    It opens with what to ship per target: recommend's pick under the budgets given (the same budgets as
    `recommend`), or without any the Pareto set; the crossovers and claims that held."""
    from edgeseq.report.dispatch import write_report

    budgets = {"latency_ms": latency_budget_ms, "memory_mb": memory_budget_mb, "hop_ms": hop_ms,
               "min_accuracy": min_accuracy}
    return write_report(db, out or "report", fmt=fmt, target=target, budgets=budgets)


def runs(db: PathLike | None = None, *, target: str | None = None):
    """Every stored run as one row each: a pandas DataFrame when pandas is installed, else a list of dicts."""
    from edgeseq.profiling.run import row_from_record
    from edgeseq.store.results import ResultsStore

    with ResultsStore(db, create=False) as store:
        rows = [row_from_record(r, r.get("id")) for r in store.runs(target=target)]
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def dataset_of(path: PathLike) -> str:
    """The data set a converted file was calibrated or validated on, from its manifest; InputError without one."""
    from edgeseq.quantize.manifest import manifest_path_for, read_manifest

    manifest = read_manifest(manifest_path_for(path), strict=False) or {}
    for record in ((manifest.get("validation") or {}).get("data"), manifest.get("calibration")):
        if isinstance(record, dict) and record.get("source") == "dataset" and record.get("dataset"):
            return str(record["dataset"])
    raise InputError(f"no data set given for {path}, and no manifest beside it names one",
                     "pass --dataset NAME or FILE.npz")


def _run(row: dict) -> Run:
    return Run(run_id=row.get("run_id"), model=row["model"], target=row["target"], recipe=row.get("recipe"),
               p50_us=row.get("p50_us"), p99_us=row.get("p99_us"), accuracy=row.get("accuracy"), raw=row)


def _slug(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].removesuffix(".npz")
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem).strip("-") or "data"
