"""The run directory: one training run's lock, resume, best/last checkpoints and ``error.txt``.

What ``fcnkit train`` keeps in ``RUN_DIR`` (besides the run log of
:mod:`fcnkit.training.runlog`)::

    .lock            who is writing the directory (:class:`RunLock`)
    config.json      the TrainConfig (:func:`open_run_log`)
    last.pt best.pt  every epoch's and the best epoch's checkpoint (:func:`save_epoch`)
    error.txt        why a run stopped (:func:`record_failure`; removed when a run finishes)

Resuming: :func:`resolve_run_dir` says where a config writes, :func:`load_resume_checkpoint`
reads the checkpoint ``resume`` names (``"auto"``: :func:`auto_resume_path`),
:func:`resume_config` the settings stored in it, :func:`check_resume_fits` refuses a
checkpoint of another model and :func:`reconcile_best` repairs the best mIoU after a crash
between the two checkpoint writes.

The lock
--------

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
import math
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcnkit.atomic import open_no_follow, write_text_atomic
from fcnkit.errors import InputError
from fcnkit.runtime import checkpoint as ckpt_io
from fcnkit.runtime.checkpoint import TrainingCheckpoint
from fcnkit.training.config import AUTO_RESUME, TrainConfig
from fcnkit.training.runlog import RunLog, draw_curves

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
            fd = open_no_follow(self.path, os.O_RDWR | os.O_CREAT, 0o644, what="lock file")
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


# --------------------------------------------------------------------------------------------
# Where a run writes and what it resumes


def resolve_run_dir(config: TrainConfig) -> Path:
    """``config.out``, else the resumed run's directory, else ``runs/<model>``."""
    if config.out is not None:
        return Path(config.out).expanduser()
    if config.resume is not None and config.resume != AUTO_RESUME:
        resume = Path(config.resume).expanduser()
        return resume if resume.is_dir() else resume.parent
    return Path("runs") / config.model


def auto_resume_path(config: TrainConfig) -> Path | None:
    """For ``resume="auto"``: the run directory's ``last.pt`` if it exists, else None."""
    last = resolve_run_dir(config) / "last.pt"
    return last if last.is_file() else None


def load_resume_checkpoint(config: TrainConfig) -> dict[str, Any] | None:
    """The checkpoint ``config.resume`` names (RUN_DIR → RUN_DIR/last.pt), or None.

    ``resume="auto"`` resumes from the run directory's ``last.pt`` when there is one and
    starts fresh otherwise (what a restarted torchrun worker group needs).
    """
    if config.resume is None:
        return None
    if config.resume == AUTO_RESUME:
        found = auto_resume_path(config)
        return ckpt_io.load_checkpoint(found) if found is not None else None
    path = Path(config.resume).expanduser()
    if not path.exists():
        raise InputError(
            f"resume {path} does not exist; pass a run directory written by fcnkit train "
            "(or its last.pt)"
        )
    return _load_last(path)


def _load_last(path: Path) -> dict[str, Any]:
    """The checkpoint ``path`` names (a run directory: its last.pt). When a run directory's
    last.pt is missing or unreadable and its best.pt is there, the message says so."""
    try:
        return ckpt_io.load_checkpoint(ckpt_io.resolve_checkpoint_path(path, name="last.pt"))
    except InputError as exc:
        run_dir = path if path.is_dir() else path.parent
        if (path.is_dir() or path.name == "last.pt") and (run_dir / "best.pt").is_file():
            raise InputError(f"{exc}; or resume from the best epoch's checkpoint: "
                             f"--resume {run_dir / 'best.pt'}") from None
        raise


def resume_config(path: str | os.PathLike[str]) -> TrainConfig:
    """The TrainConfig stored in a run directory's last.pt (or a checkpoint file)."""
    stored = _load_last(Path(path).expanduser()).get("config")
    file = ckpt_io.resolve_checkpoint_path(Path(path).expanduser(), name="last.pt")
    if not isinstance(stored, Mapping) or not stored:
        raise InputError(f"checkpoint {file} holds no training config; give the data and "
                         "options explicitly")
    try:
        return TrainConfig.from_dict(stored)
    except (InputError, TypeError) as exc:
        raise InputError(f"checkpoint {file} holds an unusable training config ({exc}); "
                         "start a fresh run or pass a checkpoint written by fcnkit train"
                         ) from None


def check_resume_fits(ckpt: Mapping[str, Any], model_config: Mapping[str, Any]) -> None:
    """Refuse to resume a checkpoint whose model differs from ``model_config`` in any key."""
    stored = ckpt["model_config"]
    for key, value in model_config.items():
        if stored.get(key) != value:
            raise InputError(
                f"checkpoint {ckpt.get('path')} is a {ckpt_io.describe_checkpoint(ckpt)}, but "
                f"this run asks for {key}={value!r}; resume with the run's own settings or "
                "start a new run in another directory"
            )


def reconcile_best(run_dir: Path, best_miou: float, best_epoch: int | None,
                   start_epoch: int) -> tuple[float, int | None]:
    """The best mIoU / epoch to resume with, repaired from ``best.pt`` when it is newer.

    A ``best.pt`` written for an epoch that ``last.pt`` does not include yet (a crash
    between the two writes) is dropped from the comparison: that epoch is trained again and
    its result decides. A ``best.pt`` at or before ``last.pt``'s epoch with a higher mIoU
    than ``last.pt`` records (an older fcnkit wrote last.pt first) is trusted.
    """
    path = run_dir / "best.pt"
    if not path.is_file():
        return best_miou, best_epoch
    try:
        stored = ckpt_io.load_checkpoint(path)
    except InputError:
        return best_miou, best_epoch
    epoch = int(stored.get("epoch", 0) or 0)
    miou = float((stored.get("metrics") or {}).get("miou", stored.get("best_miou", -math.inf)))
    if epoch > start_epoch:
        return best_miou, best_epoch
    if math.isfinite(miou) and miou > best_miou:
        return miou, epoch
    return best_miou, best_epoch


# --------------------------------------------------------------------------------------------
# What a run writes


#: The files of an earlier run that a fresh run into the same directory replaces.
PREVIOUS_RUN_FILES = ("last.pt", "best.pt", "error.txt", "curves.png")


def open_run_log(run_dir: Path, config: TrainConfig, *, keep_up_to_step: int,
                 is_main: bool, fresh: bool = False) -> RunLog:
    """Rank 0: create ``run_dir``, write ``config.json``, open ``metrics.jsonl`` (kept up
    to the resumed step). Other ranks: a log that writes nothing.

    A ``fresh`` run (not resumed) replaces an earlier run in ``run_dir`` as a whole: its
    ``metrics.jsonl`` starts empty and the earlier ``last.pt``, ``best.pt``, ``error.txt``
    and ``curves.png`` are removed, so that a failure before the first epoch ends never
    leaves the new config and log beside the other run's checkpoints (which ``error.txt``
    and ``--resume auto`` would then take for this run's).
    """
    if not is_main:
        return RunLog.in_memory()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", config.to_json())
    log = RunLog.open(run_dir / "metrics.jsonl", keep_up_to_step=keep_up_to_step,
                      tensorboard_dir=run_dir / "tensorboard" if config.tensorboard else None)
    if fresh:
        for name in PREVIOUS_RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    return log


def save_epoch(run_dir: Path, checkpoint: TrainingCheckpoint, log: RunLog, *,
               is_best: bool) -> None:
    """An epoch's files (rank 0): ``best.pt`` when it is the best so far, then ``last.pt``,
    then ``curves.png``.

    Best before last: a crash between the two leaves ``last.pt`` one epoch behind, so the
    resume re-runs that epoch and rewrites both (:func:`reconcile_best` ignores the newer
    ``best.pt``). The other order would leave ``best.pt`` stale for good: ``last.pt`` would
    say the epoch was done.
    """
    payload = checkpoint.to_payload()
    if is_best:
        ckpt_io.save_checkpoint(run_dir / "best.pt", payload)
    ckpt_io.save_checkpoint(run_dir / "last.pt", payload)
    draw_curves(log.records, run_dir / "curves.png")


def record_failure(run_dir: Path, exc: BaseException) -> None:
    """A run that had started writing its directory says why it stopped: ``error.txt``.

    The checkpoints are the last complete epoch's; ``--resume`` continues from there once
    the cause (a bad sample, a diverging setting) is fixed.
    """
    if not (run_dir / "config.json").is_file():
        return  # nothing written yet: leave no directory behind
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    if (run_dir / "last.pt").is_file():
        how = (f"last.pt/best.pt hold the last complete epoch; fix the cause and resume with "
               f"--resume {run_dir}")
    else:
        how = ("no epoch completed, so there is no checkpoint to resume; fix the cause and run "
               f"the command again (--resume auto, or --resume {run_dir} once last.pt exists)")
    text = f"{when} training stopped: {_stop_reason(exc)}\n{how}\n"
    try:
        write_text_atomic(run_dir / "error.txt", text)
    except OSError:
        pass


def _stop_reason(exc: BaseException) -> str:
    """What stopped the run, for ``error.txt``: a signal or the error's one line."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    if isinstance(exc, SystemExit):
        return f"terminated (exit code {exc.code}, SIGTERM or sys.exit)"
    return f"{type(exc).__name__}: {str(exc).strip()}"


def clear_failure(run_dir: Path) -> None:
    """Remove ``error.txt``: a resumed run that finished."""
    (run_dir / "error.txt").unlink(missing_ok=True)
