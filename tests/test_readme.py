"""The README, checked against the CLI: its first hour run verbatim (every command of its first-hour block, in a fresh
folder, each printing one JSON object that parses and carries its verb's schema), its nothing-found table run, every
`edgeseq ...` line of its code blocks (and of docs/*.md) parsed by the real commands, and the fast ones run."""

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


# ---------------------------------------------------------------- every `edgeseq ...` line of the README, against the CLI
PLACEHOLDER = "..."  # `edgeseq sweep ... --dry-run`: "the same options as above"
DOWNLOADED = {"fsdd"}  # registered data sets that are not bundled: `datasets show` on them needs the network


def readme_commands(text: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line number, the line as written, argv after `edgeseq`) for every `edgeseq ...` command in a fenced block of
    README.md (or of `text`).

    A `\\` at the end of a line continues the command; `# ...` after whitespace is a comment; `VAR=value` words before
    `edgeseq` are the environment. `[--opt VALUE]` is written as optional: the brackets are dropped and the option
    checked like any other."""
    lines = (REPO / "README.md").read_text().splitlines() if text is None else text.splitlines()
    out, fenced, i = [], False, 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            continue
        written = line.strip()
        while written.endswith("\\") and i < len(lines):
            written = written[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        words = re.split(r"\s+#", written)[0].split()
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
            words = words[1:]
        if words and Path(words[0]).name == "edgeseq":
            out.append((number, written, [w.strip("[]") for w in words[1:] if w.strip("[]")]))
    return out


def _leaf(argv: list[str]):
    """(command path, the leaf click command, its own words, problems) for argv after `edgeseq`."""
    import click

    from edgeseq.cli import cli

    command, path, words, problems = cli, [], list(argv), []
    while isinstance(command, click.Group):
        if not words or words[0].startswith("-"):
            break
        sub = command.get_command(click.Context(command), words[0])
        if sub is None:
            problems.append(f"`edgeseq {' '.join(path + [words[0]])}`: no such command")
            return path, None, words, problems
        path.append(words.pop(0))
        command = sub
    return path, command, words, problems


def check_command(argv: list[str]) -> list[str]:
    """What is wrong with `edgeseq ARGV` for the real CLI: an unknown verb or subcommand, an option the command does
    not have (or an old spelling CONCEPTS keeps only as an alias), a value outside an option's choices, int8 without
    data, or anything click's own parser refuses."""
    import click

    from edgeseq.commands._options import CONCEPTS

    path, command, words, problems = _leaf(argv)
    if command is None:
        return problems
    verb = " ".join(path)
    options = {o: p for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    aliases = {a: flag for flag, by_verb, _ in CONCEPTS.values() for a in by_verb.get(verb, ())}
    given: dict[str, str] = {}
    j = 0
    while j < len(words):
        word = words[j]
        j += 1
        if not word.startswith("-") or word == "-" or re.fullmatch(r"-\d[\d.]*", word):
            continue
        name, _, value = word.partition("=")
        if name in ("--help", "-h"):
            continue
        if name not in options:
            problems.append(f"`edgeseq {verb}` has no option {name}")
            continue
        if name in aliases:
            problems.append(f"`edgeseq {verb}`: {name} is an old spelling kept as an alias; write {aliases[name]}")
        param = options[name]
        if not (param.is_flag or param.count) and not value and j < len(words):
            value = words[j]
            j += 1
        given[options[name].name] = value
        if isinstance(param.type, click.Choice) and value and value != PLACEHOLDER:
            bad = [v for v in value.split("|") if v not in param.type.choices]
            if bad:
                problems.append(f"`edgeseq {verb} {name}` takes {list(param.type.choices)}, not {bad}")
    if path == ["convert"]:
        needs = {"int8", "int16x8"} & set(re.split(r"[,|]", given.get("recipes", "")))
        if needs and not given.get("dataset"):
            problems.append(f"`edgeseq convert --recipe` {sorted(needs)} needs --dataset (or --dataset random)")
    if not problems and PLACEHOLDER not in words and not {"--help", "-h"} & set(words):
        args = [w.split("|")[0] for w in words]  # `md|csv|json`: any of them; the first stands for all
        try:
            command.make_context(" ".join(["edgeseq", *path]), args, resilient_parsing=False)
        except click.ClickException as exc:
            problems.append(f"click refuses it: {exc.format_message()}")
    return problems


def test_every_readme_command_is_one_the_cli_takes():
    commands = readme_commands()
    assert len(commands) >= 40, f"found only {len(commands)} `edgeseq ...` lines in README.md's code blocks"
    drift = [f"README.md:{n}: {line}\n    {p}" for n, line, argv in commands for p in check_command(argv)]
    for page in sorted((REPO / "docs").glob("*.md")):  # the pages the README links to show commands too
        drift += [f"docs/{page.name}:{n}: {line}\n    {p}" for n, line, argv in readme_commands(page.read_text())
                  for p in check_command(argv)]
    assert not drift, "README and docs commands the CLI does not take:\n" + "\n".join(drift)
    from edgeseq.cli import COMMANDS

    shown = {argv[0] for _, _, argv in commands if argv}
    assert shown == set(COMMANDS), f"verbs the README never shows: {sorted(set(COMMANDS) - shown)}"


def test_the_command_check_catches_drift():
    """The check above can fail: renamed options, aliases, unknown verbs, bad choices, int8 without data."""
    drifted = "```\n" + "\n".join([
        "edgeseq train --model gru --dataset japanese_vowels",            # alias kept for old scripts
        "edgeseq convert m.keras --recipe fp32,int8 --out artifacts/",   # int8 without data
        "edgeseq convert m.keras \\\n   --calibrate japanese_vowels",      # no such option, on a continued line
        "edgeseq benchmark m.tflite   # a verb that does not exist",
        "edgeseq targets frobnicate pi4",
        "edgeseq report --format md|pdf",
        "edgeseq profile a.tflite --runs many",                           # click's own parser: not an int
    ]) + "\n```\n"
    found = readme_commands(drifted)
    assert [n for n, _, _ in found] == [2, 3, 4, 6, 7, 8, 9]
    assert all(check_command(argv) for _, _, argv in found), [(line, check_command(a)) for _, line, a in found]


def _edgeseq(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGESEQ_TARGETS_FILE=str(cwd / "targets.toml"), EDGESEQ_CACHE_DIR=str(cwd / "cache"))
    return subprocess.run([sys.executable, "-m", "edgeseq.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_fast_readme_commands_run(tmp_path):
    """The README's commands that neither train nor convert, run as written (a tiny .tflite stands in for the file
    an `inspect` line names), and `--help` of every command the README shows: each exits 0."""
    from _tiny_tflite import dense_model

    from edgeseq.datasets import REGISTRY

    tiny = tmp_path / "tiny-fp32.tflite"
    tiny.write_bytes(dense_model())
    ran, helped = [], set()
    for number, line, argv in readme_commands():
        path, command, words, _ = _leaf(argv)
        helped.add(tuple(path))
        if PLACEHOLDER in words:
            continue
        words = [w.split("|")[0] for w in words]
        if path in (["models"], ["datasets"]) or {"--help", "-h"} & set(words):
            pass
        elif path == ["datasets", "show"] and words[0].split(":")[0] in REGISTRY.keys() - DOWNLOADED:
            pass
        elif path == ["inspect"]:
            words = [str(tiny) if w.endswith(".tflite") else w for w in words]
        else:
            continue
        proc = _edgeseq([*path, *words], tmp_path)
        assert proc.returncode == 0, f"README.md:{number}: {line}\n{proc.stderr[-2000:]}"
        ran.append(path)
    assert ["models"] in ran and ["datasets", "show"] in ran and ["inspect"] in ran, ran
    for path in sorted(helped):
        proc = _edgeseq([*path, "--help"], tmp_path)
        assert proc.returncode == 0 and "Usage:" in proc.stdout, (path, proc.stderr[-2000:])
