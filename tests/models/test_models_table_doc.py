"""The ``fcnkit models`` table printed in docs/models.md is what the command prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fcnkit.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _doc_rows() -> tuple[list[str], list[list[str]]]:
    """The command line above the table and the table's body rows (cells stripped)."""
    text = DOC.read_text()
    match = re.search(r"^\$ (fcnkit models[^\n]*)\n```\n\n((?:\|[^\n]*\|\n)+)", text, re.M)
    assert match, "docs/models.md: no `$ fcnkit models ...` block followed by a table"
    lines = match.group(2).strip().splitlines()[2:]  # drop header and |---| rule
    return match.group(1).split()[1:], [[c.strip() for c in ln.strip("|").split("|")]
                                         for ln in lines]


@pytest.mark.slow
def test_models_table_in_the_docs_is_the_command_output(capsys):
    argv, doc_rows = _doc_rows()
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()[3:]  # title, header, rule
    rows = [re.split(r"\s{2,}", line.strip()) for line in printed if line.strip()]
    assert len(doc_rows) >= 10 and rows == doc_rows
