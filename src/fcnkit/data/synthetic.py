"""The embedded synthetic segmentation dataset, written in Pascal VOC layout.

No dataset can be downloaded where fcnkit is often first tried, so it ships a procedural
one. :func:`generate_synthetic_dataset` writes::

    OUT/JPEGImages/<id>.jpg                 RGB images (JPEG, quality 72..95)
    OUT/SegmentationClass/<id>.png          palette PNGs, values = class indices, 255 = void
    OUT/ImageSets/Segmentation/train.txt    one id per line (train_00000, ...)
    OUT/ImageSets/Segmentation/val.txt      (val_00000, ...)
    OUT/classes.txt                         "name r g b" per class index
    OUT/synthetic.json                      generator version and parameters

and, for the ``limbs`` and ``regions`` tasks, also::

    OUT/Geometry/<id>.json                  the sample's recorded geometry
    OUT/SegmentationPart/<id>.png           limbs only: 0 background, 1 body, 2 limb

so the Pascal VOC reader (:mod:`fcnkit.data.voc`) is the code path that reads it.

What an image contains (every choice is drawn from the sample's own random generator):

* a low-saturation background: a base colour, smooth multi-scale shading, sometimes a
  faint random stripe texture, and grey "clutter" strokes and patches (all labelled
  background);
* 3..7 objects of 8 classes that differ in shape, colour family and texture:

  ========  ===============  ======  =====================================
  class     shape            hue     texture
  ========  ===============  ======  =====================================
  disc      ellipse ≈ circle red     concentric rings (period 7 px)
  box       rotated rectangle blue   horizontal stripes (period 8 px)
  triangle  rotated triangle green   checkerboard (5 px cells)
  ring      annulus          orange  blocky speckle (2 px)
  cross     plus sign        magenta diagonal stripes (period 5 px)
  bar       thin long bar    yellow  bands across the bar (period 9 px)
  star      5-lobed star     cyan    dot grid (period 6 px)
  blob      irregular blob   violet  wavy vertical stripes (period 6 px)
  ========  ===============  ======  =====================================

  Sizes vary from small (radius 6..12 px, a fifth of the objects) to a radius of 0.38 ×
  the image's short side; bars are 4..9 px wide (thin); later objects occlude earlier ones;
* global illumination gradient, Gaussian blur, Gaussian noise and JPEG compression;
* a void band (label 255) along every label boundary, one pixel on each side, as the
  hand-drawn void outlines of Pascal VOC.

Every sample is drawn from ``numpy.random.default_rng([seed, split, index])``: the bytes
written are the same for the same seed whatever the number of workers, and the val set
does not change when the train count does.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from fcnkit.atomic import atomic_path, incomplete_until_done, write_json_atomic, write_text_atomic
from fcnkit.data.drawing import SPLIT_CODES as _SPLIT_CODES
from fcnkit.data.drawing import Sample, void_band
from fcnkit.data.drawing import regular_polygon as _regular_polygon
from fcnkit.data.drawing import smooth_noise as _smooth_noise
from fcnkit.data.limbs import (
    LIMBS_CLASSES,
    LIMBS_VERSION,
    PART_NAMES,
    render_limbs,
    render_limbs_sample,
)
from fcnkit.data.palette import save_mask_png, voc_palette
from fcnkit.data.pixels import to_uint8
from fcnkit.data.regions import (
    REGIONS_CLASSES,
    REGIONS_VERSION,
    render_regions,
    render_regions_sample,
)
from fcnkit.data.shapes import SHAPES_CLASSES, SHAPES_VERSION, render_shapes_sample
from fcnkit.errors import InputError
from fcnkit.jsonio import dumps_strict
from fcnkit.limits import check_synthetic

#: Class names of the synthetic dataset, index = label value (0 = background).
SYNTHETIC_CLASSES: list[str] = [
    "background",
    "disc",
    "box",
    "triangle",
    "ring",
    "cross",
    "bar",
    "star",
    "blob",
]

#: Bumped whenever the generator's output for a given seed changes.
GENERATOR_VERSION = 1


# Hue (fraction of the colour circle) of each foreground class's colour family.
_HUES = {
    "disc": 0.0,
    "box": 0.61,
    "triangle": 0.33,
    "ring": 0.08,
    "cross": 0.88,
    "bar": 0.16,
    "star": 0.5,
    "blob": 0.76,
}

Array = np.ndarray


def _hsv(h: float, s: float, v: float) -> Array:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


# --------------------------------------------------------------------------- shapes
# Each shape function gets object-frame coordinates (u, v), the polar radius r and angle
# t of (u, v), the object's radius R and the sample's rng, and returns a boolean mask.


def _shape_disc(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    aspect = rng.uniform(0.8, 1.0)
    return (u / R) ** 2 + (v / (R * aspect)) ** 2 <= 1.0


def _shape_box(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    aspect = rng.uniform(0.55, 1.0)
    half = R / math.sqrt(1.0 + aspect**2)  # corner on the circle of radius R
    return (np.abs(u) <= half) & (np.abs(v) <= half * aspect)


def _shape_triangle(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    return _regular_polygon(u, v * rng.uniform(0.8, 1.2), R, 3)


def _shape_ring(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    inner = R * rng.uniform(0.45, 0.65)
    return (r <= R) & (r >= inner)


def _shape_cross(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    arm = R * rng.uniform(0.25, 0.35)
    return ((np.abs(u) <= R) & (np.abs(v) <= arm)) | ((np.abs(v) <= R) & (np.abs(u) <= arm))


def _shape_bar(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    width = rng.uniform(4.0, 9.0)
    return (np.abs(u) <= R) & (np.abs(v) <= width / 2.0)


def _shape_star(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    depth = rng.uniform(0.3, 0.45)
    return r <= R * ((1.0 - depth) + depth * np.cos(5.0 * t))


def _shape_blob(u: Array, v: Array, r: Array, t: Array, R: float, rng) -> Array:
    edge = np.ones_like(t)
    for harmonic in (2, 3, 4):
        edge += rng.uniform(0.05, 0.14) * np.cos(harmonic * t + rng.uniform(0, 2 * math.pi))
    return r <= R * edge / 1.3


_SHAPES: dict[str, Callable[..., Array]] = {
    "disc": _shape_disc,
    "box": _shape_box,
    "triangle": _shape_triangle,
    "ring": _shape_ring,
    "cross": _shape_cross,
    "bar": _shape_bar,
    "star": _shape_star,
    "blob": _shape_blob,
}


# ------------------------------------------------------------------------- textures
# Each texture function gets image-frame coordinates (x, y), object-frame (u, v), the
# radius r from the object's centre and the rng, and returns a pattern in [0, 1] that
# mixes the class's light and dark colours. Orientation and period are fixed per class
# (small jitter), so texture is a consistent cue.


def _stripes(coord: Array, period: float, phase: float) -> Array:
    return 0.5 + 0.5 * np.cos(2.0 * math.pi * coord / period + phase)


def _tex_disc(x, y, u, v, r, rng) -> Array:
    return _stripes(r, rng.uniform(6.5, 7.5), rng.uniform(0, 2 * math.pi))


def _tex_box(x, y, u, v, r, rng) -> Array:
    theta = rng.uniform(-0.1, 0.1)
    return _stripes(y * math.cos(theta) + x * math.sin(theta), rng.uniform(7.5, 8.5),
                    rng.uniform(0, 2 * math.pi))


def _tex_triangle(x, y, u, v, r, rng) -> Array:
    cell = rng.uniform(4.5, 5.5)
    ox, oy = rng.uniform(0, cell, size=2)
    return ((np.floor((x + ox) / cell) + np.floor((y + oy) / cell)) % 2).astype(np.float32)


def _tex_ring(x, y, u, v, r, rng) -> Array:
    coarse = rng.random((x.shape[0] // 2 + 1, x.shape[1] // 2 + 1)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[: x.shape[0], : x.shape[1]]


def _tex_cross(x, y, u, v, r, rng) -> Array:
    theta = math.pi / 4 + rng.uniform(-0.1, 0.1)
    return _stripes(x * math.cos(theta) + y * math.sin(theta), rng.uniform(4.6, 5.4),
                    rng.uniform(0, 2 * math.pi))


def _tex_bar(x, y, u, v, r, rng) -> Array:
    return (_stripes(u, rng.uniform(8.0, 10.0), rng.uniform(0, 2 * math.pi)) > 0.5).astype(
        np.float32
    )


def _tex_star(x, y, u, v, r, rng) -> Array:
    period = rng.uniform(5.5, 6.5)
    ox, oy = rng.uniform(0, period, size=2)
    dx = (x + ox) % period - period / 2
    dy = (y + oy) % period - period / 2
    return (dx * dx + dy * dy <= (0.3 * period) ** 2).astype(np.float32)


def _tex_blob(x, y, u, v, r, rng) -> Array:
    wobble = 2.0 * np.sin(2.0 * math.pi * y / rng.uniform(14.0, 18.0))
    return _stripes(x + wobble, rng.uniform(5.5, 6.5), rng.uniform(0, 2 * math.pi))


_TEXTURES: dict[str, Callable[..., Array]] = {
    "disc": _tex_disc,
    "box": _tex_box,
    "triangle": _tex_triangle,
    "ring": _tex_ring,
    "cross": _tex_cross,
    "bar": _tex_bar,
    "star": _tex_star,
    "blob": _tex_blob,
}


# ----------------------------------------------------------------------- rendering


def _segment_mask(
    y: Array, x: Array, p0: tuple[float, float], p1: tuple[float, float], width: float
) -> Array:
    """Pixels within ``width / 2`` of the segment p0–p1 (points as (y, x))."""
    (y0, x0), (y1, x1) = p0, p1
    dy, dx = y1 - y0, x1 - x0
    length2 = dy * dy + dx * dx + 1e-9
    s = np.clip(((y - y0) * dy + (x - x0) * dx) / length2, 0.0, 1.0)
    return (y - (y0 + s * dy)) ** 2 + (x - (x0 + s * dx)) ** 2 <= (width / 2.0) ** 2


def _render_background(rng, y: Array, x: Array) -> Array:
    height, width = y.shape
    base = _hsv(rng.random(), rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.75))
    shade = 0.18 * _smooth_noise(rng, height, width, rng.uniform(20, 50))
    shade += 0.07 * _smooth_noise(rng, height, width, rng.uniform(3, 6))
    image = base[None, None, :] * (1.0 + shade[..., None])
    if rng.random() < 0.5:  # faint stripes of random orientation and period: not a class cue
        theta = rng.uniform(0, math.pi)
        stripes = _stripes(x * math.cos(theta) + y * math.sin(theta), rng.uniform(4, 14), 0.0)
        image *= 1.0 + rng.uniform(0.05, 0.15) * (stripes[..., None] - 0.5)
    for _ in range(int(rng.integers(2, 9))):  # grey clutter: strokes and patches
        grey = _hsv(rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.15, 0.9))
        p0 = (rng.uniform(0, height), rng.uniform(0, width))
        if rng.random() < 0.6:
            angle = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(15, 80)
            p1 = (p0[0] + length * math.sin(angle), p0[1] + length * math.cos(angle))
            region = _segment_mask(y, x, p0, p1, rng.uniform(1.0, 4.0))
        else:
            ry, rx = rng.uniform(4, 25, size=2)
            region = ((y - p0[0]) / ry) ** 2 + ((x - p0[1]) / rx) ** 2 <= 1.0
        image[region] = 0.5 * image[region] + 0.5 * grey
    return image


def _draw_object(rng, image: Array, labels: Array, class_index: int) -> None:
    name = SYNTHETIC_CLASSES[class_index]
    height, width = labels.shape
    short = min(height, width)
    if name == "bar":
        radius = rng.uniform(0.15, 0.4) * short + 8.0  # half length
    elif rng.random() < 0.2:
        radius = rng.uniform(6.0, 12.0)  # small object
    else:
        radius = rng.uniform(13.0, max(14.0, short / 2.6))
    cy, cx = rng.uniform(0.05, 0.95) * height, rng.uniform(0.05, 0.95) * width
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
    r = np.hypot(u, v)
    t = np.arctan2(v, u)
    inside = _SHAPES[name](u, v, r, t, radius, rng)
    if not inside.any():
        return
    hue = _HUES[name] + rng.uniform(-0.025, 0.025)
    sat, val = rng.uniform(0.6, 0.95), rng.uniform(0.65, 0.95)
    light = _hsv(hue, sat, val)
    dark = _hsv(hue + 0.02, sat * 0.85, val * rng.uniform(0.45, 0.62))
    pattern = _TEXTURES[name](x, y, u, v, r, rng)[..., None]
    colour = light * (1.0 - pattern) + dark * pattern
    # Directional lighting across the object: ±12 % brightness.
    light_angle = rng.uniform(0, 2 * math.pi)
    lit = 1.0 + 0.12 * (dx * math.cos(light_angle) + dy * math.sin(light_angle)) / extent
    colour = colour * lit[..., None]
    image[y0:y1, x0:x1][inside] = colour[inside]
    labels[y0:y1, x0:x1][inside] = class_index


def render_synthetic_sample(
    seed: int, split: str, index: int, size: tuple[int, int] = (150, 210)
) -> tuple[Array, Array, int]:
    """Draw one sample of the synthetic dataset.

    Args:
        seed: dataset seed.
        split: ``"train"`` or ``"val"``.
        index: sample number within the split.
        size: (height, width) in pixels.

    Returns:
        ``(image, mask, jpeg_quality)``: image (H, W, 3) uint8 RGB before JPEG
        compression, mask (H, W) uint8 class indices with 255 = void, and the JPEG quality
        the generator uses for this sample.
    """
    height, width = size
    rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], int(index)])
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _render_background(rng, y, x)
    labels = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(3, 8))):
        _draw_object(rng, image, labels, int(rng.integers(1, len(SYNTHETIC_CLASSES))))
    # Global illumination gradient (±15 %), optics blur, sensor noise.
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (x * math.cos(angle) + y * math.sin(angle)) / max(height, width)
    image *= (1.0 + rng.uniform(-0.15, 0.15) * (ramp - ramp.mean()))[..., None]
    image = ndimage.gaussian_filter(image, sigma=(rng.uniform(0.3, 0.8),) * 2 + (0.0,))
    image += rng.normal(0.0, rng.uniform(0.01, 0.035), size=image.shape).astype(np.float32)
    return to_uint8(image), void_band(labels), int(rng.integers(72, 96))


#: Synthetic tasks: ``objects`` (the default: class = shape + colour family + texture),
#: ``shapes`` (:mod:`fcnkit.data.shapes`: class = shape only), ``limbs``
#: (:mod:`fcnkit.data.limbs`: class from a body's texture, extent from thin limbs) and
#: ``regions`` (:mod:`fcnkit.data.regions`: class = a mean colour under heavy noise).
TASKS = ("objects", "shapes", "limbs", "regions")

# Tasks whose renderer also returns a part mask and the sample's geometry.
_FULL_RENDER: dict[str, Callable[..., Sample]] = {"limbs": render_limbs,
                                                  "regions": render_regions}


def task_info(task: str) -> tuple[Callable[..., tuple[Array, Array, int]], list[str], int]:
    """(render function, class names, generator version) of a synthetic task."""
    if task == "shapes":
        return render_shapes_sample, SHAPES_CLASSES, SHAPES_VERSION
    if task == "objects":
        return render_synthetic_sample, SYNTHETIC_CLASSES, GENERATOR_VERSION
    if task == "limbs":
        return render_limbs_sample, LIMBS_CLASSES, LIMBS_VERSION
    if task == "regions":
        return render_regions_sample, REGIONS_CLASSES, REGIONS_VERSION
    raise InputError(f"task={task!r} must be one of {', '.join(TASKS)}")


def _write_sample(job: tuple[Path, int, str, int, tuple[int, int], str]) -> str:
    out, seed, split, index, size, task = job
    sample_id = f"{split}_{index:05d}"
    render, classes, _ = task_info(task)
    buffer = io.BytesIO()
    if task in _FULL_RENDER:
        sample = _FULL_RENDER[task](seed, split, index, size)
        image, mask = sample.image, sample.mask
        # 4:4:4 chroma: no 2×2 chroma averaging, which would blur thin limbs' colour edges
        # and average away the regions' per-pixel chroma noise on an aligned 2×2 lattice.
        Image.fromarray(image).save(buffer, format="JPEG", quality=sample.quality, subsampling=0)
        write_text_atomic(out / "Geometry" / f"{sample_id}.json",
                          dumps_strict(sample.geometry, separators=(",", ":")) + "\n")
        if task == "limbs":
            save_mask_png(out / "SegmentationPart" / f"{sample_id}.png", sample.part,
                          _palette(len(PART_NAMES)))
    else:
        image, mask, quality = render(seed, split, index, size)
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    with atomic_path(out / "JPEGImages" / f"{sample_id}.jpg") as tmp:
        tmp.write_bytes(buffer.getvalue())
    save_mask_png(out / "SegmentationClass" / f"{sample_id}.png", mask, _palette(len(classes)))
    return sample_id


def _palette(num_classes: int = len(SYNTHETIC_CLASSES)) -> list[tuple[int, int, int]]:
    return voc_palette(num_classes)


def generate_synthetic_dataset(
    out_dir: str | os.PathLike[str],
    *,
    train: int = 800,
    val: int = 200,
    seed: int = 0,
    size: tuple[int, int] = (150, 210),
    workers: int | None = None,
    task: str = "objects",
) -> Path:
    """Write the synthetic segmentation dataset in Pascal VOC layout.

    Args:
        out_dir: output directory (created; existing files of the same names are
            replaced).
        train: number of training images (ids ``train_00000`` …).
        val: number of validation images (ids ``val_00000`` …).
        seed: dataset seed; the same seed gives the same bytes.
        size: (height, width) of every image in pixels, each ≥ 32.
        workers: worker processes (``None`` → up to 2, one per CPU core; 1 → no pool).
        task: ``"objects"`` (default), ``"shapes"`` (class decided by shape alone, image
            sizes varying around ``size``; see :mod:`fcnkit.data.shapes`), ``"limbs"``
            (:mod:`fcnkit.data.limbs`; also writes ``SegmentationPart/`` and ``Geometry/``)
            or ``"regions"`` (:mod:`fcnkit.data.regions`; also writes ``Geometry/``).

    Returns:
        The output directory as a :class:`~pathlib.Path` (a VOC2012-style root that
        ``open_dataset("voc:" + str(path), "train")`` reads). While it is written it holds
        the marker :data:`fcnkit.atomic.INCOMPLETE_MARKER` and no ``synthetic.json``: an
        interrupted run leaves a directory that readers refuse and the cache regenerates.
    """
    if isinstance(size, int):
        size = (size, size)
    if len(tuple(size)) != 2 or min(size) < 32:
        raise InputError(f"size must be (H, W) with both at least 32 pixels, got {size}")
    size = (int(size[0]), int(size[1]))
    _, classes, version = task_info(task)
    if train < 0 or val < 0 or train + val == 0:
        raise InputError(f"train/val image counts must be >= 0 and not both 0, got {train}/{val}")
    check_synthetic(train, val, size)  # before anything is created: no empty tree on refusal
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory; choose another path")
    with incomplete_until_done(out, "a synthetic dataset"):
        # The old manifest must not vouch for a mix of old and new samples if this run is
        # interrupted; the marker makes readers refuse the directory until a rerun ends.
        (out / "synthetic.json").unlink(missing_ok=True)
        _write_dataset(out, train, val, int(seed), size, workers, task, classes, version)
    return out


def _write_dataset(out: Path, train: int, val: int, seed: int, size: tuple[int, int],
                   workers: int | None, task: str, classes: list[str], version: int) -> None:
    subdirs = ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"]
    if task in _FULL_RENDER:
        subdirs += ["Geometry"] + (["SegmentationPart"] if task == "limbs" else [])
    for sub in subdirs:
        (out / sub).mkdir(parents=True, exist_ok=True)
    jobs = [(out, int(seed), split, i, size, task)
            for split, count in (("train", train), ("val", val)) for i in range(count)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(jobs)))
    if workers == 1:
        ids = [_write_sample(job) for job in jobs]
    else:
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        # close() + join(), not the context manager: its terminate() holds the task
        # queue's lock while it signals the idle workers, and a worker blocked on that lock
        # once outlived the signal and hung the parent's join (a CI run stopped for 17 min).
        pool = context.Pool(workers)
        try:
            ids = pool.map(_write_sample, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
        except BaseException:
            pool.terminate()
            raise
        pool.close()
        pool.join()
    lists = {"train": ids[:train], "val": ids[train:]}
    for split, split_ids in lists.items():
        write_text_atomic(out / "ImageSets" / "Segmentation" / f"{split}.txt",
                          "".join(f"{i}\n" for i in split_ids))
    write_text_atomic(out / "ImageSets" / "Segmentation" / "trainval.txt",
                      "".join(f"{i}\n" for i in ids))
    write_text_atomic(out / "classes.txt", "".join(
        f"{name} {r} {g} {b}\n" for name, (r, g, b) in zip(classes, _palette(len(classes)))))
    manifest = {"generator": "fcnkit.data.synthetic", "version": version,
                "seed": int(seed), "train": int(train), "val": int(val),
                "size": list(size), "classes": classes}
    if task != "objects":  # the default task's manifest stays as before (demo cache check)
        manifest["task"] = task
    if task in _FULL_RENDER:
        manifest["geometry"] = "Geometry/<id>.json"
    if task == "limbs":
        manifest["parts"] = PART_NAMES
        manifest["part_masks"] = "SegmentationPart/<id>.png"
    write_json_atomic(out / "synthetic.json", manifest)


def _synth_file(root: str | os.PathLike[str], sub: str, name: str) -> Path:
    path = Path(root) / sub / name
    if not path.is_file():
        raise InputError(f"{path}: not found; write a limbs/regions dataset with "
                         f"'fcnkit data synth --task limbs --out {root}' (or --task regions)")
    return path


def read_part_mask(root: str | os.PathLike[str], sample_id: str) -> Array:
    """The part mask of a limbs sample: (H, W) uint8, 0 background, 1 body, 2 limb.

    Args:
        root: a directory written by ``fcnkit data synth --task limbs``.
        sample_id: e.g. ``"val_00003"``.
    """
    with Image.open(_synth_file(root, "SegmentationPart", f"{sample_id}.png")) as image:
        return np.asarray(image).copy()


def read_geometry(root: str | os.PathLike[str], sample_id: str) -> dict:
    """The recorded geometry of a limbs or regions sample (see ``render_limbs`` and
    ``render_regions``): ``{"size": [H, W], "objects": [...]}`` or
    ``{"size": [H, W], "sites": [...], "classes": [...]}``."""
    path = _synth_file(root, "Geometry", f"{sample_id}.json")
    return json.loads(path.read_text(encoding="utf-8"))
