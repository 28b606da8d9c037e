"""Sliding-window inference against whole-image passes and a brute-force tiling oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fcnkit.errors import InputError
from fcnkit.inference.labels import (
    as_window,
    iter_logit_strips,
    predict_labels,
    predict_logits,
    sliding_window_starts,
)


def pointwise_model(num_classes: int = 4, seed: int = 0) -> nn.Module:
    """A 1×1 convolution with small integer weights: translation-equivariant, exact sums."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, num_classes, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-3, 4, conv.weight.shape).float())
        conv.bias.copy_(torch.randint(-3, 4, conv.bias.shape).float())
    return conv.eval()


def context_model(num_classes: int = 3, seed: int = 1) -> nn.Module:
    """A 3×3 convolution with zero padding: the output near tile borders depends on the tile."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, num_classes, kernel_size=3, padding=1).eval()


def integer_image(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, (n, 3, h, w), generator=gen).float()


# --- geometry of the tiles ------------------------------------------------------------


@given(
    size=st.integers(1, 300),
    window=st.integers(1, 300),
    overlap=st.floats(0.0, 0.95),
)
def test_tiles_cover_the_dimension_exactly(size: int, window: int, overlap: float) -> None:
    starts = sliding_window_starts(size, window, overlap)
    length = min(window, size)
    covered = [0] * size
    for s in starts:
        assert 0 <= s and s + length <= size  # every tile lies inside the image
        for p in range(s, s + length):
            covered[p] += 1
    assert min(covered) >= 1  # the count map is never zero
    assert starts[0] == 0 and starts[-1] == size - length  # last tile flush with the border
    assert starts == sorted(set(starts))  # strictly increasing, no duplicate tile
    # Neighbours share at least the requested fraction of a window (steps of >= 1 pixel).
    for a, b in zip(starts, starts[1:]):
        assert 1 <= b - a <= max(1.0, length * (1 - overlap))


def test_tile_counts_match_hand_examples() -> None:
    # 512 window, overlap 1/2 → stride 256 over 1000 px: 0, 256, 488 (flush).
    assert sliding_window_starts(1000, 512, 0.5) == [0, 256, 488]
    assert sliding_window_starts(512, 512, 0.33) == [0]
    assert sliding_window_starts(100, 512, 0.33) == [0]
    assert sliding_window_starts(10, 4, 0.0) == [0, 4, 6]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_bad_overlap_is_rejected(bad: float) -> None:
    with pytest.raises(InputError, match="overlap"):
        sliding_window_starts(10, 4, bad)


@pytest.mark.parametrize("bad", [0, -3, (4, 0), "abc", (1, 2, 3)])
def test_bad_window_is_rejected(bad: object) -> None:
    with pytest.raises(InputError, match="window"):
        as_window(bad)  # type: ignore[arg-type]


def test_window_forms() -> None:
    assert as_window(None) is None
    assert as_window(7) == (7, 7)
    assert as_window((5, 9)) == (5, 9)
    assert as_window([5, 9]) == (5, 9)
    assert as_window((4,)) == (4, 4)  # one value for both dimensions, as torch's _pair


# --- logits -----------------------------------------------------------------------------


@pytest.mark.slow  # seconds
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    win=st.tuples(st.integers(1, 24), st.integers(1, 24)),
    overlap=st.sampled_from([0.0, 0.25, 0.33, 0.5, 0.75]),
)
def test_pointwise_model_sliding_equals_whole_image_exactly(h, w, win, overlap) -> None:
    model = pointwise_model()
    image = integer_image(2, h, w)
    with torch.no_grad():
        whole = model(image)
        sliding = predict_logits(model, image, num_classes=4, window=win, overlap=overlap)
    assert sliding.shape == whole.shape
    assert torch.equal(sliding, whole)


def brute_force_sliding(model, image, win_h, win_w, overlap):
    """Independent oracle: materialise every tile's logits on a full canvas, then average."""
    n, _, h, w = image.shape
    win_h, win_w = min(win_h, h), min(win_w, w)
    step_h = max(1, int(win_h * (1 - overlap)))
    step_w = max(1, int(win_w * (1 - overlap)))
    tops = list(range(0, h - win_h + 1, step_h))
    if tops[-1] != h - win_h:
        tops.append(h - win_h)
    lefts = list(range(0, w - win_w + 1, step_w))
    if lefts[-1] != w - win_w:
        lefts.append(w - win_w)
    total = torch.zeros(n, 3, h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for t in tops:
        for left in lefts:
            out = model(image[:, :, t : t + win_h, left : left + win_w]).double()
            total[:, :, t : t + win_h, left : left + win_w] += out
            count[t : t + win_h, left : left + win_w] += 1
    assert count.min() > 0
    return (total / count).float()


@pytest.mark.parametrize(
    "h,w,win,overlap",
    [(37, 53, (16, 20), 0.33), (32, 32, (8, 8), 0.5), (40, 17, (24, 24), 0.25), (9, 64, 10, 0.0)],
)
def test_context_model_matches_brute_force_tiling(h, w, win, overlap) -> None:
    model = context_model()
    image = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(3))
    win_h, win_w = as_window(win)
    with torch.no_grad():
        got = predict_logits(model, image, num_classes=3, window=win, overlap=overlap)
        want = brute_force_sliding(model, image, win_h, win_w, overlap)
        whole = model(image)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # A 3×3 zero-padded conv sees tile borders, so tiling genuinely differs from one pass.
    if (win_h, win_w) != (h, w):
        assert not torch.allclose(got, whole)


@pytest.mark.parametrize("win", [(48, 64), (100, 100), 64, (48, 500)])
def test_window_at_least_image_equals_whole_image(win) -> None:
    model = context_model()
    image = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(predict_logits(model, image, num_classes=3, window=win), model(image))


def test_image_smaller_than_window_in_one_dimension() -> None:
    # Height 12 < window 32: one tile row of full height; width tiled.
    model = pointwise_model()
    image = integer_image(1, 12, 90)
    calls: list[tuple[int, int]] = []
    model.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape[-2:])))
    with torch.no_grad():
        out = predict_logits(model, image, num_classes=4, window=32, overlap=0.5)
        assert torch.equal(out, model(image))
    assert set(calls[:-1]) == {(12, 32)}
    assert len(calls) - 1 == len(sliding_window_starts(90, 32, 0.5))


def test_strips_partition_rows_and_stay_small() -> None:
    model = pointwise_model()
    image = integer_image(1, 100, 30)
    strips = list(iter_logit_strips(model, image, num_classes=4, window=20, overlap=0.5))
    tops = [t for t, _ in strips]
    heights = [s.shape[2] for _, s in strips]
    assert tops[0] == 0 and sum(heights) == 100
    assert all(t + hgt == nxt for t, hgt, nxt in zip(tops, heights, tops[1:]))
    assert max(heights) <= 20  # never more than one window of rows released at a time


def test_predict_labels_is_argmax_of_logits() -> None:
    model = context_model(num_classes=3)
    image = torch.randn(2, 3, 45, 38, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for window in (None, 16, (20, 30)):
            logits = predict_logits(model, image, num_classes=3, window=window)
            labels = predict_labels(model, image, num_classes=3, window=window)
            assert labels.dtype == torch.int64 and labels.shape == (2, 45, 38)
            assert torch.equal(labels, logits.argmax(1))


def test_dict_output_and_wrong_channel_count() -> None:
    class DictModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = pointwise_model()

        def forward(self, x):
            return {"out": self.conv(x), "aux": None}

    image = integer_image(1, 20, 20)
    with torch.no_grad():
        out = predict_logits(DictModel(), image, num_classes=4, window=8)
        assert torch.equal(out, pointwise_model()(image))
        with pytest.raises(ValueError, match="num_classes=5"):
            predict_logits(pointwise_model(), image, num_classes=5)
    with pytest.raises(ValueError, match="N, C, H, W"):
        predict_logits(pointwise_model(), image[0], num_classes=4)


def test_resolve_device() -> None:
    from fcnkit.runtime.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="'toaster' is not a device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="none is available; use cpu"):
            resolve_device("cuda")


def test_tile_transform_equals_transforming_the_whole_image_first() -> None:
    model = context_model()
    raw = torch.rand(1, 3, 41, 57, generator=torch.Generator().manual_seed(6))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return (t - mean) / std

    seen: list[tuple[int, int]] = []

    def spy(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape[-2:]))
        return norm(t)

    with torch.no_grad():
        for window in (None, 16, (20, 30)):
            seen.clear()
            got = predict_logits(model, raw, num_classes=3, window=window, tile_transform=spy)
            assert torch.equal(got, predict_logits(model, norm(raw), num_classes=3, window=window))
            win = as_window(window) or (41, 57)
            assert all(h <= win[0] and w <= win[1] for h, w in seen)  # never the whole image


@pytest.mark.parametrize("max_pixels", [None, 20 * 20])
def test_uint8_image_view_gives_the_labels_of_the_float_image(max_pixels) -> None:
    # predict keeps a huge image as its uint8 (H, W, 3) array and converts one tile at a
    # time: the labels must equal those of the whole float image read by read_image.
    import numpy as np

    from fcnkit.data.images import _to_float_chw
    from fcnkit.inference.predict import predict_image

    model = context_model(num_classes=3)
    hwc = np.random.default_rng(6).integers(0, 256, (45, 38, 3), dtype=np.uint8)
    as_float = _to_float_chw(hwc)
    as_uint8 = torch.from_numpy(hwc).permute(2, 0, 1)
    for window in (None, 16):
        kwargs = dict(num_classes=3, window=window, max_pixels=max_pixels, tile=(24, 20))
        want = predict_image(model, as_float, **kwargs)
        got = predict_image(model, as_uint8, **kwargs)
        assert got.shape == (45, 38) and torch.equal(got, want)


@given(
    n=st.integers(1, 2), c=st.integers(1, 6), h=st.integers(1, 9), w=st.integers(1, 9),
    levels=st.integers(1, 4), seed=st.integers(0, 2**16), channels_last=st.booleans(),
)
def test_channel_argmax_equals_torch_argmax_with_ties(n, c, h, w, levels, seed,
                                                      channels_last) -> None:
    from fcnkit.inference.labels import channel_argmax

    # Few distinct values, so ties are common: both must return the first maximal class.
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n, c, h, w), generator=gen).float()
    if channels_last:
        scores = scores.contiguous(memory_format=torch.channels_last)
    got = channel_argmax(scores)
    assert got.dtype == torch.int64 and torch.equal(got, scores.argmax(dim=1))


def test_channel_argmax_accepts_scores_that_require_grad() -> None:
    # Outside torch.no_grad() (e.g. a notebook), logits carry autograd history.
    from fcnkit.inference.labels import channel_argmax

    scores = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(7),
                         requires_grad=True)
    assert torch.equal(channel_argmax(scores), scores.argmax(dim=1))
