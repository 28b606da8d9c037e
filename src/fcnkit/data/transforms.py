"""Joint image/mask transforms (torchvision.transforms.v2 + tv_tensors), normalisation, batching.

A dataset calls its transform as ``transform(tv_tensors.Image(image), tv_tensors.Mask(mask))``
with ``image`` float (3, H, W) in [0, 1] and ``mask`` int64 (H, W), 255 = void. The v2
transforms dispatch on the tensor type, so geometric steps move both alike — with
nearest-neighbour resampling for the mask — and photometric steps touch only the image.

Training (:func:`train_transform`): random scale (factor in ``scale_range``, the FCN /
DeepLab practice), random crop to ``crop_size`` padding the image with 0 and the mask with
255 where the scaled image is smaller, horizontal flip, colour jitter, ImageNet
normalisation. Evaluation (:func:`eval_transform`): normalisation only, whole image.

Batches of images of different sizes go through :func:`pad_collate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fcnkit.arith import as_pair
from fcnkit.constants import IMAGENET_MEAN, IMAGENET_STD
from fcnkit.data.palette import IGNORE_INDEX


def _channel_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"expected an RGB image (3, H, W) or batch (N, 3, H, W), got shape "
                         f"{tuple(image.shape)}")
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(shape)
    return mean, std


def normalize(image: torch.Tensor) -> torch.Tensor:
    """``(image - IMAGENET_MEAN) / IMAGENET_STD`` per channel; image (3, H, W) or
    (N, 3, H, W), float in [0, 1]. Returns a new tensor."""
    mean, std = _channel_stats(image)
    return (image - mean) / std


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``image * IMAGENET_STD + IMAGENET_MEAN`` (not clamped)."""
    mean, std = _channel_stats(image)
    return image * std + mean


class RandomScale(v2.Transform):
    """Resize image and mask together by one random factor drawn from ``scale_range``.

    The image is resized bilinearly (antialiased when shrinking), the mask with nearest
    neighbour (v2 picks the kernel by type), so labels are never blended.

    Args:
        scale_range: (low, high) scale factors, sampled uniformly.
    """

    def __init__(self, scale_range: Sequence[float] = (0.5, 2.0)) -> None:
        super().__init__()
        low, high = (float(v) for v in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got "
                             f"{tuple(scale_range)}")
        self.scale_range = (low, high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=params["size"],
                                 interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


def train_transform(
    crop_size: int | Sequence[int],
    scale_range: Sequence[float] | None = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: bool = True,
    normalize: Any = None,
) -> v2.Compose:
    """The joint training augmentation: scale, crop (pad 0 / 255), flip, jitter, normalise.

    Args:
        crop_size: output size, int or (H, W); smaller inputs are padded (image with 0,
            mask with 255 = void, so padding never counts in the loss).
        scale_range: random scale factors (low, high), ``None`` for no scaling.
        hflip: random horizontal flip with probability 0.5.
        color_jitter: random brightness, contrast and saturation (factors 0.7 … 1.3).
        normalize: the last step, a v2 transform on [0, 1] RGB images (default: ImageNet
            mean/std; a model's own is ``fcnkit.models.preprocess.Preprocessing.transform()``).

    Returns:
        A ``v2.Compose`` taking and returning ``(tv_tensors.Image, tv_tensors.Mask)``.
    """
    crop = as_pair(crop_size, "crop_size", minimum=1)
    steps: list[Any] = []
    if scale_range is not None:
        steps.append(RandomScale(scale_range))
    steps.append(v2.RandomCrop(crop, pad_if_needed=True,
                               fill={tv_tensors.Image: 0.0, tv_tensors.Mask: IGNORE_INDEX}))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if color_jitter:
        # No hue jitter: hue is a class cue (sky, grass; the synthetic classes' colour
        # families), and it is the slowest v2 colour op (an RGB → HSV round trip).
        steps.append(v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3))
    steps += [
        v2.ToDtype(torch.float32, scale=True),  # uint8 images → [0, 1]; masks untouched
        normalize or _imagenet_normalize(),
    ]
    return v2.Compose(steps)


def _imagenet_normalize() -> v2.Normalize:
    return v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


def eval_transform(normalize: Any = None) -> v2.Compose:
    """Evaluation: the whole image, normalised by ``normalize`` (default ImageNet mean/std,
    see :func:`train_transform`); the mask is unchanged."""
    return v2.Compose([
        v2.ToDtype(torch.float32, scale=True),
        normalize or _imagenet_normalize(),
    ])


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, mask) pairs of different sizes, padding at the bottom and right.

    Images are padded with 0 (the mean after normalisation), masks with 255 (void), up
    to the largest height and width in the batch.

    Args:
        batch: sequence of (image (3, H_i, W_i) float, mask (H_i, W_i) integer).

    Returns:
        ``(images (N, 3, H_max, W_max), masks (N, H_max, W_max) int64)``.
    """
    if not batch:
        raise ValueError("pad_collate: empty batch")
    height = max(int(image.shape[-2]) for image, _ in batch)
    width = max(int(image.shape[-1]) for image, _ in batch)
    first = batch[0][0]
    images = first.new_zeros((len(batch), first.shape[0], height, width))
    masks = torch.full((len(batch), height, width), IGNORE_INDEX, dtype=torch.int64)
    for n, (image, mask) in enumerate(batch):
        h, w = image.shape[-2:]
        if tuple(mask.shape[-2:]) != (h, w):
            raise ValueError(f"pad_collate: sample {n} has image {tuple(image.shape[-2:])} "
                             f"but mask {tuple(mask.shape[-2:])}")
        images[n, :, :h, :w] = image
        masks[n, :h, :w] = mask
    return images.as_subclass(torch.Tensor), masks
