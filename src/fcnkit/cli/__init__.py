"""The ``fcnkit`` command line: thin argparse subcommands over the library.

Each subcommand lives in its own module of this package, which defines
``register(subparsers)`` (adds its parser and ``set_defaults(handler=run)``) and
``run(args) -> int``. Modules parse, call the library and print; they compute nothing.

User errors (:class:`fcnkit.errors.InputError`, ``ValueError`` from argument checks,
missing files) are printed as one line on stderr with exit code 2. Set
``FCNKIT_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys

from fcnkit.cli._common import OneLineParser

# Subcommand modules, in the order ``fcnkit --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "data",
    "train",
    "eval",
    "predict",
    "models",
    "conv",
    "rf",
    "gridding",
    "animate",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("fcnkit: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        # InputError is a ValueError. One line, exit 2, unless debugging.
        if os.environ.get("FCNKIT_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"fcnkit {args.command}: error: {message}", file=sys.stderr)
        return 2
