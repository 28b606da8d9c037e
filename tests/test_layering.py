"""The house's arrows point down: cli → engine → models, data, metrics, viz → arith.

Checked on the source itself (an AST scan of every ``import``, including imports inside
functions) and, for ``fcnkit.models``, by importing it in a fresh interpreter.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fcnkit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """fcnkit modules ``name`` imports (``from P import x`` counts as P.x when that is a
    module). Importing one's own parent package (``from fcnkit.arith import ...`` inside
    fcnkit.arith) is how a package's modules reach their siblings and is not an edge."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        for target in targets:
            while target and target not in MODULES:  # fcnkit.arith.sizes.as_pair → module
                target = target.rpartition(".")[0]
            if target.startswith("fcnkit") and target != name \
                    and not name.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def test_the_scan_sees_the_imports_it_should():
    # a failing scan must not pass the tests below vacuously
    assert "fcnkit.arith" in GRAPH["fcnkit.models.fcn"]
    assert "fcnkit.models" in GRAPH["fcnkit.analysis"]
    assert len(MODULES) > 30


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_models_and_arith_import_nothing_above_them():
    above = ("fcnkit.analysis", "fcnkit.training", "fcnkit.inference", "fcnkit.runtime",
             "fcnkit.demo", "fcnkit.cli", "fcnkit.data", "fcnkit.viz")
    for name, targets in GRAPH.items():
        if name.startswith(("fcnkit.models", "fcnkit.arith")):
            bad = sorted(t for t in targets if t.startswith(above))
            assert not bad, f"{name} imports {bad}"
        if name.startswith("fcnkit.arith"):
            bad = sorted(t for t in targets if t.startswith("fcnkit.models"))
            assert not bad, f"{name} imports {bad}"


def test_no_cli_command_imports_another():
    helpers = {"fcnkit.cli", "fcnkit.cli._common"}
    commands = {n for n in MODULES if n.startswith("fcnkit.cli.") and n not in helpers}
    for name in sorted(commands):
        other = sorted(GRAPH[name] & commands)
        assert not other, f"{name} imports the command module(s) {other}"


def test_importing_models_loads_no_analysis_engine_or_cli(fresh_check):
    # In a fresh interpreter (tests/fresh_interpreter.py): import fcnkit.models.
    loaded = fresh_check("check_models_imports")[0]["fcnkit"]
    assert "fcnkit.models.fcn" in loaded
    bad = [m for m in loaded if m.startswith(("fcnkit.analysis", "fcnkit.training",
                                              "fcnkit.inference", "fcnkit.runtime",
                                              "fcnkit.demo", "fcnkit.cli"))]
    assert not bad, f"import fcnkit.models loads {bad}"
