"""The ``regions`` synthetic task: the class is a mean that only averaging reveals.

Built for the ``gridding`` claim (issue 20): a dilated network that samples its input on a
sparse lattice sees fewer independent pixels than one whose samples cover every pixel, so
its predictions are noisier and differ between neighbouring pixels.

The image is a Voronoi tiling: 3..12 sites (about one per 40 × 40 px, at least
0.55·√(area / n) apart), each cell of one of four classes. Nothing marks a cell's edge. Every
pixel's colour is

    RGB = L(y, x)·(1, 1, 1) + (m·cos θ_k + n₁(y, x))·e₁ + (m·sin θ_k + n₂(y, x))·e₂

with e₁ = (1, −1, 0)/√2 (red–green) and e₂ = (1, 1, −2)/√6 (yellow–blue) the opponent
chroma axes, θ_k = 0°, 90°, 180°, 270° for ``red``, ``yellow``, ``green``, ``blue``, the
class offset m = :data:`CHROMA_OFFSET` = 0.02, and n₁, n₂ independent white Gaussian noise of
standard deviation :data:`CHROMA_NOISE` = 0.12. The noise is six times the offset, so one
pixel's colour is near chance (nearest class mean: 30 % right, chance 25 %), while the mean
of a 15 × 15 window inside a cell is right 90 % of the time (5 × 5: 51 %; 21 × 21: 97 %;
measured in docs/datasets.md). The luminance L is the image's base grey
(0.4..0.6) with smooth shading (±8 %) and its own noise (σ 0.03); the hue angle of the
chroma is what carries the class, so brightness, contrast and saturation jitter keep it.

Labels are the cells, with no void band. Each sample's geometry (sites and their classes)
is written beside it. Every sample comes from
``numpy.random.default_rng([seed, split, index, 3])``.
"""

from __future__ import annotations

import math

import numpy as np

from fcnkit.data.drawing import SPLIT_CODES, Sample, smooth_noise
from fcnkit.data.pixels import to_uint8

Array = np.ndarray

#: Class names of the regions task, index = label value (by the hue of the mean chroma).
REGIONS_CLASSES: list[str] = ["red", "yellow", "green", "blue"]

#: Bumped whenever this task's output for a given seed changes.
REGIONS_VERSION = 1

_TASK_CODE = 3  # appended to the rng seed sequence: no stream shared with another task
#: Distance of each class's mean chroma from grey (RGB units in [0, 1]).
CHROMA_OFFSET = 0.02
#: Standard deviation of each chroma noise field.
CHROMA_NOISE = 0.12
#: Area per Voronoi site (px²) and the sites' minimum distance as a fraction of √(area/n).
AREA_PER_SITE, MIN_SITE_DISTANCE = 1600.0, 0.55

#: The opponent chroma axes e₁ (red–green) and e₂ (yellow–blue), unit vectors in RGB.
CHROMA_AXES = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / np.array(
    [[math.sqrt(2.0)], [math.sqrt(6.0)]])


def class_chroma(class_index: int) -> tuple[float, float]:
    """The mean chroma (c₁, c₂) of a class on the axes :data:`CHROMA_AXES`."""
    theta = class_index * math.pi / 2
    return CHROMA_OFFSET * math.cos(theta), CHROMA_OFFSET * math.sin(theta)


def voronoi_labels(sites: list[list[float]], classes: list[int], height: int, width: int) -> Array:
    """(H, W) uint8: the class of each pixel's nearest site (ties: the lower site index)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    d2 = np.stack([(y - sy) ** 2 + (x - sx) ** 2 for sy, sx in sites])
    return np.asarray(classes, dtype=np.uint8)[np.argmin(d2, axis=0)]


def render_regions(seed: int, split: str, index: int,
                   size: tuple[int, int] = (150, 210)) -> Sample:
    """Draw one sample of the regions task.

    Args:
        seed: dataset seed.
        split: ``"train"`` or ``"val"``.
        index: sample number within the split.
        size: (height, width) in pixels.

    Returns:
        A :class:`fcnkit.data.drawing.Sample` (``part`` is all zero: no parts) with
        ``geometry`` ``{"size": [H, W], "sites": [[y, x], ...], "classes": [k, ...]}``.
    """
    height, width = size
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index), _TASK_CODE])
    count = int(np.clip(round(height * width / AREA_PER_SITE), 3, 12))
    spacing = MIN_SITE_DISTANCE * math.sqrt(height * width / count)
    sites: list[list[float]] = []
    for _ in range(200 * count):  # dart throwing: keep a site if far enough from the others
        if len(sites) == count:
            break
        sy, sx = float(rng.uniform(0, height)), float(rng.uniform(0, width))
        if all((sy - py) ** 2 + (sx - px) ** 2 >= spacing**2 for py, px in sites):
            sites.append([sy, sx])
    classes = [int(c) for c in rng.integers(0, len(REGIONS_CLASSES), size=len(sites))]
    mask = voronoi_labels(sites, classes, height, width)
    chroma = np.array([class_chroma(k) for k in range(len(REGIONS_CLASSES))])[mask]
    chroma = chroma + rng.normal(0.0, CHROMA_NOISE, size=(height, width, 2))
    luma = rng.uniform(0.4, 0.6) * (1.0 + 0.08 * smooth_noise(rng, height, width,
                                                              rng.uniform(20, 50)))
    luma = luma + rng.normal(0.0, 0.03, size=(height, width))
    image = luma[..., None] + chroma @ CHROMA_AXES
    geometry = {"size": [height, width], "sites": sites, "classes": classes}
    return Sample(to_uint8(image), mask, np.zeros_like(mask), int(rng.integers(90, 96)), geometry)


def render_regions_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (150, 210)
) -> tuple[Array, Array, int]:
    """``(image, mask, jpeg_quality)`` of :func:`render_regions`, as the other tasks return."""
    sample = render_regions(seed, split, index, size)
    return sample.image, sample.mask, sample.quality

