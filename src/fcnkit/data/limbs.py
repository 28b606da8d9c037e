"""The ``limbs`` synthetic task: the class lives in the body, the extent in thin limbs.

Built for the ``skips`` and ``upsampling`` claims (issue 20): a network must read the class
from a large area and the outline from local edges, and only a fine output gets both.

Each image attempts 2..4 objects and keeps those that fit. Every object is a **body** (a
smooth blob, mean radius 0.12..0.2 × the image's short side, at least 10 px) with 2..4
**limbs**: capsules 3..10 px wide (a segment, or two with an elbow), leaving the body
outward, in the body's flat base colour. The class is written in the body only, as a
stripe texture whose *orientation* is the class:

==========  ==================================================================
class       body texture (sinusoidal stripes, period 9..13 px, ±3° jitter)
==========  ==================================================================
horizontal  stripes along x (their normal points along y)
vertical    stripes along y
diagonal    stripes at +45° or −45° (either, at random: a horizontal flip keeps
            the class)
==========  ==================================================================

A 5×5 window sees under half a period, so the class needs a larger receptive field; the
limbs are flat, so their class is known only through the body they grow from, and their
extent only from their edges. Colour carries nothing: the background and every object
draw their colour from one shared distribution (hue uniform, saturation 0.2..0.8, value
0.35..0.9); an object's colour is redrawn, whatever its class, until it differs from the
background under it by at least 0.3 (RGB distance in [0, 1]³), and its stripes modulate
that colour by ±(20..35) % around it, so its mean colour is its limbs' colour.

Images under about 40 × 40 px have room for no object. No object touches
the image border (margin ≥ 2 px), objects never overlap (gap ≥ 4 px),
and there is no void band: every pixel has a label. Besides the class mask the task writes
a **part mask** (0 background, 1 body, 2 limb; a limb pixel inside its body is body) and
each sample's geometry (:func:`render_limbs`), so that thin-part IoU can be scored and
the labels checked against the recorded shapes.

Determinism follows the other tasks: every sample comes from
``numpy.random.default_rng([seed, split, index, 2])``.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any

import numpy as np
from scipy import ndimage

from fcnkit.data.drawing import SPLIT_CODES, Sample, smooth_noise
from fcnkit.data.pixels import to_uint8

Array = np.ndarray

#: Class names of the limbs task, index = label value (0 = background).
LIMBS_CLASSES: list[str] = ["background", "horizontal", "vertical", "diagonal"]

#: Part names, index = value in the part mask (``SegmentationPart/<id>.png``).
PART_NAMES: list[str] = ["background", "body", "limb"]

#: Bumped whenever this task's output for a given seed changes.
LIMBS_VERSION = 1

_TASK_CODE = 2  # appended to the rng seed sequence: no stream shared with another task
#: Limb width range in pixels (inclusive).
LIMB_WIDTH = (3.0, 10.0)
#: Stripe period range of the body texture in pixels.
STRIPE_PERIOD = (9.0, 13.0)
#: Pixels kept free along the image border, and between two objects.
BORDER_MARGIN, OBJECT_GAP = 2, 4
#: Minimum RGB distance between an object's colour and the background under it.
MIN_CONTRAST = 0.3
# Stripe normal angle (radians) per class; "diagonal" picks the sign at random.
_NORMALS = {1: math.pi / 2, 2: 0.0, 3: math.pi / 4}


def _colour(rng) -> Array:
    hue, sat, val = rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.35, 0.9)
    return np.asarray(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float64)


def body_mask(body: dict[str, Any], y: Array, x: Array) -> Array:
    """Pixels inside a body.

    In the body's frame (centre ``cy, cx``, rotated by ``angle``, axes scaled by ``a``
    and ``b``), a point at polar (ρ, t) is inside iff ρ ≤ 1 + Σ amp·cos(k·t + phase) over
    the ``harmonics`` ``[k, amp, phase]``.
    """
    dy, dx = y - body["cy"], x - body["cx"]
    c, s = math.cos(body["angle"]), math.sin(body["angle"])
    u = (dx * c + dy * s) / body["a"]
    v = (-dx * s + dy * c) / body["b"]
    t = np.arctan2(v, u)
    edge = np.ones_like(t)
    for k, amp, phase in body["harmonics"]:
        edge = edge + amp * np.cos(k * t + phase)
    return np.hypot(u, v) <= edge


def limb_mask(limb: dict[str, Any], y: Array, x: Array) -> Array:
    """Pixels within ``width / 2`` of the limb's polyline ``points`` ([[y, x], ...])."""
    inside = np.zeros(np.broadcast(y, x).shape, dtype=bool)
    radius2 = (limb["width"] / 2.0) ** 2
    for (y0, x0), (y1, x1) in zip(limb["points"][:-1], limb["points"][1:]):
        dy, dx = y1 - y0, x1 - x0
        s = np.clip(((y - y0) * dy + (x - x0) * dx) / (dy * dy + dx * dx), 0.0, 1.0)
        inside |= (y - (y0 + s * dy)) ** 2 + (x - (x0 + s * dx)) ** 2 <= radius2
    return inside


def _body_radius(body: dict[str, Any], angle: float) -> float:
    """Distance from the centre to the body's edge along image direction ``angle``."""
    # Along a ray from the centre the body-frame angle t is constant and ρ grows linearly:
    # ρ = r·√((cos δ / a)² + (sin δ / b)²) with δ = angle − body angle, so r = edge(t) / that.
    delta = angle - body["angle"]
    cu, cv = math.cos(delta) / body["a"], math.sin(delta) / body["b"]
    t = math.atan2(cv, cu)
    edge = 1.0 + sum(amp * math.cos(k * t + phase) for k, amp, phase in body["harmonics"])
    return edge / math.hypot(cu, cv)


def _draw_geometry(rng, class_index: int, height: int, width: int) -> dict[str, Any] | None:
    """An object placed fully inside the border margin, or None if it cannot fit."""
    short = min(height, width)
    mean_radius = max(10.0, rng.uniform(0.12, 0.2) * short)
    aspect = rng.uniform(0.7, 1.0)
    body = {"cy": 0.0, "cx": 0.0, "angle": float(rng.uniform(0, math.pi)),
            "a": float(mean_radius / math.sqrt(aspect)),
            "b": float(mean_radius * math.sqrt(aspect)),
            "harmonics": [[k, float(rng.uniform(0.0, 0.08)), float(rng.uniform(0, 2 * math.pi))]
                          for k in (2, 3)]}
    limbs = []
    start = rng.uniform(0, 2 * math.pi)
    count = int(rng.integers(2, 5))
    for i in range(count):
        # Evenly spread directions with jitter: limbs of one object never cross.
        direction = start + 2 * math.pi * i / count + rng.uniform(-0.3, 0.3) * math.pi / count
        edge = _body_radius(body, direction)
        limb_width = float(rng.uniform(*LIMB_WIDTH))
        root = 0.5 * edge
        first = edge - root + rng.uniform(0.08, 0.18) * short + 3.0
        p0 = (root * math.sin(direction), root * math.cos(direction))
        p1 = (p0[0] + first * math.sin(direction), p0[1] + first * math.cos(direction))
        points = [p0, p1]
        if rng.random() < 0.5:  # an elbow, bending by 25..60° either way
            turn = direction + rng.choice([-1.0, 1.0]) * rng.uniform(0.44, 1.05)
            second = rng.uniform(0.06, 0.15) * short + 2.0
            points.append((p1[0] + second * math.sin(turn), p1[1] + second * math.cos(turn)))
        limbs.append({"points": points, "width": limb_width})
    # Extent around the centre: the body lies within max(a, b)·(1 + Σ|amp|), a limb within
    # width/2 of its points' bounding box.
    reach = max(body["a"], body["b"]) * (1.0 + sum(abs(h[1]) for h in body["harmonics"]))
    low, high = [-reach, -reach], [reach, reach]
    for limb in limbs:
        for axis in (0, 1):
            low[axis] = min(low[axis], *(p[axis] - limb["width"] / 2 for p in limb["points"]))
            high[axis] = max(high[axis], *(p[axis] + limb["width"] / 2 for p in limb["points"]))
    centre = []
    for axis, side in enumerate((height, width)):
        first_ok, last_ok = BORDER_MARGIN - low[axis], side - 1 - BORDER_MARGIN - high[axis]
        if first_ok > last_ok:
            return None
        centre.append(float(rng.uniform(first_ok, last_ok)))
    body["cy"], body["cx"] = centre
    for limb in limbs:
        limb["points"] = [[float(py + centre[0]), float(px + centre[1])]
                          for py, px in limb["points"]]
    normal = _NORMALS[class_index]
    if class_index == 3 and rng.random() < 0.5:
        normal = -normal
    texture = {"normal": float(normal + rng.uniform(-1, 1) * math.pi / 60),
               "period": float(rng.uniform(*STRIPE_PERIOD)),
               "phase": float(rng.uniform(0, 2 * math.pi)),
               "contrast": float(rng.uniform(0.2, 0.35))}
    bounds = [(max(0, math.floor(centre[i] + low[i])), math.ceil(centre[i] + high[i]) + 1)
              for i in (0, 1)]
    return {"class": class_index, "body": body, "limbs": limbs, "texture": texture,
            "_window": (slice(*bounds[0]), slice(*bounds[1])), "_reach": reach}


def _object_parts(obj: dict[str, Any], y: Array, x: Array) -> tuple[Array, Array]:
    """Full-image (body, limb-outside-body) masks, evaluated in the object's window only."""
    window = obj["_window"]
    body = np.zeros(y.shape, dtype=bool)
    limbs = np.zeros(y.shape, dtype=bool)
    body[window] = body_mask(obj["body"], y[window], x[window])
    for limb in obj["limbs"]:
        limbs[window] |= limb_mask(limb, y[window], x[window])
    return body, limbs & ~body


def _limbs_apart(obj: dict[str, Any], y: Array, x: Array, body: Array) -> bool:
    """Each limb's outside part is one piece that no other limb of the object touches."""
    window = obj["_window"]
    yw, xw, inside = y[window], x[window], body[window]
    seen = np.zeros_like(inside)
    for limb in obj["limbs"]:
        own = limb_mask(limb, yw, xw) & ~inside
        if ndimage.label(own)[1] != 1:
            return False
        if (ndimage.binary_dilation(own, iterations=2) & seen).any():
            return False
        seen |= own
    return True


def render_limbs(seed: int, split: str, index: int, size: tuple[int, int] = (150, 210)) -> Sample:
    """Draw one sample of the limbs task with its part mask and geometry.

    Args:
        seed: dataset seed.
        split: ``"train"`` or ``"val"``.
        index: sample number within the split.
        size: (height, width) in pixels.

    Returns:
        A :class:`Sample`: ``image`` (H, W, 3) uint8 before JPEG, ``mask`` (H, W) uint8
        class indices, ``part`` (H, W) uint8 part indices (:data:`PART_NAMES`), the JPEG
        quality and ``geometry`` ``{"size": [H, W], "objects": [...]}``, each object
        ``{"class", "body", "limbs", "texture", "colour"}`` (see :func:`body_mask`,
        :func:`limb_mask`).
    """
    height, width = size
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index), _TASK_CODE])
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    background = _colour(rng)
    image = background[None, None, :] * (
        1.0 + 0.15 * smooth_noise(rng, height, width, rng.uniform(20, 50))[..., None])
    mask = np.zeros((height, width), dtype=np.uint8)
    part = np.zeros((height, width), dtype=np.uint8)
    gap = np.full((height, width), np.inf)  # distance to the nearest object pixel
    objects = []
    for _ in range(int(rng.integers(2, 5))):
        class_index = int(rng.integers(1, len(LIMBS_CLASSES)))
        for _attempt in range(40):
            obj = _draw_geometry(rng, class_index, height, width)
            if obj is None:  # too large for the image
                continue
            if gap[int(obj["body"]["cy"]), int(obj["body"]["cx"])] <= obj["_reach"] + OBJECT_GAP:
                continue  # its body alone would come too close to an object
            body, limbs = _object_parts(obj, y, x)
            if (gap[body | limbs] > OBJECT_GAP).all() and _limbs_apart(obj, y, x, body):
                break
        else:
            continue
        del obj["_window"], obj["_reach"]
        footprint = body | limbs
        under = image[footprint].mean(axis=0)
        for _ in range(12):  # class-blind visibility rule
            colour = _colour(rng)
            if float(np.linalg.norm(colour - under)) >= MIN_CONTRAST:
                break
        tex = obj["texture"]
        stripes = np.cos(2 * math.pi * (x * math.cos(tex["normal"]) + y * math.sin(tex["normal"]))
                         / tex["period"] + tex["phase"])
        image[body] = colour * (1.0 + tex["contrast"] * stripes[body])[:, None]
        image[limbs] = colour
        mask[footprint] = class_index
        part[body], part[limbs] = 1, 2
        gap = ndimage.distance_transform_edt(mask == 0)
        obj["colour"] = [float(c) for c in colour]
        objects.append(obj)
    angle = rng.uniform(0, 2 * math.pi)  # global illumination gradient, ±10 %
    ramp = (x * math.cos(angle) + y * math.sin(angle)) / max(height, width)
    image *= (1.0 + rng.uniform(-0.1, 0.1) * (ramp - ramp.mean()))[..., None]
    image = ndimage.gaussian_filter(image, sigma=(rng.uniform(0.3, 0.6),) * 2 + (0.0,))
    image += rng.normal(0.0, rng.uniform(0.01, 0.03), size=image.shape)
    geometry = {"size": [height, width], "objects": objects}
    return Sample(to_uint8(image), mask, part, int(rng.integers(85, 96)), geometry)


def render_limbs_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (150, 210)
) -> tuple[Array, Array, int]:
    """``(image, mask, jpeg_quality)`` of :func:`render_limbs`, as the other tasks return."""
    sample = render_limbs(seed, split, index, size)
    return sample.image, sample.mask, sample.quality
