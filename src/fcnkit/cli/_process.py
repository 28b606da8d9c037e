"""What the command line sets up in its process before a command runs.

* Output stays printable under any ``PYTHONIOENCODING`` (or locale): a character the
  encoding cannot show (a file name in another script under ``ascii``) is written as a
  backslash escape instead of raising ``UnicodeEncodeError``.
* SIGINT and SIGTERM end the command, never with exit 0: SIGINT raises
  ``KeyboardInterrupt`` (exit 130) even when the shell started the process with SIGINT
  ignored (a background job), SIGTERM prints one line and exits with 143 (128 + 15, as a
  shell reports it). Both unwind the stack, so every ``finally`` runs: atomic writes drop
  their temporaries and directories being written keep their incomplete marker
  (:func:`fcnkit.atomic.incomplete_until_done`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from types import FrameType

__all__ = ["SIGTERM_EXIT_CODE", "prepare_process"]

#: Exit code after SIGTERM: 128 + signal number, what a shell shows for a killed child.
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM

_owner_pid: int | None = None


def _terminated(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _owner_pid:
        # A forked worker (multiprocessing) inherited the handler: die as the default does,
        # without a message (Pool.terminate sends its workers SIGTERM).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    print("fcnkit: terminated", file=sys.stderr, flush=True)
    raise SystemExit(SIGTERM_EXIT_CODE)


def prepare_process() -> None:
    """Escape unprintable output and install the SIGINT/SIGTERM handlers (main thread only;
    called once at the start of :func:`fcnkit.cli.main`)."""
    global _owner_pid
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    if threading.current_thread() is not threading.main_thread():
        return
    _owner_pid = os.getpid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)
