"""Tiled labels with a logits buffer bounded by the tile, not the width: the blocks give
bit for bit the labels (and logits) of one full-width buffer, checked against a
brute-force row-major accumulation written out here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnkit.arith.tiling import sliding_window_starts
from fcnkit.inference.labels import (
    as_window,
    column_blocks,
    iter_logit_blocks,
    predict_labels,
    predict_logits,
)


def context_model(num_classes: int = 5, seed: int = 1) -> nn.Module:
    """3×3 zero-padded convolutions: tile borders change the logits, and float sums of
    several tiles' logits round, so a changed summation order would show."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, num_classes, 3, padding=1)).eval()


def brute_force_logits(model, image, window, overlap):
    """Full C×H×W accumulator, tiles visited row by row, left to right (the order of the
    summation the one-buffer path uses), then divided by the cover count."""
    win_h, win_w = as_window(window)
    n, _, h, w = image.shape
    win_h, win_w = min(win_h, h), min(win_w, w)
    total = None
    count = torch.zeros(h, w)
    for top in sliding_window_starts(h, win_h, overlap):
        for left in sliding_window_starts(w, win_w, overlap):
            out = model(image[:, :, top : top + win_h, left : left + win_w])
            if total is None:
                total = torch.zeros(n, out.shape[1], h, w)
            total[:, :, top : top + win_h, left : left + win_w] += out
            count[top : top + win_h, left : left + win_w] += 1
    return total / count


def assemble(model, image, window, overlap, budget):
    n, _, h, w = image.shape
    out = None
    seen = torch.zeros(h, w, dtype=torch.int64)
    for top, left, block in iter_logit_blocks(model, image, num_classes=5, window=window,
                                              overlap=overlap, max_buffer_bytes=budget):
        if out is None:
            out = torch.full((n, block.shape[1], h, w), float("nan"))
        rows, cols = block.shape[-2:]
        out[:, :, top : top + rows, left : left + cols] = block
        seen[top : top + rows, left : left + cols] += 1
    assert torch.equal(seen, torch.ones_like(seen))  # the blocks partition the image
    return out


@pytest.mark.parametrize("h,w,window,overlap,budget", [
    pytest.param(37, 203, (16, 20), 0.33, 1,  # budget below one tile: one tile per block
                 marks=pytest.mark.slow),  # ~100 one-tile blocks: seconds
    pytest.param(64, 2000, 32, 0.33, 5 * 32 * 4 * 100,  # wide image, ~100-column blocks
                 marks=pytest.mark.slow),  # ~300 tiles, three times over: a minute on 2 cores
    pytest.param(45, 151, (13, 17), 0.6, 5 * 13 * 4 * 50,  # overlap > 0.5: three tiles
                 marks=pytest.mark.slow),  # per pixel; seconds
    (31, 77, 9, 0.0, 5 * 9 * 4 * 20),
    (20, 300, (20, 41), 0.5, 10**9),       # everything fits: one block
])
def test_blocks_equal_brute_force_bit_for_bit(h, w, window, overlap, budget) -> None:
    model = context_model()
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
    with torch.no_grad():
        want = brute_force_logits(model, image, window, overlap)
        got = assemble(model, image, window, overlap, budget)
        assert torch.equal(got, want)
        assert torch.equal(got, predict_logits(model, image, num_classes=5, window=window,
                                               overlap=overlap))
        labels = predict_labels(model, image, num_classes=5, window=window, overlap=overlap)
        assert torch.equal(labels, want.argmax(1))


@pytest.mark.slow  # seconds
def test_wide_image_buffer_does_not_grow_with_the_width() -> None:
    """64×2000 with window 32: every buffer the blocks yield views is at most the budget."""
    model = context_model()
    image = torch.randn(1, 3, 64, 2000, generator=torch.Generator().manual_seed(0))
    budget = 5 * 32 * 4 * 200  # 200 buffer columns of 5 classes × 32 rows
    widths = []
    with torch.no_grad():
        for _, _, block in iter_logit_blocks(model, image, num_classes=5, window=32,
                                             max_buffer_bytes=budget):
            base = block._base if block._base is not None else block
            widths.append(base.shape[-1])
    assert max(widths) <= 200


def test_column_blocks_partition_and_cover() -> None:
    for width, win, overlap, cols in [(2000, 32, 0.33, 100), (77, 9, 0.0, 20),
                                      (151, 17, 0.6, 50), (50, 50, 0.3, 10), (513, 512, 0.3, 1)]:
        starts = sliding_window_starts(width, win, overlap)
        blocks = column_blocks(width, win, overlap, cols)
        assert blocks[0][0] == 0 and blocks[-1][1] == width
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        for own0, own1, needed in blocks:
            # every tile that covers an owned column is in the block, and no other
            assert needed == [s for s in starts if s < own1 and s + win > own0]
            assert needed[-1] + win - needed[0] <= max(cols, 2 * win)
