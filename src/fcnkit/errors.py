"""The error contract: what reaches the user as one line, and how the library warns.

Raise :class:`InputError` for anything the *user* can fix: a bad file, a bad argument, a
checkpoint that does not fit. The message names the file or argument and says the fix.
The command line prints it as one line on stderr and exits with code 2 (so does a missing
or unreadable file the user named: an ``OSError`` that names a path and says it is missing,
unreadable, a directory or not one). Programming errors stay ordinary exceptions
(``ValueError``, ``TypeError``, ``ArithmeticError``, any other ``OSError``, ...) and keep their
traceback. :func:`exit_code_for` is that classification, shared by the command line (exit
code 2) and the explorer's web server (HTTP 400 instead of 500).

Library code never prints: it warns with :func:`warn` (a :class:`FcnkitWarning` through
the ``warnings`` module), which the command line shows as ``fcnkit: warning: ...``, one
line, and which a program can filter, record or turn into an error like any warning.
"""

from __future__ import annotations

import warnings

__all__ = ["USER_ERROR_EXIT_CODE", "FcnkitWarning", "InputError", "exit_code_for", "first_line",
           "warn"]


class InputError(ValueError):
    """Bad user input: one line naming the file/argument and the fix."""


class FcnkitWarning(UserWarning):
    """Something the user should know that does not stop the work (a skipped sample, ...)."""


#: The exit code of a user error (argparse's own, so every refusal exits alike).
USER_ERROR_EXIT_CODE = 2

#: ``OSError`` subclasses that mean "the path you named is not there / not readable / not the
#: kind of file expected". Other ``OSError``s (a full disk, an I/O error, a broken pipe, a
#: refused connection) are the machine's or a bug's, not the user's: they keep the traceback.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                NotADirectoryError)


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of ``exc`` if it is a user error, None if it is a bug.

    A user error is an :class:`InputError`, or an ``OSError`` about a path (``exc.filename``
    set) that is missing, unreadable, a directory where a file was expected or the reverse:
    the user named a path that cannot be used. Everything else, every other ``OSError`` and
    ``ArithmeticError`` included, returns None: the caller lets it propagate with its
    traceback. The command line exits with the returned code; the explorer answers 400.
    """
    if isinstance(exc, InputError):
        return USER_ERROR_EXIT_CODE
    if isinstance(exc, _PATH_ERRORS) and exc.filename is not None:
        return USER_ERROR_EXIT_CODE
    return None


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip() if text else type(exc).__name__


def warn(message: str, *, stacklevel: int = 2) -> None:
    """Issue ``message`` as a :class:`FcnkitWarning`, attributed to the caller's caller."""
    warnings.warn(message, FcnkitWarning, stacklevel=stacklevel + 1)
