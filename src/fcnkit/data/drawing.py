"""Drawing helpers shared by the synthetic tasks (:mod:`fcnkit.data.synthetic`,
:mod:`fcnkit.data.shapes`): polygons, smooth noise, the VOC-style void band, split codes."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from fcnkit.constants import IGNORE_INDEX

Array = np.ndarray

#: Split name -> code in a sample's random-generator seed sequence.
SPLIT_CODES = {"train": 0, "val": 1}


def regular_polygon(u: Array, v: Array, R: float, sides: int) -> Array:
    # Inside a regular n-gon of circumradius R iff every edge normal n_k has u·n_k <= R cos(π/n).
    inside = np.ones(u.shape, dtype=bool)
    apothem = R * math.cos(math.pi / sides)
    for k in range(sides):
        angle = 2.0 * math.pi * k / sides
        inside &= u * math.cos(angle) + v * math.sin(angle) <= apothem
    return inside


def smooth_noise(rng, height: int, width: int, cell: float) -> Array:
    """Zero-mean noise with features about ``cell`` pixels wide (bilinear value noise)."""
    gh, gw = int(height / cell) + 2, int(width / cell) + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    field = ndimage.zoom(grid, (height / (gh - 1) + 1e-6, width / (gw - 1) + 1e-6), order=1)
    return field[:height, :width]


def void_band(labels: Array, ignore_index: int = IGNORE_INDEX) -> Array:
    """Labels with every pixel next to a different label (4-neighbourhood) set to void.

    The band is one pixel wide on each side of a boundary, like the void outlines that
    Pascal VOC's annotators drew around objects.

    Args:
        labels: (H, W) integer class indices.
        ignore_index: value written into the band.

    Returns:
        A copy of ``labels`` (same dtype) with the band set to ``ignore_index``.
    """
    edge = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    out = labels.copy()
    out[edge] = ignore_index
    return out
