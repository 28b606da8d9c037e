"""The ``fcnkit`` command line: thin argparse subcommands over the library.

Each subcommand lives in its own module of this package, which defines
``register(subparsers)`` (adds its parser and ``set_defaults(handler=run)``) and
``run(args) -> int``. Modules parse, call the library and print; they compute nothing.

The error contract (:mod:`fcnkit.errors`): :func:`main` returns an exit code and never raises
``SystemExit``. An argument argparse refuses, an :class:`~fcnkit.errors.InputError` or a
missing/unreadable path the user named (:func:`~fcnkit.errors.exit_code_for`) is printed as
one line on stderr and returns 2; ``--help`` and ``--version`` return 0. Running out of
memory returns 2 with one line saying to shrink the input. Any other exception (every other
``OSError`` or ``ArithmeticError`` included) is a bug and keeps its traceback. Set
``FCNKIT_DEBUG=1`` to see the traceback of a user error too. Library warnings
(:class:`~fcnkit.errors.FcnkitWarning`) and the ``fcnkit`` loggers' messages are printed as one
``fcnkit: ...`` line each.

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

from fcnkit import __version__
from fcnkit.cli._common import OneLineParser
from fcnkit.cli._process import prepare_process
from fcnkit.errors import USER_ERROR_EXIT_CODE, FcnkitWarning, exit_code_for, first_line

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
    """Run ``fcnkit ARGV`` (``sys.argv[1:]`` when None) and return its exit code.

    0 on success (and for ``--help`` / ``--version``), 2 for a user error (one line on
    stderr), 130 when interrupted. Never raises ``SystemExit``; a bug raises its exception.
    """
    prepare_process()  # printable output under any encoding; SIGINT/SIGTERM -> 130/143
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: its one error line is printed, or --help/--version
        return _argparse_exit_code(exc)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return USER_ERROR_EXIT_CODE
    debug = bool(os.environ.get("FCNKIT_DEBUG"))
    try:
        with _console():
            return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("fcnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`fcnkit ... --json | head`): stop quietly
        _silence_stdout()
        return BROKEN_PIPE_EXIT_CODE
    except Exception as exc:
        code = exit_code_for(exc)
        message = first_line(exc) if code is not None else out_of_memory_message(exc)
        if message is None or debug:
            raise  # a bug: its traceback (or FCNKIT_DEBUG=1 asked for it)
        print(f"fcnkit {args.command}: error: {message}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE if code is None else code


#: What a shell reports for a writer SIGPIPE ended (128 + 13), as for ``yes | head``.
BROKEN_PIPE_EXIT_CODE = 141


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's final flush of what is
    still buffered for the closed pipe does not raise again at exit (the Python
    documentation's recipe for SIGPIPE, module signal)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (captured in-process): nothing to do
        pass


def _argparse_exit_code(exc: SystemExit) -> int:
    """The int behind argparse's ``SystemExit``: 0 for --help/--version, 2 for an error."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else USER_ERROR_EXIT_CODE


#: Substrings of the RuntimeErrors torch raises when an allocation fails.
_ALLOCATOR_MESSAGES = ("not enough memory", "DefaultCPUAllocator", "out of memory",
                       "can't allocate memory", "Cannot allocate memory")


def out_of_memory_message(exc: BaseException) -> str | None:
    """The one-line message for an exhausted memory (the input is too large for this
    machine, which the user fixes with a smaller one), None for anything else."""
    if isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError) and any(m in str(exc) for m in _ALLOCATOR_MESSAGES)):
        return (f"out of memory ({first_line(exc)[:160]}); use a smaller input size, --crop, "
                "--batch-size or --window")
    return None
