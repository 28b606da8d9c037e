"""What a training run records, also as TensorBoard event files (``fcnkit train --tensorboard``).

:class:`TensorBoardLogger` takes the same records as ``metrics.jsonl`` and writes them with
``torch.utils.tensorboard.SummaryWriter`` into ``RUN_DIR/tensorboard``, the layout
``tensorboard --logdir runs`` finds (one sub-directory per run, so several runs under one
``--logdir`` are overlaid). Tags:

* per logged step (``"kind": "step"`` records): ``train/loss``, ``train/lr``,
  ``train/images_per_s``;
* per epoch (``"kind": "epoch"``): ``train/epoch_loss``, ``val/miou``, ``val/pixel_acc``,
  ``val/mean_acc``, ``val/fwiou``, ``time/epoch_s``;
* :meth:`TensorBoardLogger.log_predictions`: ``val/predictions``, a few validation images
  as rows of image | ground truth | prediction | errors (:mod:`fcnkit.viz.predictions`).

The x axis is the optimizer step everywhere, so epoch points line up with the step curves.
TensorBoard is an optional extra: ``pip install 'fcnkit[tensorboard]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fcnkit.errors import InputError
from fcnkit.viz.predictions import PANEL_NAMES, prediction_panels

__all__ = ["EPOCH_TAGS", "PREDICTION_IMAGES", "STEP_TAGS", "TensorBoardLogger",
           "require_tensorboard"]

#: Validation images shown per epoch under ``val/predictions``.
PREDICTION_IMAGES = 4

#: metrics.jsonl key -> TensorBoard tag, for "step" records.
STEP_TAGS = {"loss": "train/loss", "lr": "train/lr", "img_per_s": "train/images_per_s"}
#: metrics.jsonl key -> TensorBoard tag, for "epoch" records.
EPOCH_TAGS = {"train_loss": "train/epoch_loss", "miou": "val/miou", "pixel_acc": "val/pixel_acc",
              "mean_acc": "val/mean_acc", "fwiou": "val/fwiou", "time_s": "time/epoch_s"}


def require_tensorboard() -> Any:
    """torch's ``SummaryWriter`` class; checked before a run writes anything.

    Raises:
        InputError: the ``tensorboard`` package is not installed.
    """
    try:  # an optional dependency: the tensorboard extra
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError("TensorBoard logging needs the tensorboard package: pip install "
                         "'fcnkit[tensorboard]' (or drop the TensorBoard option)") from None
    return SummaryWriter


class TensorBoardLogger:
    """Write a run's records and prediction images as TensorBoard events.

    Args:
        log_dir: directory for the event files (``RUN_DIR/tensorboard`` by convention).
        purge_step: on a resumed run, the first step written again: TensorBoard hides the
            older events from this step on (``SummaryWriter(purge_step=...)``).

    Raises:
        InputError: the ``tensorboard`` package is not installed.
    """

    def __init__(self, log_dir: str | os.PathLike[str], purge_step: int | None = None) -> None:
        writer = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = writer(log_dir=str(self.log_dir), purge_step=purge_step)

    def log_record(self, record: Mapping[str, Any]) -> None:
        """Log one ``metrics.jsonl`` record (its ``kind`` picks the tags; others are ignored)."""
        tags = {"step": STEP_TAGS, "epoch": EPOCH_TAGS}.get(str(record.get("kind")))
        if tags is None or record.get("step") is None:
            return
        step = int(record["step"])
        for key, tag in tags.items():
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), step)

    def log_predictions(self, samples: Sequence[tuple[Any, Any, Any]], step: int,
                        palette: Sequence[Sequence[int]] | None = None) -> None:
        """Log validation predictions as one image ``val/predictions``.

        Args:
            samples: ``(image, truth, prediction)`` triples: (3, H, W) float RGB in [0, 1],
                (H, W) true and predicted class indices
                (:func:`fcnkit.inference.predict.predict_samples`).
            step: the optimizer step.
            palette: RGB colour per class (``None``: VOC).
        """
        if not samples:
            return
        rows = []
        for image, truth, prediction in samples:
            panels = prediction_panels(image, truth, prediction, palette)
            rows.append(np.concatenate([panels[name] for name in PANEL_NAMES], axis=1))
        # Rows of different widths (images of different sizes) are padded with black.
        width = max(row.shape[1] for row in rows)
        rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
        self.writer.add_image("val/predictions", np.concatenate(rows, axis=0), step,
                              dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
