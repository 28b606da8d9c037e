"""Colour maps for label masks: the Pascal VOC palette, colourised masks, overlays.

A label mask holds one class index per pixel (0 … num_classes - 1) and 255 for "void"
(ignored). Masks are stored as palette-mode ("P") PNGs as in Pascal VOC: the pixel
values *are* the class indices and the palette only decides how they look.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from fcnkit.atomic import atomic_path
from fcnkit.constants import IGNORE_INDEX  # re-exported here; defined once there

RGB = tuple[int, int, int]


def voc_palette(num: int = 256) -> list[RGB]:
    """The Pascal VOC colour map: ``num`` RGB triples, index ``i`` → colour of class ``i``.

    Colour ``i`` spreads the bits of ``i`` over the high bits of R, G, B (bit 0 → R,
    bit 1 → G, bit 2 → B, then the next bit one place lower), as in the VOC devkit's
    ``VOClabelcolormap.m``. Index 0 is black, 1 is (128, 0, 0), 255 is (224, 224, 192).

    Args:
        num: number of colours, 1 … 256.

    Returns:
        List of ``(r, g, b)`` tuples of ints in 0 … 255.
    """
    if not 1 <= int(num) <= 256:
        raise ValueError(f"voc_palette: num must be in 1..256, got {num}")
    colours: list[RGB] = []
    for index in range(int(num)):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return colours


def _mask_array(mask: Any) -> np.ndarray:
    """A 2-D uint8 numpy view of a mask given as numpy array, torch tensor or PIL image."""
    if isinstance(mask, Image.Image):
        array = np.asarray(mask)
    elif hasattr(mask, "detach"):  # torch tensor, without importing torch here
        array = mask.detach().cpu().numpy()
    else:
        array = np.asarray(mask)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W) class indices, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"mask values must be class indices in 0..255, got {array.min()}..{array.max()}"
        )
    return array.astype(np.uint8, copy=False)


def _full_palette(palette: Sequence[Sequence[int]]) -> list[int]:
    """768 ints for PIL: ``palette`` first, the VOC colours for every index it leaves out."""
    colours = [tuple(int(v) for v in c) for c in palette]
    if len(colours) > 256:
        raise ValueError(f"a palette has at most 256 colours, got {len(colours)}")
    for c in colours:
        if len(c) != 3 or not all(0 <= v <= 255 for v in c):
            raise ValueError(f"palette colours must be (r, g, b) in 0..255, got {c}")
    colours += voc_palette(256)[len(colours) :]
    # Void keeps the VOC colour unless the palette itself defines index 255.
    return [v for c in colours for v in c]


def colorize(mask: Any, palette: Sequence[Sequence[int]] | None = None) -> Image.Image:
    """A palette-mode PIL image whose pixel values are the mask's class indices.

    Args:
        mask: (H, W) class indices (numpy array, torch tensor or PIL image), 255 = void.
        palette: RGB colour per class index; indices it does not cover (including void,
            unless it has 256 entries) get the VOC colour. ``None`` → VOC palette.

    Returns:
        A ``"P"`` mode :class:`PIL.Image.Image` of size (W, H).
    """
    image = Image.fromarray(_mask_array(mask))  # mode "L"; putpalette makes it "P"
    image.putpalette(_full_palette(palette if palette is not None else voc_palette()))
    return image


def overlay(
    image_rgb_uint8: Any,
    mask: Any,
    palette: Sequence[Sequence[int]] | None = None,
    alpha: float = 0.5,
    *,
    background: int | None = 0,
) -> Image.Image:
    """Blend class colours over an image: ``out = (1 - alpha) * image + alpha * colour``.

    Args:
        image_rgb_uint8: (H, W, 3) uint8 array or PIL image (converted to RGB).
        mask: (H, W) class indices, same H, W as the image; 255 = void.
        palette: RGB colour per class index (``None`` → VOC palette).
        alpha: opacity of the class colours, 0 … 1.
        background: class index left unblended (the image shows through), or ``None``
            to colour every class. Void pixels are never blended.

    Returns:
        A PIL RGB image.
    """
    if isinstance(image_rgb_uint8, Image.Image):
        base = np.asarray(image_rgb_uint8.convert("RGB"))
    else:
        base = np.asarray(image_rgb_uint8)
    if base.ndim != 3 or base.shape[2] != 3:
        raise ValueError(f"overlay: image must be (H, W, 3) RGB, got shape {base.shape}")
    out = np.array(base, dtype=np.uint8, copy=True)
    blend_into(out, mask, palette, alpha, background=background)  # checks alpha and shapes
    return Image.fromarray(out)


#: Rows blended at a time by :func:`blend_into`: its float temporaries stay this small.
BLEND_ROWS = 256


def blend_into(
    image_rgb_uint8: np.ndarray,
    mask: Any,
    palette: Sequence[Sequence[int]] | None = None,
    alpha: float = 0.5,
    *,
    background: int | None = 0,
) -> None:
    """:func:`overlay` in place on a writable (H, W, 3) uint8 array, ``BLEND_ROWS`` rows at a
    time, so a huge image needs no float copy of itself (same values as :func:`overlay`)."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"overlay: alpha must be in 0..1, got {alpha}")
    labels = _mask_array(mask)
    if image_rgb_uint8.shape[:2] != labels.shape:
        raise ValueError(f"overlay: mask shape {labels.shape} does not match image shape "
                         f"{image_rgb_uint8.shape[:2]}")
    table = np.asarray(_full_palette(palette if palette is not None else voc_palette()))
    table = table.reshape(256, 3).astype(np.float32)
    for start in range(0, labels.shape[0], BLEND_ROWS):
        rows = slice(start, start + BLEND_ROWS)
        strip_labels = labels[rows]
        blend = strip_labels != IGNORE_INDEX
        if background is not None:
            blend &= strip_labels != background
        strip = image_rgb_uint8[rows]
        mixed = (1.0 - alpha) * strip[blend].astype(np.float32) + alpha * table[strip_labels[blend]]
        strip[blend] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def save_mask_png(
    path: str | os.PathLike[str], mask: Any, palette: Sequence[Sequence[int]] | None = None
) -> None:
    """Write ``mask`` as a palette-mode PNG (values = class indices), atomically.

    Args:
        path: output file (``.png``).
        mask: (H, W) class indices, 255 = void (numpy array, torch tensor or PIL image).
        palette: RGB colour per class index (``None`` → VOC palette).
    """
    image = colorize(mask, palette)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
