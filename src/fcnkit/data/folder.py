"""The image/mask folder layout (``--data folder:ROOT``) and its ``classes.txt``.

Folder layout::

    ROOT/images/<split>/<stem>.<jpg|jpeg|png|bmp|tif|tiff|webp>
    ROOT/masks/<split>/<stem>.png      single-channel class indices, 255 = void
    ROOT/classes.txt                   optional: one class per line, "name" or "name R G B"

Without ``classes.txt`` the classes are ``class_0 … class_{K-1}`` with K = 1 + the largest
label found in any mask under ``masks/``. Masks stored as RGB colours are mapped to class
indices through the colours listed in ``classes.txt`` (the VOC void colour 224 224 192
maps to 255); without colours they are rejected. The files are read by
:mod:`fcnkit.data.images`, the samples by :class:`fcnkit.data.dataset.SegmentationDataset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fcnkit.atomic import read_text_utf8
from fcnkit.constants import IGNORE_INDEX
from fcnkit.data.dataset import SegmentationDataset
from fcnkit.data.images import IMAGE_EXTENSIONS, RGB, colour_lookup, read_mask
from fcnkit.errors import InputError, warn

__all__ = ["FolderDataset", "read_classes_file"]


def read_classes_file(path: str | os.PathLike[str]) -> tuple[list[str], list[RGB] | None]:
    """Parse ``classes.txt``: one class per line, ``name`` or ``name R G B``.

    Line ``i`` (blank lines and ``#`` comments skipped) names class index ``i``. Values
    may be separated by spaces, tabs or commas. Either every line has a colour or none.

    Returns:
        ``(names, palette)`` with ``palette`` ``None`` when no colours are given.
    """
    file = Path(path)
    names: list[str] = []
    colours: list[RGB | None] = []
    for number, raw in enumerate(read_text_utf8(file, "classes file").splitlines(),
                                   start=1):
        line = raw.split("#", 1)[0].replace(",", " ").replace(":", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            colours.append(None)
        elif len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts[1:]):
            colours.append((int(parts[1]), int(parts[2]), int(parts[3])))
        else:
            raise InputError(f"{file}:{number}: expected 'name' or 'name R G B' (0..255), "
                             f"got {raw.strip()!r}")
        names.append(parts[0])
    if not names:
        raise InputError(f"{file}: no class names; write one class name per line")
    if len(names) > 255:
        raise InputError(f"{file}: {len(names)} classes, at most 255 fit (255 = void)")
    if len(set(names)) != len(names):
        raise InputError(f"{file}: class names must be unique")
    if all(c is None for c in colours):
        return names, None
    if any(c is None for c in colours):
        raise InputError(f"{file}: give a colour (name R G B) on every line or on none")
    return names, [c for c in colours if c is not None]


def _find_images(directory: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for file in sorted(directory.iterdir()):
        if file.is_file() and file.suffix.lower() in IMAGE_EXTENSIONS:
            if file.stem in images:
                raise InputError(f"{directory}: two images named {file.stem!r} "
                                 f"({images[file.stem].name}, {file.name}); rename one")
            images[file.stem] = file
    return images


def _infer_num_classes(masks_dir: Path, skip_bad: bool) -> int:
    """1 + the largest non-void label in any mask under ``masks_dir`` (all splits)."""
    top = 0
    for mask_file in sorted(masks_dir.rglob("*.png")):
        try:
            labels = read_mask(mask_file)
        except InputError:
            if skip_bad:
                continue  # the sample itself is reported and dropped later
            raise
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
        present = present[present != IGNORE_INDEX]
        if present.size:
            top = max(top, int(present.max()))
    return top + 1


class FolderDataset(SegmentationDataset):
    """``images/<split>/<stem>.<ext>`` + ``masks/<split>/<stem>.png`` (+ ``classes.txt``).

    Args:
        root: dataset root.
        split: split name (a subdirectory of ``images/`` and ``masks/``).
        transform: joint transform, see :class:`SegmentationDataset`.
        skip_bad: drop bad samples (with a warning line each) instead of raising.
    """

    layout = "folder"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        transform: Callable[..., Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        root = Path(root).expanduser()
        images_dir, masks_dir = root / "images" / split, root / "masks" / split
        if not root.is_dir():
            raise InputError(f"{root}: dataset directory not found; check the path")
        for directory in (images_dir, masks_dir):
            if not directory.is_dir():
                available = sorted(p.name for p in (root / "images").glob("*") if p.is_dir())
                hint = f" (splits found: {', '.join(available)})" if available else ""
                raise InputError(f"{directory}: directory not found; folder layout needs "
                                 f"images/<split>/ and masks/<split>/{hint}")
        images = _find_images(images_dir)
        if not images:
            raise InputError(f"{images_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}); "
                             "put the split's images there")
        samples = []
        missing: list[tuple[str, str]] = []
        for stem, image_file in images.items():
            mask_file = masks_dir / f"{stem}.png"
            if mask_file.is_file():
                samples.append((stem, image_file, mask_file))
                continue
            message = f"{image_file}: no mask {mask_file.name} in {masks_dir}; add it"
            if not skip_bad:
                raise InputError(message + " or remove the image (or skip bad samples)")
            warn(f"skipping {stem}: {message}")
            missing.append((stem, message))
        classes_file = root / "classes.txt"
        if classes_file.is_file():
            classes, palette = read_classes_file(classes_file)
        else:
            classes = [f"class_{i}" for i in range(_infer_num_classes(root / "masks", skip_bad))]
            palette = None
        super().__init__(
            root, split, samples, classes, palette,
            colours=colour_lookup(palette) if palette is not None else None,
            transform=transform, skip_bad=skip_bad, skipped=missing,
        )
