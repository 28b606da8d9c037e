"""Training curves from ``metrics.jsonl`` records: loss, learning rate, validation metrics.

The records come from :func:`fcnkit.training.runlog.read_run_log` (or a live
:class:`~fcnkit.training.runlog.RunLog`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.ticker import MaxNLocator

from fcnkit.viz import pyplot, save_figure

VAL_METRICS = (("miou", "mean IoU"), ("pixel_acc", "pixel accuracy"), ("mean_acc", "mean accuracy"))


def plot_training_curves(
    records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Draw a three-panel PNG: training loss, learning rate (per step), validation metrics.

    Args:
        records: ``metrics.jsonl`` records; ``"kind": "step"`` lines need ``step``, ``loss``
            and ``lr``; ``"kind": "epoch"`` lines need ``step``, ``epoch``, ``train_loss`` and
            any of ``miou`` / ``pixel_acc`` / ``mean_acc``.
        path: output PNG (written atomically).
        title: figure title.

    Returns:
        ``path`` as a Path.
    """
    records = list(records)
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    plt = pyplot()

    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(1, 3, figsize=(13, 3.6))
    if steps:
        ax_loss.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1,
                     label="train loss (per log window)")
    if epochs:
        ax_loss.plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-",
                     label="train loss (epoch mean)")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("training loss")
    if steps or epochs:
        ax_loss.legend(fontsize=8)
    if steps:
        ax_lr.plot([r["step"] for r in steps], [r["lr"] for r in steps], lw=1)
    ax_lr.set_xlabel("optimizer step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("learning rate (poly decay)")
    drew = False
    for key, label in VAL_METRICS:
        points = [(r["epoch"], r[key]) for r in epochs
                  if key in r and r[key] is not None and math.isfinite(r[key])]
        if points:
            ax_val.plot(*zip(*points), "o-", label=label)
            drew = True
    ax_val.set_xlabel("epoch")
    ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_val.set_ylim(0, 1)
    ax_val.set_title("validation")
    ax_val.grid(alpha=0.3)
    if drew:
        ax_val.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)
