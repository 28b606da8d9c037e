"""Pascal VOC 2012 segmentation reader, with the optional SBD augmented set.

``ROOT`` may be the ``VOC2012`` directory itself, its parent (``ROOT/VOC2012``) or a
directory containing ``VOCdevkit/VOC2012``. It must hold::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png            palette PNGs, values = class indices, 255 = void
    ImageSets/Segmentation/<split>.txt    one id per line (train, val, trainval, ...)
    classes.txt                           optional: "name" or "name R G B" per class

Without ``classes.txt`` the 21 Pascal VOC classes and the VOC palette are used.

SBD (Hariharan et al. 2011, "Semantic contours from inverse detectors") adds
``benchmark_RELEASE/dataset/cls/<id>.mat`` (MATLAB struct ``GTcls.Segmentation``) and
``benchmark_RELEASE/dataset/{train,val}.txt``; it is looked for under ROOT, the VOC2012
directory and their parents. With SBD present the splits are extended by

* ``train_aug`` (unless ``ImageSets/Segmentation/train_aug.txt`` exists): SBD train ∪ SBD
  val ∪ VOC train, minus VOC val and seg11valid — the 10,582-image set of the DeepLab papers;
* ``seg11train``: SBD train minus seg11valid — the FCN paper's training set (Long et al.
  2015 §4.1: the 8,498 SBD train images), kept disjoint from its evaluation split;
* ``sbd_train``, ``sbd_val``: SBD's own lists.

``seg11valid`` — the 736 VOC2011 val images the FCN paper reports on (val minus SBD train;
the list of ``fcn.berkeleyvision.org``'s ``data/pascal/seg11valid.txt``) — ships with
fcnkit and is used when ``ImageSets/Segmentation/seg11valid.txt`` is absent.

A sample's mask is ``SegmentationClass/<id>.png``, else ``SegmentationClassAug/<id>.png``
(the common PNG conversion of SBD), else SBD's ``cls/<id>.mat``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from scipy.io import loadmat

from fcnkit.atomic import check_regular_file, read_text_utf8
from fcnkit.data.dataset import SegmentationDataset
from fcnkit.data.folder import read_classes_file
from fcnkit.data.images import IMAGE_EXTENSIONS, colour_lookup, read_mask
from fcnkit.data.palette import voc_palette
from fcnkit.errors import InputError, warn

#: The 21 Pascal VOC segmentation classes (index = label value).
VOC_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]


def find_voc_root(root: str | os.PathLike[str]) -> Path:
    """The VOC2012-style directory (with ``JPEGImages/``) at, under or inside ``root``.

    Raises:
        InputError: none of ``root``, ``root/VOC2012``, ``root/VOCdevkit/VOC2012`` has
            ``JPEGImages/``.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InputError(f"{base}: dataset directory not found; check the path")
    for candidate in (base, base / "VOC2012", base / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise InputError(f"{base}: no JPEGImages/ here or in VOC2012/ or VOCdevkit/VOC2012/; "
                     "point voc:ROOT at a Pascal VOC 2012 directory")


def find_sbd_root(root: Path, voc_root: Path) -> Path | None:
    """SBD's ``benchmark_RELEASE/dataset`` directory (holding ``cls/``), if present."""
    bases: list[Path] = []
    for base in (root, voc_root, voc_root.parent, voc_root.parent.parent, root.parent):
        if base not in bases:
            bases.append(base)
    for base in bases:
        for candidate in (base / "benchmark_RELEASE" / "dataset", base / "SBD" / "dataset",
                          base / "dataset"):
            if (candidate / "cls").is_dir():
                return candidate
    return None


def load_sbd_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``) as an (H, W) uint8 mask.

    Raises:
        InputError: the file is not a MATLAB file with ``GTcls.Segmentation``.
    """
    file = check_regular_file(path, "SBD mask file")
    try:
        content = loadmat(file, squeeze_me=True, struct_as_record=False)
        segmentation = content["GTcls"].Segmentation
    except FileNotFoundError:
        raise InputError(f"{file}: SBD mask file not found") from None
    except (KeyError, AttributeError):
        raise InputError(f"{file}: no GTcls.Segmentation in this .mat file; is it an SBD "
                         "cls/ file?") from None
    except Exception as exc:  # scipy raises assorted errors for corrupt files
        raise InputError(f"{file}: cannot read SBD .mat file ({type(exc).__name__}); "
                         "replace or remove it (or skip bad samples)") from None
    labels = np.asarray(segmentation)
    if labels.dtype.kind not in "uif" or labels.ndim != 2 or labels.size == 0:
        raise InputError(f"{file}: GTcls.Segmentation must be a 2-D array of labels 0..255")
    # NaN compares False with every bound: check integrality and range on finite values.
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all()
                                         and (labels == np.round(labels)).all()):
        raise InputError(f"{file}: GTcls.Segmentation holds NaN, infinite or fractional "
                         "values; labels must be integers 0..255")
    if labels.min() < 0 or labels.max() > 255:
        raise InputError(f"{file}: GTcls.Segmentation must be a 2-D array of labels 0..255")
    return labels.astype(np.uint8)


def _read_ids(path: Path) -> list[str]:
    text = read_text_utf8(path, "split file").removeprefix("\ufeff")  # Notepad's BOM
    ids = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: split file is empty; list one image id per line")
    named = next((i for i in ids if os.path.splitext(i)[1].lower() in IMAGE_EXTENSIONS), None)
    if named is not None:
        raise InputError(f"{path} lists {named!r}, a file name; list ids without the "
                         f"extension ({os.path.splitext(named)[0]})")
    return ids


#: Splits shipped as package data (``fcnkit/data/splits/<name>.txt``).
PACKAGED_SPLITS = ("seg11valid",)


def packaged_split_ids(name: str) -> list[str]:
    """Ids of a split that ships with fcnkit (:data:`PACKAGED_SPLITS`)."""
    # One joinpath per part: Traversable.joinpath takes several only from Python 3.11.
    text = files("fcnkit.data").joinpath("splits").joinpath(f"{name}.txt").read_text(
        encoding="utf-8")
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _available_splits(voc_root: Path, sbd_root: Path | None) -> list[str]:
    names = sorted(p.stem for p in (voc_root / "ImageSets" / "Segmentation").glob("*.txt"))
    names += list(PACKAGED_SPLITS)
    if sbd_root is not None:
        names += ["train_aug", "seg11train", "sbd_train", "sbd_val"]
    return sorted(set(names))


def _seg11valid_ids(sets: Path) -> set[str]:
    local = sets / "seg11valid.txt"
    return set(_read_ids(local) if local.is_file() else packaged_split_ids("seg11valid"))


def _split_ids(voc_root: Path, sbd_root: Path | None, split: str) -> list[str]:
    sets = voc_root / "ImageSets" / "Segmentation"
    split_file = sets / f"{split}.txt"
    if split_file.is_file():
        return _read_ids(split_file)
    if split in PACKAGED_SPLITS:
        return packaged_split_ids(split)
    if sbd_root is not None and split in ("sbd_train", "sbd_val"):
        return _read_ids(sbd_root / f"{split[4:]}.txt")
    if sbd_root is not None and split == "seg11train":
        held_out = _seg11valid_ids(sets)
        return [i for i in _read_ids(sbd_root / "train.txt") if i not in held_out]
    if sbd_root is not None and split == "train_aug":
        voc_val = set(_read_ids(sets / "val.txt")) if (sets / "val.txt").is_file() else set()
        voc_train = _read_ids(sets / "train.txt") if (sets / "train.txt").is_file() else []
        pool: set[str] = set(voc_train)
        for name in ("train.txt", "val.txt"):
            if (sbd_root / name).is_file():
                pool.update(_read_ids(sbd_root / name))
        ids = sorted(pool - voc_val - _seg11valid_ids(sets))
        if not ids:
            raise InputError(f"{sbd_root}: SBD train/val lists give no train_aug images")
        return ids
    available = _available_splits(voc_root, sbd_root)
    raise InputError(f"{split_file}: split {split!r} not found; available: "
                     f"{', '.join(available) if available else 'none'}")


class VOCDataset(SegmentationDataset):
    """Pascal VOC 2012 segmentation (+ SBD), one :class:`SegmentationDataset` per split.

    Args:
        root: see the module docstring.
        split: ``train``, ``val``, ``trainval``, any ``ImageSets/Segmentation/<split>.txt``,
            ``seg11valid`` (packaged), or with SBD ``train_aug`` / ``seg11train`` /
            ``sbd_train`` / ``sbd_val``.
        transform: joint transform, see :class:`SegmentationDataset`.
        skip_bad: drop bad samples (with a warning line each) instead of raising.
    """

    layout = "voc"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        transform: Callable[..., Any] | None = None,
        skip_bad: bool = False,
    ) -> None:
        given = Path(root).expanduser()
        voc_root = find_voc_root(given)
        sbd_root = find_sbd_root(given, voc_root)
        self.sbd_root = sbd_root
        ids = _split_ids(voc_root, sbd_root, split)
        samples, missing = [], []
        for sample_id in ids:
            try:
                samples.append((sample_id, self._image_file(voc_root, sample_id),
                                self._mask_file(voc_root, sbd_root, sample_id)))
            except InputError as exc:
                if not skip_bad:
                    raise
                warn(f"skipping {sample_id}: {exc}")
                missing.append((sample_id, str(exc)))
        classes_file = next((d / "classes.txt" for d in (voc_root, given)
                             if (d / "classes.txt").is_file()), None)
        if classes_file is not None:
            classes, palette = read_classes_file(classes_file)
        else:
            classes, palette = list(VOC_CLASSES), None
        palette = palette if palette is not None else voc_palette(len(classes))
        colours = colour_lookup(palette)

        def load_mask(path: Path) -> np.ndarray:
            if path.suffix.lower() == ".mat":
                return load_sbd_mask(path)
            return read_mask(path, None, colours)  # labels are checked by the base class

        super().__init__(voc_root, split, samples, classes, palette, colours=colours,
                         transform=transform, skip_bad=skip_bad, mask_loader=load_mask,
                         skipped=missing)

    @staticmethod
    def _image_file(voc_root: Path, sample_id: str) -> Path:
        images = voc_root / "JPEGImages"
        for ext in (".jpg", *IMAGE_EXTENSIONS, *(e.upper() for e in IMAGE_EXTENSIONS)):
            candidate = images / f"{sample_id}{ext}"
            if candidate.is_file():
                return candidate
        raise InputError(f"{images / (sample_id + '.jpg')}: image listed in the split file "
                         "is missing; add it or remove the id from the split")

    @staticmethod
    def _mask_file(voc_root: Path, sbd_root: Path | None, sample_id: str) -> Path:
        candidates = [voc_root / folder / f"{sample_id}{ext}"
                      for folder in ("SegmentationClass", "SegmentationClassAug")
                      for ext in (".png", ".PNG")]
        if sbd_root is not None:
            candidates.append(sbd_root / "cls" / f"{sample_id}.mat")
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise InputError(f"{candidates[0]}: no mask for image {sample_id}; add it or remove "
                         "the id from the split file")
