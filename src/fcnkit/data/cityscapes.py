"""Cityscapes reader (``--data cityscapes:ROOT``): fine annotations, 19 training classes.

``ROOT`` is the directory that holds the two packages of the official download
(``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``)::

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

with ``<split>`` one of ``train`` (2975 images, 18 cities), ``val`` (500, 3 cities) and
``test`` (1525, 6 cities; its public masks are all void). The split is the folder: no list
files. A sample's id is the file stem without ``_leftImg8bit`` (unique across cities).

The masks hold *labelIds* (0 … 33). They are mapped to *trainIds* with the official table,
:data:`CITYSCAPES_LABELS`: 19 classes (road … bicycle, trainIds 0 … 18) and 255 for the 15
labels ignored in evaluation. Label id -1 (license plate) is never written into a labelIds
image (cityscapesScripts draws only labels with an id ≥ 0), so a mask value outside 0 … 33
means the file is not a labelIds image and raises :class:`~fcnkit.errors.InputError`.
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

RGB = tuple[int, int, int]

# The official label table of cityscapesScripts, cityscapesscripts/helpers/labels.py
# (github.com/mcordts/cityscapesScripts): name, labelId, trainId, colour for every label.
# trainId 255 = ignored in training and evaluation (ignoreInEval); license plate has
# labelId -1 and trainId -1 there, i.e. it never reaches a labelIds image and is ignored.
CITYSCAPES_LABELS: tuple[tuple[str, int, int, RGB], ...] = (
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, 255, (0, 0, 142)),
)

#: labelId → trainId for all 35 labels (-1 … 33), 255 = ignored.
LABEL_TO_TRAIN_ID: dict[int, int] = {label_id: train_id
                                     for _, label_id, train_id, _ in CITYSCAPES_LABELS}

#: The 19 training classes, index = trainId (the first label with that trainId).
CITYSCAPES_CLASSES: list[str] = [name for name, _, train_id, _ in
                                 sorted((row for row in CITYSCAPES_LABELS if row[2] != 255),
                                        key=lambda row: row[2])]

#: The Cityscapes colour of each training class, index = trainId.
CITYSCAPES_PALETTE: list[RGB] = [colour for _, _, train_id, colour in
                                  sorted((row for row in CITYSCAPES_LABELS if row[2] != 255),
                                         key=lambda row: row[2])]

#: Split names: the folders under leftImg8bit/ and gtFine/.
CITYSCAPES_SPLITS = ("train", "val", "test")

_IMAGE_SUFFIX = "_leftImg8bit.png"
_MASK_SUFFIX = "_gtFine_labelIds.png"
_NUM_LABEL_IDS = 34  # labelIds 0 … 33 appear in the masks


def _lookup_table() -> np.ndarray:
    """pixel value → trainId for the labelIds 0 … 33 (256 entries; the values above 33 are
    refused by :func:`labelids_to_trainids` before the table is read)."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        if label_id >= 0:
            table[label_id] = train_id
    return table


_TABLE = _lookup_table()


def labelids_to_trainids(labels: np.ndarray, path: Path | str = "mask") -> np.ndarray:
    """Map an (H, W) uint8 labelIds mask to trainIds (0 … 18, 255 = ignored).

    Raises:
        InputError: a value above 33 (naming ``path``): not a Cityscapes labelIds image.
    """
    top = int(labels.max()) if labels.size else 0
    if top >= _NUM_LABEL_IDS:
        raise InputError(f"{path}: value {top} is not a Cityscapes labelId (0..33); pass the "
                         f"*{_MASK_SUFFIX} files (not labelTrainIds, color or instanceIds)")
    return _TABLE[labels]


def _layout_error(root: Path, missing: Path) -> InputError:
    return InputError(f"{missing}: directory not found; cityscapes:{root} needs "
                      "leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
                      "gtFine/<split>/<city>/*_gtFine_labelIds.png")


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations as (image, trainId mask) samples.

    Args:
        root: the directory with ``leftImg8bit/`` and ``gtFine/`` (see the module docstring).
        split: ``train``, ``val`` or ``test``.
        transform: joint transform, see :class:`~fcnkit.data.dataset.SegmentationDataset`.
        skip_bad: drop bad samples (a warning line each) instead of raising.

    Raises:
        InputError: an unknown split, a missing directory (named), a split without images,
            an image without its labelIds mask (unless ``skip_bad``).
    """

    layout = "cityscapes"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        transform: Callable[..., Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise InputError(f"{base}: dataset directory not found; check the path")
        if split not in CITYSCAPES_SPLITS:
            raise InputError(f"cityscapes: split {split!r} does not exist; choose one of "
                             f"{', '.join(CITYSCAPES_SPLITS)}")
        images_dir, masks_dir = base / "leftImg8bit" / split, base / "gtFine" / split
        for directory in (base / "leftImg8bit", base / "gtFine", images_dir, masks_dir):
            if not directory.is_dir():
                raise _layout_error(base, directory)
        samples: list[tuple[str, Path, Path]] = []
        missing: list[tuple[str, str]] = []
        for city in sorted(p for p in images_dir.iterdir() if p.is_dir()):
            for image_file in sorted(city.glob(f"*{_IMAGE_SUFFIX}")):
                stem = image_file.name[: -len(_IMAGE_SUFFIX)]
                mask_file = masks_dir / city.name / f"{stem}{_MASK_SUFFIX}"
                if mask_file.is_file():
                    samples.append((stem, image_file, mask_file))
                    continue
                message = f"{image_file}: no mask {mask_file.name} in {mask_file.parent}"
                if not skip_bad:
                    raise InputError(message + "; add it or remove the image (or skip bad "
                                     "samples)")
                warn(f"skipping {stem}: {message}")
                missing.append((stem, message))
        if not samples and not missing:
            raise InputError(f"{images_dir}: no <city>/*{_IMAGE_SUFFIX} images; put the "
                             "split's city folders there")

        def load_mask(path: Path) -> np.ndarray:
            return labelids_to_trainids(read_mask(path), path)

        super().__init__(base, split, samples, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE,
                         transform=transform, skip_bad=skip_bad, mask_loader=load_mask,
                         skipped=missing)

