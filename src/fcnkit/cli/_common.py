"""Helpers shared by the subcommands: one-line argument errors, argument types, output.

The argument types (``type=`` converters) check a value with the library's own check and
turn its :class:`~fcnkit.errors.InputError` into an argparse error, so a bad option is
reported as ``fcnkit CMD: error: argument --NAME: ...`` before any work starts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from fcnkit.errors import InputError


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


def _checked(convert: Callable[[str], Any], check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type: ``check(convert(text))``, an InputError becoming an argparse error."""

    def parse(text: str) -> Any:
        try:
            return check(convert(text))
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _at_least(minimum: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < minimum:
            raise InputError(f"expected an integer >= {minimum}, got {value}")
        return value

    return check


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"expected a number, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse ``type=`` for a count that must be at least 1 (batch size, pixels)."""
    return _checked(_integer, _at_least(1))(text)


def non_negative_int(text: str) -> int:
    """argparse ``type=`` for a count that may be 0 (DataLoader workers)."""
    return _checked(_integer, _at_least(0))(text)


def overlap(text: str) -> float:
    """argparse ``type=`` for a tiling overlap: a fraction in [0, 1) (arith.tiling's check)."""
    from fcnkit.arith.tiling import check_overlap

    return _checked(_float, check_overlap)(text)


def window(text: str) -> tuple[int, int]:
    """argparse ``type=`` for a tile size: ``"512"`` → (512, 512), ``"320,480"`` → (320, 480)."""
    from fcnkit.arith.sizes import as_pair

    return _checked(dims, lambda value: as_pair(value, "window", minimum=1))(text)


def device(text: str) -> Any:
    """argparse ``type=`` for a torch device usable here: cpu, cuda, cuda:N (imports torch)."""
    from fcnkit.engine.inference import resolve_device

    return _checked(str, resolve_device)(text)


def print_json(obj: Any) -> None:
    """Print one JSON object (numpy/tuple values converted) to stdout."""
    print(json.dumps(obj, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
