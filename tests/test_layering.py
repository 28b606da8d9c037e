"""The house's rooms and their arrows, checked on the source itself.

``ROOMS`` is the whole diagram (docs/architecture.md draws it): every fcnkit module
belongs to exactly one room, and an import — a function-local one included — may only
point into its own room or into a room of strictly lower rank. The scan is an AST walk
over every ``import`` statement of ``src/fcnkit``; ``fcnkit.models`` is also imported in a
fresh interpreter to see what it really loads.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "fcnkit"

#: room -> (rank, the module-name patterns it holds). An import may point only into its
#: own room or to a strictly lower rank.
ROOMS: dict[str, tuple[int, tuple[str, ...]]] = {
    "cli": (8, ("fcnkit.cli", "fcnkit.cli.*", "fcnkit.__main__")),
    "web": (7, ("fcnkit.web", "fcnkit.web.*")),
    "reproduce": (7, ("fcnkit.reproduce", "fcnkit.reproduce.*")),
    "demo": (7, ("fcnkit.demo",)),
    "training": (6, ("fcnkit.training", "fcnkit.training.*")),
    "inference": (5, ("fcnkit.inference", "fcnkit.inference.*")),
    "runtime": (4, ("fcnkit.runtime", "fcnkit.runtime.*")),
    "viz": (4, ("fcnkit.viz", "fcnkit.viz.*")),
    "analysis": (4, ("fcnkit.analysis", "fcnkit.analysis.*")),
    "models": (3, ("fcnkit.models", "fcnkit.models.*")),
    "data": (3, ("fcnkit.data", "fcnkit.data.*")),
    "arith": (2, ("fcnkit.arith", "fcnkit.arith.*")),
    "limits": (1, ("fcnkit.limits",)),
    "metrics": (1, ("fcnkit.metrics",)),
    "atomic": (1, ("fcnkit.atomic",)),
    "outputs": (1, ("fcnkit.outputs",)),
    "schemas": (1, ("fcnkit.schemas",)),
    "jsonio": (0, ("fcnkit.jsonio",)),
    "errors": (0, ("fcnkit.errors",)),
    "constants": (0, ("fcnkit.constants",)),
    "package": (0, ("fcnkit",)),  # the root __init__: the version, nothing else
}

#: Imports between two rooms of the same rank that are allowed, one way each (so they
#: cannot form a cycle): reading JSON raises the error contract's InputError; a metric
#: bounds its own work with a limit. Any other same-rank import is refused.
SIBLING_IMPORTS: frozenset[tuple[str, str]] = frozenset({
    ("jsonio", "errors"),
    ("metrics", "limits"),
})

#: Functions allowed over MAX_FUNCTION_LINES because their body is one literal table
#: (qualified ``module:function``). None today.
LITERAL_TABLES: frozenset[str] = frozenset()
MAX_FUNCTION_LINES = 80

#: What a function-local import must say in a comment, on its own line or the line above:
#: an optional dependency (a module that may be absent) or a measured import-time cost
#: (e.g. the command line must not load torch before it knows the command needs it).
#: fcnkit writes ``# local: optional dependency (...)`` / ``# local: import cost (...)``.
LOCAL_REASON = re.compile(r"#.*\b(optional dependency|import cost)\b")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def rooms_of(module: str) -> list[str]:
    return [room for room, (_, patterns) in ROOMS.items()
            if any(fnmatch.fnmatchcase(module, p) for p in patterns)]


def _room(module: str) -> str:
    (room,) = rooms_of(module)
    return room


class _ImportScan(ast.NodeVisitor):
    """Every import statement of one module: (node, imported names, inside a function)."""

    def __init__(self) -> None:
        self.depth = 0
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.found.append((node, self.depth > 0))

    visit_ImportFrom = visit_Import


def _import_statements(name: str) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    scan = _ImportScan()
    scan.visit(TREES[name])
    return scan.found


def _targets(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute dotted names one statement imports (``from P import x`` gives P.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{a.name}" for a in node.names]


def _named_by_string(name: str) -> list[str]:
    """fcnkit modules named by a string constant (``importlib.import_module(...)``, a lazy
    name table such as fcnkit.data's): imported by name, so an edge too."""
    return [node.value for node in ast.walk(TREES[name])
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in MODULES]


def _imports(name: str) -> set[str]:
    """fcnkit modules ``name`` imports, function-local imports and modules imported by name
    included. ``from P import x`` counts as P.x when that is a module, else as P. Importing
    one's own parent package (``from fcnkit.arith import ...`` inside fcnkit.arith) is how
    a package's modules reach their siblings and is not an edge."""
    found: set[str] = set()
    by_string = _named_by_string(name)
    for target in by_string:
        if target != name and not name.startswith(target + "."):
            found.add(target)
    for node, _ in _import_statements(name):
        for target in _targets(name, node):
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
    assert "fcnkit.errors" in GRAPH["fcnkit.limits"]
    assert "fcnkit.data.voc" in GRAPH["fcnkit.data"]  # a lazy name table counts
    assert len(MODULES) > 30
    # a function-local import is an edge too
    local = [(n, t) for n in MODULES for node, inside in _import_statements(n) if inside
             for t in _targets(n, node) if t.startswith("fcnkit.")]
    assert local, "the scan found no function-local fcnkit import at all"
    assert all(_room(n) for n in MODULES)


def test_every_module_belongs_to_exactly_one_room():
    for name in MODULES:
        rooms = rooms_of(name)
        assert len(rooms) == 1, (
            f"{name} belongs to {rooms or 'no room'}: add it to exactly one room of ROOMS "
            "(and to docs/architecture.md)")


def test_imports_point_only_down_or_within_a_room():
    bad = []
    for name, targets in sorted(GRAPH.items()):
        room = _room(name)
        for target in sorted(targets):
            other = _room(target)
            if (room, other) in SIBLING_IMPORTS:
                continue
            if other != room and ROOMS[other][0] >= ROOMS[room][0]:
                bad.append(f"{name} ({room}, rank {ROOMS[room][0]}) imports {target} "
                           f"({other}, rank {ROOMS[other][0]})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


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


def test_sibling_imports_are_between_rooms_of_one_rank():
    for room, other in SIBLING_IMPORTS:
        assert ROOMS[room][0] == ROOMS[other][0], (room, other)
        assert (other, room) not in SIBLING_IMPORTS, (room, other)


def test_limits_imports_nothing_of_fcnkit_but_errors():
    assert GRAPH["fcnkit.limits"] <= {"fcnkit.errors"}, GRAPH["fcnkit.limits"]


def test_arith_never_imports_torch_not_even_inside_a_function():
    for name in MODULES:
        if _room(name) != "arith":
            continue
        for node, _ in _import_statements(name):
            heavy = [t for t in _targets(name, node)
                     if t.split(".")[0] in {"torch", "torchvision", "matplotlib", "PIL"}]
            assert not heavy, f"{name}:{node.lineno} imports {heavy}"


def test_a_function_local_import_says_why():
    """Consecutive local imports (blank lines between them allowed) form one block; the
    block's first line, or the line above it, has a comment saying ``optional dependency``
    or ``import cost`` (:data:`LOCAL_REASON`)."""
    bad = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        statements = _import_statements(name)
        ends = {node.end_lineno for node, inside in statements if inside}
        for node, inside in statements:
            above = node.lineno - 1
            while above > 0 and not lines[above - 1].strip():
                above -= 1  # blank lines between import groups stay in the block
            if not inside or above in ends:
                continue  # covered by the statement just above it (same block)
            first = lines[node.lineno - 1]
            said = [first] + ([lines[node.lineno - 2]] if node.lineno > 1 else [])
            if not any(LOCAL_REASON.search(line) for line in said):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}: {first.strip()}")
    assert not bad, ("function-local imports without a comment saying '# local: optional "
                     "dependency' or '# local: import cost' (import at the top of the module "
                     "instead):\n"
                     + "\n".join(bad))


def test_no_function_is_over_80_lines():
    long = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{name}:{node.name}" not in LITERAL_TABLES:
                    long.append(f"{name}:{node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(sorted(long))}"


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
