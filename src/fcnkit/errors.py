"""Errors that reach the user as one line (the CLI prints them and exits with code 2).

Raise :class:`InputError` for anything the *user* can fix: a bad file, a bad argument, a
checkpoint that does not fit. The message names the file or argument and says the fix.
Programming errors stay ordinary exceptions and keep their traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: one line naming the file/argument and the fix."""
