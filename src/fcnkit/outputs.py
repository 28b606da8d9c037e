"""Resolve a command's output paths against its inputs before the first write.

Every command that writes files calls :func:`check_outputs` with all the paths it is about
to write and all the files it reads, before it writes anything. An output is refused (one
:class:`~fcnkit.errors.InputError` line naming it and ``--force``) when it

* is one of the command's inputs (the same file: equal resolved paths, or
  ``os.path.samefile`` for an existing file, so hard links and symlinks count);
* is also another output of the same command (the second write would replace the first);
* is a run's state: a checkpoint (``*.pt``), ``metrics.jsonl`` or ``config.json`` inside a
  run directory (:func:`is_run_directory`), or ``last.pt`` / ``best.pt`` anywhere.

``force=True`` (the commands' ``--force``) skips the input and run-state checks; two
outputs of one command on the same file are refused even then, since one of them would be
lost whatever the user wants.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from fcnkit.errors import InputError

#: Files a training run keeps as its state (checkpoints are every ``*.pt``).
RUN_STATE_NAMES = frozenset({"metrics.jsonl", "config.json", "last.pt", "best.pt"})
#: A directory holding one of these is a training run directory.
RUN_MARKERS = ("metrics.jsonl", "last.pt", "best.pt")

PathLike = str | os.PathLike[str]


def _resolved(path: PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): equal resolved paths only
        return False


def is_run_directory(path: PathLike) -> bool:
    """True when ``path`` is a directory holding a training run's ``metrics.jsonl``,
    ``last.pt`` or ``best.pt``."""
    directory = Path(path)
    return directory.is_dir() and any((directory / name).exists() for name in RUN_MARKERS)


def is_run_state(path: PathLike) -> bool:
    """True for a file a training run keeps as its state (see the module doc)."""
    file = Path(path)
    if file.name in ("last.pt", "best.pt"):
        return True
    return (file.suffix == ".pt" or file.name in RUN_STATE_NAMES) and is_run_directory(
        file.parent)


def check_outputs(outputs: Iterable[PathLike], inputs: Iterable[PathLike] = (), *,
                  force: bool = False, flag: str = "--force") -> list[Path]:
    """Refuse outputs that would destroy an input, another output or a run's state.

    Args:
        outputs: every file the command is about to write.
        inputs: every file it reads (directories are ignored: their files are listed).
        force: skip the input and run-state checks (the user asked to overwrite).
        flag: the option that sets ``force``, named in the message.

    Returns:
        The outputs, resolved (same order).

    Raises:
        InputError: the first refused output, in one line naming it and the input, output
            or run state it collides with.
    """
    resolved_inputs = [(Path(p), _resolved(p)) for p in inputs]
    seen: dict[Path, Path] = {}
    result: list[Path] = []
    for output in outputs:
        shown = Path(output)
        target = _resolved(output)
        for key, earlier in seen.items():
            if _same(key, target):
                raise InputError(f"output {shown} would be written twice (also as {earlier}); "
                                 "give the outputs different names")
        seen[target] = shown
        result.append(target)
        if force:
            continue
        for given, source in resolved_inputs:
            if _same(source, target):
                raise InputError(f"output {shown} is the input {given}: writing it would "
                                 f"destroy the input; choose another output path, or pass "
                                 f"{flag} to overwrite it")
        if is_run_state(target):
            raise InputError(f"output {shown} is a training run's state (checkpoint, "
                             "metrics.jsonl or config.json); choose another output path, or "
                             f"pass {flag} to overwrite it")
    return result


def check_fresh_directory(directory: PathLike, *, own: Iterable[str], what: str,
                          force: bool = False, flag: str = "--force") -> None:
    """Refuse to write into a non-empty ``directory`` that is not the command's own output.

    Args:
        directory: the output directory (missing or empty: accepted).
        own: names of which any one present marks the directory as the command's earlier
            output (e.g. ``synthetic.json`` or the incomplete marker of an interrupted run).
        what: what the command writes, for the message.
        force: accept any directory.
    """
    root = Path(directory).expanduser()
    if force or not root.is_dir():
        return
    if any((root / name).exists() for name in own):
        return
    try:
        next(root.iterdir())
    except StopIteration:
        return
    raise InputError(f"output directory {root} is not empty and holds no earlier {what}; "
                     f"writing would replace its files: choose an empty or new directory, or "
                     f"pass {flag} to write into it")
