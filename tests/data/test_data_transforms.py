"""Joint transforms keep image and mask aligned; normalisation; padded batches."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fcnkit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomScale,
    denormalize,
    eval_transform,
    normalize,
    pad_collate,
    train_transform,
)


def _coded_pair(h=40, w=56, classes=5):
    """A mask of vertical/horizontal blocks and an image whose red channel encodes it."""
    y, x = np.mgrid[0:h, 0:w]
    mask = ((x // 8 + 2 * (y // 10)) % classes).astype(np.int64)
    image = np.zeros((3, h, w), dtype=np.float32)
    image[0] = mask / 10.0 + 0.05
    image[1] = x / w  # a horizontal ramp shows flips
    image[2] = 0.5
    return tv_tensors.Image(torch.from_numpy(image)), tv_tensors.Mask(torch.from_numpy(mask))


def test_normalize_matches_torchvision_and_round_trips():
    image = torch.rand(3, 7, 9)
    expected = v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))(image)
    torch.testing.assert_close(normalize(image), expected)
    torch.testing.assert_close(denormalize(normalize(image)), image)
    batch = torch.rand(2, 3, 4, 5)
    torch.testing.assert_close(normalize(batch)[1], normalize(batch[1]))
    with pytest.raises(ValueError, match="RGB"):
        normalize(torch.rand(4, 5))


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_labels_aligned_without_scaling(seed):
    torch.manual_seed(seed)
    image, mask = _coded_pair()
    out_image, out_mask = train_transform((48, 64), scale_range=None, color_jitter=False)(
        image, mask)
    assert tuple(out_image.shape) == (3, 48, 64) and tuple(out_mask.shape) == (48, 64)
    assert out_mask.dtype == torch.int64
    raw = denormalize(out_image)
    valid = out_mask != 255
    # The crop is larger than the 40x56 input: padding is void in the mask, 0 in the image.
    assert (~valid).sum() == 48 * 64 - 40 * 56
    torch.testing.assert_close(raw[:, ~valid], torch.zeros_like(raw[:, ~valid]),
                               atol=1e-5, rtol=0)
    decoded = torch.round((raw[0][valid] - 0.05) * 10).long()
    assert torch.equal(decoded, out_mask[valid])


def test_random_scale_mask_uses_nearest_labels():
    torch.manual_seed(0)
    image, mask = _coded_pair()
    seen_sizes = set()
    for _ in range(5):
        out_image, out_mask = RandomScale((0.5, 2.0))(image, mask)
        assert out_image.shape[-2:] == out_mask.shape
        seen_sizes.add(tuple(out_mask.shape))
        # Nearest neighbour: no new label values are invented.
        assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())
        # Away from block edges the image still encodes the mask's label.
        code = torch.round((out_image[0] - 0.05) * 10).long()
        assert (code == out_mask).float().mean() > 0.8
    assert len(seen_sizes) > 1
    with pytest.raises(ValueError, match="scale_range"):
        RandomScale((2.0, 1.0))


def test_train_transform_full_pipeline_shapes_and_values():
    torch.manual_seed(1)
    image, mask = _coded_pair()
    transform = train_transform(32)
    for _ in range(4):
        out_image, out_mask = transform(image, mask)
        assert tuple(out_image.shape) == (3, 32, 32) and out_image.dtype == torch.float32
        assert set(out_mask.unique().tolist()) <= set(range(5)) | {255}
    with pytest.raises(ValueError, match="crop_size"):
        train_transform((0, 4))


def test_eval_transform_normalises_whole_image_and_accepts_uint8():
    image, mask = _coded_pair()
    out_image, out_mask = eval_transform()(image, mask)
    torch.testing.assert_close(out_image, normalize(image.as_subclass(torch.Tensor)))
    assert torch.equal(out_mask, mask)
    uint8 = tv_tensors.Image((image * 255).round().to(torch.uint8))
    out_uint8, _ = eval_transform()(uint8, mask)
    torch.testing.assert_close(out_uint8, out_image, atol=3e-2, rtol=0)


def test_pad_collate_pads_images_with_zero_and_masks_with_void():
    a = (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64))
    b = (torch.full((3, 6, 3), 2.0), torch.ones(6, 3, dtype=torch.int64))
    images, masks = pad_collate([a, b])
    assert tuple(images.shape) == (2, 3, 6, 5) and tuple(masks.shape) == (2, 6, 5)
    assert masks.dtype == torch.int64
    assert torch.equal(images[0, :, :4, :5], a[0]) and images[0, :, 4:].abs().sum() == 0
    assert (masks[0, 4:] == 255).all() and (masks[0, :4] == 0).all()
    assert (masks[1, :, 3:] == 255).all() and (masks[1, :, :3] == 1).all()
    loader = torch.utils.data.DataLoader([a, b], batch_size=2, collate_fn=pad_collate)
    assert tuple(next(iter(loader))[0].shape) == (2, 3, 6, 5)
    with pytest.raises(ValueError, match="mask"):
        pad_collate([(torch.ones(3, 4, 5), torch.zeros(5, 4, dtype=torch.int64))])
