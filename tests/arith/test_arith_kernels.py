"""The FCN bilinear kernel: formula values, and what it does inside a ConvTranspose2d."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fcnkit.arith import bilinear_kernel, bilinear_upsampling_weight, upsampling_recipe


def test_known_kernels():
    # k = 4 (factor 2): 1-D taps 1/4, 3/4, 3/4, 1/4.
    np.testing.assert_allclose(bilinear_kernel(4), np.outer([0.25, 0.75, 0.75, 0.25],
                                                            [0.25, 0.75, 0.75, 0.25]))
    # k = 3 (factor 2, odd): taps 1/2, 1, 1/2.
    np.testing.assert_allclose(bilinear_kernel(3)[1], [0.5, 1.0, 0.5])
    assert bilinear_kernel(1).tolist() == [[1.0]]
    assert bilinear_kernel(64).shape == (64, 64)
    assert bilinear_kernel((4, 3)).shape == (4, 3)


@given(st.integers(1, 40))
def test_formula_brute_force(k):
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    expected = np.array(
        [[(1 - abs(i - c) / f) * (1 - abs(j - c) / f) for j in range(k)] for i in range(k)]
    )
    got = bilinear_kernel(k)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(got, got.T)
    np.testing.assert_allclose(got, got[::-1, ::-1])
    assert (got > 0).all()


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_deconv_with_bilinear_weights_interpolates_linearly(factor):
    # Upsampling a linear ramp must give a linear ramp in the interior (bilinear
    # interpolation), with output size factor * input (the recipe).
    recipe = upsampling_recipe(factor)
    weight = torch.from_numpy(bilinear_upsampling_weight(2, recipe.kernel, dtype=np.float64))
    h = 6
    ramp = torch.arange(h, dtype=torch.float64)
    x = torch.stack([ramp[:, None].expand(h, h), 2 * ramp[None, :].expand(h, h)])[None]
    y = F.conv_transpose2d(x, weight, stride=recipe.stride, padding=recipe.padding)
    assert y.shape == (1, 2, factor * h, factor * h)
    interior = y[0, 0, factor:-factor, factor:-factor]
    steps = interior[1:, :] - interior[:-1, :]
    torch.testing.assert_close(steps, torch.full_like(steps, 1.0 / factor))
    torch.testing.assert_close(interior[:, 1:], interior[:, :-1])  # constant along W
    # Channel 1 (a ramp along W, slope 2) is untouched by channel 0: no channel mixing.
    interior1 = y[0, 1, factor:-factor, factor:-factor]
    torch.testing.assert_close(
        interior1[:, 1:] - interior1[:, :-1],
        torch.full((interior1.shape[0], interior1.shape[1] - 1), 2.0 / factor,
                   dtype=torch.float64),
    )


def test_upsampling_weight_is_diagonal():
    w = bilinear_upsampling_weight(3, 4)
    assert w.shape == (3, 3, 4, 4) and w.dtype == np.float32
    for i in range(3):
        for j in range(3):
            expected = bilinear_kernel(4) if i == j else np.zeros((4, 4))
            np.testing.assert_allclose(w[i, j], expected)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, (2, 2, 2)])
def test_bad_kernel_size(bad):
    with pytest.raises(ValueError, match="kernel_size"):
        bilinear_kernel(bad)
