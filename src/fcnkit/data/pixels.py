"""Pixel values between their stored and their computed form, one definition each.

* :func:`unit_float`: 8-bit pixels → float32 in [0, 1] as ``v * float32(1/255)`` (less than
  two float32 steps from ``v / 255``). Every reader uses it: :func:`fcnkit.data.read_image`,
  the datasets, and the tile-by-tile conversion of
  :func:`fcnkit.inference.predict.predict_image`, so a pixel has the same float value
  whichever way it was read.
* :func:`to_uint8`: float in [0, 1] → uint8 as ``clip(rint(x * 255), 0, 255)`` (round half
  to even), for pictures and generated datasets.

numpy only at import (the synthetic generator's worker processes load no torch); torch
tensors are handled through their own methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["INVERSE_255", "to_uint8", "unit_float"]

#: The float32 multiplier of an 8-bit value: ``v * INVERSE_255`` is the pixel in [0, 1].
INVERSE_255 = np.float32(1.0 / 255.0)


def unit_float(pixels: Any) -> Any:
    """uint8 pixels → float32 in [0, 1] (``v * float32(1/255)``), any shape or layout.

    Takes a numpy array (returns a new contiguous float32 array of the same shape) or a
    torch tensor (returns a float32 tensor on its device). Float pixels are returned as
    they are.
    """
    if isinstance(pixels, np.ndarray):
        if pixels.dtype != np.uint8:
            return pixels
        out = np.empty(pixels.shape, dtype=np.float32)
        np.multiply(pixels, INVERSE_255, out=out)
        return out
    if pixels.is_floating_point():
        return pixels
    if str(pixels.dtype) != "torch.uint8":
        raise TypeError(f"unit_float: expected uint8 or float pixels, got {pixels.dtype}")
    # A float32 tensor times a Python float multiplies in float32 (the scalar is cast to
    # float32 first), so this equals the numpy branch bit for bit.
    return pixels.float().mul_(float(INVERSE_255))


def to_uint8(image: Any) -> np.ndarray:
    """Float pixels in [0, 1] (array or tensor, any layout) → uint8, ``clip(rint(x * 255))``."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
