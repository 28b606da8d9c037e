"""Reading images and label masks from files: one checked reader for each.

:func:`read_image_array` / :func:`read_image` give an RGB image (uint8 (H, W, 3), or a
float tensor (3, H, W) in [0, 1]); :func:`read_mask` gives an (H, W) uint8 array of class
indices (255 = void), from a single-channel PNG or, through a colour table, an RGB one.
A file that cannot be read is an :class:`~fcnkit.errors.InputError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fcnkit.atomic import check_regular_file
from fcnkit.constants import IGNORE_INDEX
from fcnkit.data.pixels import unit_float
from fcnkit.errors import InputError, first_line

__all__ = ["IMAGE_EXTENSIONS", "RGB", "VOC_VOID_COLOUR", "check_labels", "colour_lookup",
           "read_image", "read_image_array", "read_image_picture", "read_mask"]

RGB = tuple[int, int, int]

#: Image file extensions the folder reader recognises (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Colour of void pixels in Pascal VOC's colour-rendered masks.
VOC_VOID_COLOUR: RGB = (224, 224, 192)


def _open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path``; corrupt or truncated files raise InputError (a FIFO
    or device too, before it is opened)."""
    check_regular_file(path, f"{what} file")
    try:
        handle = Image.open(path)
        try:
            handle.load()
            # In place: no copy of an upright image (a huge photo would briefly be held
            # twice); a rotated one is transposed into a new buffer that replaces it.
            ImageOps.exif_transpose(handle, in_place=True)
            if getattr(handle, "n_frames", 1) > 1:  # multi-frame files keep their file open
                frame = handle.copy()
                handle.close()
                return frame
            return handle  # single-frame files are closed by load()
        except BaseException:
            handle.close()
            raise
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found; check the dataset path") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: {what} is too large to decode safely ({exc}); downscale "
                         "it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = first_line(exc)
        raise InputError(
            f"{path}: cannot read {what} ({reason}); replace or remove the file "
            "(or skip bad samples)"
        ) from None


def _exif_stored_size(path: Path) -> tuple[int, int] | None:
    """(W, H) as stored in the file if its EXIF orientation turns it by 90° (tags 5–8), so
    that it is read transposed; None otherwise (or if the file cannot be opened)."""
    try:
        with Image.open(path) as handle:
            if handle.getexif().get(0x0112) in (5, 6, 7, 8):
                return handle.size
    except (OSError, SyntaxError, ValueError):
        pass
    return None


def read_image_array(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, EXIF orientation applied.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit inputs are converted to
    8-bit RGB; 16-bit values are scaled by the type's range (65535 → 255), float images
    by 1.0 → 255. A corrupt or truncated file raises :class:`InputError` naming it.
    """
    return np.asarray(read_image_picture(path))


def read_image_picture(path: str | os.PathLike[str]) -> Image.Image:
    """An image file as a decoded PIL image in mode ``"RGB"``, converted and oriented as
    :func:`read_image_array` describes (same errors).

    PIL holds an RGB image at 4 bytes a pixel. A huge image can be read from it one tile
    at a time (``np.asarray(picture.crop(box))``, :class:`fcnkit.inference.picture.PictureTiles`)
    instead of being copied whole into an array, whose conversion briefly holds the
    picture, PIL's serialised bytes and the array together (about 10 bytes a pixel).
    """
    image = _open_image(Path(path), "image")
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(np.repeat(_wide_gray_to_uint8(image)[..., None], 3, axis=2))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA").convert("RGB")
    if image.mode != "RGB":  # convert() copies even an RGB image: 4 more bytes a pixel
        image = image.convert("RGB")
    return image


#: Full-scale value of PIL's wide grayscale modes. 16-bit files (PNG, TIFF) open as
#: ``I;16*`` or, in older Pillow, ``I``: both hold 0..65535. ``F`` holds floats in [0, 1]
#: (torchvision's convention for float images, ``transforms.v2.ToDtype(scale=True)``).
_FULL_SCALE = {"I": 65535.0, "F": 1.0}


def _wide_gray_to_uint8(image: Image.Image) -> np.ndarray:
    """16/32-bit or float grayscale → uint8, scaled by the type's range, not the image's max.

    ``v8 = round(v16 * 255 / 65535)`` (= v16 / 257), as ``ToDtype(torch.uint8, scale=True)``
    does, so the same picture stored in 8 and in 16 bits reads the same.
    """
    array = np.asarray(image, dtype=np.float64)
    top = _FULL_SCALE["F" if image.mode == "F" else "I"]
    array = np.nan_to_num(array, nan=0.0, posinf=top, neginf=0.0)
    return np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image file as a float tensor (3, H, W) in [0, 1], RGB.

    EXIF orientation is applied; grayscale / palette / RGBA / CMYK inputs become RGB.

    Raises:
        InputError: the file is missing, corrupt or truncated (the message names it).
    """
    return _to_float_chw(read_image_array(path))


def _to_float_chw(array: np.ndarray) -> torch.Tensor:
    # (H, W, 3) uint8 → (3, H, W) float32 in [0, 1] (data.pixels.unit_float), in numpy:
    # small tensor ops in torch are slowed down by its intra-op thread pool when the CPU
    # is busy (DataLoader workers).
    return torch.from_numpy(unit_float(array.transpose(2, 0, 1)))


def colour_lookup(palette: Sequence[Sequence[int]]) -> dict[RGB, int]:
    """Map each palette colour to its class index; the VOC void colour maps to 255."""
    lookup: dict[RGB, int] = {VOC_VOID_COLOUR: IGNORE_INDEX}
    for index, colour in enumerate(palette):
        lookup[cast(RGB, tuple(int(v) for v in colour))] = index
    return lookup


def _rgb_to_labels(rgb: np.ndarray, lookup: dict[RGB, int], path: Path) -> np.ndarray:
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[
        ..., 2
    ].astype(np.int64)
    table = {((r << 16) | (g << 8) | b): index for (r, g, b), index in lookup.items()}
    unique, inverse = np.unique(codes, return_inverse=True)
    labels = np.empty(len(unique), dtype=np.uint8)
    for n, code in enumerate(unique.tolist()):
        if code not in table:
            colour = (code >> 16, (code >> 8) & 255, code & 255)
            raise InputError(
                f"{path}: mask colour {colour} is not a class colour; add it to classes.txt "
                "as 'name R G B' or store masks as class indices"
            )
        labels[n] = table[code]
    return labels[inverse.reshape(codes.shape)]


def read_mask(
    path: str | os.PathLike[str],
    num_classes: int | None = None,
    colours: dict[RGB, int] | None = None,
) -> np.ndarray:
    """Read a label mask as an (H, W) uint8 array of class indices (255 = void).

    Palette ("P") and grayscale ("L", "I;16", "1") masks hold class indices directly.
    RGB(A) masks are mapped through ``colours`` (colour → class index) when every colour
    in them is in it; otherwise one whose three channels are equal is read as grayscale,
    and any other is rejected.

    Args:
        path: mask file (PNG).
        num_classes: if given, labels ≥ ``num_classes`` other than 255 raise InputError.
        colours: colour → class index table for RGB masks (see :func:`colour_lookup`).

    Raises:
        InputError: unreadable file, RGB colours without a table or not in it, labels out
            of range.
    """
    file = Path(path)
    image = _open_image(file, "mask")
    if image.mode in ("P", "L", "1"):
        labels = np.asarray(image if image.mode != "1" else image.convert("L"))
        if image.mode == "1":
            labels = (labels > 0).astype(np.uint8)
    elif image.mode in ("LA", "PA"):
        labels = np.asarray(image.getchannel(0))
    elif image.mode.startswith("I"):
        wide = np.asarray(image).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 255):
            raise InputError(f"{file}: mask labels {wide.min()}..{wide.max()} do not fit 0..255; "
                             "store class indices 0..254 with 255 = void")
        labels = wide.astype(np.uint8)
    else:
        rgb = np.asarray(image.convert("RGB"))
        gray = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        if colours:
            # Class colours first: black/white or (128, 128, 128) are colours too.
            try:
                labels = _rgb_to_labels(rgb, colours, file)
            except InputError:
                if not gray:
                    raise
                labels = rgb[..., 0].copy()
        elif gray:
            labels = rgb[..., 0].copy()
        else:
            raise InputError(
                f"{file}: mask is an RGB colour image but class indices were expected; save "
                "single-channel index PNGs or list each class colour in classes.txt as "
                "'name R G B'"
            )
    labels = np.array(labels, dtype=np.uint8, copy=True)  # writable, owns its memory
    if image.mode == "P" and colours:
        _check_palette_order(image, labels, colours, file)
    if num_classes is not None:
        check_labels(labels, num_classes, file)
    return labels


def _check_palette_order(image: Image.Image, labels: np.ndarray, colours: dict[RGB, int],
                         path: Path) -> None:
    """Refuse a palette mask drawn in class colours that are not at their class's index (an
    RGB mask an editor saved as "indexed", its palette in the editor's order): its indices
    would be read as the wrong classes. Palettes of other colours are not checked."""
    palette = image.getpalette() or []
    used = [int(i) for i in np.flatnonzero(np.bincount(labels.ravel(), minlength=256))]
    if not used or 3 * used[-1] + 3 > len(palette):
        return  # indices past the palette's end: not a colour rendering
    shown = [cast(RGB, tuple(palette[3 * i: 3 * i + 3])) for i in used]
    if len(set(shown)) < len(shown) or not all(colour in colours for colour in shown):
        return
    for index, colour in zip(used, shown):
        if colours[colour] != index:
            raise InputError(
                f"{path}: palette index {index} is drawn in {colour}, the colour of class "
                f"{colours[colour]} in the class list; the palette is not in class order: "
                "save class indices (palette index = class) or an RGB colour mask"
            )


def check_labels(labels: np.ndarray, num_classes: int, path: Path | str) -> None:
    """Raise InputError if ``labels`` holds a value ≥ ``num_classes`` other than 255."""
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    bad = [int(v) for v in present if v >= num_classes and v != IGNORE_INDEX]
    if bad:
        raise InputError(
            f"{path}: mask label {bad[0]} is not a class (0..{num_classes - 1}, 255 = void); "
            "fix the mask or list all classes in classes.txt"
        )
