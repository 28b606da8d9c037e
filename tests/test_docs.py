"""Examples in the README and docs/ must run.

Every ```python block is executed (blocks of one file share a namespace, in order). Shell
blocks are read line by line: `fcnkit` commands of the fast, data-free subcommands are run
in-process in a temporary directory and must exit 0 (`animate` ones in the slow tier: each
renders a GIF). Slow commands (training, demo) are exercised by their own end-to-end tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fcnkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
FAST_COMMANDS = {"conv", "gridding", "animate"}


def _blocks(path: Path, languages: set[str]) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(path.read_text()) if m.group(1) in languages]


#: Docs whose Python examples take seconds (they evaluate a model): slow tier.
SLOW_PYTHON_DOCS = {"evaluation.md"}


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name, marks=[pytest.mark.slow]
                                               if p.name in SLOW_PYTHON_DOCS else [])
                                  for p in DOC_FILES])
def test_python_examples_run(path: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_example__"}
    for block in _blocks(path, {"python"}):
        exec(compile(block, f"{path.name}:python-block", "exec"), namespace)


def _fast_cli_lines(path: Path) -> list[list[str]]:
    lines = []
    for block in _blocks(path, {"bash", "sh", "console"}):
        joined = re.sub(r"\\\n\s*", " ", block)  # shell line continuations
        for raw in joined.splitlines():
            line = raw.strip().removeprefix("$ ")
            if not line.startswith("fcnkit "):
                continue
            argv = shlex.split(line, comments=True)[1:]
            if argv and argv[0] in FAST_COMMANDS:
                lines.append(argv)
    return lines


#: `animate` examples render GIFs (seconds each): slow tier.
CLI_CASES = [pytest.param(p, argv, id=f"{p.name}:{' '.join(argv)[:40]}",
                          marks=[pytest.mark.slow] if argv[0] == "animate" else [])
             for p in DOC_FILES for argv in _fast_cli_lines(p)]


@pytest.mark.parametrize("path,argv", CLI_CASES)
def test_cli_examples_run(path: Path, argv: list[str], tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0, f"{path.name}: `fcnkit {' '.join(argv)}` failed"
