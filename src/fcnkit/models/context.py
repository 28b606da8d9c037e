"""A small context module: a k×k stride-2 front end, then a stack of dilated 3×3
convolutions (Yu & Koltun 2016's "context module" shape), built to make gridding reach
image pixels.

The front end's receptive field is k pixels at stride 2. A rate-r 3×3 convolution on that
stride-2 lattice reaches feature cells 2r input pixels apart, so a stack whose rates share
a factor (2, 2, 4, 4) reads only every other cell, 4 px apart in the image; when k < 4 the
front end does not fill that gap and whole image pixels are never seen (gridding in the
image, not only in the feature lattice). A dense first rate (1, 2, 4, 5) covers every cell
and every pixel. :mod:`fcnkit.reproduce.gridding` trains the three schedules at k = 2, 4, 6.

Geometry: the front end is a k×k convolution with stride 2 and padding k/2 − 1 (k even),
so feature cell i covers input pixels 2i − k/2 + 1 … 2i + k/2, centred on 2i + 0.5 for
every k: the variants differ only in the front end's field, never in alignment. The
classifier's stride-2 scores are upsampled ×2 by bilinear interpolation
(``align_corners=False``), which puts cell i exactly at output pixel 2i + 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fcnkit.errors import InputError

__all__ = ["ContextNet", "parse_rates"]

#: The front-end kernels accepted: even, so the lattice is centred alike for every k.
FRONT_KERNELS = (2, 4, 6, 8, 10, 12)


def parse_rates(rates: str | Sequence[int]) -> list[int]:
    """``"2,2,4,4"`` or ``[2, 2, 4, 4]`` -> ``[2, 2, 4, 4]`` (positive ints)."""
    if isinstance(rates, str):
        parts = [p.strip() for p in rates.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise InputError(f"dilations must be a list of ints like 1,2,4,5, got {rates!r}")
        values = [int(p) for p in parts]
    else:
        try:
            values = [int(r) for r in rates]
        except (TypeError, ValueError):
            raise InputError(f"dilations must be a list of ints, got {rates!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"dilations must be positive ints, got {rates!r}")
    return values


class ContextNet(nn.Module):
    """Front end (k×k, stride 2) + dilated 3×3 stack + 1×1 classifier, output stride 2.

    Every convolution but the classifier is followed by BatchNorm and ReLU.

    Args:
        num_classes: classifier outputs.
        front: the front end's kernel k (even, in :data:`FRONT_KERNELS`).
        dilations: the stack's rates, first (nearest the input) to last.
        channels: channels of the front end and the stack.

    Attributes:
        front_kernel, dilations, output_stride (2).
    """

    def __init__(self, num_classes: int, *, front: int = 2,
                 dilations: str | Sequence[int] = (1, 2, 4, 5), channels: int = 32) -> None:
        super().__init__()
        if front not in FRONT_KERNELS:
            raise InputError(f"front must be one of {', '.join(map(str, FRONT_KERNELS))} "
                             f"(an even kernel), got {front!r}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise InputError(f"channels must be a positive integer, got {channels!r}")
        self.front_kernel = int(front)
        self.dilations = parse_rates(dilations)
        self.output_stride = 2
        layers: list[nn.Module] = [
            nn.Conv2d(3, channels, front, stride=2, padding=front // 2 - 1, bias=False),
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        for rate in self.dilations:
            layers += [nn.Conv2d(channels, channels, 3, padding=rate, dilation=rate,
                                 bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's scores on the stride-2 feature lattice: ``ceil(H/2)`` ×
        ``ceil(W/2)`` cells (an odd side gets one zero row or column at its end first, so
        any input ≥ 1 px has an output and cell i stays centred on 2i + 0.5)."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2))
        scores: torch.Tensor = self.classifier(self.features(x))
        return scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        scores = self.coarse_scores(x)
        up = F.interpolate(scores, scale_factor=2, mode="bilinear", align_corners=False)
        return up[..., :h, :w]
