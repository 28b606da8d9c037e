"""Constants shared across fcnkit, one definition each (no torch import here).

``IGNORE_INDEX`` is the label of "void" pixels: Pascal VOC marks object boundaries and
ambiguous regions with 255 in its ``SegmentationClass`` PNGs and its devkit leaves them
out of the evaluation; the loss ignores them too, as torchvision's
``references/segmentation`` does (``ignore_index=`` this value).
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX", "MAX_CLASSES"]

#: Label of "void" / ignored pixels in every mask fcnkit reads, writes, trains and scores on.
IGNORE_INDEX = 255

#: Most classes a model or dataset may have: masks are 8-bit PNGs whose value 255 is void,
#: so labels 0..254 are the classes (a checkpoint claiming more is refused).
MAX_CLASSES = 255
