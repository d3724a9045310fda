"""Streaming as devices run it: the agent's stream loop costs what the model costs (floors measured in one run),
step models with their state inside (resource variables, CALL_ONCE) exported for every kind and recipe, recognised
in any file, stepped with per-step parity and state reset checked on ai-edge-litert and tflite-runtime 2.14."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _zoo_cache import costs, params, planner, prefetch_session, selected, small_zoo_jobs

keras = pytest.importorskip("keras")

from keras import layers  # noqa: E402

from edgeseq.targets.runner import agent_path  # noqa: E402

AGENT = agent_path()
T, F, C = 12, 5, 3


def _agent(*args, python: str = sys.executable) -> dict:
    proc = subprocess.run([python, str(AGENT), *map(str, args)], capture_output=True, text=True, timeout=300)
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and doc["ok"], doc
    return doc


def _ratio(doc: dict) -> tuple[float, float]:
    """(whole-step p50 µs, invoke p50 µs) of a --stream run."""
    return (float(np.median(doc["timings_ns"]["invoke"])) / 1e3, float(np.median(doc["stream"]["invoke_ns"])) / 1e3)


def _floor(path, limit, tries: int = 3, *extra) -> tuple[float, float]:
    """The best of `tries` runs (the machine is shared: a busy moment slows a whole run) against `limit(invoke)`."""
    best = None
    for _ in range(tries):
        step, inv = _ratio(_agent("--model", path, "--stream", "--steps", 64, "--runs", 3000, "--warmup", 200,
                                  "--threads", 1, *extra))
        if best is None or step - limit(inv) < best[0] - limit(best[1]):
            best = (step, inv)
        if step <= limit(inv):
            break
    return best


FLOOR_FILES = {"test_host_carried_step_costs_little_more_than_its_invoke"}


@planner
def _plan(cache, items) -> dict:
    jobs = {}
    if selected(items, __name__, FLOOR_FILES):
        jobs |= dict(costs(12, *[(k, m) for k, m in small_zoo_jobs(cache).items() if k[1] == "gru-step"]))
    return jobs


@pytest.fixture
def small_gru_step(conversions, request):
    prefetch_session(conversions, request)
    jobs = small_zoo_jobs(conversions)
    return {p.name: p for p in conversions.get(("small-zoo", "gru-step"), jobs[("small-zoo", "gru-step")])}


def test_host_carried_step_costs_little_more_than_its_invoke(small_gru_step):
    # Agent 3.1 quantized the input, allocated the position, read every state out (a copy) and wrote it back in, and
    # checked the interpreter's references before each invoke: a GRU small step took 2.1-2.5x its invoke. 3.2 sets a
    # pre-quantized input through a byte view of the buffer, calls the runtime's Invoke and copies each state once.
    step, inv = _floor(small_gru_step["gru-step-fp32.tflite"], lambda inv: 1.3 * inv)
    assert step <= 1.3 * inv, f"whole step {step:.2f} µs vs invoke {inv:.2f} µs: {step / inv:.2f}x"


# ----------------------------------------------------------------------------------------------- models and exports
def _x(n=6, t=T, seed=0, f=F):
    return np.random.default_rng(seed).standard_normal((n, t, f)).astype("float32")


def _zoo(arch, **kw):
    from edgeseq.models.zoo import build_model

    keras.utils.set_random_seed(0)
    return build_model(arch, "tiny", seq_len=T, num_features=F, num_outputs=C, **kw)


def _crnn(per_frame=False):
    """A CRNN keyword spotter (causal Conv1D ring buffers -> GRU -> Dense), or a per-frame tagger of the same."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((T, F))
    h = layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="relu", name="conv")(inp)
    h = layers.Conv1D(6, 2, padding="causal", name="conv2")(h)
    h = layers.GRU(10, return_sequences=per_frame, name="gru")(h)
    return keras.Model(inp, layers.Dense(C, activation="softmax", name="head")(h), name="tagger" if per_frame else "crnn")


def _mha():
    """A user's functional causal Transformer (keras MultiHeadAttention, learned positions): a KV step from its graph."""
    from edgeseq.models.layers import LearnedPositionalEncoding

    keras.utils.set_random_seed(0)
    inp = keras.Input((T, F))
    h = LearnedPositionalEncoding(T, name="pos")(layers.Dense(8, name="proj")(inp))
    a = layers.MultiHeadAttention(2, 4, name="mha")(h, h, use_causal_mask=True)
    h = layers.LayerNormalization(name="ln")(layers.Add()([h, a]))
    return keras.Model(inp, layers.Dense(C, activation="softmax", name="head")(h[:, -1, :]), name="user_mha")


_MODELS = {  # name: how it is built
    "gru": lambda: _zoo("gru", num_layers=2), "lstm": lambda: _zoo("lstm", num_layers=2), "rnn": lambda: _zoo("rnn"),
    "kv": lambda: _zoo("transformer", causal=True), "crnn": _crnn, "tagger": lambda: _crnn(per_frame=True),
    "mha": _mha,
}
FAST = ["fp32", "int8"]
RECIPES = ["fp32", "fp16", "dynamic", "int8"]
ATOL = {"fp32": 1e-5, "fp16": 5e-3, "dynamic": 0.05, "int8": 0.15, "int8-io8": 0.15}


def _model(cache, which: str):
    """(the Keras model, its saved file), built once per session in the calling thread."""
    def build(folder):
        model = _MODELS[which]()
        model.save(folder / f"{which}.keras")
        return model, folder / f"{which}.keras"

    return cache.get(("state-inside.model", which), build)


def _export(cache, which: str, recipes: tuple, stride: int = 1, state: str = "internal"):
    from edgeseq.quantize.stream.convert import convert_stream

    path = _model(cache, which)[1]
    return (("state-inside", which, recipes, stride, state),
            lambda folder: convert_stream(path, list(recipes), out_dir=folder, state=state, stride=stride,
                                          raise_on_error=False, strict=which not in ("kv", "mha")))


def _prefix_reference(model, X, stride=1):
    """The sequence model's output after every frame (per-frame heads: its own outputs), at every stride-th frame."""
    from edgeseq.models.streaming import build_window_model

    if len(model.outputs[0].shape) == 3:
        return np.asarray(model(X))
    ref = np.stack([np.asarray(build_window_model(model, t, batch_size=None)(X[:, :t]))
                    for t in range(1, X.shape[1] + 1)], axis=1)
    return ref[:, stride - 1 :: stride]


_STEP_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])  # the agent's zipapp: its StreamStepper, as on a device
from edgeseq_agent.stepper import StreamStepper
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter
job = json.load(open(sys.argv[2]))
X = np.load(job["inputs"])
report = {}
for key, path in job["files"].items():
    def fresh(path=path):
        it = Interpreter(model_path=path, num_threads=1)
        it.allocate_tensors()
        return it
    try:
        stepper = StreamStepper(np, fresh(), reload=fresh)
        in_a_row = np.stack([stepper.run(seq, collect=True) for seq in X])  # one interpreter, reset in between
        alone = StreamStepper(np, fresh()).run(X[1], collect=True)  # the second stream on a fresh interpreter
        np.save(f"{job['out']}/{key}.npy", in_a_row)
        report[key] = {"kind": stepper.kind, "reset": stepper.reset_method, "frames": stepper.frames,
                       "reset_ok": bool(np.array_equal(in_a_row[1], alone))}
    except Exception as exc:
        report[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
print(json.dumps(report))
"""


def _step_files(files: dict, X: np.ndarray, tmp: Path, python: str = sys.executable) -> dict:
    """Every file stepped through the agent's StreamStepper on `python`'s runtime: {key: report + 'ys'}."""
    np.save(tmp / "X.npy", X)
    (tmp / "job.json").write_text(json.dumps({"files": {k: str(v) for k, v in files.items()},
                                              "inputs": str(tmp / "X.npy"), "out": str(tmp)}))
    proc = subprocess.run([python, "-c", _STEP_SCRIPT, str(AGENT), str(tmp / "job.json")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, r in report.items():
        if "error" not in r:
            r["ys"] = np.load(tmp / f"{key}.npy")
    return report


def _check_file(res) -> None:
    """An internal-state export: parity passed, only x in and y out, the state ops and the reset signature there."""
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.targets.agent import resource_state, signature_details

    assert res.ok, res.error and res.error.one_line()
    m = res.manifest
    assert m["stream"]["kind"] == "internal-state" and m["stream"]["reset"]["signature"] == "reset"
    assert m["validation"]["passed"] is not False and "reset" in m["validation"]["how"]
    interp = load_interpreter(res.tflite_path)
    ins, outs = signature_details(interp)
    assert set(ins) == {"x"} and set(outs) == {"y"}
    ops, state = resource_state(np, interp)
    assert set(ops) == {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}
    assert {s["name"] for s in state} == {v["name"] for v in m["stream"]["state_inside"]["variables"]}
    assert "reset" in interp.get_signature_list()


FAST_TESTS = {"test_a_recurrent_model_with_its_state_inside_steps_like_the_sequence_model",
              "test_agent_steps_a_model_with_its_state_inside"}
FLOOR_TESTS = {"test_host_carried_step_costs_little_more_than_its_invoke",
               "test_state_inside_step_costs_its_invoke"}
MATRIX = "test_every_kind_and_recipe_with_its_state_inside_on_both_runtimes"


@planner
def _plan(cache, items) -> dict:
    jobs = []
    if selected(items, __name__, FLOOR_TESTS):
        jobs += costs(12, *[(k, m) for k, m in small_zoo_jobs(cache).items() if k[1] == "gru-step"],
                      _small_internal(cache))
    if selected(items, __name__, FAST_TESTS):
        jobs += costs(14, _export(cache, "gru", ("fp32", "int8"), state="both"),
                      _export(cache, "gru", ("fp32", "int8"), stride=3))
    for item in selected(items, __name__, {MATRIX}):
        jobs += costs(20, *_matrix_jobs(cache, params(item)["which"]))
    return dict(jobs)


@pytest.fixture
def shared(conversions, request):
    prefetch_session(conversions, request)
    return lambda job: conversions.get(*job)


# ----------------------------------------------------------------------------------------------- fast
def test_a_recurrent_model_with_its_state_inside_steps_like_the_sequence_model(shared, conversions, tmp_path):
    model = _model(conversions, "gru")[0]
    both = shared(_export(conversions, "gru", ("fp32", "int8"), state="both"))
    strided = shared(_export(conversions, "gru", ("fp32", "int8"), stride=3))
    inside = [r for r in both if r.manifest and r.manifest["stream"]["kind"] == "internal-state"]
    outside = [r for r in both if r.manifest and r.manifest["stream"]["kind"] == "recurrent-step"]
    assert len(inside) == len(outside) == 2 and all(r.tflite_path.name.endswith(("-internal-fp32.tflite",
                                                                                  "-internal-int8.tflite"))
                                                    for r in inside)
    for r in inside + strided:
        _check_file(r)
    assert [r.manifest["stream"]["frames_per_invoke"] for r in strided] == [3, 3]
    X = _x(n=5, seed=3)
    files = {f"{r.recipe.slug}-s{r.manifest['stream']['frames_per_invoke']}": r.tflite_path for r in inside + strided}
    files |= {f"{r.recipe.slug}-host": r.tflite_path for r in outside}
    got = _step_files(files, X, tmp_path)
    for key, r in got.items():
        assert "error" not in r, (key, r)
        stride = int(key.split("-s")[-1]) if "-s" in key else 1
        ref = _prefix_reference(model, X, stride)
        assert r["ys"].shape == ref.shape, key
        assert np.abs(r["ys"] - ref).max() <= ATOL[key.split("-")[0]], key
        assert r["reset_ok"] and r["frames"] == stride, key
        assert r["kind"] == ("recurrent-step" if key.endswith("host") else "internal-state")
    # the same outputs whichever form holds the state (fp32: the same kernels see the same numbers)
    np.testing.assert_array_equal(got["fp32-s1"]["ys"], got["fp32-host"]["ys"])


def test_agent_steps_a_model_with_its_state_inside(shared, conversions, tmp_path):
    model = _model(conversions, "gru")[0]
    strided = {r.recipe.slug: r for r in shared(_export(conversions, "gru", ("fp32", "int8"), stride=3))}
    seq = _x(n=1, seed=5)
    np.save(tmp_path / "seq.npy", seq[0])
    d = _agent("--model", strided["fp32"].tflite_path, "--stream", "--input", tmp_path / "seq.npy", "--runs", 30,
               "--warmup", 3)
    s = d["stream"]
    assert s["kind"] == "internal-state" and s["mode"] == "internal" and s["reset"] == "signature"
    assert s["frames_per_invoke"] == 3 and s["steps"] == T // 3 and s["passes"] >= 2
    assert set(s["state_ops"]) == {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE"}
    assert s["state_bytes"] == strided["fp32"].manifest["stream"]["state_inside"]["state_bytes"] > 0
    assert [i["name"] for i in d["inputs"]] == ["x"] and d["inputs"][0]["shape"] == [1, 3, F]
    # final_output is the first pass's: fresh state (CALL_ONCE), then after every reset the same numbers
    np.testing.assert_allclose(np.asarray(s["final_output"]), np.asarray(model(seq))[0], atol=1e-5)


# ----------------------------------------------------------------------------------------------- floors
def _small_internal(cache):
    """The small zoo's GRU (T=64, F=16) as a step file with its state inside (fp32, not validated: timing only)."""
    from _zoo_cache import _build_small_zoo

    from edgeseq.quantize.stream.convert import convert_stream

    folder = cache.get(("small-zoo", "models"), _build_small_zoo)
    return (("state-inside", "small-gru"),
            lambda out: convert_stream(folder / "gru.keras", ["fp32"], out_dir=out, name="gru", state="internal",
                                       validate=False))


def test_state_inside_step_costs_its_invoke(shared, conversions):
    # write the input, invoke, read the output: nothing else happens per step
    (res,) = shared(_small_internal(conversions))
    step, inv = _floor(res.tflite_path, lambda inv: 1.15 * inv + 1.0)
    assert step <= 1.15 * inv + 1.0, f"whole step {step:.2f} µs vs invoke {inv:.2f} µs"


# ----------------------------------------------------------------------------------------------- every kind x recipe
def _matrix_jobs(cache, which: str) -> list:
    jobs = [_export(cache, which, tuple(RECIPES + (["int8-io8"] if which == "gru" else [])))]
    if which in ("crnn", "tagger"):  # conv ring buffers and a per-frame head, 3 frames per invoke
        jobs.append(_export(cache, which, ("fp32", "int8"), stride=3))
    return jobs


@pytest.mark.slow
@pytest.mark.parametrize("which", list(_MODELS))
def test_every_kind_and_recipe_with_its_state_inside_on_both_runtimes(which, shared, conversions, tmp_path,
                                                                       tflite_runtime_python):
    model = _model(conversions, which)[0]
    results = [r for job in _matrix_jobs(conversions, which) for r in shared(job)]
    files = {}
    for r in results:
        _check_file(r)
        files[f"{r.recipe.slug}-s{r.manifest['stream']['frames_per_invoke']}"] = r.tflite_path
    X = _x(n=6, seed=11)
    (tmp_path / "litert").mkdir()
    (tmp_path / "tfl214").mkdir()
    litert = _step_files(files, X, tmp_path / "litert")
    old = _step_files({k: v for k, v in files.items()}, X, tmp_path / "tfl214", python=tflite_runtime_python)
    for runtime, got in (("ai-edge-litert", litert), ("tflite-runtime 2.14", old)):
        for key, r in got.items():
            recipe, stride = key.split("-s")[0], int(key.split("-s")[-1])
            if runtime != "ai-edge-litert" and recipe == "dynamic" and "error" in r:
                assert "FULLY_CONNECTED" in r["error"], (key, r)  # TF 2.21's hybrid FULLY_CONNECTED v12: known
                continue
            assert "error" not in r, (runtime, key, r)
            assert r["kind"] == "internal-state" and r["reset"] == "signature" and r["frames"] == stride
            assert r["reset_ok"], f"{runtime} {key}: a stream after a reset differs from one on a fresh interpreter"
            ref = _prefix_reference(model, X, stride)
            diff = np.abs(r["ys"] - ref)
            print(f"per-step parity {which} {key} on {runtime}: max |d| {diff.max():.2g}, mean {diff.mean():.2g}")
            if recipe.startswith("int8") and which in ("kv", "mha"):  # int8 attention: LayerNorm float islands
                assert diff.mean() < 0.08, (runtime, key, diff.mean())
            else:
                assert diff.max() <= ATOL[recipe], (runtime, key, diff.max())


# ----------------------------------------------------------------------------------------------- third-party files
def wake_word_tflite(path: Path, features: int = 8, stride: int = 3, seed: int = 0) -> Path:
    """A keyword spotter as kws_streaming's internal-state mode and microWakeWord export one, written by TF's own
    converter (no edgeseq, no manifest): int8 input [1, stride, features], two conv ring buffers and a recurrent
    state in resource variables (tf.Variable -> VAR_HANDLE/READ_VARIABLE/ASSIGN_VARIABLE, zeroed by CALL_ONCE)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    ch, units = 8, 12

    def w(*shape):
        return tf.constant(rng.normal(0, 0.3, shape).astype(np.float32))

    class Spotter(tf.Module):
        def __init__(self):
            super().__init__()
            self.ring1 = tf.Variable(tf.zeros([1, 4, features]), name="ring1")  # a kernel-5 conv's last 4 frames
            self.ring2 = tf.Variable(tf.zeros([1, 2, ch]), name="ring2")  # a kernel-3 conv's last 2
            self.h = tf.Variable(tf.zeros([1, units]), name="h")
            self.w1, self.w2, self.a, self.b, self.d = w(5, features, ch), w(3, ch, ch), w(ch, units), w(units, units), \
                w(units, 2)

        @tf.function(input_signature=[tf.TensorSpec([1, stride, features], tf.float32, name="x")])
        def step(self, x):
            buf = tf.concat([self.ring1.read_value(), x], axis=1)
            self.ring1.assign(buf[:, -4:])
            h1 = tf.nn.relu(tf.nn.conv1d(buf, self.w1, 1, "VALID"))
            buf2 = tf.concat([self.ring2.read_value(), h1], axis=1)
            self.ring2.assign(buf2[:, -2:])
            pooled = tf.reduce_mean(tf.nn.relu(tf.nn.conv1d(buf2, self.w2, 1, "VALID")), axis=1)
            h = tf.tanh(pooled @ self.a + self.h.read_value() @ self.b)
            self.h.assign(h)
            return {"y": tf.nn.softmax(h @ self.d)}

    module = Spotter()
    saved = path.with_suffix(".savedmodel")
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.step})
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.experimental_enable_resource_variables = True
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ({"x": rng.standard_normal((1, stride, features)).astype(np.float32)}
                                           for _ in range(64))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def wake_word(tmp_path_factory) -> Path:
    return wake_word_tflite(tmp_path_factory.mktemp("third-party") / "spotter.tflite")


def test_a_third_party_file_with_its_state_inside_is_its_own_kind(wake_word, tmp_path):
    from edgeseq.quantize.inspect import inspect_tflite
    from edgeseq.quantize.runtime import load_interpreter
    from edgeseq.targets.agent import StreamStepper

    # agent 3.1 took [1, 3, 8] for a window of 3 frames and re-ran it as one ("window recompute", context 3)
    d = _agent("--model", wake_word, "--stream", "--runs", 40, "--warmup", 4, "--steps", 16)
    s = d["stream"]
    assert s["kind"] == "internal-state" and s["mode"] == "internal" and s["window"] is None
    assert s["frames_per_invoke"] == 3 and s["steps"] == 16 and s["reset"] == "reload"  # no reset signature
    assert {v["shape"][1] for v in s["state"]} == {4, 2, 12} and s["state_bytes"] > 0
    info = inspect_tflite(wake_word)["state_inside"]
    assert info["frames_per_invoke"] == 3 and len(info["variables"]) == 3 and not info["reset_signature"]
    # reset: a fresh interpreter per stream; two streams in a row give what two fresh interpreters give
    frames = _x(n=2, t=15, f=8, seed=4)
    stepper = StreamStepper(np, load_interpreter(wake_word), reload=lambda: load_interpreter(wake_word))
    first, second = (stepper.run(seq, collect=True) for seq in frames)
    np.testing.assert_array_equal(second, StreamStepper(np, load_interpreter(wake_word)).run(frames[1], collect=True))
    assert first.shape == (5, 2)
    carried_on = StreamStepper(np, load_interpreter(wake_word))
    carried_on.load(np.concatenate(frames))
    carried_on.reset()
    for i in range(10):
        carried_on.step(i, i)
    assert not np.array_equal(carried_on.output(), second[-1])  # the state persists across invokes


# ----------------------------------------------------------------------------------------------- store and report
def test_profile_stores_both_forms_and_the_report_sets_them_side_by_side(shared, conversions, wake_word, tmp_path):
    from click.testing import CliRunner

    from edgeseq.commands.profile import profile
    from edgeseq.report.dispatch import write_report

    both = {(r.recipe.slug, r.manifest["stream"]["kind"]): r.tflite_path
            for r in shared(_export(conversions, "gru", ("fp32", "int8"), state="both"))}
    db = tmp_path / "r.db"
    files = [both[("fp32", "recurrent-step")], both[("fp32", "internal-state")], wake_word]
    res = CliRunner().invoke(profile, [*map(str, files), "--stream", "--contexts", "8,12", "--runs", "200",
                                       "--warmup", "20", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["rows"]
    got = {(r["file"], r["kind"], r["context"]): r for r in rows}
    assert {(k[1], k[2]) for k in got} == {(kind, c) for kind in ("recurrent-step", "internal-state") for c in (8, 12)}
    inside = [r for r in rows if r["kind"] == "internal-state"]
    assert {r["form"] for r in inside} == {"recurrent-step", None}  # edgeseq's export says; a third-party file not
    assert {r["frames"] for r in inside} == {1, 3}
    md = write_report(db, tmp_path / "rep", fmt="md").read_text()
    assert "| gru | state inside | 8 |" in md and "| spotter | state inside | 12 |" in md
    assert "### State carried by the host vs kept inside the model" in md
    assert "| gru | recurrent state | fp32 | 12 |" in md
    advice = [ln for ln in md.splitlines() if ln.startswith("- **recurrent state**:")]
    assert len(advice) == 1 and ("ship" in advice[0] or "either form" in advice[0])
    html = write_report(db, tmp_path / "rep", fmt="html").read_text()
    assert "State carried by the host vs kept inside the model" in html and "state inside" in html


# ----------------------------------------------------------------------------------------------- per-op time
def test_per_op_time_covers_call_once_and_resource_variables(shared, conversions, wake_word, tmp_path):
    # before: "op 0 is CALL_ONCE ... the sub-model route cuts the main graph and WHILE loops only", no per-op times
    from click.testing import CliRunner

    from edgeseq.commands.profile import profile

    (inside,) = [r for r in shared(_export(conversions, "gru", ("fp32", "int8"), state="both"))
                 if r.recipe.slug == "fp32" and r.manifest["stream"]["kind"] == "internal-state"]
    res = CliRunner().invoke(profile, [str(inside.tflite_path), str(wake_word), "--ops", "--runs", "60", "--warmup",
                                       "5", "--db", str(tmp_path / "r.db"), "--json"])
    assert res.exit_code == 0, res.output
    for row in json.loads(res.output)["runs"]:
        assert row["ops_route"] == "sub-models", row.get("ops_reason")
        by_type = {}
        for op in row["ops"]:
            assert not op.get("error"), op
            by_type.setdefault(op["type"], []).append(op)
        (init,) = by_type["CALL_ONCE"]
        assert init["calls"] == 0 and init["mean_us"] == 0.0 and init["once_us"] > 0  # the initialiser, once
        for name in ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"):
            assert by_type[name] and all(op["calls"] == 1 and op["per_call_us"] is not None for op in by_type[name])
        assert len(by_type["READ_VARIABLE"]) == (3 if "spotter" in row["model"] else 2)


def test_an_older_int8_file_is_requantized_through_a_table():
    # files exported before the graph requantized int8 state: the agent maps every int8 code once (256 entries)
    from types import SimpleNamespace

    from edgeseq.targets.agent import StreamStepper

    out_d = {"dtype": np.int8, "quantization": (0.05, 3)}
    in_d = {"dtype": np.int8, "quantization": (0.02, -7)}
    fn = StreamStepper._requant(SimpleNamespace(np=np), out_d, in_d)
    src = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    dst = np.zeros_like(src)
    fn(src, dst)
    want = np.clip(np.round((src.astype(np.float32) - 3) * np.float32(0.05 / 0.02)) - 7, -128, 127).astype(np.int8)
    np.testing.assert_array_equal(dst, want)
    assert StreamStepper._requant(SimpleNamespace(np=np), in_d, in_d) is None  # same scale: a plain copy
