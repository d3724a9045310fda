"""The benchmark_model runner: argv, and its log parsed into the common result schema.

The logs below follow the upstream tool's output (tensorflow/lite/tools/benchmark, benchmark_model.cc and
benchmark_tflite_model.cc): a desktop/adb-shell run with the `INFO:` prefix and percentiles, an older build seen
through logcat (`I tflite  :` prefix, "Peak memory footprint", scientific notation, no percentiles), and failures.
Figures are made up but shaped like a Pixel-class phone running a small recurrent model.
"""

from __future__ import annotations

import pytest

from edgeseq.core.errors import ModelError, RuntimeMissing, TargetError
from edgeseq.core.stats import summarize
from edgeseq.targets.benchmark_model import BenchmarkOptions, build_argv, parse_log, to_result
from edgeseq.targets.facts import DEVICE_FIELDS, problems

ADB_SHELL_LOG = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [200]
INFO: Min runs duration (seconds): [0]
INFO: Num threads: [4]
INFO: Min warmup runs: [20]
INFO: Min warmup runs duration (seconds): [0]
INFO: Graph: [/data/local/tmp/edgeseq/run-Ab12Cd34/gru-int8.tflite]
INFO: Signature to run: []
INFO: #threads used for CPU inference: [4]
INFO: Loaded model /data/local/tmp/edgeseq/run-Ab12Cd34/gru-int8.tflite
INFO: The input model file size (MB): 0.541236
INFO: Initialized session in 3.174ms.
INFO: Running benchmark for at least 20 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=20 first=412 curr=96 min=94 max=412 avg=117.25 std=69 p5=94 median=97 p95=131

INFO: Running benchmark for at least 200 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=200 first=98 curr=95 min=91 max=388 avg=101.37 std=22 p5=92 median=97 p95=121

INFO: Inference timings in us: Init: 3174, First inference: 412, Warmup (avg): 117.25, Inference (avg): 101.37
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=2.45703 overall=3.10938
INFO: Overall peak memory footprint (MB) via periodic monitoring: 7.85156
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 7 MB
INFO: + RssAnnon           : 2 MB
INFO: + RssFile + RssShmem : 5 MB
"""

LOGCAT_OLD_LOG = """\
11-21 07:30:01.101  4242  4242 I tflite  : Num threads: [1]
11-21 07:30:01.101  4242  4242 I tflite  : Graph: [/data/local/tmp/edgeseq/run-x/transformer-fp32.tflite]
11-21 07:30:01.140  4242  4242 I tflite  : Loaded model /data/local/tmp/edgeseq/run-x/transformer-fp32.tflite
11-21 07:30:01.141  4242  4242 I tflite  : Initialized session in 40.02ms.
11-21 07:30:01.141  4242  4242 I tflite  : Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
11-21 07:30:02.500  4242  4242 I tflite  : count=1 curr=1357602

11-21 07:30:02.500  4242  4242 I tflite  : Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
11-21 07:31:04.510  4242  4242 I tflite  : count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565

11-21 07:31:04.510  4242  4242 I tflite  : Inference timings in us: Init: 40020, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
11-21 07:31:04.510  4242  4242 I tflite  : Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
11-21 07:31:04.511  4242  4242 I tflite  : Peak memory footprint (MB): init=4.92969 overall=138.809
"""


def test_parses_an_adb_shell_log_with_percentiles_and_periodic_memory():
    p = parse_log(ADB_SHELL_LOG)
    assert p["init_us"] == 3174 and p["first_inference_us"] == 412 and p["warmup_avg_us"] == 117.25
    assert p["avg_us"] == 101.37 and p["count"] == 200 and p["warmup_count"] == 20
    assert (p["std_us"], p["min_us"], p["max_us"]) == (22, 91, 388)
    assert (p["p5_us"], p["median_us"], p["p95_us"]) == (92, 97, 121)
    assert p["threads"] == 4 and p["model_size_mb"] == pytest.approx(0.541236)
    assert (p["memory_init_mb"], p["memory_overall_mb"], p["memory_peak_mb"]) == (2.45703, 3.10938, 7.85156)


def test_parses_an_older_logcat_log_with_scientific_notation_and_no_percentiles():
    p = parse_log(LOGCAT_OLD_LOG.replace("\n", "\r\n"))
    assert p["avg_us"] == pytest.approx(1.24027e6) and p["warmup_avg_us"] == pytest.approx(1.3576e6)
    assert p["count"] == 50 and p["std_us"] == 2565 and p["median_us"] is None
    assert p["memory_overall_mb"] == pytest.approx(138.809) and p["memory_peak_mb"] is None


def test_result_has_the_common_schema_and_marks_memory_approximate():
    opts = BenchmarkOptions(runs=200, warmup=20, threads=4)
    model = {"path": "/d/m.tflite", "size_bytes": 541236, "sha256": "ab" * 32, "sha256_verified": True}
    facts = {
        "model": "Pixel 7",
        "manufacturer": "Google",
        "abi": "arm64-v8a",
        "soc": "GS201",
        "android": "14",
        "cpus": 8,
    }
    r = to_result(parse_log(ADB_SHELL_LOG), model, opts, facts)
    assert r["schema"] == "edgeseq.agent/1" and r["ok"] and r["runner"] == "benchmark_model"
    assert r["timings_ns"]["load"] == 3_174_000 and r["timings_ns"]["first_inference"] == 412_000
    assert r["timings_ns"]["invoke"] == []  # no per-run samples: never invented
    assert r["memory"]["approximate"] is True and r["memory"]["vm_hwm_kb"] == int(7.85156 * 1024)
    assert r["device"]["machine"] == "arm64-v8a" and r["device"]["board"] == "Google Pixel 7"
    assert list(r["device"]) == list(DEVICE_FIELDS) and problems(r["device"]) == [] and r["target_facts"] == facts
    s = summarize(r)
    assert s["mean_us"] == 101.37 and s["p50_us"] == 97 and s["p90_us"] is None and s["p99_us"] is None
    assert s["memory_approximate"] and s["count"] == 200 and s["first_inference_ms"] == pytest.approx(0.412)


@pytest.mark.parametrize(
    "log, error, text",
    [
        (
            "INFO: Graph: [/x.tflite]\nERROR: Failed to mmap model /x.tflite\nINFO: Benchmarking failed.\n",
            ModelError,
            "mmap",
        ),
        (
            "ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin "
            "might be supported.\nERROR: Registration failed.\nFailed to initialize the interpreter\n",
            RuntimeMissing,
            "FULLY_CONNECTED",
        ),
        (
            "/data/local/tmp/edgeseq/run-x/benchmark_model: not executable: 32-bit ELF file\n",
            TargetError,
            "32-bit",
        ),
        ("", TargetError, "no output"),
    ],
)
def test_failed_runs_raise_with_the_tools_own_reason(log, error, text):
    with pytest.raises(error, match=text):
        parse_log(log)


def test_argv_asks_for_exact_run_counts():
    argv = build_argv(
        "/d/benchmark_model", "/d/m o.tflite", BenchmarkOptions(runs=50, warmup=5, threads=2, xnnpack=False)
    )
    assert argv[0] == "/d/benchmark_model" and "--graph=/d/m o.tflite" in argv
    for flag in (
        "--num_runs=50",
        "--warmup_runs=5",
        "--num_threads=2",
        "--min_secs=0",
        "--warmup_min_secs=0",
    ):
        assert flag in argv
    assert "--use_xnnpack=false" in argv
