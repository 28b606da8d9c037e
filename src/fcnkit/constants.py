"""Constants shared across fcnkit, one definition each (no torch import here).

``IGNORE_INDEX`` is the label of "void" pixels: Pascal VOC marks object boundaries and
ambiguous regions with 255 in its ``SegmentationClass`` PNGs and its devkit leaves them
out of the evaluation; the loss ignores them too, as torchvision's
``references/segmentation`` does (``ignore_index=`` this value).

``IMAGENET_MEAN`` / ``IMAGENET_STD`` are the per-channel RGB statistics of ImageNet that
torchvision's classifiers were trained with (values scaled to [0, 1]);
:data:`fcnkit.models.preprocess.IMAGENET` builds the "imagenet" normalisation on them and
:mod:`fcnkit.data.transforms` (which may not import models) uses them directly.
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "MAX_CLASSES"]

#: Label of "void" / ignored pixels in every mask fcnkit reads, writes, trains and scores on.
IGNORE_INDEX = 255

#: Most classes a model or dataset may have: masks are 8-bit PNGs whose value 255 is void,
#: so labels 0..254 are the classes (a checkpoint claiming more is refused).
MAX_CLASSES = 255

#: Per-channel RGB mean and standard deviation of ImageNet, for values in [0, 1]
#: (torchvision.models weights' transforms).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
