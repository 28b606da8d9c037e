"""Bands of an upsampled axis (``fcnkit.arith.tiling``) against what PyTorch computes.

Oracles: which output rows a one-hot input row changes in a real 1-D upsampling
(``nn.ConvTranspose2d`` with a bilinear kernel, ``F.interpolate``), and the values it
writes there, never the formulas of the module under test.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fcnkit.arith import upsampling_recipe
from fcnkit.arith.kernels import bilinear_kernel
from fcnkit.arith.tiling import band_weights, band_windows, output_bands, window_corner_pixels


def _deconv_rows(factor: int, input_size: int) -> np.ndarray:
    """``(out, in)``: output row o's weight on input row i, from PyTorch's transposed
    convolution of one-hot columns (one column of the kernel's separable factor)."""
    recipe = upsampling_recipe(factor)
    kernel_1d = torch.as_tensor(bilinear_kernel(recipe.kernel)).double().sum(1)
    kernel_1d /= kernel_1d.max()  # the taps as band_weights is given them below
    eye = torch.eye(input_size, dtype=torch.float64).view(input_size, 1, input_size, 1)
    out = F.conv_transpose2d(eye, kernel_1d.view(1, 1, -1, 1), stride=(recipe.stride, 1),
                             padding=(recipe.padding, 0))
    return out[:, 0, :, 0].T.numpy()


@given(factor=st.sampled_from([2, 4, 8, 16]), input_size=st.integers(1, 12),
       offset=st.integers(0, 10), size=st.integers(1, 60))
def test_bands_group_the_rows_pytorch_feeds_from_the_same_input_rows(
        factor, input_size, offset, size) -> None:
    recipe = upsampling_recipe(factor)
    weights = _deconv_rows(factor, input_size)
    size = min(size, weights.shape[0] - offset)
    if size <= 0:
        return
    bands = output_bands(size, offset, kernel=recipe.kernel, stride=recipe.stride,
                         padding=recipe.padding, input_size=input_size)
    assert bands[0, 0] == 0 and bands[-1, 1] == size
    assert (bands[1:, 0] == bands[:-1, 1]).all()  # consecutive, covering [0, size)
    for start, stop, first, last in bands.tolist():
        for row in range(start, stop):
            fed = np.flatnonzero(weights[row + offset])
            # every input row that feeds the row lies in the band's window
            assert fed.size == 0 or (first <= fed.min() and fed.max() < last)
    windows = band_windows(bands)
    if int((bands[:, 3] - bands[:, 2]).max()) <= 2:
        # window j holds input rows j - 1 and j (edge rows repeated): it covers the span
        lo, hi = np.maximum(windows - 1, 0), np.minimum(windows, input_size - 1)
        assert (lo <= bands[:, 2]).all() and (bands[:, 3] - 1 <= hi).all()


@given(factor=st.sampled_from([2, 4, 8]), input_size=st.integers(2, 10),
       kind=st.sampled_from(["deconv", "interpolate"]), offset=st.integers(0, 8))
def test_band_weights_are_the_upsamplers_own(factor, input_size, kind, offset) -> None:
    """A row's weights on its window's input rows equal the values PyTorch writes for
    one-hot inputs (float64)."""
    recipe = upsampling_recipe(factor)
    if kind == "deconv":
        weights = _deconv_rows(factor, input_size)
        taps = tuple(float(v) for v in bilinear_kernel(recipe.kernel).sum(1)
                     / bilinear_kernel(recipe.kernel).sum(1).max())
        offset = min(offset, factor)  # a crop offset into the upsampled map
        size = factor * input_size - offset
        stride, padding, kernel = recipe.stride, recipe.padding, recipe.kernel
        weights = weights[offset : offset + size]
        bands = output_bands(size, offset, kernel=kernel, stride=stride, padding=padding,
                             input_size=input_size)
        table = band_weights("deconv", taps, stride, padding, size, offset, input_size, bands)
    else:
        eye = torch.eye(input_size, dtype=torch.float64).view(input_size, 1, input_size, 1)
        out = F.interpolate(eye, size=(factor * input_size, 1), mode="bilinear",
                            align_corners=False)
        weights = out[:, 0, :, 0].T.numpy()
        size = factor * input_size
        # interpolate's bands: rows fed by the same two source rows (kernel 2f, padding f/2)
        bands = output_bands(size, 0, kernel=recipe.kernel, stride=recipe.stride,
                             padding=recipe.padding, input_size=input_size)
        table = band_weights("interpolate", (float(factor),), 0, 0, size, 0, input_size,
                             bands)
    assert table is not None
    band = np.repeat(np.arange(len(bands)), bands[:, 1] - bands[:, 0])
    for row in range(size):
        first = bands[band[row], 2]
        got = np.zeros(input_size)
        for t, w in enumerate(table[row]):
            if w:
                got[first + t] += w
        np.testing.assert_allclose(got, weights[row], rtol=0, atol=1e-12)


@given(factor=st.sampled_from([2, 4, 8, 16]), h=st.integers(1, 8), w=st.integers(1, 8),
       offset=st.integers(0, 8))
def test_window_corners_hold_every_input_pixel_that_feeds_the_cell(factor, h, w,
                                                                   offset) -> None:
    """Each cell's four corner pixels cover the input rows and columns that PyTorch's
    upsampling of one-hot inputs says feed the cell's output pixels."""
    recipe = upsampling_recipe(factor)
    offset = min(offset, factor - 1)  # a crop offset that leaves every axis ≥ 1 pixel
    geometry = {"kernel": recipe.kernel, "stride": recipe.stride, "padding": recipe.padding}
    rows = output_bands(factor * h - offset, offset, input_size=h, **geometry)
    cols = output_bands(factor * w - offset, offset, input_size=w, **geometry)
    corners = window_corner_pixels(rows, cols, h, w)
    assert corners.shape == (4, len(rows) * len(cols))
    assert corners.min() >= 0 and corners.max() < h * w
    feeds_rows, feeds_cols = _deconv_rows(factor, h), _deconv_rows(factor, w)
    for i, (r0, r1, _, _) in enumerate(rows.tolist()):
        for j, (c0, c1, _, _) in enumerate(cols.tolist()):
            held = {(int(p) // w, int(p) % w) for p in corners[:, i * len(cols) + j]}
            fed_rows = np.flatnonzero(feeds_rows[r0 + offset : r1 + offset].any(0))
            fed_cols = np.flatnonzero(feeds_cols[c0 + offset : c1 + offset].any(0))
            assert {(int(a), int(b)) for a in fed_rows for b in fed_cols} <= held
