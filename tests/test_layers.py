"""The tree's one direction of flow, checked from the code's own imports (module level and inside functions).

Layers, bottom to top (docs/ARCHITECTURE.md): foundation -> models -> quantize -> targets -> orchestration -> CLI.
A module may import its own layer or lower ones. The agent (the package edgeseq.targets.agent, every module of it)
imports nothing from edgeseq outside itself: it is pushed alone, as one zipapp. Host code may import it (the zipapp's
builder, edgeseq.targets.agent_build, only reads its files).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"toolkit": "edgeseq", "models": "edgeseq.models", "quantize": "edgeseq.quantize",
           "targets": "edgeseq.targets"}

FOUNDATION = {"edgeseq", "edgeseq.core", "edgeseq.datasets"}
CLI = {"edgeseq.cli", "edgeseq.commands"}
LAYERS = ["foundation", "models", "quantize", "targets", "orchestration", "cli"]
# The one deliberate sideways edge: host-side stream parity steps a .tflite with the agent's own stepper, so the
# host check and the device run share one definition.
ALLOWED = {("edgeseq.quantize.stream.child", "edgeseq.targets.agent")}
AGENT = "edgeseq.targets.agent"


def in_agent(module: str) -> bool:
    return module == AGENT or module.startswith(AGENT + ".")


def layer_of(module: str) -> str:
    def under(pkg: str) -> bool:
        return module == pkg or module.startswith(pkg + ".")

    if any(under(p) for p in CLI):
        return "cli"
    for pkg, layer in (("edgeseq.models", "models"), ("edgeseq.quantize", "quantize"),
                       ("edgeseq.targets", "targets")):
        if under(pkg):
            return layer
    if module in FOUNDATION or any(under(p) for p in FOUNDATION - {"edgeseq"}):
        return "foundation"
    return "orchestration"


def modules() -> dict[str, Path]:
    found = {}
    for folder, pkg in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([pkg, *parts])] = path
    return found


def imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every edgeseq module `path` imports, with its line; relative imports resolved."""
    out = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((base, node.lineno))
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return [(name, line) for name, line in out if name == "edgeseq" or name.startswith("edgeseq.")]


def violations() -> list[str]:
    mods = modules()
    bad = []
    for module, path in mods.items():
        src = layer_of(module)
        for target, line in imports(path, module):
            if target not in mods:  # `from edgeseq.x import name`: the name is not a module
                continue
            if in_agent(module):
                if not in_agent(target):
                    bad.append(f"{path.relative_to(REPO)}:{line}: the agent imports {target} (it must stay standalone)")
                continue
            dst = layer_of(target)
            if LAYERS.index(dst) > LAYERS.index(src) and (module, target) not in ALLOWED:
                bad.append(f"{path.relative_to(REPO)}:{line}: {module} ({src}) imports {target} ({dst})")
    return bad


def test_every_import_points_down_the_layers():
    bad = violations()
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_walk_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from edgeseq.cli import main\n    import edgeseq.store.results\n")
    assert [n for n, _ in imports(src, "edgeseq.core.errors")] == ["edgeseq.cli", "edgeseq.cli.main", "edgeseq.store.results"]
    assert layer_of("edgeseq.commands.convert") == "cli" and layer_of("edgeseq.datasets.npz") == "foundation"
    assert layer_of("edgeseq.quantize.convert") == "quantize" and layer_of("edgeseq.profiling.run") == "orchestration"


SOURCE_FOLDERS = ("toolkit", "models", "quantize", "targets")


def source_files() -> list[Path]:
    return sorted(p for folder in SOURCE_FOLDERS for p in (REPO / folder).rglob("*.py"))


def test_no_three_modules_of_one_folder_share_a_name_prefix():
    """Three `report_*.py` beside each other are a package waiting to be born (docs/ARCHITECTURE.md)."""
    by_prefix: dict[tuple[Path, str], list[str]] = {}
    for p in source_files():
        if p.name == "__init__.py" or "_" not in p.stem.strip("_"):
            continue
        by_prefix.setdefault((p.parent, p.stem.strip("_").split("_")[0]), []).append(p.name)
    crowded = {f"{folder.relative_to(REPO)}/{prefix}_*": names for (folder, prefix), names in by_prefix.items()
               if len(names) + (folder / f"{prefix}.py").exists() >= 3}
    assert not crowded, f"make these packages: {crowded}"


def test_every_module_has_its_line_in_the_architecture_doc():
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    missing = [str(p.relative_to(REPO)) for p in source_files()
               if p.name != "__init__.py" and p.parent.name != "commands" and f"`{p.relative_to(REPO)}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md has no line for: {missing}"


def test_every_agent_module_is_held_to_the_standalone_rule(tmp_path):
    mods = modules()
    agent = sorted(m for m in mods if in_agent(m))
    assert {"edgeseq.targets.agent", "edgeseq.targets.agent.cli", "edgeseq.targets.agent.streaming"} <= set(agent)
    assert not in_agent("edgeseq.targets.agent_build") and in_agent("edgeseq.targets.agent.memory")
    # a relative import inside the package resolves to the package; one reaching out of it is flagged
    src = tmp_path / "m.py"
    src.write_text("from .document import AgentError\nfrom ..runner import run_agent\n")
    names = [n for n, _ in imports(src, "edgeseq.targets.agent.cli")]
    assert "edgeseq.targets.agent.document" in names and "edgeseq.targets.runner" in names
    assert in_agent(names[0]) and not in_agent("edgeseq.targets.runner")


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(REPO)): n for p in source_files() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these modules (450 lines at most): {long}"
