"""Resampling geometry (arith.resample) against what torch's F.interpolate and adaptive
pooling actually read: gradient support (which input pixels reach output j) and, for the
linear modes, the value an interpolated ramp takes (its source coordinate)."""

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnkit.arith import (
    ReceptiveField,
    adaptive_pool_equivalent,
    interpolate_equivalent,
)
from fcnkit.errors import InputError


def _field(equivalent) -> ReceptiveField:
    return ReceptiveField.identity(1).then_equivalent(*equivalent)


def _support(layer, n_in: int) -> list[list[int]]:
    """Input pixels with a non-zero derivative, per output pixel (brute force).

    A derivative below 1e-12 is rounding, not a read: where the source coordinate is
    exactly an integer (bilinear, 2 -> 10 pixels, output 2: 2.5 · 0.2 − 0.5 = 0), torch
    computes it a few ulps off and gives the neighbour at distance exactly 1 a weight of
    2.8e-17 where the exact weight is 0 (a case hypothesis found)."""
    jac = torch.autograd.functional.jacobian(
        layer, torch.rand(1, 1, 1, n_in, dtype=torch.float64) + 0.5, vectorize=True)
    jac = jac[0, 0, 0, :, 0, 0, 0, :]  # (n_out, n_in)
    return [(row.abs() > 1e-12).nonzero().flatten().tolist() for row in jac]


@settings(max_examples=60, deadline=None)
@given(
    n_in=st.integers(1, 10), n_out=st.integers(1, 14),
    mode=st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]),
    align=st.booleans(),
)
def test_interpolate_footprint_contains_what_torch_reads(n_in, n_out, mode, align):
    align = align if mode in ("bilinear", "bicubic") else None
    field = _field(interpolate_equivalent(mode, align, n_in, n_out))

    def layer(x):
        return F.interpolate(x, size=(1, n_out), mode=mode, align_corners=align)

    for j, pixels in enumerate(_support(layer, n_in)):
        first, last = field.bounds(j)
        inside = [i for i in pixels if 0 <= i < n_in]
        assert inside and first <= inside[0] and inside[-1] <= last, (j, pixels, first, last)


@settings(max_examples=40, deadline=None)
@given(n_in=st.integers(2, 10), n_out=st.integers(2, 14), align=st.booleans())
def test_linear_centre_is_where_torch_samples(n_in, n_out, align):
    # F.interpolate of the ramp x_i = i returns the source coordinate of output j wherever
    # it is not clamped at the border: the centre of j's footprint.
    ramp = torch.arange(n_in, dtype=torch.float64).reshape(1, 1, n_in)
    out = F.interpolate(ramp, size=n_out, mode="linear", align_corners=align)[0, 0]
    field = _field(interpolate_equivalent("linear", align, n_in, n_out))
    for j in range(n_out):
        centre = Fraction(field.center(j))
        if 0 <= centre <= n_in - 1:
            assert float(out[j]) == pytest.approx(float(centre), abs=1e-9)


@pytest.mark.parametrize("factor", [2, 3, 0.5, 1.5])
def test_scale_factor_uses_torch_step(factor):
    n_in = 8
    n_out = int(n_in * factor)
    field = _field(interpolate_equivalent("nearest", None, n_in, n_out, scale=factor))

    def layer(x):
        return F.interpolate(x, scale_factor=(1, factor), mode="nearest")

    for j, pixels in enumerate(_support(layer, n_in)):
        first, last = field.bounds(j)
        assert first <= pixels[0] and pixels[-1] <= last


@settings(max_examples=60, deadline=None)
@given(n_in=st.integers(1, 16), n_out=st.integers(1, 16))
def test_adaptive_pooling_footprint(n_in, n_out):
    equivalent, exact = adaptive_pool_equivalent(n_in, n_out)
    field = _field(equivalent)

    def layer(x):
        return F.adaptive_avg_pool2d(x, (1, n_out))

    for j, pixels in enumerate(_support(layer, n_in)):
        first, last = field.bounds(j)
        if exact:  # even bins: exactly an ordinary pooling window
            assert (pixels[0], pixels[-1]) == (first, last)
        else:
            assert first <= pixels[0] and pixels[-1] <= last
    assert exact == (n_in % n_out == 0)


def test_unknown_mode_is_an_input_error():
    with pytest.raises(InputError, match="area"):
        interpolate_equivalent("lanczos", None, 4, 8)
