"""Constants shared across fcnkit, one definition each (no torch import here).

``IGNORE_INDEX`` is the label of "void" pixels: Pascal VOC marks object boundaries and
ambiguous regions with 255 in its ``SegmentationClass`` PNGs, and the FCN paper's
evaluation and loss leave those pixels out (Long et al., CVPR 2015, §4.2 and §5;
torchvision's ``references/segmentation`` uses ``ignore_index=255`` likewise).
"""

from __future__ import annotations

__all__ = ["IGNORE_INDEX"]

#: Label of "void" / ignored pixels in every mask fcnkit reads, writes, trains and scores on.
IGNORE_INDEX = 255
