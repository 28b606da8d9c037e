"""The run log: ``metrics.jsonl``, ``curves.png`` and the console progress of a training run.

``metrics.jsonl`` holds one JSON object per line: a ``"kind": "step"`` line per log window
(mean loss, learning rate, images per second) and a ``"kind": "epoch"`` line per epoch
(mean training loss and the validation metrics). :class:`RunLog` *appends* each line and
flushes it, so a crash loses at most the line being written and a reader (``tail -f``,
TensorBoard-style tools) sees the file grow. When a run resumes, the lines written after
the resumed checkpoint are cut off once, by truncating the file in place.

:class:`ConsoleProgress` is the only thing in the training loop that writes to the
console, on rank 0 only: the run's banner and one summary line per epoch, plus, when
``progress`` is on, a tqdm bar on a terminal or, off a terminal (a redirected log, CI),
one plain line per log window instead of tqdm's carriage-return frames.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tqdm.auto import tqdm

from fcnkit.atomic import check_regular_file, open_no_follow, refuse_symlink
from fcnkit.errors import InputError, warn
from fcnkit.jsonio import dumps_strict
from fcnkit.schemas import METRICS_LINE, field_problem
from fcnkit.training.tensorboard import TensorBoardLogger
from fcnkit.viz.curves import plot_training_curves

__all__ = ["ConsoleProgress", "RunLog", "draw_curves", "read_run_log", "read_run_log_counted"]


class RunLog:
    """``metrics.jsonl`` appended a line at a time; the records are kept for the curves.

    Open it with :meth:`open` (or :meth:`in_memory` on ranks that write nothing) and close
    it when the run ends (it is a context manager).
    """

    def __init__(
        self, path: Path | None, records: list[dict[str, Any]], file: IO[str] | None,
        tensorboard: Any = None,
    ) -> None:
        self.path = path
        self.records = records
        self._file = file
        #: A :class:`fcnkit.training.tensorboard.TensorBoardLogger` that gets every
        #: appended record too, or None.
        self.tensorboard = tensorboard

    @classmethod
    def in_memory(cls) -> RunLog:
        """A log that keeps its records and writes no file (ranks other than 0)."""
        return cls(None, [], None)

    @classmethod
    def open(cls, path: str | Path, *, keep_up_to_step: int,
             tensorboard_dir: str | Path | None = None) -> RunLog:
        """Open ``path`` for appending, keeping the lines of steps ``<= keep_up_to_step``.

        A fresh run passes 0 (every old line goes); a resumed run passes the checkpoint's
        step, so the lines written after that checkpoint are cut off. Unreadable lines (a
        line torn by a crash, or one that is not a metrics record) are dropped as the
        readers skip them: the good lines after a bad one in the middle are kept, and the
        bad ones other than a torn last line are counted in one warning. The file is
        rewritten once, here, in place. With ``tensorboard_dir``, records also go to
        TensorBoard events there (events after ``keep_up_to_step`` are purged the same way).
        """
        path = Path(path)
        records: list[dict[str, Any]] = []
        kept: list[bytes] = []
        bad = 0
        # Opened once without following links (a planted link must not get its target
        # truncated), read, then rewritten and appended through the same descriptor.
        fd = open_no_follow(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644, what="run log")
        if stat.S_ISREG(os.fstat(fd).st_mode):
            with open(os.dup(fd), "rb") as old:
                for raw in old:
                    record = _parse_line(raw)
                    if record is None:
                        bad += raw.endswith(b"\n") and bool(raw.strip())  # not a torn tail
                        continue
                    if int(record.get("step", 0)) > keep_up_to_step:
                        break
                    records.append(record)
                    kept.append(raw)
        else:
            os.close(fd)
            raise InputError(f"run log {path} is not a regular file; remove it")
        if bad:
            warn(f"{path}: {bad} unreadable line(s) dropped (not a metrics record)")
        board = None
        if tensorboard_dir is not None:
            refuse_symlink(tensorboard_dir, "TensorBoard directory")
            board = TensorBoardLogger(tensorboard_dir, purge_step=keep_up_to_step + 1)
        os.ftruncate(fd, 0)
        file = open(fd, "a", encoding="utf-8")
        file.write(b"".join(kept).decode("utf-8"))  # the kept lines parsed: valid UTF-8
        file.flush()
        return cls(path, records, file, board)

    def append(self, record: Mapping[str, Any]) -> None:
        """Keep ``record`` and write it as one line (flushed at once)."""
        record = dict(record)
        self.records.append(record)
        if self._file is not None:
            # Strict JSON: an undefined value (mIoU with no labelled pixel) is null, not NaN.
            self._file.write(dumps_strict(record) + "\n")
            self._file.flush()
        if self.tensorboard is not None:
            self.tensorboard.log_record(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_run_log(path: str | Path) -> list[dict[str, Any]]:
    """The readable records of a ``metrics.jsonl``; lines that are not a JSON object of the
    :data:`fcnkit.schemas.METRICS_LINE` schema (arrays, strings, non-UTF-8 bytes, wrong-typed
    fields, a line torn by a crash) are skipped, with one warning giving their count."""
    records, bad = read_run_log_counted(path)
    if bad:
        warn(f"{path}: {bad} unreadable line(s) skipped (not a metrics record)")
    return records


def read_run_log_counted(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """``(records, skipped)``: :func:`read_run_log` without the warning (blank lines are
    neither)."""
    records: list[dict[str, Any]] = []
    bad = 0
    with check_regular_file(path, "run log").open("rb") as file:
        for raw in file:
            if not raw.strip():
                continue
            record = _parse_line(raw)
            if record is None:
                bad += 1
            else:
                records.append(record)
    return records, bad


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """A complete line holding a metrics record (:data:`fcnkit.schemas.METRICS_LINE`), or
    None (blank, torn by a crash, not UTF-8, not an object, or a field of the wrong type)."""
    if not raw.endswith(b"\n"):
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return record if field_problem(record, METRICS_LINE) is None else None


def draw_curves(records: list[dict[str, Any]], path: Path) -> None:
    """``curves.png``: loss, learning rate and validation metrics of the records so far."""
    plot_training_curves(records, path)


class ConsoleProgress:
    """Console output of a training run (construct it with ``enabled=False`` off rank 0).

    Args:
        enabled: write anything at all (rank 0).
        bar: per-step progress: a tqdm bar on a terminal, else one line per log window.
        stream: where to write (default: ``sys.stderr`` at construction time).
        tty: whether ``stream`` is a terminal (default: ``stream.isatty()``).
    """

    def __init__(
        self, *, enabled: bool = True, bar: bool = True, stream: IO[str] | None = None,
        tty: bool | None = None,
    ) -> None:
        self.enabled = enabled
        self.bar = bar and enabled
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self._tqdm: Any = None
        self._epoch = ""

    def line(self, text: str) -> None:
        """One line of its own (the banner, an epoch's summary)."""
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        """An epoch of ``steps`` steps begins (``epoch`` counts from 1)."""
        self._epoch = f"epoch {epoch}/{epochs}"
        self._steps = steps
        if self.bar and self.tty:
            self._tqdm = tqdm(total=steps, desc=self._epoch, unit="step", leave=False,
                              dynamic_ncols=True, file=self.stream)

    def advance(self, steps: int = 1) -> None:
        """``steps`` more optimizer steps are done (moves the bar)."""
        if self._tqdm is not None:
            self._tqdm.update(steps)

    def log_window(self, record: Mapping[str, Any], step_in_epoch: int) -> None:
        """A ``metrics.jsonl`` step record: the bar's postfix, or a plain line off a TTY."""
        if self._tqdm is not None:
            self._tqdm.set_postfix(loss=f"{record['loss']:.3f}",
                                   img_s=f"{record['img_per_s']:.1f}")
        elif self.bar:
            self.line(
                f"{self._epoch} step {step_in_epoch}/{self._steps}: loss {record['loss']:.4f}, "
                f"lr {record['lr']:.3g}, {record['img_per_s']:.1f} img/s"
            )

    def end_epoch(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
