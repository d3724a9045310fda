"""One source per rule: help texts, README tables and hints that state a rule must say what the code applies.

Each rule is either generated from the code that applies it (the README blocks by scripts/readme_tables.py, the
option help by the owning module's summary function) and checked here against an independent reading of that code,
or parsed out of the text and compared with the code. Every test here fails when text and code drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from edgeseq.cli import COMMANDS, cli
from edgeseq.core.errors import EXIT_TERMINATED, InputError, exit_codes
from edgeseq.quantize import granularity, rnn_routes
from edgeseq.quantize.capabilities import TABLE
from edgeseq.quantize.recipes import (
    DEFAULT_CALIBRATION_SAMPLES,
    GRANULARITIES,
    IO_DTYPES,
    MODES,
    RNN_STRATEGIES,
    Recipe,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIX = "run `.venv/bin/python scripts/readme_tables.py` (it rewrites the README's generated blocks from the code)"


def _tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _tables()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _command(name: str) -> click.Command:
    return cli.get_command(click.Context(cli), name)


def _option(command: str, name: str) -> click.Option:
    return next(p for p in _command(command).params if isinstance(p, click.Option) and name in p.opts)


def _help(command: str, name: str) -> str:
    return _flat(_option(command, name).help)


# ---------------------------------------------------------------- README blocks generated from the code
@pytest.mark.parametrize("name", sorted(tables.BLOCKS))
def test_readme_block_is_what_the_code_says(name):
    text = README.read_text(encoding="utf-8")
    have, want = tables.block_text(text, name), tables.block_text(tables.render(text), name)
    diff = "\n".join(difflib.unified_diff(have.splitlines(), want.splitlines(), "README.md", "the code", lineterm="",
                                          n=0))
    assert have == want, f"README.md block '{name}' differs from the code; {FIX}\n{diff[:3000]}"


def test_readme_tables_check_mode_finds_and_fixes_a_stale_block(tmp_path):
    stale = tmp_path / "README.md"
    text = README.read_text(encoding="utf-8")
    stale.write_text(text.replace("| 3 | conversion", "| 9 | conversion"), encoding="utf-8")
    assert tables.main(["--check", "--readme", str(stale)]) == 1
    assert tables.main(["--readme", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == text
    assert tables.main(["--check", "--readme", str(stale)]) == 0


# ---------------------------------------------------------------- RNN routes (quantize/rnn_routes.py plan)
def _segments(summary: str) -> dict[str, str]:
    """'auto: a/b: X; c: Y.' -> {'a': 'X', 'b': 'X', 'c': 'Y'}."""
    body = summary.split(". Manifest:")[0].removeprefix("auto: ")
    out = {}
    for part in body.split("; "):
        head, text = part.split(": ", 1)
        out.update(dict.fromkeys(head.split("/"), text))
    return out


def test_rnn_strategy_help_states_the_order_plan_uses():
    """`convert --help` names, per recipe, exactly the routes plan() tries, in plan()'s order (the first known drift:
    the help said fused before loop while plan tries loop first)."""
    segments = _segments(_help("convert", "--rnn-strategy"))
    assert set(segments) == set(MODES), segments
    for mode in MODES:
        routes = rnn_routes.plan(mode, "auto", True, {"lstm_fusable": True}).routes
        said = segments[mode]
        found = sorted((said.find(rnn_routes.ROUTE_WORDS[r]), r) for r in rnn_routes.ROUTES
                       if rnn_routes.ROUTE_WORDS[r] in said)
        assert tuple(r for _, r in found) == routes, f"--rnn-strategy help for {mode}: {said!r}, plan: {routes}"


def test_rnn_strategy_choices_are_the_routes():
    assert tuple(_option("convert", "--rnn-strategy").type.choices) == RNN_STRATEGIES == ("auto", *rnn_routes.ROUTES)


def test_recurrent_capabilities_state_the_order_plan_uses():
    why = {c.recipe: c.why for c in TABLE if c.family == "recurrent" and c.form == "batch"}
    int8 = re.search(r"auto tries (.+?), keeping", why["int8"])[1]
    assert tuple(part.split(" (")[0] for part in int8.split(", then ")) == \
        rnn_routes.plan("int8", "auto", True, {"lstm_fusable": True}).routes
    int16 = rnn_routes.plan("int16x8", "auto", True, {"lstm_fusable": True})
    assert f"by {rnn_routes.ROUTE_WORDS[int16.routes[0]]} only" in why["int16x8"] and len(int16.routes) == 1
    for route in int16.skipped:
        assert rnn_routes.ROUTE_WORDS[route] in why["int16x8"]


# ---------------------------------------------------------------- recipes, granularity (quantize/recipes.py, granularity.py)
def test_recipe_help_lists_the_modes_and_a_real_slug():
    said = _help("convert", "--recipe")
    listed = re.match(r"Comma-separated: (.+?) \(slugs like (\S+) work too\)", said)
    assert listed, said
    assert tuple(listed[1].split(", ")) == MODES
    assert Recipe.from_dict({"mode": "int8"}).slug != listed[2]  # the example names more than the mode
    from edgeseq.quantize.recipes import get_recipe

    assert get_recipe(listed[2]).slug == listed[2]


def test_option_choices_and_defaults_come_from_recipes():
    assert tuple(_option("convert", "--io").type.choices) == IO_DTYPES
    assert tuple(_option("convert", "--granularity").type.choices) == GRANULARITIES
    option = _option("convert", "--calibration-samples")
    assert option.default == DEFAULT_CALIBRATION_SAMPLES and option.show_default  # shown as click's [default: N]
    readme = re.findall(r"`--calibration-samples N` \(default (\d+)\)", README.read_text(encoding="utf-8"))
    assert readme and {int(n) for n in readme} == {DEFAULT_CALIBRATION_SAMPLES}, readme


def test_granularity_help_states_the_rule_the_code_applies():
    said = _help("convert", "--granularity")
    compared = re.search(r"elsewhere (\S+) convert both", said)
    assert compared and compared[1].split("/") == [m for m in MODES if Recipe(m).compares_granularity("loop")]
    assert "per tensor on unrolled graphs" in said and not any(Recipe(m).per_channel_for("unroll") for m in MODES)
    figures = {name: float(v) for name, v in
               re.findall(r"(accuracy|MSE|top-1 agreement|mean \|diff\|) [-+]([\d.]+) (?:pt|%)", said)}
    assert figures == {"accuracy": granularity.ACCURACY_TOL * 100, "MSE": granularity.MSE_TOL_REL * 100,
                       "top-1 agreement": granularity.AGREEMENT_TOL * 100,
                       "mean |diff|": granularity.DIFF_TOL_REL * 100}, said
    rule = granularity.GRANULARITY_RULE
    assert f"accuracy at most {granularity.ACCURACY_TOL * 100:g} pt lower" in rule
    assert f"MSE at most {granularity.MSE_TOL_REL * 100:g} % higher" in rule


# ---------------------------------------------------------------- README option lists and exit codes
def _choices_by_option() -> dict[str, set[tuple[str, ...]]]:
    """--option -> the value lists any command accepts for it (click.Choice, or a metavar like a|b|c)."""
    out: dict[str, set[tuple[str, ...]]] = {}

    def walk(command: click.Command) -> None:
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            if isinstance(param.type, click.Choice):
                values = tuple(param.type.choices)
            elif param.metavar and "|" in param.metavar:
                values = tuple(param.metavar.split("|"))
            else:
                continue
            for opt in param.opts:
                out.setdefault(opt, set()).add(values)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    for name in COMMANDS:
        walk(_command(name))
    return out


def test_readme_option_value_lists_match_the_commands():
    """Every `--option a|b|c` in the README lists exactly the values the option takes, in its order."""
    choices = _choices_by_option()
    text = README.read_text(encoding="utf-8")
    found = re.findall(r"`(--[a-z-]+) ([A-Za-z0-9_-]+(?:\|[A-Za-z0-9_-]+)+)`", text)
    assert ("--rnn-strategy", "|".join(RNN_STRATEGIES)) in found  # the check reads the README at all
    for option, listed in found:
        if option in choices:
            assert tuple(listed.split("|")) in choices[option], \
                f"README says `{option} {listed}`, the command takes {sorted(choices[option])}"


def test_exit_codes_in_help_and_readme_are_the_codes_the_cli_uses():
    codes = {code for code, _, _ in exit_codes()}
    proc = subprocess.run([sys.executable, "-m", "edgeseq.cli", "--help"], capture_output=True, text=True, timeout=60)
    listed = re.search(r"Exit codes: (.+?)\.\s*$", proc.stdout, re.S)
    assert listed, proc.stdout
    assert {int(n) for n in re.findall(r"(?:^|, )(\d+) ", _flat(listed[1]))} == codes | {0}
    text = README.read_text(encoding="utf-8")
    mentioned = {int(n) for n in re.findall(r"\bexits? (\d+)\b", text)}
    assert mentioned and mentioned <= codes, f"README names exit codes {sorted(mentioned - codes)} no error has"
    # the table says usage errors share bad input's code, and that SIGTERM's is the CLI's
    assert click.UsageError.exit_code == InputError.exit_code
    from edgeseq.core.fsio.childproc import Terminated

    assert Terminated.exit_code == EXIT_TERMINATED


# ---------------------------------------------------------------- other commands' help (zoo, sweep)
def test_train_help_lists_the_zoo():
    from edgeseq.models.backend import BACKENDS
    from edgeseq.models.config import PRESET_CONFIGS
    from edgeseq.models.zoo import ARCH_NAMES, VARIANTS

    archs = list(_option("train", "--arch").type.choices)
    assert archs == list(ARCH_NAMES) and [a for a in archs if a not in VARIANTS] == list(PRESET_CONFIGS)
    presets = _help("train", "--preset").removeprefix("Size preset: ").rstrip(".").split(", ")
    assert all(set(presets) == set(p) for p in PRESET_CONFIGS.values())
    assert _option("train", "--backend").metavar.split("|") == list(BACKENDS)


def test_sweep_help_defaults_are_the_spec_defaults():
    from edgeseq.sweep.grid import _FIELDS, SWEEP_ARCHS, SweepSpec

    defaults = {f.name: f.default for f in dataclasses.fields(SweepSpec)}
    checked = 0
    for param in _command("sweep").params:
        said = param.show_default if isinstance(param, click.Option) else None
        if not isinstance(said, str) or param.name.replace("-", "_") not in _FIELDS:
            continue
        value = defaults[_FIELDS[param.name][0]]
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        assert said == shown, f"sweep --help says {param.opts[0]} defaults to [{said}], SweepSpec: {shown}"
        checked += 1
    assert checked >= 10
    listed = re.search(r"Architectures: (.+?)\.$", _help("sweep", "--arch"))[1].split(", ")
    assert tuple(listed) == SWEEP_ARCHS


# ---------------------------------------------------------------- generated help stays cheap
# train's module imports numpy through edgeseq.models.run_dir (not for its help): only TensorFlow is held there
@pytest.mark.parametrize("argv, heavy", [(["--help"], ("tensorflow", "keras", "numpy")),
                                         (["convert", "--help"], ("tensorflow", "keras", "numpy")),
                                         (["train", "--help"], ("tensorflow", "keras"))])
def test_generated_help_imports_no_tensorflow(argv, heavy):
    """The help is built from the rule modules without TensorFlow or Keras, and `edgeseq --help` and `convert
    --help` without numpy either (`-X importtime` lists every module a process imports)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "edgeseq.cli", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    found = sorted(m for m in imported if m.split(".")[0] in heavy)
    assert not found, f"edgeseq {' '.join(argv)} imported {found[:10]}"
