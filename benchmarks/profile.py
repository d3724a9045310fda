"""How far can the agent's figures be trusted? Three checks on the zoo's small models, printed as a markdown table.

(a) Agreement: the agent's p50 against ai-edge-litert's own benchmark tool
    (`ai_edge_litert.tools.benchmark_litert_model`) on the same files, interleaved in the same run, 1 thread.
    Target: ratio agent/tool within 0.95-1.05. Given twice: from the medians of the interleaved rounds, and from
    the best rounds (contention from other processes only ever adds time). The agent times `invoke()` alone; the
    tool times `run_by_name()`, whose Python buffer handling adds a few microseconds per call. The tool rounds its JSON to 0.01 ms, which is coarser than these
    models' latencies, so it is run unmodified except that its module-level `round` is shadowed to keep full
    precision.
(b) Footprint: the agent's peak RSS (VmHWM) per model (target <= 45 MB), next to a process that runs the same
    model on TensorFlow's interpreter (`tf.lite.Interpreter`), for scale.
(c) Repeatability: coefficient of variation of p50 over 5 repeated agent runs (fresh process each).

    python benchmarks/profile.py [--runs 500] [--warmup 50] [--rounds 9] [--repeats 5] [--models DIR]

Models: rnn/lstm/gru (unrolled, the flat graph the int8 route needs) and transformer at the `small` preset,
T=64, F=16, 10 classes, each as fp32 and int8 (float I/O), converted here with TFLiteConverter; plus the RNNs as
`edgeseq convert --recipe fp32` writes them by default (`*-fp32-loop`: a WHILE loop, one copy of each weight).
XNNPACK packs the weights of every node separately, so an unrolled graph holds T packed copies: that, not the
agent, is what puts the unrolled RNNs over 45 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

T, F, CLASSES = 64, 16, 10
ARCHS = ("rnn", "lstm", "gru", "transformer")


def build_models(out: Path) -> list[Path]:
    """Zoo `small` models (random weights: latency and memory do not depend on training) as fp32 and int8."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{a}-small-{m}.tflite" for a in ARCHS for m in ("fp32", "int8")]
    paths += [out / f"{a}-small-fp32-loop.tflite" for a in ARCHS if a != "transformer"]
    if all(p.exists() for p in paths):
        return paths
    import warnings

    import keras
    import tensorflow as tf

    from edgeseq.models.zoo import build_model

    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, T, F)).astype(np.float32) for _ in range(16)]
    for arch in ARCHS:
        keras.utils.set_random_seed(0)
        extra = {"unroll": True} if arch != "transformer" else {}
        model = build_model(arch, "small", seq_len=T, num_features=F, num_outputs=CLASSES, **extra)
        for mode in ("fp32", "int8"):
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if mode == "int8":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = lambda: ([x] for x in calib)
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = conv.convert()
            (out / f"{arch}-small-{mode}.tflite").write_bytes(data)
        if arch != "transformer":
            _convert_looped(arch, out)
    return paths


def _convert_looped(arch: str, out: Path) -> None:
    """The RNN as `edgeseq convert --recipe fp32` writes it (auto route: WHILE loop), from a saved .keras."""
    import keras

    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.convert import convert_model

    keras.utils.set_random_seed(0)
    model = build_model(arch, "small", seq_len=T, num_features=F, num_outputs=CLASSES)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{arch}.keras"
        model.save(src)
        (res,) = convert_model(src, ["fp32"], out_dir=tmp, name=arch)
        assert res.manifest["route"]["rnn"] == "loop", res.manifest["route"]
        res.tflite_path.replace(out / f"{arch}-small-fp32-loop.tflite")


def agent_run(model: Path, runs: int, warmup: int) -> dict:
    from edgeseq.core.stats import latency_stats
    from edgeseq.targets.local import LocalTarget
    from edgeseq.targets.runner import AgentOptions, run_agent

    data = run_agent(LocalTarget(), model, AgentOptions(runs=runs, warmup=warmup, threads=1))
    return {
        "p50_us": latency_stats(data["timings_ns"]["invoke"])["p50_us"],
        "hwm_kb": data["memory"]["vm_hwm_kb"],
        "import_kb": data["memory"]["stages"]["import"]["vm_hwm_kb"],
    }


_TOOL = textwrap.dedent(
    """
    import sys
    from ai_edge_litert.tools import benchmark_litert_model as b
    b.round = lambda x, n=None: x   # keep full precision in its JSON (it rounds to 0.01 ms)
    sys.argv = ["benchmark_litert_model"] + sys.argv[1:]
    b.main()
    """
)


def tool_run(model: Path, runs: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _TOOL,
                f"--model={model}",
                f"--num_runs={runs}",
                f"--warmup_runs={warmup}",
                "--num_threads=1",
                f"--result_json={out}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"benchmark_litert_model failed on {model.name}: {proc.stderr[-500:]}")
        return json.loads(out.read_text())["latency"]["median_ms"] * 1000.0


_TF_PROC = textwrap.dedent(
    """
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import warnings; warnings.simplefilter("ignore")
    import numpy as np, tensorflow as tf
    it = tf.lite.Interpreter(model_path=sys.argv[1], num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.random.default_rng(0).standard_normal(d["shape"]).astype(d["dtype"]))
    for _ in range(200):
        it.invoke()
    print([int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
    """
)


def tf_interpreter_hwm_kb(model: Path) -> int | None:
    proc = subprocess.run(
        [sys.executable, "-c", _TF_PROC, str(model)], capture_output=True, text=True, timeout=300
    )
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=9, help="interleaved agent/tool rounds per model for (a)")
    ap.add_argument("--repeats", type=int, default=5, help="agent runs per model for (c)")
    ap.add_argument(
        "--tf-models", type=int, default=2, help="how many models also get a TF interpreter run (b)"
    )
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "edgeseq-bench-models")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    ap.add_argument(
        "--pin", type=int, default=None, help="pin everything to this CPU (default: the last one)"
    )
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):  # children inherit it: agent and tool share one core, no migrations
        cpu = args.pin if args.pin is not None else max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})

    t0 = time.time()
    load0 = os.getloadavg()[0]
    models = build_models(args.models)
    from edgeseq.core.stats import cv

    rows = []
    for i, m in enumerate(models):
        agent_p50, tool_p50, hwm, base = [], [], [], []
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits both alike
            a = agent_run(m, args.runs, args.warmup)
            agent_p50.append(a["p50_us"])
            hwm.append(a["hwm_kb"])
            base.append(a["import_kb"])
            tool_p50.append(tool_run(m, args.runs, args.warmup))
        reps = [agent_run(m, args.runs, args.warmup) for _ in range(args.repeats)]
        rep_p50 = [r["p50_us"] for r in reps]
        hwm += [r["hwm_kb"] for r in reps]
        tf_kb = tf_interpreter_hwm_kb(m) if i < args.tf_models else None
        row = {
            "model": m.stem,
            "size_kib": m.stat().st_size / 1024,
            "agent_p50_us": statistics.median(agent_p50),
            "tool_p50_us": statistics.median(tool_p50),
            "agent_hwm_mb": statistics.median(hwm) / 1024,
            "agent_base_mb": statistics.median(base) / 1024,
            "tf_hwm_mb": tf_kb / 1024 if tf_kb else None,
            "p50_cv": cv(rep_p50),
            "rep_p50_us": rep_p50,
        }
        row["ratio"] = row["agent_p50_us"] / row["tool_p50_us"]
        # best-of-rounds: contention from other processes only ever adds time, so the minima compare the two
        # programs with the least noise (timeit's reasoning)
        row["ratio_best"] = min(agent_p50) / min(tool_p50)
        rows.append(row)
        print(
            f"  {m.stem}: agent {row['agent_p50_us']:.1f} us, tool {row['tool_p50_us']:.1f} us, "
            f"ratio {row['ratio']:.3f}, {row['agent_hwm_mb']:.1f} MB, CV {row['p50_cv']:.3f}",
            file=sys.stderr,
        )

    import platform

    print(
        f"\n### edgeseq profile benchmark ({platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, 1 thread, {args.runs} runs + {args.warmup} warm-up, "
        f"{time.time() - t0:.0f} s, load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end)\n"
    )
    print(
        "| model | size KiB | agent p50 µs | benchmark_litert_model p50 µs | ratio (a) | ratio, best rounds (a) "
        "| agent peak RSS MB (b) "
        "| of which before the model loads | TF interpreter peak RSS MB | p50 CV over 5 runs (c) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        tf_mb = f"{r['tf_hwm_mb']:.0f}" if r["tf_hwm_mb"] else "-"
        print(
            f"| {r['model']} | {r['size_kib']:.1f} | {r['agent_p50_us']:.1f} | {r['tool_p50_us']:.1f} | "
            f"{r['ratio']:.3f} | {r['ratio_best']:.3f} | {r['agent_hwm_mb']:.1f} | {r['agent_base_mb']:.1f} | {tf_mb} | {r['p50_cv']:.3f} |"
        )
    print()
    for key, what in (("ratio", "medians of rounds"), ("ratio_best", "best rounds")):
        ratios = [r[key] for r in rows]
        inside = sum(0.95 <= x <= 1.05 for x in ratios)
        print(
            f"(a) agent/tool p50 ratio ({what}): median {statistics.median(ratios):.3f}, range "
            f"{min(ratios):.3f}-{max(ratios):.3f}; {inside}/{len(rows)} within 0.95-1.05"
        )
    over = [f"{r['model']} {r['agent_hwm_mb']:.1f}" for r in rows if r["agent_hwm_mb"] > 45.0]
    print(
        f"(b) agent peak RSS max {max(r['agent_hwm_mb'] for r in rows):.1f} MB (target <= 45 MB); "
        f"{len(rows) - len(over)}/{len(rows)} within; over: {', '.join(over) or 'none'}; before any model "
        f"loads (Python + numpy + runtime) {statistics.median(r['agent_base_mb'] for r in rows):.1f} MB"
    )
    print(
        f"(c) p50 CV median {statistics.median(r['p50_cv'] for r in rows):.3f}, "
        f"max {max(r['p50_cv'] for r in rows):.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
