"""Helpers shared by the subcommands: one-line argument errors, H,W parsing, output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def dims(text: str) -> int | tuple[int, ...]:
    """argparse ``type=`` for a size or geometry: ``"5"`` → 5, ``"375,500"`` → (375, 500)."""
    parts = [p.strip() for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or comma-separated integers like 375,500, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return values[0] if len(values) == 1 else values


def int_list(text: str) -> list[int]:
    """argparse ``type=`` for a comma-separated list of integers: ``"1,2,5"`` → [1, 2, 5]."""
    try:
        values = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 1,2,5, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def print_json(obj: Any) -> None:
    """Print one strict JSON document to stdout (NaN/inf → null; :mod:`fcnkit.jsonio`)."""
    from fcnkit.jsonio import dumps_strict

    print(dumps_strict(obj, indent=2))


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table: columns left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    numeric = [
        all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), sep, *(line(r) for r in cells)])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value)
    return str(value)


def warn(message: str) -> None:
    print(f"fcnkit: warning: {message}", file=sys.stderr)
