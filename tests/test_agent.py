"""The device agent: its imports, its JSON (schema edgeseq.agent/3), its errors, its memory figures, both runtimes.

Every run here is of the zipapp pushed to devices (edgeseq.targets.agent_build); the package's own checks (its bytes,
its imports, Python 3.9) are in tests/test_agent_pyz.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _tiny_tflite import build_tiny_models

from edgeseq.targets.runner import agent_path

AGENT = agent_path()  # the zipapp, built from targets/agent/ into the cache


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny-tflite")


@pytest.fixture(scope="module")
def agent_mod():
    import edgeseq.targets.agent as mod  # the package the zipapp is built from

    return mod


def run_agent(*args: str, python: str = sys.executable, timeout: float = 120) -> tuple[int, dict, str]:
    proc = subprocess.run([python, str(AGENT), *args], capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, (
        f"want exactly one JSON line on stdout, got {proc.stdout!r} / {proc.stderr[-500:]!r}"
    )
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_agent_imports_neither_tensorflow_click_nor_edgeseq(tiny):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(AGENT), "--model", str(tiny["dense-fp32"]), "--runs", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    roots = {name.split(".")[0] for name in imported}
    assert "ai_edge_litert" in roots and "numpy" in roots  # the parse works
    for banned in ("tensorflow", "keras", "click", "edgeseq", "rich", "matplotlib"):
        assert banned not in roots, f"the agent imported {banned}"


def test_agent_json_has_the_documented_schema(tiny):
    m = tiny["dense-fp32"]
    sha = __import__("hashlib").sha256(m.read_bytes()).hexdigest()
    rc, d, err = run_agent(
        "--model", str(m), "--runs", "25", "--warmup", "4", "--threads", "1", "--expect-sha256", sha
    )
    assert rc == 0
    assert d["schema"] == "edgeseq.agent/3" and d["ok"] is True and d["agent_version"]
    assert d["model"] == {
        "path": str(m),
        "size_bytes": m.stat().st_size,
        "sha256": sha,
        "sha256_verified": True,
    }
    assert d["runtime"]["name"] == "ai_edge_litert" and d["runtime"]["version"]
    assert d["runtime"]["threads"] == 1 and d["runtime"]["xnnpack"] == "default"
    t = d["timings_ns"]
    assert len(t["invoke"]) == 25 == d["runs_completed"] and len(t["warmup"]) == 4
    assert all(isinstance(v, int) and v > 0 for v in t["invoke"])
    for key in ("import_runtime", "load", "allocate", "first_inference"):
        assert isinstance(t[key], int) and t[key] > 0
    assert d["stopped_by"] == "runs"
    mem = d["memory"]
    assert mem["vm_hwm_kb"] == mem["process_peak_kb"] >= mem["vm_rss_kb"] > 10_000
    assert set(mem["stages"]) == {"start", "import", "baseline", "load", "allocate", "first_invoke", "end"}
    assert mem["method"] in ("clear_refs", "hwm-inferred", "rss-sampled")
    base = mem["baseline_kb"]
    assert 10_000 < base <= mem["load_kb"] <= mem["allocate_kb"] + 64 and mem["first_invoke_kb"] > 0
    # the model's peak covers every stage after the baseline (RSS less the resident code), and the process peak
    # covers the model's and the code it paged in
    assert mem["code_method"] == "smaps" and 0 < mem["code_kb"] < 20_000
    st = mem["stages"]
    rest = [st[k]["vm_rss_kb"] - st[k]["code_kb"] for k in ("load", "allocate", "first_invoke", "end")]
    assert max(rest) - (base - st["baseline"]["code_kb"]) <= mem["model_peak_kb"]
    assert base + mem["model_peak_kb"] + mem["code_kb"] <= mem["process_peak_kb"] + 64
    assert 0 < mem["model_peak_kb"] < 5_000  # a 40 kB model: its file, arena and records, not Python or code
    dev = d["device"]
    for key in (
        "hostname",
        "machine",
        "cpu_model",
        "cpu_count",
        "cpus_allowed",
        "mem_total_kb",
        "os",
        "python",
    ):
        assert key in dev
    assert dev["machine"] and dev["cpu_count"] >= 1 and dev["mem_total_kb"] > 0
    assert d["inputs"][0]["shape"] == [1, 16, 8] and d["inputs"][0]["source"] == "random-normal"
    assert d["outputs"][0]["shape"] == [1, 4]
    assert d["stream"] is None  # reserved slot
    assert "edgeseq-agent: stage=timed" in err


def test_checksum_mismatch_is_an_error_before_measuring(tiny):
    rc, d, _ = run_agent("--model", str(tiny["dense-fp32"]), "--expect-sha256", "0" * 64)
    assert rc == 3 and d["ok"] is False and d["error"]["kind"] == "checksum"
    assert "timings_ns" not in d


@pytest.mark.parametrize(
    "args, kind, rc",
    [
        (["--model", "/nonexistent/m.tflite"], "model", 3),
        (["--model", __file__], "model", 3),
        (["--model", "X", "--runs", "0"], "input", 2),
        (["--model", "X", "--stream", "--steps", "0"], "input", 2),  # streaming: see tests/test_streaming.py
        (["--model", "X", "--bogus"], "input", 2),
    ],
)
def test_errors_are_json_with_a_nonzero_exit(args, kind, rc):
    code, d, _ = run_agent(*args)
    assert code == rc and d["ok"] is False and d["error"]["kind"] == kind and d["error"]["message"]


def test_flex_model_names_the_op_and_the_fix(tiny):
    rc, d, _ = run_agent("--model", str(tiny["gru-flex"]))
    assert rc == 3 and d["error"]["kind"] == "flex"
    assert d["error"]["op"].startswith("Flex") and "Flex" in d["error"]["message"]
    assert "builtin ops" in d["error"]["hint"]


def test_max_secs_bounds_the_timed_loop(tiny):
    rc, d, _ = run_agent(
        "--model", str(tiny["gru-fp32"]), "--runs", "100000000", "--warmup", "2", "--max-secs", "0.3"
    )
    assert rc == 0 and d["stopped_by"] == "max_secs"
    assert 0 < d["runs_completed"] < 100000000
    assert sum(d["timings_ns"]["invoke"]) < 1.5e9


def test_xnnpack_off_and_threads(tiny):
    rc, d, _ = run_agent("--model", str(tiny["dense-fp32"]), "--runs", "5", "--no-xnnpack", "--threads", "2")
    assert rc == 0 and d["runtime"]["xnnpack"] == "off" and d["options"]["xnnpack"] is False
    assert d["options"]["threads"] == 2


def test_input_from_npy_is_quantized_for_an_int8_model(tiny, tmp_path):
    x = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)  # no batch axis
    np.save(tmp_path / "x.npy", x)
    rc, d, _ = run_agent(
        "--model", str(tiny["dense-int8"]), "--runs", "3", "--input", str(tmp_path / "x.npy")
    )
    assert rc == 0 and d["inputs"][0]["source"] == "file:x.npy" and d["inputs"][0]["dtype"] == "int8"
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), np.float32))
    rc, d, _ = run_agent("--model", str(tiny["dense-int8"]), "--input", str(tmp_path / "bad.npy"))
    assert rc == 2 and d["error"]["kind"] == "input" and "[1, 16, 8]" in d["error"]["message"]


def test_random_inputs_span_the_dtype(agent_mod):
    import random

    rng = random.Random(0)
    a = agent_mod._random_array(np, rng, (4000,), np.dtype(np.int8), "normal")
    assert a.dtype == np.int8 and a.min() < -120 and a.max() > 120
    f = agent_mod._random_array(np, rng, (20000,), np.dtype(np.float32), "normal")
    assert abs(f.mean()) < 0.05 and abs(f.std() - 1) < 0.05
    u = agent_mod._random_array(np, rng, (20000,), np.dtype(np.float32), "uniform")
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.05
    again = agent_mod._random_array(np, random.Random(0), (4000,), np.dtype(np.int8), "normal")
    assert np.array_equal(a, again)  # seeded: the same inputs on every device


def test_op_version_message_names_the_op_and_the_fix(agent_mod):
    text = (
        "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin "
        "might be supported. Are you using an old TFLite binary with a newer model?\nRegistration failed."
    )
    err = agent_mod.classify_runtime_error(text, "tflite_runtime", "2.14.0", "load")
    assert (
        err.kind == "op_unsupported"
        and err.extra["op"] == "FULLY_CONNECTED"
        and err.extra["op_version"] == 12
    )
    assert "FULLY_CONNECTED version 12" in err.message and "ai-edge-litert" in err.hint


def test_facts_mode(tmp_path):
    rc, d, _ = run_agent("--facts")
    assert rc == 0 and d["runtime"]["name"] == "ai_edge_litert" and d["device"]["cpu_count"] >= 1
    assert list(d)[:3] == ["schema", "agent_version", "ok"]


def test_device_facts_are_exactly_the_schemas_fields(agent_mod):
    from edgeseq.targets.facts import DEVICE_FIELDS, problems

    dev = agent_mod.device_facts()
    assert list(dev) == list(DEVICE_FIELDS) and problems(dev) == []


def test_stream_kinds_are_the_enums_values(agent_mod):
    from edgeseq.models.streamkind import StreamKind

    values = {k.value for k in StreamKind}
    assert set(agent_mod.STREAM_KINDS) == values and len(agent_mod.STREAM_KINDS) == len(values)


class _FakeInterp:
    """Just enough of an Interpreter for StreamStepper to read a signature (tensor names, no signature list)."""

    def __init__(self, ins: dict, outs: dict):
        def details(named, start):
            return [{"name": f"serving_default_{n}:0" if start == 0 else f"StatefulPartitionedCall:{n}",
                     "index": start + i, "shape": np.array(shape), "dtype": dtype, "quantization": (0.0, 0)}
                    for i, (n, (shape, dtype)) in enumerate(named.items())]

        self.ins, self.outs = details(ins, 0), details(outs, 100)
        for d in self.outs:
            d["name"] = d["name"].split(":")[1]

    def get_signature_list(self):
        return {}

    def get_input_details(self):
        return self.ins

    def get_output_details(self):
        return self.outs

    def set_tensor(self, index, value):
        pass


@pytest.mark.parametrize(
    "ins, outs, kind",
    [
        ({"x": ([1, 1, 4], np.float32), "h": ([1, 8], np.float32)},
         {"y": ([1, 2], np.float32), "h": ([1, 8], np.float32)}, "recurrent-step"),
        ({"x": ([1, 1, 4], np.float32), "pos": ([1], np.int32), "k": ([1, 2, 16, 4], np.float32)},
         {"y": ([1, 2], np.float32), "k_at_pos": ([1, 2, 1, 4], np.float32)}, "kv-cache"),
        ({"w": ([1, 16, 4], np.float32)}, {"y": ([1, 2], np.float32)}, "window"),
    ],
)
def test_stream_kind_of_each_model_form(agent_mod, ins, outs, kind):
    stepper = agent_mod.StreamStepper(np, _FakeInterp(ins, outs))
    assert stepper.kind == kind


_FLOOR = (
    "import numpy, ai_edge_litert.interpreter\n"
    "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')][0])"
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_agent_adds_little_memory_over_python_numpy_and_the_runtime(tiny):
    # Before the model loads, the agent holds what any process using the runtime holds (Python, numpy, the runtime)
    # plus its own code and stdlib imports. Run as a script, CPython used to keep the script's syntax tree alive
    # (~2 MB) and argparse pulled in shutil/bz2/lzma (~0.4 MB): 3.7 MB over the floor before, ~1 MB now (the zipapp:
    # zipimport compiles each module and frees its tree).
    floor_kb = int(subprocess.run([sys.executable, "-c", _FLOOR], capture_output=True, text=True).stdout)
    rc, d, _ = run_agent("--model", str(tiny["dense-fp32"]), "--runs", "3")
    assert rc == 0
    extra_kb = d["memory"]["stages"]["import"]["vm_rss_kb"] - floor_kb
    assert extra_kb < 2048, f"the agent adds {extra_kb} kB over python + numpy + ai_edge_litert"


# the agent's package, imported from the zipapp (its modules look names up in their own globals: patch them there)
_IMPORT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import edgeseq_agent as agent
"""
_METER = _IMPORT + """
import numpy as np
if sys.argv[2] == "no-reset":
    agent.memory.reset_peak_rss = lambda: False
block = np.ones(48 << 20, np.uint8)  # 48 MB, touched: the process's peak before the baseline
del block
meter = agent.MemoryMeter()
meter.baseline()
after = np.ones(int(sys.argv[3]) << 20, np.uint8) if int(sys.argv[3]) else None  # the "model"
meter.mark("load")
del after
meter.start_timed()
meter.finish()
print(json.dumps(meter.block()))
"""


def _meter(mode: str, model_mb: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _METER, str(AGENT), mode, str(model_mb)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs a writable /proc/self/clear_refs")
def test_clear_refs_excludes_a_peak_from_before_the_baseline():
    # 48 MB allocated and freed before the baseline: the process's peak holds it, the model's must not.
    m = _meter("reset", 8)
    assert m["method"] == "clear_refs"
    assert 8 * 1024 <= m["model_peak_kb"] < 14 * 1024, m  # the 8 MB "model", not the 48 MB before it
    assert m["process_peak_kb"] >= m["baseline_kb"] + 40 * 1024  # the lifetime peak still includes the 48 MB
    assert m["load_kb"] - m["baseline_kb"] >= 8 * 1024


_CODE = _IMPORT + """
import mmap, os
if sys.argv[2] == "no-smaps":
    agent.memory.code_rss_kb = lambda skip_inode=None: None
meter = agent.MemoryMeter()
meter.baseline()
maps = []
for name in ("libfake.so.1", "weights.bin"):  # 8 MB of a "shared library", 4 MB of a data file, both read
    fd = os.open(os.path.join(sys.argv[3], name), os.O_RDONLY)
    m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    os.close(fd)
    sum(m[i] for i in range(0, len(m), 4096))
    maps.append(m)
meter.mark("load")
meter.start_timed()
meter.finish()
print(json.dumps(meter.block()))
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs a writable /proc/self/clear_refs")
@pytest.mark.parametrize("mode", ["smaps", "no-smaps"])
def test_code_pages_are_not_the_models_memory(tmp_path, mode):
    # A shared object's pages paged in after the baseline are code (code_kb), never the model's; a mapped data file
    # (as the runtimes map the .tflite) is the model's. Without smaps, code is RssFile, so the agent loads the model
    # from bytes instead (checked end to end below).
    (tmp_path / "libfake.so.1").write_bytes(os.urandom(8 << 20))
    (tmp_path / "weights.bin").write_bytes(os.urandom(4 << 20))
    proc = subprocess.run([sys.executable, "-c", _CODE, str(AGENT), mode, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout)
    assert m["method"] == "clear_refs"
    if mode == "smaps":
        assert m["code_method"] == "smaps"
        assert 8 * 1024 <= m["code_kb"] < 9 * 1024, m  # the "library", not the data file
        assert 4 * 1024 <= m["model_peak_kb"] < 5 * 1024, m  # the data file, not the "library"
    else:  # RssFile: both files are file-backed, so both are "code": why the agent then loads from bytes
        assert m["code_method"] == "rss-file" and 12 * 1024 <= m["code_kb"] < 13 * 1024, m
        assert m["model_peak_kb"] < 1024, m


_NO_SMAPS = _IMPORT + """
agent.memory.code_rss_kb = lambda skip_inode=None: None
sys.exit(agent.main(sys.argv[2:]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_without_smaps_the_model_is_loaded_from_bytes(tiny):
    with_smaps = run_agent("--model", str(tiny["dense-fp32"]), "--runs", "3")[1]["memory"]
    proc = subprocess.run([sys.executable, "-c", _NO_SMAPS, str(AGENT), "--model", str(tiny["dense-fp32"]),
                           "--runs", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-1000:]
    mem = json.loads(proc.stdout)["memory"]
    assert mem["code_method"] == "rss-file" and with_smaps["code_method"] == "smaps"
    # the same model, the same figure give or take the code's own anonymous pages and the bytes object
    assert abs(mem["model_peak_kb"] - with_smaps["model_peak_kb"]) < 512, (mem, with_smaps)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_without_clear_refs_the_method_says_how_the_peak_was_found():
    # No reset: the lifetime VmHWM still holds the 48 MB, so the model's 8 MB peak is only bounded from below by the
    # sampled stages ("rss-sampled"); a model larger than that earlier peak shows in the lifetime mark itself.
    small = _meter("no-reset", 8)
    assert small["method"] == "rss-sampled" and 8 * 1024 <= small["model_peak_kb"] < 14 * 1024, small
    big = _meter("no-reset", 96)
    assert big["method"] == "hwm-inferred" and 96 * 1024 <= big["model_peak_kb"] < 104 * 1024, big


def test_agent_run_from_a_folder_with_a_shadowing_module(tiny, tmp_path):
    # The zipapp, not the cwd, must lead sys.path (agent.py, a script that re-executed itself through `python -c`,
    # once let the cwd in).
    (tmp_path / "json.py").write_text("raise SystemExit('the cwd shadowed json')\n")
    proc = subprocess.run(
        [sys.executable, str(AGENT), "--model", str(tiny["dense-fp32"]), "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-500:]
    assert json.loads(proc.stdout)["ok"] is True


# ------------------------------------------------------------------------------------------ tflite-runtime 2.14
# `tflite_runtime_python`: the session fixture in conftest.py (tests/_runtime214.py) builds the venv.


@pytest.mark.slow
def test_agent_runs_under_tflite_runtime(tiny, tflite_runtime_python):
    for name in ("dense-fp32", "dense-int8", "gru-fp32"):
        rc, d, _ = run_agent("--model", str(tiny[name]), "--runs", "10", python=tflite_runtime_python)
        assert rc == 0, d
        assert d["runtime"]["name"] == "tflite_runtime" and d["runtime"]["version"] == "2.14.0"
        assert d["runtime"]["numpy_version"].startswith("1.")
        mem = d["memory"]
        assert mem["method"] == "clear_refs" and 0 < mem["model_peak_kb"] < 20_000, mem


@pytest.mark.slow
def test_dynamic_range_model_on_tflite_runtime_names_the_op(tiny, tflite_runtime_python):
    rc, d, _ = run_agent("--model", str(tiny["dense-dynamic"]), python=tflite_runtime_python)
    assert rc == 3 and d["error"]["kind"] == "op_unsupported"
    assert d["error"]["op"] == "FULLY_CONNECTED" and d["error"]["op_version"] >= 10
    assert "pip install ai-edge-litert" in d["error"]["hint"]


def _mean_model(steps: int, features: int = 16) -> bytes:
    """[1, steps, features] -> MEAN over time -> [1, features]: nothing but its input grows with `steps`."""
    from _tiny_tflite import TFLiteBuilder

    b = TFLiteBuilder()
    sg = b.subgraph()
    x = b.tensor(sg, "serving_default_input:0", [1, steps, features])
    axis = b.tensor(sg, "mean/axis", [1], "INT32", np.array([1], np.int32))
    out = b.tensor(sg, "StatefulPartitionedCall:0", [1, features])
    opts = b.s.ReducerOptionsT()
    opts.keepDims = False
    b.op(sg, "MEAN", [x, axis], [out], opts)
    sg.inputs, sg.outputs = [x], [out]
    return b.finish()


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs a writable /proc/self/clear_refs")
def test_the_runs_own_input_is_not_the_models_memory(tmp_path):
    # A whole-sequence model holds its input tensor: 4 MB here. Agent 3.0 also charged the model its own copy of the
    # random input and the freed float64 temporaries that made it (~2.5x the tensor); 3.1 writes random floats
    # straight into the tensor, and an --input file's array is reported apart (harness_kb).
    steps, features = 65536, 16
    tensor_kb = steps * features * 4 // 1024
    figures = {}
    for n in (16, steps):
        path = tmp_path / f"mean-{n}.tflite"
        path.write_bytes(_mean_model(n, features))
        rc, d, err = run_agent("--model", str(path), "--runs", "3", "--threads", "1")
        assert rc == 0, err[-2000:]
        figures[n] = d["memory"]
    grew = figures[steps]["model_peak_kb"] - figures[16]["model_peak_kb"]
    assert figures[steps]["harness_kb"] == 0
    assert 0.9 * tensor_kb <= grew <= 1.25 * tensor_kb, (grew, tensor_kb)
    supplied = tmp_path / "x.npy"
    np.save(supplied, np.ones((1, steps, features), np.float32))
    rc, d, err = run_agent("--model", str(tmp_path / f"mean-{steps}.tflite"), "--runs", "3", "--threads", "1",
                           "--input", str(supplied))
    assert rc == 0, err[-2000:]
    assert d["memory"]["harness_kb"] == tensor_kb
    assert d["memory"]["model_peak_kb"] <= figures[steps]["model_peak_kb"] + 0.25 * tensor_kb
