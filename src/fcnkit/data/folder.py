"""The image/mask folder layout (``--data folder:ROOT``) and its ``classes.txt``.

Folder layout::

    ROOT/images/<split>/<stem>.<jpg|jpeg|png|bmp|tif|tiff|webp>
    ROOT/masks/<split>/<stem>.png      single-channel class indices, 255 = void
    ROOT/classes.txt                   optional: one class per line, "name" or "name R G B"

Extensions match in any case (``.JPG``, ``.PNG``); hidden files (``.DS_Store``, macOS
``._<name>`` metadata) are skipped. Without ``classes.txt`` the classes are
``class_0 … class_{K-1}`` with K = 1 + the largest label found in any mask under
``masks/``; masks holding only 0 (and 255 = void), e.g. binary masks with 255 for the
object, are refused: that is a single class. Masks stored as RGB colours are mapped to class
indices through the colours listed in ``classes.txt`` (the VOC void colour 224 224 192
maps to 255); without colours they are rejected. The files are read by
:mod:`fcnkit.data.images`, the samples by :class:`fcnkit.data.dataset.SegmentationDataset`.
"""

from __future__ import annotations

import os
import unicodedata
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
    text = read_text_utf8(file, "classes file").removeprefix("\ufeff")  # Notepad's BOM
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].replace(",", " ").replace(":", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            colours.append(None)
        elif len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts[1:]):
            colours.append((int(parts[1]), int(parts[2]), int(parts[3])))
        else:
            coloured = len(parts) >= 4 and all(p.isdigit() for p in parts[-3:])
            words = parts[:-3] if coloured else parts
            spaced = len(words) > 1 and not any(w.isdigit() for w in words[1:])
            hint = f"; a name is one word, e.g. {'_'.join(words)}" if spaced else ""
            raise InputError(f"{file}:{number}: expected 'name' or 'name R G B' (0..255), "
                             f"got {raw.strip()!r}{hint}")
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


def _listed(directory: Path, extensions: tuple[str, ...], what: str) -> dict[str, Path]:
    """The files of ``directory`` with one of ``extensions`` (any case) by stem, in Unicode
    NFC form (macOS writes names decomposed). Hidden files (``.DS_Store``, macOS ``._name``
    metadata) are not samples and are skipped."""
    found: dict[str, Path] = {}
    for file in sorted(directory.iterdir()):
        if (file.is_file() and not file.name.startswith(".")
                and file.suffix.lower() in extensions):
            stem = _stem(file)
            if stem in found:
                raise InputError(f"{directory}: two {what} named {stem!r} "
                                 f"({found[stem].name}, {file.name}); rename one")
            found[stem] = file
    return found


def _stem(file: Path) -> str:
    return unicodedata.normalize("NFC", file.stem)


def _find_images(directory: Path) -> dict[str, Path]:
    """The split's images by stem; subdirectories are not read (an error when they hold the
    only images, a warning beside images of the split's own)."""
    images = _listed(directory, IMAGE_EXTENSIONS, "images")
    nested = sorted(p.name for p in directory.iterdir()
                    if p.is_dir() and not p.name.startswith("."))
    if not images:
        hint = (f"; images in subdirectories ({', '.join(nested)}) are not read, move them "
                "up" if nested else "; put the split's images there")
        raise InputError(f"{directory}: no images ({', '.join(IMAGE_EXTENSIONS)}){hint}")
    if nested:
        warn(f"{directory}: subdirectories ({', '.join(nested)}) are not read; move their "
             "images up into the split's folder to use them")
    return images


def _pair(images: dict[str, Path], masks_dir: Path, skip_bad: bool
          ) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """(stem, image, mask) of each image with a ``<stem>.png`` mask, and (stem, reason) of
    each without one (InputError for the first unless ``skip_bad``)."""
    masks = _listed(masks_dir, (".png",), "masks")
    others = {_stem(f): f.name for f in sorted(masks_dir.iterdir(), reverse=True)
              if f.is_file() and _stem(f) not in masks and not f.name.startswith(".")}
    samples: list[tuple[str, Path, Path]] = []
    missing: list[tuple[str, str]] = []
    for stem, image_file in images.items():
        if stem in masks:
            samples.append((stem, image_file, masks[stem]))
            continue
        message = f"{image_file}: no mask {stem}.png in {masks_dir}; add it"
        if stem in others:  # e.g. s0.jpg: lossy compression would change the labels
            message += f" (found {others[stem]}: masks are lossless PNG files)"
        elif not missing:  # e.g. s0_mask.png: said once, a search through every mask
            named = next((m.name for key, m in masks.items() if key.startswith(stem)
                          and not key[len(stem)].isalnum()), None)  # s1_mask, not s10
            if named is not None:
                message += f" (found {named}: name each mask <image stem>.png)"
        if not skip_bad:
            raise InputError(message + " or remove the image (or skip bad samples)")
        warn(f"skipping {stem}: {message}")
        missing.append((stem, message))
    return samples, missing


def _is_mask_file(path: Path) -> bool:
    return path.suffix.lower() == ".png" and not path.name.startswith(".") and path.is_file()


def _infer_num_classes(masks_dir: Path, skip_bad: bool) -> int:
    """1 + the largest non-void label in any mask under ``masks_dir`` (all splits); masks
    holding no label but 0 (binary masks with 255 for the object) are an InputError."""
    top, void, read = 0, False, False
    for mask_file in sorted(p for p in masks_dir.rglob("*") if _is_mask_file(p)):
        try:
            labels = read_mask(mask_file)
        except InputError:
            if skip_bad:
                continue  # the sample itself is reported and dropped later
            raise
        read = True
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
        void = void or bool(present.size and present[-1] == IGNORE_INDEX)
        present = present[present != IGNORE_INDEX]
        if present.size:
            top = max(top, int(present.max()))
    if top == 0 and read:  # one class: nothing to tell apart (often binary masks with 255 = object)
        held = "only label 0 and 255 (void)" if void else "only label 0"
        raise InputError(f"{masks_dir}: the masks hold {held}, a single class; 255 is void, "
                         "so store objects as labels 1, 2, ... (binary masks: mask // 255)")
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
                available = sorted(p.name for p in (root / "images").glob("*")
                                   if p.is_dir() and (root / "masks" / p.name).is_dir())
                hint = f" (splits found: {', '.join(available)})" if available else ""
                raise InputError(f"{directory}: directory not found; folder layout needs "
                                 f"images/<split>/ and masks/<split>/{hint}")
        samples, missing = _pair(_find_images(images_dir), masks_dir, skip_bad)
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
