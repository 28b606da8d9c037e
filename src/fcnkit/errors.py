"""The error contract: what reaches the user as one line, and how the library warns.

Raise :class:`InputError` for anything the *user* can fix: a bad file, a bad argument, a
checkpoint that does not fit. The message names the file or argument and says the fix.
The command line prints it as one line on stderr and exits with code 2 (so does a missing
or unreadable file the user named, an ``OSError``). Programming errors stay ordinary
exceptions (``ValueError``, ``TypeError``, ...) and keep their traceback.

Library code never prints: it warns with :func:`warn` (a :class:`FcnkitWarning` through
the ``warnings`` module), which the command line shows as ``fcnkit: warning: ...``, one
line, and which a program can filter, record or turn into an error like any warning.
"""

from __future__ import annotations

import warnings

__all__ = ["FcnkitWarning", "InputError", "first_line", "warn"]


class InputError(ValueError):
    """Bad user input: one line naming the file/argument and the fix."""


class FcnkitWarning(UserWarning):
    """Something the user should know that does not stop the work (a skipped sample, ...)."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def warn(message: str, *, stacklevel: int = 2) -> None:
    """Issue ``message`` as a :class:`FcnkitWarning`, attributed to the caller's caller."""
    warnings.warn(message, FcnkitWarning, stacklevel=stacklevel + 1)
