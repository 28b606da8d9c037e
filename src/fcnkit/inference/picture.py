"""A decoded picture read one tile at a time, for tiled prediction of huge images.

``np.asarray(picture)`` of an 8000 × 8000 RGB image holds PIL's own copy (4 bytes a
pixel), the serialised bytes and the array (3 bytes a pixel each) at once: about 10
bytes a pixel at the peak, then 3 more for as long as the array lives beside the
picture. Tiled prediction only ever reads one tile, so :class:`PictureTiles` keeps the
picture alone (4 bytes a pixel) and copies each tile out of it when it is needed. The
tile's values are those of the same window of ``np.asarray(picture)``, so the labels are
bit for bit those of the array path (``tests/inference/test_inference_picture.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["PictureTiles"]


class PictureTiles:
    """An RGB PIL image seen as a ``(1, 3, H, W)`` uint8 batch that is read by tiles.

    Tiled inference (:func:`fcnkit.inference.labels.iter_logit_blocks`) asks it for
    ``tile(top, left, height, width)`` where it would slice a tensor; whole-image
    inference asks for :meth:`to_tensor`, the one full copy.
    """

    def __init__(self, picture: Image.Image) -> None:
        if picture.mode != "RGB":
            raise ValueError(f"PictureTiles needs an RGB picture, got mode {picture.mode!r}")
        width, height = picture.size
        self.picture = picture
        self.shape = torch.Size((1, 3, height, width))
        self.device = torch.device("cpu")

    def dim(self) -> int:
        return 4

    def tile(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        """Rows ``[top, top + height)`` and columns ``[left, left + width)`` (clipped to
        the picture) as a ``(1, 3, h, w)`` uint8 tensor: a view of a new (h, w, 3) array,
        strided like ``torch.from_numpy(np.asarray(picture)).permute(2, 0, 1)``."""
        full_height, full_width = self.shape[-2:]
        box = (left, top, min(left + width, full_width), min(top + height, full_height))
        pixels = np.array(self.picture.crop(box))  # a writable (h, w, 3) uint8 copy
        return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)

    def to_tensor(self) -> torch.Tensor:
        """The whole picture as a ``(1, 3, H, W)`` uint8 tensor (one full copy)."""
        return torch.from_numpy(np.array(self.picture)).permute(2, 0, 1).unsqueeze(0)
