"""Every public symbol of the documented packages has a docstring (the API reference site
is generated from them, see mkdocs.yml).

Public: each name in a module's ``__all__`` that is a function or a class (checked where it
is defined), or, for a module without ``__all__``, every top-level ``def``/``class`` whose
name does not start with an underscore. Each module needs a docstring too. Docstrings are
read from the source (``ast``), so a dataclass's generated ``__doc__`` does not count.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import fcnkit

PACKAGES = ["fcnkit.arith", "fcnkit.models", "fcnkit.data", "fcnkit.metrics",
            "fcnkit.training", "fcnkit.inference", "fcnkit.runtime"]
SRC = Path(fcnkit.__file__).resolve().parent


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        if hasattr(module, "__path__"):
            names += [info.name for info in pkgutil.iter_modules(module.__path__, package + ".")]
    return sorted(names)


def _tree(module_name: str) -> ast.Module:
    module = importlib.import_module(module_name)
    return ast.parse(Path(inspect.getsourcefile(module)).read_text(encoding="utf-8"))


def _documented_defs(tree: ast.Module) -> dict[str, bool]:
    return {node.name: ast.get_docstring(node) is not None for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def test_the_packages_are_found() -> None:
    modules = _modules()
    assert "fcnkit.arith.sizes" in modules and "fcnkit.training.loop" in modules
    assert len(modules) > 40


@pytest.mark.parametrize("module_name", _modules())
def test_public_symbols_have_docstrings(module_name: str) -> None:
    module = importlib.import_module(module_name)
    tree = _tree(module_name)
    assert ast.get_docstring(tree), f"{module_name} has no module docstring"
    missing = []
    if hasattr(module, "__all__"):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants carry no docstring of their own
            home = inspect.getmodule(obj)
            if home is None or not home.__name__.startswith("fcnkit"):
                continue
            defs = _documented_defs(_tree(home.__name__))
            if not defs.get(obj.__name__, True):
                missing.append(f"{home.__name__}.{obj.__name__}")
    else:
        missing = [f"{module_name}.{name}" for name, documented in
                   _documented_defs(tree).items() if not name.startswith("_") and not documented]
    assert not missing, "public symbols without a docstring: " + ", ".join(missing)
