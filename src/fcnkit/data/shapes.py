"""The ``shapes`` synthetic task: the class is decided by shape alone.

The default synthetic task (:mod:`fcnkit.data.synthetic`, ``--task objects``) gives every
class its own colour family and texture, so a per-pixel colour classifier already scores
mIoU 0.985 on it (the FCN variants still differ there: FCN-32s / 16s / 8s 0.524 / 0.739 /
0.896 in docs/reproductions.md's objects run of ``skips``). In this task every region — each
object *and* the background — draws its appearance from **one shared distribution**:

* a colour: hue uniform on the circle, saturation U(0.15, 0.9), value U(0.3, 0.95);
* a texture: flat, stripes (random orientation, period 4..12 px), checkerboard (cells
  3..8 px), dot grid, blocky speckle or smooth mottle, with a random contrast;
* smooth shading.

An object's appearance is redrawn (up to 12 times, whatever its class) until its colour
differs from the mean colour already under it by at least 0.25 (RGB distance in [0, 1]³),
so every object is visible; the rule looks only at colours, never at the class. What
tells the classes apart is the outline:

========  ==================================================  ======================
class     shape                                               what makes it hard
========  ==================================================  ======================
disc      ellipse of aspect 0.85..1                           small discs vs squares
square    rotated rectangle of aspect 0.7..1                  corners need context
triangle  rotated equilateral-ish triangle                    corners need context
ring      annulus, inner radius 0.45..0.65 R                  hole shows what is under
cross     plus sign, arm width 0.25..0.35 R                   concave
bar       thin long bar, 3..7 px wide                         thin structure
star      5-pointed star, depth 0.35..0.5                     concave
crescent  disc minus an offset disc                           concave, like a ring cut
========  ==================================================  ======================

Each image holds 4..10 objects; a quarter are small (radius 5..10 px); every third object
after the first is placed touching an earlier one (centres R₁ + R₂ apart) and later
objects occlude earlier ones; centres range over [−0.08, 1.08] of the image, so objects
are cut by the border. Image sizes vary within a split: each sample's height and width are
drawn from [0.8, 1.2] × the nominal ``size``. Blur, sensor noise, JPEG compression and the
one-pixel void band along every label boundary (255) follow the default task.

Determinism is the default task's: every sample comes from
``numpy.random.default_rng([seed, split, index, 1])``, so the same seed gives the same
bytes whatever the number of workers.
"""

from __future__ import annotations

import colorsys
import math
from typing import cast

import numpy as np
from scipy import ndimage

from fcnkit.data.drawing import SPLIT_CODES, regular_polygon, smooth_noise, void_band
from fcnkit.data.pixels import to_uint8

Array = np.ndarray

#: Class names of the shapes task, index = label value (0 = background).
SHAPES_CLASSES: list[str] = [
    "background",
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "bar",
    "star",
    "crescent",
]

#: Bumped whenever this task's output for a given seed changes.
SHAPES_VERSION = 1

# Appended to the rng seed sequence so that the two tasks never share a stream.
_TASK_CODE = 1
# Per-sample size jitter around the nominal size (fraction of each side).
SIZE_JITTER = (0.8, 1.2)
# Minimum RGB distance between an object's colour and the mean colour under it.
MIN_CONTRAST = 0.25

TEXTURES = ("flat", "stripes", "checker", "dots", "speckle", "mottle")


# ------------------------------------------------------------------------ appearance


def _random_appearance(rng) -> dict:
    """One draw from the appearance distribution shared by every class and the background."""
    hue, sat, val = rng.random(), rng.uniform(0.15, 0.9), rng.uniform(0.3, 0.95)
    return {
        "colour": np.asarray(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32),
        "texture": TEXTURES[int(rng.integers(len(TEXTURES)))],
        "contrast": float(rng.uniform(0.15, 0.45)),
        "period": float(rng.uniform(4.0, 12.0)),
        "angle": float(rng.uniform(0, math.pi)),
        "phase": rng.uniform(0, 12.0, size=2),
        "shade_cell": float(rng.uniform(15, 45)),
        "seed": int(rng.integers(2**31)),
    }


def _texture_pattern(look: dict, y: Array, x: Array) -> Array:
    """Zero-mean pattern in [-0.5, 0.5] over image coordinates ``(y, x)``."""
    kind, period = look["texture"], look["period"]
    oy, ox = look["phase"]
    if kind == "flat":
        return np.zeros(y.shape, dtype=np.float32)
    if kind == "stripes":
        coord = x * math.cos(look["angle"]) + y * math.sin(look["angle"])
        return (0.5 * np.cos(2.0 * math.pi * coord / period)).astype(np.float32)
    if kind == "checker":
        cell = period / 1.5
        return (((np.floor((x + ox) / cell) + np.floor((y + oy) / cell)) % 2) - 0.5).astype(
            np.float32)
    if kind == "dots":
        dx = (x + ox) % period - period / 2
        dy = (y + oy) % period - period / 2
        return ((dx * dx + dy * dy <= (0.3 * period) ** 2) - 0.5).astype(np.float32)
    rng = np.random.default_rng(look["seed"])
    if kind == "speckle":
        block = 2 if period < 8 else 3
        coarse = rng.random((y.shape[0] // block + 1, y.shape[1] // block + 1)) - 0.5
        fine = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)
        return fine[: y.shape[0], : y.shape[1]].astype(np.float32)
    # mottle: smooth value noise with features ~period px wide
    return np.clip(0.35 * smooth_noise(rng, y.shape[0], y.shape[1], period), -0.5, 0.5)


def _paint(look: dict, y: Array, x: Array, rng) -> Array:
    pattern = _texture_pattern(look, y, x)
    shade = 0.12 * smooth_noise(rng, y.shape[0], y.shape[1], look["shade_cell"])
    factor = 1.0 + look["contrast"] * pattern + shade
    return look["colour"][None, None, :] * factor[..., None]


# ---------------------------------------------------------------------------- shapes
# Object-frame coordinates (u, v), polar (r, t), radius R -> boolean mask.


def _disc(u, v, r, t, R, rng):
    aspect = rng.uniform(0.85, 1.0)
    return (u / R) ** 2 + (v / (R * aspect)) ** 2 <= 1.0


def _square(u, v, r, t, R, rng):
    aspect = rng.uniform(0.7, 1.0)
    half = R / math.sqrt(1.0 + aspect**2)  # corner on the circle of radius R
    return (np.abs(u) <= half) & (np.abs(v) <= half * aspect)


def _triangle(u, v, r, t, R, rng):
    return regular_polygon(u, v * rng.uniform(0.85, 1.15), R, 3)


def _ring(u, v, r, t, R, rng):
    return (r <= R) & (r >= R * rng.uniform(0.45, 0.65))


def _cross(u, v, r, t, R, rng):
    arm = R * rng.uniform(0.25, 0.35)
    return ((np.abs(u) <= R) & (np.abs(v) <= arm)) | ((np.abs(v) <= R) & (np.abs(u) <= arm))


def _bar(u, v, r, t, R, rng):
    return (np.abs(u) <= R) & (np.abs(v) <= rng.uniform(3.0, 7.0) / 2.0)


def _star(u, v, r, t, R, rng):
    depth = rng.uniform(0.35, 0.5)
    return r <= R * ((1.0 - depth) + depth * np.cos(5.0 * t))


def _crescent(u, v, r, t, R, rng):
    shift, inner = R * rng.uniform(0.35, 0.55), R * rng.uniform(0.75, 0.9)
    return (r <= R) & ((u - shift) ** 2 + v**2 > inner**2)


_SHAPES = {"disc": _disc, "square": _square, "triangle": _triangle, "ring": _ring,
           "cross": _cross, "bar": _bar, "star": _star, "crescent": _crescent}


# ------------------------------------------------------------------------- rendering


def sample_size(rng, size: tuple[int, int]) -> tuple[int, int]:
    """A sample's (height, width): each side drawn from ``SIZE_JITTER`` × nominal, ≥ 32."""
    low, high = SIZE_JITTER
    return cast(tuple[int, int],
                tuple(max(32, int(round(s * rng.uniform(low, high)))) for s in size))


def _draw_object(rng, image: Array, labels: Array, class_index: int,
                 placed: list[tuple[float, float, float]]) -> None:
    name = SHAPES_CLASSES[class_index]
    height, width = labels.shape
    short = min(height, width)
    if name == "bar":
        radius = rng.uniform(0.15, 0.4) * short + 6.0  # half length
    elif rng.random() < 0.25:
        radius = rng.uniform(5.0, 10.0)  # small object
    else:
        radius = rng.uniform(11.0, max(12.0, short / 3.0))
    if placed and rng.random() < 1 / 3:  # touching an earlier object
        py, px, pr = placed[int(rng.integers(len(placed)))]
        angle = rng.uniform(0, 2 * math.pi)
        cy, cx = py + (pr + radius) * math.sin(angle), px + (pr + radius) * math.cos(angle)
    else:
        cy, cx = rng.uniform(-0.08, 1.08) * height, rng.uniform(-0.08, 1.08) * width
    placed.append((cy, cx, radius))
    angle = rng.uniform(0, 2 * math.pi)
    extent = radius * 1.5 + 2
    y0, y1 = max(0, int(cy - extent)), min(height, int(cy + extent) + 1)
    x0, x1 = max(0, int(cx - extent)), min(width, int(cx + extent) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = y - cy, x - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    inside = _SHAPES[name](u, v, np.hypot(u, v), np.arctan2(v, u), radius, rng)
    if not inside.any():
        return
    under = image[y0:y1, x0:x1][inside].mean(axis=0)
    for _ in range(12):  # class-blind visibility rule: colour contrast with what is under it
        look = _random_appearance(rng)
        if float(np.linalg.norm(look["colour"] - under)) >= MIN_CONTRAST:
            break
    colour = _paint(look, y, x, rng)
    image[y0:y1, x0:x1][inside] = colour[inside]
    labels[y0:y1, x0:x1][inside] = class_index


def render_shapes_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (150, 210)
) -> tuple[Array, Array, int]:
    """Draw one sample of the shapes task.

    Args:
        seed: dataset seed.
        split: ``"train"`` or ``"val"``.
        index: sample number within the split.
        size: nominal (height, width); the sample's own size is drawn around it
            (:data:`SIZE_JITTER`).

    Returns:
        ``(image, mask, jpeg_quality)`` as :func:`fcnkit.data.synthetic.render_synthetic_sample`.
    """
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index), _TASK_CODE])
    height, width = sample_size(rng, size)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _paint(_random_appearance(rng), y, x, rng)
    labels = np.zeros((height, width), dtype=np.uint8)
    placed: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(4, 11))):
        _draw_object(rng, image, labels, int(rng.integers(1, len(SHAPES_CLASSES))), placed)
    image = ndimage.gaussian_filter(image, sigma=(rng.uniform(0.3, 0.7),) * 2 + (0.0,))
    image += rng.normal(0.0, rng.uniform(0.01, 0.03), size=image.shape).astype(np.float32)
    return to_uint8(image), void_band(labels), int(rng.integers(80, 96))
