"""The README's first hour, run verbatim: every command of its first-hour block, in a fresh folder, each printing one
JSON object that parses (and carries its verb's schema)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def block(name: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- example:{name} -->\n```\w*\n(.*?)```\n<!-- /example:{name} -->", text, re.S)
    assert m, f"README.md lost its {name} block"
    return [ln.split("  #")[0].strip() for ln in m[1].splitlines() if ln.strip() and not ln.startswith("#")]


def test_the_first_hour_block_is_the_promised_line():
    lines = block("first-hour")
    verbs = [ln.split()[1] for ln in lines]
    assert all(ln.startswith("edgeseq ") and ln.endswith("--json") for ln in lines)
    assert {"train", "convert", "inspect", "evaluate", "profile", "report", "recommend"} <= set(verbs)
    assert any("--stream" in ln and ln.startswith("edgeseq profile") for ln in lines)


@pytest.mark.slow
def test_the_first_hour_runs_verbatim(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for line in block("first-hour"):
        proc = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        verb = line.split()[1]
        assert proc.returncode in ((0, 8) if verb == "recommend" else (0,)), f"{line}\n{proc.stderr[-3000:]}"
        data = json.loads(proc.stdout)
        assert data["schema"].startswith(f"edgeseq.{verb}/"), (line, data["schema"])
        if verb == "profile" and "--stream" in line:  # what a stream run measured, per step, against the hop
            s = data["runs"][0]["stream"]
            assert s["kind"] == "recurrent-step" and s["hop_ms"] == 10 and 0 < s["real_time_factor"] < 1
            assert s["invoke_p50_us"] <= s["step_p50_us"] and s["deadline_met_share"] == 1.0
    assert (tmp_path / "artifacts" / "gru-tiny-int8.tflite").is_file() and (tmp_path / ".edgeseq" / "results.db").is_file()


def test_the_nothing_found_table_says_what_the_commands_do(tmp_path):
    text = (REPO / "README.md").read_text()
    table = re.search(r"<!-- example:nothing-found -->\n(.*?)<!-- /example:nothing-found -->", text, re.S)[1]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table.splitlines()[2:] if ln.startswith("|")]
    ran = 0
    env = dict(os.environ, EDGESEQ_TARGETS_FILE=str(tmp_path / "targets.toml"))
    for case, code, _, command in rows:
        if not command:
            continue
        argv = command.strip("`").split()
        assert argv[0] == "edgeseq"
        proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == int(code), (case, proc.stderr)
        ran += 1
    assert ran >= 2
    from edgeseq.core.errors import NothingFound

    assert any(int(code) == NothingFound.exit_code and "recommend" in case for case, code, _, _ in rows)
