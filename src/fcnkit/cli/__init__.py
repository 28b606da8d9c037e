"""The ``fcnkit`` command line: thin argparse subcommands over the library.

Each subcommand lives in its own module of this package, which defines
``register(subparsers)`` (adds its parser and ``set_defaults(handler=run)``) and
``run(args) -> int``. Modules parse, call the library and print; they compute nothing.

The error contract (:mod:`fcnkit.errors`): a user's mistake, :class:`~fcnkit.errors.InputError`
or an ``OSError`` about a file the user named, is printed as one line on stderr with exit
code 2; any other exception is a bug and keeps its traceback. Set ``FCNKIT_DEBUG=1`` to see
the traceback of a user error too. Library warnings (:class:`~fcnkit.errors.FcnkitWarning`)
and the ``fcnkit`` loggers' messages are printed as one ``fcnkit: ...`` line each.

Under ``torchrun`` every process runs the command, but only rank 0 prints reports and
warnings: every report appears once. Errors are printed by whichever rank meets them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from fcnkit.cli._common import OneLineParser
from fcnkit.cli._process import prepare_process
from fcnkit.errors import FcnkitWarning, InputError, first_line

# Subcommand modules, in the order ``fcnkit --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "train",
    "eval",
    "predict",
    "export",
    "models",
    "conv",
    "rf",
    "gridding",
    "animate",
    "explore",
    "report",
    "reproduce",
)


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="fcnkit",
        description="Fully convolutional segmentation and the convolution arithmetic behind it.",
    )
    from fcnkit import __version__

    parser.add_argument("--version", action="version", version=f"fcnkit {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    for name in COMMAND_MODULES:
        importlib.import_module(f"fcnkit.cli.{name}").register(subparsers)
    return parser


def _is_main_rank() -> bool:
    """False in the processes torchrun started with ``RANK`` > 0.

    Read from the environment (what ``fcnkit.runtime.distributed`` reads too) so that the
    fast commands do not import torch.
    """
    return os.environ.get("RANK", "0").strip() in ("", "0")


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: Any = None, line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the command line: one ``fcnkit: warning:`` line."""
    if not _is_main_rank():
        return
    text = first_line(message) if isinstance(message, Warning) else str(message).strip()
    if not issubclass(category, FcnkitWarning):
        text = f"{category.__name__}: {text}"  # a warning from a library fcnkit uses
    print(f"fcnkit: warning: {text}", file=sys.stderr)


class _LogFormatter(logging.Formatter):
    """``fcnkit: message`` for INFO, ``fcnkit: warning: message`` and so on above it."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        return f"fcnkit: {level}{record.getMessage()}"


@contextlib.contextmanager
def _console() -> Iterator[None]:
    """Warnings and ``fcnkit`` log records as one line each; stdout silenced off rank 0."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    logger = logging.getLogger("fcnkit")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("always", FcnkitWarning)  # every skipped file, every run
        warnings.showwarning = _show_warning
        if not _is_main_rank():
            devnull = stack.enter_context(open(os.devnull, "w", encoding="utf-8"))
            stack.enter_context(contextlib.redirect_stdout(devnull))
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    prepare_process()  # printable output under any encoding; SIGINT/SIGTERM -> 130/143
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        with _console():
            return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("fcnkit: interrupted", file=sys.stderr)
        return 130
    except (InputError, OSError) as exc:
        # A user's mistake (or a file they named that cannot be read): one line, exit 2.
        if os.environ.get("FCNKIT_DEBUG"):
            raise
        print(f"fcnkit {args.command}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError, ArithmeticError) as exc:
        # Out of memory (Python's MemoryError, torch's allocator RuntimeError) or a number
        # out of range deep inside a computation: the input was too large for this machine
        # or an option value slipped past the checks. One line that says so; any other
        # RuntimeError is a bug and keeps its traceback.
        message = resource_error_message(exc)
        if message is None or os.environ.get("FCNKIT_DEBUG"):
            raise
        print(f"fcnkit {args.command}: error: {message}", file=sys.stderr)
        return 2


#: Substrings of the RuntimeErrors torch raises when an allocation fails.
_ALLOCATOR_MESSAGES = ("not enough memory", "DefaultCPUAllocator", "out of memory",
                       "can't allocate memory", "Cannot allocate memory")


def resource_error_message(exc: BaseException) -> str | None:
    """The one-line message for an out-of-memory or arithmetic error, None for a bug."""
    text = first_line(exc)
    if isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError) and any(m in str(exc) for m in _ALLOCATOR_MESSAGES)):
        return (f"out of memory ({text[:160]}); use a smaller input size, --crop, --batch-size "
                "or --window")
    if isinstance(exc, ArithmeticError):  # OverflowError, ZeroDivisionError, FloatingPointError
        return (f"a number went out of range ({type(exc).__name__}: {text[:160]}); check the "
                "numeric options (FCNKIT_DEBUG=1 shows where)")
    return None
