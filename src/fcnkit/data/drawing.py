"""Drawing helpers shared by the synthetic tasks (:mod:`fcnkit.data.synthetic`,
:mod:`fcnkit.data.shapes`, :mod:`fcnkit.data.limbs`, :mod:`fcnkit.data.regions`): polygons,
smooth noise, the VOC-style void band, split codes, the rendered-sample record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from fcnkit.constants import IGNORE_INDEX

Array = np.ndarray

#: Split name -> code in a sample's random-generator seed sequence.
SPLIT_CODES = {"train": 0, "val": 1}


@dataclass
class Sample:
    """One rendered sample: image (H, W, 3) uint8, class mask (H, W) uint8, part mask
    (H, W) uint8 (all zero for a task without parts), JPEG quality and recorded geometry."""

    image: Array
    mask: Array
    part: Array
    quality: int
    geometry: dict[str, Any] = field(default_factory=dict)


def regular_polygon(u: Array, v: Array, R: float, sides: int) -> Array:
    """Boolean mask of the points ``(u, v)`` (centred coordinates) inside a regular
    ``sides``-gon of circumradius ``R``, one edge facing +u."""
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
