"""One training run per run directory: an advisory lock file, ``RUN_DIR/.lock``.

``fcnkit train`` holds the lock for as long as it writes the directory. The lock is an
``fcntl.flock`` on ``.lock`` (released by the kernel when the process dies, even by
``kill -9``), and the file records who holds it (host, pid, start time) so that a refusal
can say so. A lock file left behind by a dead process is stale and is taken over:

* the ``flock`` is free (every holder has exited), or
* on platforms without ``flock``: the recorded pid on this host no longer exists.

Example::

    with RunLock(run_dir):
        ...  # write config.json, checkpoints, metrics.jsonl

A second run into a locked directory raises :class:`~fcnkit.errors.InputError`:
``RUN_DIR is in use by fcnkit train (pid 1234 on host, since ...); wait for it or choose
another run directory (out)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from fcnkit.errors import InputError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def read_lock_owner(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The holder recorded in ``RUN_DIR/.lock`` (``{"host", "pid", "started"}``), or None."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8")
        owner = json.loads(text)
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    started = owner.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, (int, float)) else "?")
    return f"pid {owner.get('pid')} on {owner.get('host')}, since {when}"


class RunLock:
    """Exclusive advisory lock on a run directory (a context manager; see module doc).

    Args:
        run_dir: the directory to lock (created if missing).
        what: who is asking, for the message (``"fcnkit train"``).
    """

    def __init__(self, run_dir: str | os.PathLike[str], what: str = "fcnkit train") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.what = what
        self._fd: int | None = None
        self._created_dir = False

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`InputError` naming the holder."""
        if self._fd is not None:
            return self
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked()
        try:
            if fcntl is None:  # pragma: no cover - no flock: trust a live pid on this host
                owner = read_lock_owner(self.run_dir)
                if (owner and owner.get("host") == socket.gethostname()
                        and _pid_alive(int(owner.get("pid", 0)))
                        and owner.get("pid") != os.getpid()):
                    raise self._refusal()
            record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                      "what": self.what}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _open_locked(self) -> int:
        """Open ``.lock`` and flock it; retry when the holder removed the file meanwhile."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:  # pragma: no cover
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refusal() from None
            # The previous holder unlinks the file on release: a lock on the unlinked inode
            # would not exclude a process that opens the new file, so lock the live name.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _refusal(self) -> InputError:
        owner = read_lock_owner(self.run_dir)
        return InputError(
            f"{self.run_dir} is in use by {(owner or {}).get('what', 'fcnkit train')} "
            f"({_describe(owner)}); wait for it to finish or choose another run directory (out)"
        )

    def release(self) -> None:
        """Drop the lock and remove the lock file (safe to call twice).

        The directory is removed too when :meth:`acquire` created it and it is still empty.
        """
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            # Remove the file while still holding the lock, so nobody locks a doomed inode
            # whose name another process is about to recreate.
            if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if self._created_dir:
            # A run that failed before writing anything leaves no empty directory behind.
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
