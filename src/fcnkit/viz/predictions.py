"""A validation prediction as four pictures: image | ground truth | prediction | errors.

Shared by the run report's gallery (:mod:`fcnkit.web.report`) and the TensorBoard images
(:mod:`fcnkit.training.tensorboard`). Arrays in, (H, W, 3) uint8 RGB arrays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fcnkit.data.palette import IGNORE_INDEX, colorize
from fcnkit.data.pixels import to_uint8

__all__ = ["ERROR_COLOUR", "PANEL_NAMES", "pixel_accuracy", "prediction_panels"]

#: The four panels, in the order they are shown.
PANEL_NAMES = ("image", "truth", "prediction", "errors")
#: Colour of a wrongly predicted pixel in the errors panel (void pixels are black).
ERROR_COLOUR = (220, 30, 30)


def _labels(mask: Any) -> np.ndarray:
    array = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    return array.astype(np.int64)


def prediction_panels(image: Any, truth: Any, prediction: Any,
                      palette: Sequence[Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """The four panels of one validation image.

    Args:
        image: (3, H, W) float RGB in [0, 1] (tensor or array), as the datasets yield it.
        truth: (H, W) true class indices, 255 = void.
        prediction: (H, W) predicted class indices.
        palette: RGB colour per class (``None``: VOC colours).

    Returns:
        ``{"image", "truth", "prediction", "errors"}``: (H, W, 3) uint8 arrays. In
        ``errors`` wrong pixels are :data:`ERROR_COLOUR` over the dimmed image and void
        pixels black.
    """
    rgb = to_uint8(image).transpose(1, 2, 0)
    true, pred = _labels(truth), _labels(prediction)
    errors = (rgb.astype(np.float32) * 0.35 + 25).astype(np.uint8)
    void = true == IGNORE_INDEX
    errors[(pred != true) & ~void] = ERROR_COLOUR
    errors[void] = (0, 0, 0)

    def coloured(labels: np.ndarray) -> np.ndarray:
        return np.asarray(colorize(labels.astype(np.uint8), palette).convert("RGB"))

    return {"image": rgb, "truth": coloured(true), "prediction": coloured(pred),
            "errors": errors}


def pixel_accuracy(truth: Any, prediction: Any) -> float:
    """Share of non-void pixels predicted right (NaN when every pixel is void)."""
    true, pred = _labels(truth), _labels(prediction)
    valid = true != IGNORE_INDEX
    count = int(valid.sum())
    return float(((pred == true) & valid).sum() / count) if count else float("nan")
