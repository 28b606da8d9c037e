"""Helpers shared by the subcommands: one-line argument errors, argument types, output.

The argument types (``type=`` converters) check a value with the library's own check and
turn its :class:`~fcnkit.errors.InputError` into an argparse error, so a bad option is
reported as ``fcnkit CMD: error: argument --NAME: ...`` before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fcnkit.arith.sizes import as_pair
from fcnkit.arith.tiling import check_overlap
from fcnkit.errors import InputError
from fcnkit.inference.tiling import DEFAULT_MAX_PIXELS, DEFAULT_OVERLAP
from fcnkit.jsonio import dumps_strict
from fcnkit.runtime.precision import BACKENDS, LAYOUTS, PRECISIONS
from fcnkit.training.config import INTEGER_FIELDS, RANGES


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
    _fits_a_machine_word(values, text)
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
    _fits_a_machine_word(values, text)
    return values


def _fits_a_machine_word(values: Sequence[int], text: str) -> None:
    """Refuse integers beyond a C ``int64``: numpy and torch cannot hold them, and arithmetic
    on them would raise OverflowError deep inside a computation instead of this one line."""
    if any(abs(v) > MAX_COUNT for v in values):
        raise argparse.ArgumentTypeError(f"expected integers up to {MAX_COUNT}, got {text!r}")


def _checked(convert: Callable[[str], Any], check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type: ``check(convert(text))``, an InputError becoming an argparse error."""

    def parse(text: str) -> Any:
        try:
            return check(convert(text))
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


#: Largest count any option takes: what a C ``ssize_t`` holds. Python ints are unbounded,
#: but a count handed to the standard library or torch (``itertools.islice``, thread
#: counts, tensor sizes) must fit a machine word.
MAX_COUNT = 2**63 - 1


def _at_least(minimum: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < minimum:
            raise InputError(f"expected an integer >= {minimum}, got {value}")
        if value > MAX_COUNT:
            raise InputError(f"expected an integer up to {MAX_COUNT}, got {value}")
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


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer in [low, high] (refuses absurd values up front)."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise InputError(f"expected an integer from {low} to {high}, got {value}")
        return value

    return _checked(_integer, check)


def float_in(low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite number in [low, high] (``*_open``: bound excluded).

    NaN and infinities are refused by name: ``float("nan")`` would otherwise pass every
    comparison-based check unnoticed.
    """
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def check(value: float) -> float:
        if not math.isfinite(value):
            raise InputError(f"expected a finite number, got {value}")
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if below or above:
            raise InputError(f"expected a number in {left}{low:g}, {high:g}{right}, got {value:g}")
        return value

    return _checked(_float, check)


def float_pair_in(low: float, high: float) -> Callable[[str], tuple[float, float]]:
    """An argparse ``type=`` for ``MIN,MAX``: two finite numbers, low <= MIN <= MAX <= high."""
    number = float_in(low, high)

    def parse(text: str) -> tuple[float, float]:
        parts = [p for p in str(text).split(",") if p.strip()]
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX like 0.5,2.0, got {text!r}")
        first, second = number(parts[0]), number(parts[1])
        if first > second:
            raise argparse.ArgumentTypeError(f"expected MIN <= MAX, got {text!r}")
        return first, second

    return parse


def size_pair(maximum: int) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type=`` for a size N or H,W in pixels, each from 1 to ``maximum``."""
    def check(value: Any) -> tuple[int, int]:
        pair = as_pair(value, "size", minimum=1)
        if max(pair) > maximum:
            raise InputError(f"expected sizes up to {maximum}, got {value}")
        return pair

    return _checked(dims, check)


def ranged(name: str) -> Callable[[str], Any]:
    """The argparse ``type=`` of a setting in :data:`fcnkit.training.config.RANGES` (the one
    table of accepted training settings), e.g. ``ranged("workers")``; every command that
    takes a seed, worker or thread count or batch size checks it against the same range."""
    span = RANGES[name]
    if name == "scale_range":
        return float_pair_in(span.low, span.high)
    if name == "crop":
        return size_pair(int(span.high))
    if name in INTEGER_FIELDS:
        return int_in(int(span.low), int(span.high))
    return float_in(span.low, span.high, low_open=span.low_open, high_open=span.high_open)


#: Seeds of numpy's legacy generator and of most tools are 32-bit (RANGES["seed"]).
seed = ranged("seed")


def overlap(text: str) -> float:
    """argparse ``type=`` for a tiling overlap: a fraction in [0, 1) (arith.tiling's check)."""
    return _checked(_float, check_overlap)(text)


def window(text: str) -> tuple[int, int]:
    """argparse ``type=`` for a tile size: ``"512"`` → (512, 512), ``"320,480"`` → (320, 480)."""
    return _checked(dims, lambda value: as_pair(value, "window", minimum=1))(text)


def device(text: str) -> Any:
    """argparse ``type=`` for a torch device usable here: cpu, cuda, cuda:N (imports torch)."""
    # local: import cost (torch, ~3 s: loaded only when this command runs)
    from fcnkit.runtime.device import resolve_device

    return _checked(str, resolve_device)(text)


def check_not_under_file(path: str | os.PathLike[str], what: str, *,
                         directory: bool = False) -> None:
    """Raise InputError if a parent of ``path`` (or, with ``directory``, ``path`` itself) is
    an existing file, so that ``what`` (e.g. "--out") cannot be created there: one line
    naming it, before any work."""
    target = Path(path).expanduser()
    for part in ((target,) if directory else ()) + tuple(target.parents):
        if part.exists() and not part.is_dir():
            raise InputError(f"{what} {target}: {part} is a file, not a directory; pass "
                             "another path")


def print_json(obj: Any) -> None:
    """Print one strict JSON document to stdout (NaN/inf → null; :mod:`fcnkit.jsonio`)."""
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


#: What every --precision option (train, demo, eval, predict) offers; the choice is
#: fcnkit.runtime.precision.resolve_precision's.
PRECISION_HELP = ("auto (bf16 autocast on CUDA; on a CPU with native bf16 the faster of "
                  "fp32 and bf16 for the model, measured once and cached; else fp32), "
                  "fp32, bf16 or fp16")


def add_inference_arguments(parser: argparse.ArgumentParser, *, window_help: str,
                            max_pixels_help: str, skip_bad_help: str) -> None:
    """The options eval and predict share: ``--checkpoint``, ``--window``, ``--overlap``,
    ``--max-pixels``, ``--device``, ``--skip-bad``, ``--json`` and the backend options
    (:func:`add_backend_arguments`). The help texts that differ are passed in."""
    parser.add_argument(
        "--checkpoint", required=True,
        help="checkpoint file, or a run directory (its best.pt, else last.pt), or an .onnx "
        "model from fcnkit export (run by onnxruntime)",
    )
    parser.add_argument("--window", type=window, default=None, help=window_help)
    parser.add_argument(
        "--overlap", type=overlap, default=DEFAULT_OVERLAP,
        help="fraction of a window shared by neighbouring windows, in [0, 1) "
        f"(default {DEFAULT_OVERLAP})",
    )
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help=max_pixels_help)
    parser.add_argument("--device", type=device, default="cpu",
                        help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--skip-bad", action="store_true", help=skip_bad_help)
    add_backend_arguments(parser)


def inference_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments :func:`add_inference_arguments`' options give to
    :func:`fcnkit.inference.evaluate.evaluate_checkpoint` and
    :func:`fcnkit.inference.predict.predict_checkpoint` (``window`` is the caller's)."""
    return {"overlap": args.overlap, "max_pixels": args.max_pixels, "device": args.device,
            "skip_bad": args.skip_bad, **backend_options(args)}


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--precision``, ``--channels-last``, ``--threads`` (eval, predict)."""
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto",
        help="torch (a checkpoint) or onnxruntime (an .onnx file from fcnkit export, or a "
        "checkpoint exported on the fly); default auto: onnxruntime for an .onnx file, "
        "else torch",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help=f"torch backend: {PRECISION_HELP} (default auto)",
    )
    parser.add_argument(
        "--channels-last", choices=LAYOUTS, default="auto",
        help="torch backend: channels_last (NHWC) layout (default auto: on for CPU and CUDA)",
    )
    parser.add_argument(
        "--threads", type=ranged("threads"), default=None,
        help="onnxruntime backend: intra-op threads (default: torch's thread count)",
    )


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`fcnkit.inference.backends.open_backend` from ``args``."""
    return {"backend": args.backend, "precision": args.precision,
            "channels_last": args.channels_last, "threads": args.threads}

