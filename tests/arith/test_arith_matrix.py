"""Matrix view and numpy reference convolutions against F.conv2d / F.conv_transpose2d."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fcnkit.arith import conv_output_size, conv_transpose_output_size
from fcnkit.arith.matrix import (
    conv2d,
    conv_matrix,
    conv_transpose2d,
    conv_transpose_via_matrix,
    convolve2d,
    correlate2d,
    zero_insert,
)

ATOL = 1e-5


def pair(lo, hi):
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi))


@st.composite
def direct_cases(draw):
    """A random multi-channel direct convolution whose geometry PyTorch accepts."""
    kernel = draw(pair(1, 4))
    stride = draw(pair(1, 3))
    padding = draw(pair(0, 3))
    dilation = draw(pair(1, 2))
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    size = tuple(
        draw(st.integers(max(1, e - 2 * p), max(1, e - 2 * p) + 8))
        for e, p in zip(extent, padding)
    )
    c_in, c_out, n = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(
        size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
        c_in=c_in, c_out=c_out, n=n, seed=seed,
    )


def arrays(case, y_size=None):
    rng = np.random.default_rng(case["seed"])
    weight = rng.standard_normal((case["c_out"], case["c_in"], *case["kernel"])).astype(np.float32)
    x = rng.standard_normal((case["n"], case["c_in"], *case["size"])).astype(np.float32)
    return x, weight


@given(direct_cases())
def test_numpy_conv2d_and_conv_matrix_equal_torch(case):
    x, weight = arrays(case)
    geometry = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), **geometry).numpy()
    got = conv2d(x, weight, **geometry)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)
    # Unbatched (C, H, W) in -> (C_out, OH, OW) out.
    np.testing.assert_allclose(conv2d(x[0], weight, **geometry), expected[0], atol=ATOL)
    # The sparse matrix: C @ x.ravel().
    c = conv_matrix(x.shape[1:], weight, **geometry)
    assert c.shape == (expected[0].size, x[0].size)
    for b in range(x.shape[0]):
        np.testing.assert_allclose(c @ x[b].ravel(), expected[b].ravel(), atol=ATOL, rtol=1e-5)


@given(direct_cases(), st.data())
def test_conv_transpose_reference_and_matrix_transpose_equal_torch(case, data):
    _, weight = arrays(case)
    s, p, d = case["stride"], case["padding"], case["dilation"]
    limit = [max(si, di) - 1 for si, di in zip(s, d)]
    a = (data.draw(st.integers(0, limit[0])), data.draw(st.integers(0, limit[1])))
    y_size = tuple(data.draw(st.integers(1, 6)) for _ in range(2))
    try:
        out_size = conv_transpose_output_size(y_size, case["kernel"], s, p, d, a)
    except ValueError:
        return  # padding too large for this small y: nothing to compare
    rng = np.random.default_rng(case["seed"] + 1)
    y = rng.standard_normal((case["n"], case["c_out"], *y_size)).astype(np.float32)
    expected = F.conv_transpose2d(
        torch.from_numpy(y), torch.from_numpy(weight), stride=s, padding=p,
        output_padding=a, dilation=d,
    ).numpy()
    assert expected.shape[2:] == out_size
    got = conv_transpose2d(y, weight, s, p, d, a)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=1e-5)
    via_matrix = conv_transpose_via_matrix(y, weight, s, p, d, a)
    np.testing.assert_allclose(via_matrix, expected, atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(conv_transpose2d(y[0], weight, s, p, d, a), expected[0], atol=ATOL)


@given(direct_cases())
def test_transposed_convolution_is_the_adjoint(case):
    # <C x, y> == <x, C^T y>: conv_transpose2d is the adjoint of conv2d (same weight).
    x, weight = arrays(case)
    geometry = (case["stride"], case["padding"], case["dilation"])
    out_size = conv_output_size(case["size"], case["kernel"], *geometry)
    rng = np.random.default_rng(case["seed"] + 2)
    y = rng.standard_normal((case["n"], case["c_out"], *out_size))
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    lhs = np.sum(conv2d(x64, w64, *geometry) * y)
    # The transposed conv of y recovers x's size with output_padding = the skipped units.
    a = tuple(
        (i + 2 * p - d * (k - 1) - 1) % s
        for i, k, s, p, d in zip(case["size"], case["kernel"], *geometry)
    )
    back = conv_transpose2d(y, w64, *geometry, output_padding=a)
    assert back.shape == x.shape
    rhs = np.sum(x64 * back)
    assert abs(lhs - rhs) <= 1e-8 * max(1.0, abs(lhs))


def test_matrix_example_4x4_input_3x3_kernel():
    # The classic picture: a 4x4 input, 3x3 kernel, no padding -> C is 4 x 16.
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    w = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    c = conv_matrix((1, 4, 4), w)
    assert c.shape == (4, 16)
    assert c.nnz == 4 * 9
    dense = c.toarray()
    np.testing.assert_array_equal(dense[0, [0, 1, 2, 4, 5, 6, 8, 9, 10]], np.arange(9))
    np.testing.assert_allclose(c @ x.ravel(), [258, 294, 402, 438])
    # Transposed: 2x2 -> 4x4, a one-to-many map.
    y = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = F.conv_transpose2d(torch.from_numpy(y), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose((c.T @ y.ravel()).reshape(4, 4), expected[0, 0])


def test_conv_transpose_small_printed_examples():
    # Values checked against F.conv_transpose2d (not against a blog printout).
    y = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.array([[[[5.0, 6.0], [7.0, 8.0]]]])
    for kwargs in ({"stride": 2}, {"stride": 1}, {"stride": 1, "padding": 1}):
        expected = F.conv_transpose2d(torch.from_numpy(y), torch.from_numpy(w), **kwargs)
        np.testing.assert_allclose(conv_transpose2d(y, w, **kwargs), expected.numpy())
    np.testing.assert_allclose(conv_transpose2d(y, w, stride=1, padding=1), [[[[60.0]]]])


@given(
    st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(1, 4),
    st.sampled_from(["valid", "same", "full"]), st.integers(0, 1000),
)
def test_correlate_and_convolve_match_scipy(h, w, kh, kw, mode, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((h + 3, w + 3))
    k = rng.standard_normal((kh, kw))
    np.testing.assert_allclose(
        correlate2d(x, k, mode), scipy.signal.correlate2d(x, k, mode), atol=1e-10
    )
    np.testing.assert_allclose(
        convolve2d(x, k, mode), scipy.signal.convolve2d(x, k, mode), atol=1e-10
    )


def test_convolve_is_correlate_with_rotated_kernel_and_torch_is_correlation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5))
    k = rng.standard_normal((3, 2))
    np.testing.assert_allclose(convolve2d(x, k), correlate2d(x, np.rot90(k, 2)))
    torch_out = F.conv2d(torch.from_numpy(x)[None, None], torch.from_numpy(k)[None, None])
    np.testing.assert_allclose(correlate2d(x, k), torch_out[0, 0].numpy())
    assert not np.allclose(convolve2d(x, k), torch_out[0, 0].numpy())


def test_zero_insert_matches_transposed_conv_with_unit_kernel():
    rng = np.random.default_rng(3)
    y = rng.standard_normal((2, 3, 4)).astype(np.float32)
    z = zero_insert(y, (2, 3))
    assert z.shape == (2, 5, 10)
    # A 1x1 identity kernel with stride s is exactly zero insertion.
    ones = torch.eye(2).reshape(2, 2, 1, 1)
    expected = F.conv_transpose2d(torch.from_numpy(y)[None], ones, stride=(2, 3))[0].numpy()
    np.testing.assert_array_equal(z, expected)
    np.testing.assert_array_equal(zero_insert(y, 1), y)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: conv2d(np.zeros((2, 4, 4)), np.zeros((1, 3, 3, 3))), "C_in"),
        (lambda: conv2d(np.zeros((4, 4)), np.zeros((1, 1, 3, 3))), "shape"),
        (lambda: conv2d(np.zeros((1, 2, 2)), np.zeros((1, 1, 3, 3))), "does not fit"),
        (lambda: conv_transpose2d(np.zeros((2, 3, 3)), np.zeros((1, 2, 3, 3))), "C_out"),
        (lambda: conv_transpose2d(np.zeros((1, 3, 3)), np.zeros((1, 1, 3, 3)), 2, 0, 1, 2),
         "output_padding"),
        (lambda: conv_matrix((1, 4), np.zeros((1, 1, 3, 3))), "input_shape"),
        (lambda: correlate2d(np.zeros((2, 2)), np.zeros((3, 3))), "larger"),
        (lambda: correlate2d(np.zeros((4, 4)), np.zeros((3, 3)), "circular"), "mode"),
        (lambda: zero_insert(np.zeros((3, 3)), 0), "stride"),
    ],
)
def test_bad_arguments(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()
