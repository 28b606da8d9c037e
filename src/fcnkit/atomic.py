"""Write files so that a crash or an error never leaves a half-written output behind.

Every output file fcnkit produces (checkpoints, PNG/GIF pictures, JSON reports, dataset
files) goes through :func:`atomic_path`: the writer writes to a temporary file in the
same directory, which is renamed over the target only when the writer finished without
an exception (``os.replace`` is atomic on POSIX and Windows within one filesystem).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
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


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
