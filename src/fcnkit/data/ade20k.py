"""ADE20K reader (``--data ade20k:ROOT``): the SceneParsing benchmark's 150 classes.

``ROOT`` is ``ADEChallengeData2016`` (the MIT Scene Parsing download) or its parent::

    ROOT/images/training/ADE_train_<n>.jpg        20210 images
    ROOT/images/validation/ADE_val_<n>.jpg         2000 images
    ROOT/annotations/training/ADE_train_<n>.png   one label per pixel, 0 … 150
    ROOT/annotations/validation/ADE_val_<n>.png

Split ``train`` reads ``training/``, ``val`` reads ``validation/`` (the folder names are
accepted too). In the annotations 0 is "other objects", which the benchmark does not
evaluate, and 1 … 150 are the classes of ``objectInfo150.txt``; fcnkit's labels are
0 → 255 (void) and k → k - 1, so class index 0 is ``wall``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fcnkit.constants import IGNORE_INDEX
from fcnkit.data.dataset import SegmentationDataset
from fcnkit.data.images import read_mask
from fcnkit.errors import InputError, warn

# The first name of each row of objectInfo150.txt (Idx 1 … 150), in the devkit of the
# Scene Parsing Challenge 2016 (github.com/CSAILVision/sceneparsing); index = Idx - 1.
ADE20K_CLASSES: list[str] = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television", "airplane", "dirt track", "apparel",
    "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage",
    "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike",
    "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]

#: ``--data ade20k:ROOT`` split name → folder under images/ and annotations/.
ADE20K_SPLITS = {"train": "training", "val": "validation", "training": "training",
                 "validation": "validation"}

_NUM_CLASSES = 150


def _lookup_table() -> np.ndarray:
    # annotation value → fcnkit label: 0 ("other objects") → 255, k → k - 1 for 1 … 150.
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[1:_NUM_CLASSES + 1] = np.arange(_NUM_CLASSES, dtype=np.uint8)
    return table


_TABLE = _lookup_table()


def ade20k_labels(annotation: np.ndarray, path: Path | str = "mask") -> np.ndarray:
    """Map an (H, W) uint8 SceneParsing annotation to class indices (0 → 255, k → k - 1).

    Raises:
        InputError: a value above 150 (naming ``path``).
    """
    top = int(annotation.max()) if annotation.size else 0
    if top > _NUM_CLASSES:
        raise InputError(f"{path}: value {top} is not an ADE20K SceneParsing label (0..150); "
                         "pass the annotations/ PNGs of ADEChallengeData2016")
    return _TABLE[annotation]


def find_ade20k_root(root: str | os.PathLike[str]) -> Path:
    """``root`` or ``root/ADEChallengeData2016``, whichever holds ``images/`` and
    ``annotations/``.

    Raises:
        InputError: neither does (names the missing directory).
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InputError(f"{base}: dataset directory not found; check the path")
    missing = base / "images"
    for candidate in (base, base / "ADEChallengeData2016"):
        has_images = (candidate / "images").is_dir()
        has_masks = (candidate / "annotations").is_dir()
        if has_images and has_masks:
            return candidate
        if has_images or has_masks:  # a half tree: name its missing half
            missing = candidate / ("annotations" if has_images else "images")
            break
    raise InputError(f"{missing}: directory not found; ade20k:{base} needs images/<training|"
                     "validation>/*.jpg and annotations/<training|validation>/*.png "
                     "(ADEChallengeData2016)")


class ADE20KDataset(SegmentationDataset):
    """ADE20K SceneParsing (150 classes) as (image, mask) samples, 255 = void.

    Args:
        root: ``ADEChallengeData2016`` or its parent (see the module docstring).
        split: ``train`` / ``val`` (or the folder names ``training`` / ``validation``).
        transform: joint transform, see :class:`~fcnkit.data.dataset.SegmentationDataset`.
        skip_bad: drop bad samples (a warning line each) instead of raising.

    Raises:
        InputError: an unknown split, a missing directory (named), a split without images,
            an image without its annotation (unless ``skip_bad``).
    """

    layout = "ade20k"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        transform: Callable[..., Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        base = find_ade20k_root(root)
        folder = ADE20K_SPLITS.get(split)
        if folder is None:
            raise InputError(f"ade20k: split {split!r} does not exist; choose train or val "
                             "(the test images have no annotations)")
        images_dir, masks_dir = base / "images" / folder, base / "annotations" / folder
        for directory in (images_dir, masks_dir):
            if not directory.is_dir():
                raise InputError(f"{directory}: directory not found; ade20k:{base} needs "
                                 f"images/{folder}/*.jpg and annotations/{folder}/*.png")
        samples: list[tuple[str, Path, Path]] = []
        missing: list[tuple[str, str]] = []
        for image_file in sorted(images_dir.glob("*.jpg")):
            mask_file = masks_dir / f"{image_file.stem}.png"
            if mask_file.is_file():
                samples.append((image_file.stem, image_file, mask_file))
                continue
            message = f"{image_file}: no annotation {mask_file.name} in {masks_dir}"
            if not skip_bad:
                raise InputError(message + "; add it or remove the image (or skip bad "
                                 "samples)")
            warn(f"skipping {image_file.stem}: {message}")
            missing.append((image_file.stem, message))
        if not samples and not missing:
            raise InputError(f"{images_dir}: no *.jpg images; put the split's images there")

        def load_mask(path: Path) -> np.ndarray:
            return ade20k_labels(read_mask(path), path)

        super().__init__(base, split, samples, ADE20K_CLASSES, transform=transform,
                         skip_bad=skip_bad, mask_loader=load_mask, skipped=missing)

