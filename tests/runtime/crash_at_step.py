"""``fcnkit train`` in which one rank dies abruptly after a given global step: the simulated
crash of the elastic-restart test (``test_runtime_distributed.py``), kept out of fcnkit.

    torchrun ... tests/runtime/crash_at_step.py RANK:STEP train --data ... --resume auto

Rank ``RANK`` calls ``os._exit(17)`` (no cleanup at all, as a killed process) right after
its optimizer step number ``STEP``, on torchrun's first attempt only
(``TORCHELASTIC_RESTART_COUNT`` 0), so that a restarted worker group can finish.
"""

from __future__ import annotations

import os
import sys

import fcnkit.training.loop as loop
from fcnkit.cli import main


def crash_after_step(rank: int, at: int) -> None:
    """Make ``loop.train_step`` end the process on ``rank`` once ``state.step == at``."""
    original = loop.train_step

    def step_then_die(state, images, masks):
        loss = original(state, images, masks)
        if state.info.rank == rank and state.step == at:
            os._exit(17)
        return loss

    loop.train_step = step_then_die


if __name__ == "__main__":
    spec, *argv = sys.argv[1:]
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        target, _, step = spec.partition(":")
        crash_after_step(int(target), int(step))
    raise SystemExit(main(argv))
