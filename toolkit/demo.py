"""`edgeseq demo`: the whole line on bundled data, in the order a user would run it by hand.

train (rnn, lstm, gru, transformer at one preset) -> convert (fp32, int8) and validate on LiteRT -> profile locally
-> streaming comparison -> HTML report. Every stage writes where the matching CLI verb would, so a user can pick up
any artifact afterwards with `edgeseq inspect`, `profile`, `report` or `compare`. Trained runs are reused when the
demo is run again (pass fresh=True to retrain); profile rows accumulate in the demo's own results store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ARCHS = ("rnn", "lstm", "gru", "transformer")


@dataclass(frozen=True)
class DemoOptions:
    out_dir: Path = Path("demo-out")
    dataset: str = "japanese_vowels"  # bundled: runs on a fresh machine with no download
    preset: str = "small"
    epochs: int = 30  # early stopping usually ends JapaneseVowels runs well before this
    recipes: tuple[str, ...] = ("fp32", "int8")
    runs: int = 100
    warmup: int = 10
    fresh: bool = False
    stream: bool = True
    archs: tuple[str, ...] = ARCHS
    db: Path | None = None  # the results store [out_dir/results.db]


@dataclass
class DemoResult:
    rows: list[dict] = field(default_factory=list)
    report: Path | None = None
    db: Path | None = None
    stream_rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_options(opts: DemoOptions) -> object:
    """Every cheap check before anything is written or trained: presets, recipes, options, the data set."""
    from edgeseq.datasets import load_dataset
    from edgeseq.models.run_dir import TrainOptions
    from edgeseq.models.zoo import get_config
    from edgeseq.quantize.recipes import get_recipe

    for arch in opts.archs:
        get_config(arch, opts.preset)
    for recipe in opts.recipes:
        get_recipe(recipe)
    TrainOptions(epochs=opts.epochs).check()
    return load_dataset(opts.dataset)


def train_stage(data: object, opts: DemoOptions, say: Callable[[str], None]) -> dict[str, Path]:
    """Train (or reuse) one model per architecture; returns arch -> model.keras."""
    from edgeseq.models.backend import use_tensorflow_keras
    from edgeseq.models.run_dir import TrainOptions, read_training_record

    use_tensorflow_keras("the demo (it trains and converts in one process)")  # whatever KERAS_BACKEND says
    from edgeseq.models.train import train_model

    models = {}
    for arch in opts.archs:
        run = opts.out_dir / "runs" / f"{arch}-{opts.preset}"
        record = read_training_record(run)
        if record and not opts.fresh and (run / "model.keras").exists():
            say(f"[train] {arch}: reusing {run} (test {_metric_text(record['test_metrics'])})")
        else:
            say(f"[train] {arch}-{opts.preset} on {data.name} ({opts.epochs} epochs max)")
            res = train_model(arch, data, run, preset=opts.preset, overwrite=True,
                              options=TrainOptions(epochs=opts.epochs, patience=8))
            record = res.record
            say(f"[train] {arch}: test {_metric_text(record['test_metrics'])} in {record['wall_time_s']:.0f} s")
        models[arch] = run / "model.keras"
    return models


def convert_stage(models: dict[str, Path], opts: DemoOptions, result: DemoResult,
                  say: Callable[[str], None]) -> list[Path]:
    from edgeseq.quantize.convert import convert_model

    artifacts = []
    for arch, path in models.items():
        outcomes = convert_model(path, list(opts.recipes), out_dir=opts.out_dir / "artifacts",
                                 name=f"{arch}-{opts.preset}", calibration=opts.dataset, raise_on_error=False)
        for res in outcomes:
            if res.ok:
                v = res.validation or {}
                say(f"[convert] {res.tflite_path.name}: {res.manifest['artifact']['bytes'] / 1024:.1f} KiB, "
                    f"parity max|diff| {_num(v.get('max_abs_diff'))}, top-1 agreement {_num(v.get('top1_agreement'))}")
                artifacts.append(res.tflite_path)
            else:
                msg = f"{arch} {res.recipe.slug}: {res.error.one_line()}"
                result.problems.append(msg)
                say(f"[convert] failed: {msg}")
    return artifacts


def run_demo(opts: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    from edgeseq.profiling.run import profile_models
    from edgeseq.report.dispatch import load_groups, write_report
    from edgeseq.store.results import ResultsStore

    data = check_options(opts)
    result = DemoResult(db=opts.db or opts.out_dir / "results.db")
    models = train_stage(data, opts, say)
    artifacts = convert_stage(models, opts, result, say)
    say(f"[profile] {len(artifacts)} models on this machine, {opts.runs} runs each, 1 thread")
    profile_models(artifacts, target="local", runs=opts.runs, warmup=opts.warmup, threads=1, db=result.db)
    with ResultsStore(result.db) as store:
        result.rows = load_groups(store)  # the same rows `edgeseq report --db` shows
    if opts.stream:
        result.stream_rows = stream_stage(models, opts, result, say)
    result.report = write_report(result.db, opts.out_dir / "report", fmt="html")
    return result


def stream_stage(models: dict[str, Path], opts: DemoOptions, result: DemoResult,
                 say: Callable[[str], None]) -> list[dict]:
    """The GRU's step model against a causal Transformer of the same size (KV cache, and window recompute) as the
    context grows. Latency does not depend on the weights, so the Transformer twin is built untrained."""
    from edgeseq.streams.compare import stream_compare

    if "gru" not in models:
        return []
    say("[stream] GRU step model vs causal Transformer (KV cache, window recompute) at contexts 16, 64, 256")
    return stream_compare(models["gru"], None, opts.out_dir / "stream", contexts=(16, 64, 256),
                          runs=opts.runs, db=result.db)


def _metric_text(m: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "n")


def _num(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, int | float) else "-"
