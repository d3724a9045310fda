"""The capability table: what it declares, what models it matches, and that convert refuses up front from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgeseq.core.progress import is_progress_line
from edgeseq.models.streamkind import StreamKind
from edgeseq.quantize.capabilities import FAMILIES, FORMS, RECIPES, TABLE, refusal, rows

keras = pytest.importorskip("keras")


def test_table_speaks_the_project_vocabularies():
    for cap in TABLE:
        assert cap.family in ("*", *FAMILIES) and cap.recipe in ("*", *RECIPES) and cap.form in ("*", *FORMS)
        assert cap.why and (cap.supported or cap.fix), cap
    assert set(FORMS) == {"batch", *(k.value for k in StreamKind)}


def test_refusals_are_specific():
    assert refusal({"layer-norm"}, "int16x8", "batch") is not None
    assert refusal({"layer-norm"}, "int8", "batch") is None
    assert refusal({"attention"}, "int16x8", StreamKind.KV_CACHE) is not None
    assert refusal({"recurrent"}, "int16x8", StreamKind.RECURRENT_STEP) is None
    assert refusal({"recurrent"}, "int8", "batch") is None  # supported, with a note (unrolled)


@pytest.mark.parametrize("arch,expected", [("gru", {"recurrent"}), ("lstm", {"recurrent"}),
                                           ("transformer", {"attention", "layer-norm"})])
def test_families_of_zoo_models(arch, expected):
    from edgeseq.models.zoo import build_model
    from edgeseq.quantize.capabilities import families_of

    model = build_model(arch, "tiny", seq_len=8, num_features=4, num_outputs=3)
    assert families_of(model) == expected


def test_families_of_a_users_bidirectional_model():
    from edgeseq.quantize.capabilities import families_of

    inp = keras.Input((8, 4))
    x = keras.layers.Bidirectional(keras.layers.GRU(4))(inp)
    x = keras.layers.LayerNormalization()(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    assert families_of(model) == {"bidirectional", "recurrent", "layer-norm"}


def test_cli_lists_capabilities_as_json():
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "models", "--capabilities", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"schema": "edgeseq.models/1", "capabilities": rows()}


def test_convert_refuses_a_declared_limit_before_any_child_starts(tmp_path):
    from edgeseq.models.zoo import build_model

    path = tmp_path / "tr.keras"
    build_model("transformer", "tiny", seq_len=8, num_features=4, num_outputs=3).save(path)
    # Any conversion child would abort at once: the refusal must come from the table, not from a child.
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "convert", str(path), "--recipe", "int16x8",
                           "--calibration", "random", "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, EDGESEQ_TEST_CHILD_CRASH="1"))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not is_progress_line(ln)]
    assert proc.returncode == 3 and len(lines) == 1, proc.stderr
    assert refusal({"layer-norm"}, "int16x8", "batch").why in lines[0] and "crashed" not in lines[0]
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []
