"""Streaming: step models share the sequence model's weights and reproduce it step by step, in Keras and as .tflite
on LiteRT (every recipe in the slow matrix); the KV cache matches the full causal forward and ignores unfilled
slots; the agent carries state across invokes; bidirectional and non-causal models are refused with the reason."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _zoo_cache import costs, params, planner, prefetch_session

keras = pytest.importorskip("keras")

from edgeseq.core.errors import ConversionError, InputError, ModelError, ValidationError  # noqa: E402
from edgeseq.models.streaming import (  # noqa: E402
    analyze_streaming,
    build_step_model,
    build_window_model,
    initial_state,
    run_steps,
)
from edgeseq.models.streamkind import StreamKind  # noqa: E402
from edgeseq.models.zoo import build_model  # noqa: E402
from edgeseq.targets.runner import agent_path  # noqa: E402

T, F, K = 12, 5, 3
AGENT = agent_path()  # the zipapp pushed to devices (edgeseq.targets.agent_build), built from the sources


def _x(n=6, t=T, seed=0):
    return np.random.default_rng(seed).standard_normal((n, t, F)).astype("float32")


def _zoo(arch, **kw):
    keras.utils.set_random_seed(0)
    return build_model(arch, "tiny", seq_len=kw.pop("seq_len", T), num_features=F, num_outputs=K, **kw)


# ----------------------------------------------------------------------------------------------- Keras parity
@pytest.mark.parametrize("arch, layers", [("rnn", 1), ("lstm", 2), ("gru", 1), ("gru", 3)])
def test_recurrent_step_model_reproduces_the_sequence_model(arch, layers):
    model = _zoo(arch, num_layers=layers)
    step = build_step_model(model, batch_size=None)
    np.testing.assert_allclose(run_steps(step, _x()), np.asarray(model(_x())), atol=1e-6)
    names = [t.name for t in step.inputs]
    assert names[0] == "x" and len(names) == 1 + layers * (2 if arch == "lstm" else 1)
    # shares weights rather than copying them
    assert {id(w) for w in step.weights} <= {id(w) for w in model.weights}


def test_users_own_stacked_model_and_seq2seq_stream():
    keras.utils.set_random_seed(1)
    user = keras.Sequential([
        keras.Input((None, F)), keras.layers.Dense(6), keras.layers.LSTM(7, return_sequences=True),
        keras.layers.Dropout(0.2), keras.layers.GRU(4), keras.layers.Dense(K, activation="softmax"),
    ])
    assert analyze_streaming(user).kind == StreamKind.RECURRENT_STEP
    for length in (5, 17):  # a variable time axis streams any length
        np.testing.assert_allclose(run_steps(build_step_model(user, batch_size=None), _x(t=length)),
                                   np.asarray(user(_x(t=length))), atol=1e-6)
    seq2seq = keras.Sequential([keras.Input((T, F)), keras.layers.SimpleRNN(7, return_sequences=True),
                                keras.layers.Dense(2)])
    ys = run_steps(build_step_model(seq2seq, batch_size=None), _x(), collect=True)
    np.testing.assert_allclose(ys, np.asarray(seq2seq(_x())), atol=1e-6)


@pytest.mark.parametrize("overrides", [{}, {"pos_encoding": "learned", "num_layers": 2, "activation": "relu"}])
def test_kv_cache_step_matches_the_full_causal_forward(overrides):
    model = _zoo("transformer", causal=True, **overrides)
    step = build_step_model(model, kv_capacity=T + 4, batch_size=None)  # spare slots stay masked
    np.testing.assert_allclose(run_steps(step, _x()), np.asarray(model(_x())), atol=2e-5)


def test_kv_cache_masks_slots_not_yet_filled():
    model = _zoo("transformer", causal=True)
    step = build_step_model(model, kv_capacity=8, batch_size=None)
    x = _x(n=2)
    state = initial_state(step, 2)
    for t in range(3):  # fill slots 0..2 the way a runtime does: the new slot is written at pos
        out = step({"x": x[:, t], **state})
        for name in [n for n in state if n != "pos"]:
            assert np.asarray(out[f"{name}_at_pos"]).shape == (2, 2, 1, 8)
            state[name][:, :, t] = np.asarray(out[f"{name}_at_pos"])[:, :, 0]
        state["pos"] = state["pos"] + 1
    junk = {k: v.copy() for k, v in state.items() if k != "pos"}
    for v in junk.values():
        v[:, :, 3:] = np.random.default_rng(3).normal(size=v[:, :, 3:].shape) * 50  # slots 3.. are not filled yet
    clean, dirty = step({"x": x[:, 3], **state}), step({"x": x[:, 3], **state, **junk})
    np.testing.assert_allclose(np.asarray(clean["y"]), np.asarray(dirty["y"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(clean["y"]), run_steps(step, x[:, :4]), atol=1e-6)


def test_window_model_is_the_batch_model_on_the_last_w_steps():
    model = _zoo("transformer", causal=False)
    win = build_window_model(model, 7, batch_size=None)
    ref = build_model("transformer", "tiny", seq_len=7, num_features=F, num_outputs=K)
    ref.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(win(_x()[:, -7:])), np.asarray(ref(_x()[:, -7:])), atol=1e-6)


# ----------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: _zoo("gru", bidirectional=True), "bidirectional"),
        (lambda: _zoo("transformer"), "not causal"),
        (lambda: _zoo("transformer", causal=True, pooling="mean"), "averages"),
        (lambda: _zoo("lstm", head="mean"), "averages"),
        (lambda: keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(4, go_backwards=True), keras.layers.Dense(2)]),
         "backwards"),
        (lambda: keras.Sequential([keras.Input((T, F)), keras.layers.Conv1D(4, 3, padding="same"), keras.layers.GRU(4)]),
         "neighbouring future"),
    ],
)
def test_models_that_cannot_stream_are_refused_with_the_reason(make, words):
    with pytest.raises(InputError, match=words) as info:
        build_step_model(make())
    assert info.value.hint


def test_non_recurrent_model_is_a_model_error():
    dense = keras.Sequential([keras.Input((T, F)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ModelError, match="neither recurrent"):
        analyze_streaming(dense)


def test_cli_refuses_bidirectional_and_noncausal_in_one_line(tmp_path):
    _zoo("lstm", bidirectional=True).save(tmp_path / "bi.keras")
    _zoo("transformer").save(tmp_path / "nc.keras")
    code = (
        "import sys; from edgeseq.cli import main\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        main(['convert', m, '--stream', '--out', sys.argv[1] + '.out'])\n"
        "    except SystemExit as e:\n"
        "        print('EXIT', e.code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bi.keras"), str(tmp_path / "nc.keras")],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["EXIT", "2", "EXIT", "2"]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2 and "bidirectional" in errors[0] and "not causal" in errors[1]
    assert not list(tmp_path.glob("*.out"))  # nothing written


# ----------------------------------------------------------------------------------------------- .tflite
# Every .tflite of this file is made once per session (tests/_zoo_cache.py), two at a time with the session's other
# conversions: each model is built (seeded) and saved in the main thread when the session plans, then converted by the
# very call its test (or the `exported` fixture) made, into a folder of its own. The tests only read the results.
RECIPES = ["fp32", "fp16", "dynamic", "int8", "int8-io8", "int16x8"]
_MODELS = {  # name: (how it is built, the file it is saved as)
    "lstm": (lambda: _zoo("lstm", num_layers=2), "lstm.keras"),
    "kv": (lambda: _zoo("transformer", causal=True), "kv.keras"),
    **{f"every-{arch}": (lambda arch=arch: _zoo(arch, num_layers=2), "m.keras") for arch in ("rnn", "lstm", "gru")},
    "every-kv": (lambda: _zoo("transformer", causal=True), "m.keras"),
}


def _model(cache, which: str):
    """(the Keras model, its saved file)."""
    def build(folder):
        make, file = _MODELS[which]
        model = make()
        model.save(folder / file)
        return model, folder / file

    return cache.get(("streaming.model", which), build)


def _job(cache, key: tuple, path, recipes, out: str = "", **kw):
    from edgeseq.quantize.stream.convert import convert_stream

    return ("streaming", *key), lambda folder: convert_stream(path, recipes, out_dir=folder / out, **kw)


def _exported(cache, which: str):
    """fp32 step models of a stacked LSTM and a causal Transformer (KV cache); GRU and RNN are in the slow matrix."""
    extra = {"kv_capacity": 16} if which == "kv" else {}
    return _job(cache, ("exported", which), _model(cache, which)[1], ["fp32"], "out", **extra)


def _window(cache):
    """The KV test model saved as tf.keras, exported as the window baseline."""
    def build(folder):
        _model(cache, "kv")[0].save(folder / "tf.keras")
        return folder / "tf.keras"

    return _job(cache, ("window",), cache.get(("streaming.model", "tf.keras"), build), ["fp32"], window=T)


def _every(cache, arch: str):
    """Every recipe on a 2-layer recurrent zoo model (arch rnn, lstm, gru) or the KV-cache Transformer (arch kv)."""
    kw = {"strict": False} if arch == "kv" else {}
    return _job(cache, ("every", arch), _model(cache, f"every-{arch}")[1], RECIPES, raise_on_error=False, **kw)


@planner
def _plan(cache, items) -> dict:
    mine = [item for item in items if getattr(getattr(item, "module", None), "__name__", None) == __name__]
    jobs = []
    if any("exported" in item.fixturenames for item in mine):
        jobs += costs(8, _exported(cache, "lstm"), _exported(cache, "kv"))
    for item in mine:
        if item.originalname == "test_agent_on_a_plain_model_slides_a_window":
            jobs += costs(6, _window(cache))
        elif item.originalname == "test_every_recipe_streams_recurrent_models_within_tolerance":
            jobs += costs(15, _every(cache, params(item)["arch"]))
        elif item.originalname == "test_every_recipe_on_the_kv_cache_transformer":
            jobs += costs(15, _every(cache, "kv"))
    return dict(jobs)


@pytest.fixture
def shared(conversions, request):
    """shared(job, *args): the session's result of that conversion (see above); the first use makes all that the
    session's selected tests need."""
    prefetch_session(conversions, request)
    return lambda job, *args: conversions.get(*job(conversions, *args))


@pytest.fixture(scope="module")
def exported(conversions, request):
    """fp32 step models of a stacked LSTM and a causal Transformer (KV cache): {key: (model, result)}."""
    prefetch_session(conversions, request)
    out = {}
    for key in ("lstm", "kv"):
        (res,) = conversions.get(*_exported(conversions, key))
        out[key] = (_model(conversions, key)[0], res)
    return out


@pytest.mark.parametrize("key", ["lstm", "kv"])
def test_fp32_step_tflite_passes_stream_parity_and_records_it(exported, key):
    _, res = exported[key]
    m = res.manifest
    assert res.ok and res.tflite_path.exists() and m["validation"]["passed"]
    assert m["validation"]["steps_per_sequence"] == T and m["validation"]["max_abs_diff"] < 1e-4
    assert m["stream"]["kind"] == ("kv-cache" if key == "kv" else "recurrent-step")
    names = {t["name"].split(":")[0] for t in m["signature"]["inputs"]}
    assert any("x" in n for n in names)
    if key == "kv":
        assert res.tflite_path.name == "kv-kv16-fp32.tflite" and m["stream"]["kv_capacity"] == 16


def _agent(*args):
    proc = subprocess.run([sys.executable, str(AGENT), *map(str, args)], capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("key", ["lstm", "kv"])
def test_agent_carries_state_across_invokes(exported, key, tmp_path):
    model, res = exported[key]
    seq = _x(n=1, seed=5)
    np.save(tmp_path / "seq.npy", seq[0])
    rc, d = _agent("--model", res.tflite_path, "--stream", "--input", tmp_path / "seq.npy", "--runs", 30,
                   "--warmup", 3, "--hop-ms", 10)
    assert rc == 0 and d["ok"], d
    s = d["stream"]
    np.testing.assert_allclose(np.asarray(s["final_output"]), np.asarray(model(seq))[0], atol=1e-5)
    assert s["mode"] == "step" and s["steps"] == T and s["passes"] >= 2
    assert len(d["timings_ns"]["invoke"]) == len(s["invoke_ns"]) >= 30
    assert s["state_bytes"] == sum(x["bytes"] for x in s["state"]) > 0
    assert 0.0 <= s["deadline_met_share"] <= 1.0 and s["real_time_factor"] > 0
    assert d["memory"]["vm_hwm_kb"] is None or d["memory"]["vm_hwm_kb"] > 0
    if key == "kv":
        assert s["position_input"] and s["capacity"] == 16


def test_a_recurrent_stream_costs_the_same_memory_at_any_length(exported):
    """The step model's memory does not depend on how long the stream runs: the agent cycles a ring of random
    steps and leaves its own per-step records out of the model's figure (memory.harness_kb)."""
    figures = {}
    for steps in (32, 8192):
        rc, d = _agent("--model", exported["lstm"][1].tflite_path, "--stream", "--steps", steps, "--runs", 10,
                       "--warmup", 2)
        assert rc == 0 and d["ok"] and d["stream"]["steps"] == steps and len(d["stream"]["invoke_ns"]) == steps, d
        figures[steps] = d["memory"]
    if figures[32]["model_peak_kb"] is None:
        pytest.skip("this kernel gives no memory figures (no /proc/self/status)")
    assert figures[8192]["harness_kb"] >= 8192 * 16 // 1024  # two int64 records per step, at least
    # before the ring and the records were left out, 8192 steps added 1.2 MB (464 -> 1688 KB on an LSTM step model)
    assert abs(figures[8192]["model_peak_kb"] - figures[32]["model_peak_kb"]) <= 160, figures


def test_agent_refuses_more_steps_than_the_kv_capacity(exported):
    rc, d = _agent("--model", exported["kv"][1].tflite_path, "--stream", "--steps", 40)
    assert rc == 2 and "capacity" in d["error"]["message"]


def test_agent_on_a_plain_model_slides_a_window(exported, shared, tmp_path):
    model, _ = exported["kv"]
    (res,) = shared(_window)
    assert res.manifest["stream"]["kind"] == "window" and res.validation["passed"]
    seq = _x(n=1, seed=6)
    np.save(tmp_path / "seq.npy", seq[0])
    rc, d = _agent("--model", res.tflite_path, "--stream", "--input", tmp_path / "seq.npy", "--runs", 12)
    assert rc == 0 and d["stream"]["mode"] == "window" and d["stream"]["window"] == T
    np.testing.assert_allclose(np.asarray(d["stream"]["final_output"]), np.asarray(model(seq))[0], atol=1e-5)


# ----------------------------------------------------------------------------------------------- every recipe


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_every_recipe_streams_recurrent_models_within_tolerance(arch, shared, conversions, tmp_path):
    model = _model(conversions, f"every-{arch}")[0]
    results = shared(_every, arch)
    for r in results:
        assert r.ok, f"{r.recipe.slug}: {r.error and r.error.one_line()}"
        assert r.validation["passed"] and r.manifest["stream"]["parity_steps"] == T
    io8 = next(r for r in results if r.recipe.slug == "int8-io8")
    seq = _x(n=1, seed=9)
    np.save(tmp_path / "seq.npy", seq[0])
    rc, d = _agent("--model", io8.tflite_path, "--stream", "--input", tmp_path / "seq.npy", "--runs", 12)
    # int8 state whose output scale differs from its input's is requantized in the graph (a QUANTIZE op), so the
    # agent copies its bytes as they are
    assert rc == 0 and all(not s["requantized"] and s["dtype"] == "int8" for s in d["stream"]["state"])
    np.testing.assert_allclose(np.asarray(d["stream"]["final_output"]), np.asarray(model(seq))[0], atol=0.1)


@pytest.mark.slow
def test_every_recipe_on_the_kv_cache_transformer(shared):
    results = {r.recipe.slug: r for r in shared(_every, "kv")}
    for slug in ("fp32", "fp16", "dynamic"):
        assert results[slug].ok and results[slug].validation["passed"], slug
    for slug in ("int8", "int8-io8"):  # converts and runs; parity is recorded (LayerNorm float islands)
        assert results[slug].ok and results[slug].validation["mean_abs_diff"] < 0.3, slug
    assert isinstance(results["int16x8"].error, ConversionError | ValidationError)


# ----------------------------------------------------------------------------------------------- profile + report
def test_contexts_parse_with_an_ellipsis():
    from edgeseq.streams.profile import parse_contexts

    assert parse_contexts("16,32,...,1024") == [16, 32, 64, 128, 256, 512, 1024]
    assert parse_contexts("256, 16,64") == [16, 64, 256]
    for bad in ("16,...", "a,b", "0,4", "16,24,...,100"):
        with pytest.raises(InputError):
            parse_contexts(bad)


def test_slopes_are_flat_for_a_fixed_state_and_linear_for_a_cache():
    from edgeseq.streams.profile import fit_slopes

    rows = [{"model": "m", "kind": k, "context": c, "p50_us": 5.0 if k == "recurrent state" else 2.0 + 0.5 * c,
             "state_bytes": 64 if k == "recurrent state" else 96 * c, "peak_rss_kb": 100.0, "target": "local"}
            for k in ("recurrent state", "kv cache") for c in (16, 64, 256)]
    slopes = {s["kind"]: s for s in fit_slopes(rows)}
    assert slopes["recurrent state"]["latency_us_per_step"] == 0.0
    assert slopes["recurrent state"]["state_bytes_per_step"] == 0.0
    assert slopes["kv cache"]["latency_us_per_step"] == pytest.approx(0.5)
    assert slopes["kv cache"]["state_bytes_per_step"] == pytest.approx(96.0)


def test_profile_stream_contexts_store_and_report_section(exported, tmp_path):
    from click.testing import CliRunner

    from edgeseq.commands.profile import profile
    from edgeseq.report.dispatch import write_report

    db = tmp_path / "r.db"
    step, kv = exported["lstm"][1].tflite_path, exported["kv"][1].tflite_path
    res = CliRunner().invoke(profile, [str(step), str(kv), "--stream", "--contexts", "8,16", "--runs", "20",
                                       "--warmup", "2", "--hop-ms", "5", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    got = {(r["kind"], r["context"]) for r in data["rows"]}
    assert got == {("recurrent-step", 8), ("recurrent-step", 16), ("kv-cache", 16)}  # KV only at its capacity
    lstm = [r for r in data["rows"] if r["kind"] == "recurrent-step"]
    assert lstm[0]["state_bytes"] == lstm[1]["state_bytes"] > 0 and all(r["deadline_met_share"] >= 0 for r in lstm)
    assert all(0 < r["model_peak_kb"] < r["peak_rss_kb"] for r in data["rows"])  # the model's memory per context
    html = write_report(db, tmp_path / "rep", fmt="html")
    assert "<h2>Streaming</h2>" in html.read_text() and (tmp_path / "rep" / "streaming.png").stat().st_size > 0
    md = write_report(db, tmp_path / "rep", fmt="md").read_text()
    assert "## Streaming" in md and "µs per step of context" in md and "| model MiB | process MiB |" in md
    assert "| lstm | recurrent state | 8 |" in md and "| kv | kv cache | 16 |" in md  # named after the .keras
    res = CliRunner().invoke(profile, [str(step), "--stream", "--steps", "4", "--runs", "10", "--db", str(db)])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_stream_compare_for_the_demo(exported, tmp_path):
    from edgeseq.streams.compare import stream_compare

    model, _ = exported["lstm"]
    model.save(tmp_path / "lstm.keras")
    rows = stream_compare(tmp_path / "lstm.keras", None, tmp_path / "cmp", contexts=(16, 32), runs=20)
    kinds = {(r["kind"], r["context"]) for r in rows}
    assert kinds == {(k, c) for k in ("recurrent-step", "kv-cache", "window") for c in (16, 32)}
    assert all(r["x_rnn"] for r in rows)
