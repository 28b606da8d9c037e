"""Write files so that a crash or an error never leaves a half-written output behind; read
a user's files without hanging on a FIFO or a device, or failing on a foreign encoding.

Every output file fcnkit produces (checkpoints, PNG/GIF pictures, JSON reports, dataset
files) goes through :func:`atomic_path`: the writer writes to a temporary file in the
same directory, which is renamed over the target only when the writer finished without
an exception (``os.replace`` is atomic on POSIX and Windows within one filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fcnkit.errors import InputError
from fcnkit.jsonio import dumps_strict

#: Every temporary file :func:`atomic_path` creates is named ``.fcnkit-tmp.<stem>.<random>
#: <suffix>``, so that files left by a killed process can be recognised and removed
#: (:func:`remove_stale_temp_files`).
TEMP_PREFIX = ".fcnkit-tmp."
# Names written by earlier versions: ".<stem>.<8 random chars>.tmp<suffix>" (mkstemp).
_OLD_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The temporary name keeps the target's suffix, so libraries that choose a format by
    extension (PIL, matplotlib) still do the right thing. On an exception the temporary
    file is removed and ``path`` is left as it was.

    Example::

        with atomic_path("out/curves.png") as tmp:
            fig.savefig(tmp)
    """
    target = Path(path)
    refuse_symlink(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{target.stem}.", suffix=target.suffix, dir=target.parent
        )
    except OSError as exc:
        # Name the file the user asked for, not the temporary one beside it.
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot write {target}: {reason} in {target.parent}; choose "
                         "another output path") from None
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def refuse_symlink(path: str | os.PathLike[str], what: str = "output") -> None:
    """Raise :class:`~fcnkit.errors.InputError` when ``path`` itself is a symbolic link.

    fcnkit writes files, it never writes through links: a link named like an output (a
    run's ``metrics.jsonl`` pointing at someone's file) would get its target replaced.
    """
    if os.path.islink(path):
        raise InputError(f"{what} {path} is a symbolic link; fcnkit does not write through "
                         "links: remove the link or choose another path")


def open_no_follow(path: str | os.PathLike[str], flags: int, mode: int = 0o644, *,
                   what: str = "file") -> int:
    """``os.open(path, flags | O_NOFOLLOW, mode)``: a file descriptor, never through a link.

    Raises:
        InputError: ``path`` is a symbolic link (one line naming it).
    """
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not nofollow:  # pragma: no cover - Windows: check just before opening instead
        refuse_symlink(path, what)
    try:
        return os.open(path, flags | nofollow, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and os.path.islink(path)):
            raise InputError(f"{what} {path} is a symbolic link; fcnkit does not write "
                             "through links: remove the link or choose another path"
                             ) from None
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], value: Any, *, indent: int = 2) -> None:
    """Write ``value`` as strict JSON (:func:`fcnkit.jsonio.dumps_strict`: NaN and infinities
    become ``null``), one trailing newline, atomically: every JSON file fcnkit writes."""
    write_text_atomic(path, dumps_strict(value, indent=indent) + "\n")


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for a temporary file of :func:`atomic_path` (this or an earlier version)."""
    name = Path(path).name
    return name.startswith(TEMP_PREFIX) or bool(_OLD_TEMP_NAME.match(name))


def remove_stale_temp_files(directory: str | os.PathLike[str],
                            older_than_s: float = 0.0) -> list[Path]:
    """Remove :func:`atomic_path` temporaries a killed process left in ``directory``.

    Call it where no other process writes ``directory`` at the same time (a training run
    does, under its run-directory lock); elsewhere pass ``older_than_s`` so that a
    concurrent writer's file in progress is kept.

    Returns:
        The files removed (not recursive; a missing directory gives an empty list).
    """
    removed: list[Path] = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        if not is_temp_file(entry) or not entry.is_file() or entry.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            if older_than_s and now - entry.stat().st_mtime < older_than_s:
                continue
            entry.unlink()
            removed.append(entry)
    return removed


def check_writable_directory(path: str | os.PathLike[str], what: str = "output directory"
                             ) -> None:
    """Raise :class:`~fcnkit.errors.InputError` unless files can be written in ``path``.

    Checked by writing (and removing) a probe file, which also catches read-only mounts and
    ACLs that permission bits miss. Directories created for the probe are removed again,
    so a refused or later failing command leaves no empty tree behind.
    """
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise InputError(f"{what} {target} is a file; pass a directory path")
    created = [p for p in (target, *target.parents) if not p.exists()]
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe.", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{what} {target} is not writable ({reason}); choose another "
                         "directory or fix its permissions") from None
    finally:
        for directory in created:  # deepest first
            with contextlib.suppress(OSError):
                directory.rmdir()


#: Name of the file that marks a directory as being written (see :func:`incomplete_until_done`).
INCOMPLETE_MARKER = ".fcnkit-incomplete"


class IncompleteMarker:
    """The incomplete marker of one directory; :func:`incomplete_until_done` yields one."""

    def __init__(self, directory: str | os.PathLike[str], what: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / INCOMPLETE_MARKER
        self.what = what
        self.marked = False

    def mark(self) -> None:
        """Create the directory (if needed) and the marker, once; call before the first
        write into the directory."""
        if self.marked:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path, f"{self.what} being written by process {os.getpid()} "
                                     "(an interrupted run leaves this file; run it again)\n")
        self.marked = True


@contextlib.contextmanager
def incomplete_until_done(directory: str | os.PathLike[str], what: str, *,
                          lazy: bool = False) -> Iterator[IncompleteMarker]:
    """Mark ``directory`` incomplete while the block writes into it.

    The marker file ``directory/.fcnkit-incomplete`` is written on entry (with ``lazy``,
    when the block calls ``marker.mark()`` before its first write) and removed only when
    the block ends without an exception. An interrupted command (SIGINT, SIGTERM, an
    error, a killed process) leaves it, and readers refuse the directory
    (:func:`check_complete`) until a rerun completes it.
    """
    marker = IncompleteMarker(directory, what)
    if not lazy:
        marker.mark()
    yield marker
    if marker.marked:
        with contextlib.suppress(FileNotFoundError):
            marker.path.unlink()


def is_incomplete(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` carries the marker of an unfinished write."""
    return (Path(directory) / INCOMPLETE_MARKER).exists()


def check_complete(directory: str | os.PathLike[str], what: str, rerun: str) -> None:
    """Raise :class:`~fcnkit.errors.InputError` when ``directory`` is marked incomplete.

    Args:
        directory: the directory to read.
        what: what it holds, e.g. ``"dataset"``.
        rerun: the command that completes it, e.g. ``"fcnkit data synth --out DIR"``.
    """
    if is_incomplete(directory):
        raise InputError(f"{what} {directory} is incomplete (its writing was interrupted; "
                         f"{INCOMPLETE_MARKER} is present); run '{rerun}' again")


# ------------------------------------------------------------------ reading user files


def check_regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` as a Path, refused unless it is a regular file (symlinks followed).

    Call it before opening a file the user named: ``open()`` on a FIFO blocks until a
    writer appears (forever), and a device such as ``/dev/zero`` or ``/dev/urandom`` never
    ends. A missing path is left to the opener, whose own message names it.

    Raises:
        InputError: ``path`` is a FIFO, socket, device or directory (one line naming it).
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
    except OSError:
        return file
    if stat.S_ISREG(mode):
        return file
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device")
    raise InputError(f"{what} {file} is {kind}, not a regular file; give the path of a file")


def read_text_utf8(path: str | os.PathLike[str], what: str = "file") -> str:
    """The text of a user's file (``classes.txt``, a split list), as UTF-8.

    Raises:
        InputError: the file is not a regular file or not valid UTF-8 (one line naming the
            file and the byte offset).
    """
    file = check_regular_file(path, what)
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {file} is not UTF-8 text (byte {exc.start}: "
                         f"{data[exc.start:exc.start + 1]!r}); save it as UTF-8") from None
