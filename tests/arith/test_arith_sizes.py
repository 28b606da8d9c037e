"""fcnkit.arith.sizes against the oracle: the shapes real torch modules produce (or refuse)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fcnkit.arith import (
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel,
    output_padding_for,
    pool_output_size,
    same_padding,
    transposed_equivalent,
    upsampling_recipe,
)

REJECT = "reject"


def torch_shape(make_module, size):
    """Spatial output shape of ``make_module()`` on a (1, 1, *size) input, or REJECT."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = make_module()
            with torch.no_grad():
                return tuple(module(torch.zeros(1, 1, *size)).shape[2:])
    except (RuntimeError, ValueError):
        return REJECT


def ours(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return REJECT


def pair(lo, hi):
    return st.tuples(st.integers(lo, hi), st.integers(lo, hi))


sizes_2d = pair(1, 14)
kernels_2d = pair(0, 6)  # 0 must be rejected
strides_2d = pair(0, 4)
paddings_2d = pair(-1, 4)  # -1 must be rejected
dilations_2d = pair(0, 3)


# --- direct convolution ---------------------------------------------------------------------


@given(sizes_2d, kernels_2d, strides_2d, paddings_2d, dilations_2d)
def test_conv_output_size_matches_nn_conv2d(size, kernel, stride, padding, dilation):
    expected = torch_shape(
        lambda: nn.Conv2d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation),
        size,
    )
    assert ours(conv_output_size, size, kernel, stride, padding, dilation) == expected


@given(sizes_2d, pair(1, 6), pair(1, 3))
def test_conv_same_with_stride_one_matches_torch_same(size, kernel, dilation):
    expected = torch_shape(
        lambda: nn.Conv2d(1, 1, kernel, padding="same", dilation=dilation), size
    )
    assert conv_output_size(size, kernel, 1, "same", dilation) == expected == size


@given(sizes_2d, pair(1, 6), pair(1, 4), pair(1, 3))
def test_conv_valid_matches_torch_valid(size, kernel, stride, dilation):
    expected = torch_shape(
        lambda: nn.Conv2d(1, 1, kernel, stride=stride, padding="valid", dilation=dilation), size
    )
    assert ours(conv_output_size, size, kernel, stride, "valid", dilation) == expected


@given(sizes_2d, pair(1, 6), pair(1, 4), pair(1, 3))
def test_conv_same_strided_is_tensorflow_rule(size, kernel, stride, dilation):
    # TensorFlow SAME: out = ceil(i / s), realised as an asymmetric pad then a valid conv.
    pads = same_padding(kernel, stride, dilation, size=size)
    x = F.pad(torch.zeros(1, 1, *size), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    weight = torch.zeros(1, 1, *kernel)
    y = F.conv2d(x, weight, stride=stride, dilation=dilation)
    expected = tuple(math.ceil(i / s) for i, s in zip(size, stride))
    assert tuple(y.shape[2:]) == expected
    assert conv_output_size(size, kernel, stride, "same", dilation) == expected


# --- transposed convolution -----------------------------------------------------------------


@given(sizes_2d, kernels_2d, strides_2d, paddings_2d, dilations_2d, pair(-1, 3))
def test_conv_transpose_output_size_matches_nn_conv_transpose2d(
    size, kernel, stride, padding, dilation, output_padding
):
    expected = torch_shape(
        lambda: nn.ConvTranspose2d(
            1,
            1,
            kernel,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
        ),
        size,
    )
    got = ours(
        conv_transpose_output_size, size, kernel, stride, padding, dilation, output_padding
    )
    assert got == expected


@given(st.integers(1, 12), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))
def test_conv_transpose_tensorflow_modes(size, kernel, stride, dilation):
    extent = dilation * (kernel - 1) + 1
    assert conv_transpose_output_size(size, kernel, stride, "same", dilation) == size * stride
    valid = conv_transpose_output_size(size, kernel, stride, "valid", dilation)
    assert valid == size * stride + max(extent - stride, 0)
    # Both are shapes the matching forward TF convolution maps back onto `size`.
    assert conv_output_size(size * stride, kernel, stride, "same", dilation) == size
    assert conv_output_size(valid, kernel, stride, "valid", dilation) == size


def test_conv_transpose_string_padding_refuses_output_padding():
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose_output_size(4, 3, 2, "same", output_padding=1)


# --- pooling --------------------------------------------------------------------------------


@given(sizes_2d, kernels_2d, strides_2d, paddings_2d, dilations_2d, st.booleans())
def test_pool_output_size_matches_nn_maxpool2d(size, kernel, stride, padding, dilation, ceil):
    expected = torch_shape(
        lambda: nn.MaxPool2d(kernel, stride, padding, dilation=dilation, ceil_mode=ceil), size
    )
    got = ours(pool_output_size, size, kernel, stride, padding, dilation, ceil_mode=ceil)
    assert got == expected


@given(sizes_2d, kernels_2d, strides_2d, paddings_2d, st.booleans())
def test_pool_output_size_matches_nn_avgpool2d(size, kernel, stride, padding, ceil):
    expected = torch_shape(lambda: nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil), size)
    assert ours(pool_output_size, size, kernel, stride, padding, ceil_mode=ceil) == expected


@given(sizes_2d, pair(1, 5), st.booleans())
def test_pool_stride_none_means_kernel(size, kernel, ceil):
    expected = torch_shape(lambda: nn.MaxPool2d(kernel, ceil_mode=ceil), size)
    assert ours(pool_output_size, size, kernel, None, ceil_mode=ceil) == expected


@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 6))
def test_pool_caffe_convention(size, kernel, stride, pad):
    # Oracle: Caffe's PoolingLayer arithmetic as written in C++ (float ceil, then the clip
    # when padded); Caffe CHECKs pad < kernel. A non-positive result cannot be a blob shape.
    pooled = int(math.ceil(float(size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    if pad >= kernel or pooled < 1:
        with pytest.raises(ValueError):
            pool_output_size(size, kernel, stride, pad, convention="caffe")
        return
    got = pool_output_size(size, kernel, stride, pad, convention="caffe")
    assert got == pooled
    # Without padding and with stride <= kernel, Caffe agrees with PyTorch's ceil mode.
    if pad == 0 and stride <= kernel and size >= kernel:
        expected = torch_shape(lambda: nn.MaxPool2d((kernel, 1), (stride, 1), ceil_mode=True),
                               (size, 1))
        assert (got, 1) == expected


def test_pool_caffe_known_values():
    # FCN's VGG16 on a 500 px side: conv1_1 (k3, pad 100) gives 698; each block's 3x3/pad-1
    # convs keep the size and Caffe's pools round up: 349 175 88 44 22 (PyTorch floor: 174).
    s = conv_output_size(500, 3, padding=100)
    assert s == 698
    for expected in (349, 175, 88, 44, 22):
        s = pool_output_size(conv_output_size(s, 3, padding=1), 2, 2, convention="caffe")
        assert s == expected
    assert pool_output_size(349, 2, 2) == 174
    # The padding clip (pad > 0) applies in every dimension when any pad is non-zero.
    assert pool_output_size((5, 5), (2, 1), (3, 3), (1, 0), convention="caffe") == (2, 2)
    assert pool_output_size((5, 5), (2, 1), (3, 3), (0, 0), convention="caffe") == (2, 3)
    with pytest.raises(ValueError, match="dilation"):
        pool_output_size(9, 3, 2, dilation=2, convention="caffe")
    with pytest.raises(ValueError, match="convention"):
        pool_output_size(9, 3, 2, convention="keras")


# --- inverse problems -----------------------------------------------------------------------


@given(
    st.integers(1, 10),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(0, 3),
    st.integers(1, 3),
)
def test_output_padding_for_brute_force(size, kernel, stride, padding, dilation):
    reachable = {}
    for a in range(0, 6):
        shape = torch_shape(
            lambda a=a: nn.ConvTranspose2d(
                1, 1, (kernel, 1), (stride, 1), (padding, 0), (a, 0), dilation=(dilation, 1)
            ),
            (size, 1),
        )
        if shape != REJECT:
            reachable.setdefault(shape[0], a)
    for target in range(1, 45):
        if target in reachable:
            assert output_padding_for(size, target, kernel, stride, padding, dilation) == (
                reachable[target]
            )
        else:
            with pytest.raises(ValueError, match="reachable"):
                output_padding_for(size, target, kernel, stride, padding, dilation)


def test_output_padding_for_recovers_direct_input():
    # Conv(k3, s2, p1) maps both 5 and 6 to 3; the transposed conv needs a = 0 or 1.
    assert output_padding_for(3, (5, 6), 3, 2, 1) == (0, 1)
    with pytest.raises(ValueError, match=r"reachable output sizes are \[5, 6\]"):
        output_padding_for(3, 7, 3, 2, 1)


@given(st.integers(1, 30), st.integers(1, 7), st.integers(1, 4), st.integers(1, 3))
def test_same_padding_brute_force(size, kernel, stride, dilation):
    wanted = math.ceil(size / stride)
    # The smallest total padding for which a valid conv yields ceil(i / s) outputs.
    total = 0
    while True:
        shape = torch_shape(
            lambda: nn.Conv2d(1, 1, (kernel, 1), (stride, 1), dilation=(dilation, 1)),
            (size + total, 1),
        )
        if shape != REJECT and shape[0] >= wanted:
            break
        total += 1
    assert same_padding(kernel, stride, dilation, size=size) == (total // 2, total - total // 2)
    if stride == 1:
        assert same_padding(kernel, 1, dilation) == (total // 2, total - total // 2)
    else:
        with pytest.raises(ValueError, match="size is required"):
            same_padding(kernel, stride, dilation)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 7, 8, 16, 32])
def test_upsampling_recipe_multiplies_size_exactly(factor):
    recipe = upsampling_recipe(factor)
    assert (recipe.factor, recipe.stride) == (factor, factor)
    assert recipe.kernel == 2 * factor - factor % 2
    assert recipe.padding == math.ceil((factor - 1) / 2)
    deconv = nn.ConvTranspose2d(1, 1, recipe.kernel, recipe.stride, recipe.padding, bias=False)
    for i in range(1, 13):
        size = (i, 13 - i)
        got = torch_shape(lambda: deconv, size)
        assert got == (factor * i, factor * (13 - i))
        assert recipe.output_size(size) == got


def test_upsampling_recipe_fcn32s_numbers():
    r = upsampling_recipe(32)
    assert (r.kernel, r.stride, r.padding) == (64, 32, 16)
    r8 = upsampling_recipe(8)
    assert (r8.kernel, r8.stride, r8.padding) == (16, 8, 4)
    with pytest.raises(ValueError, match="factor"):
        upsampling_recipe(0)
    with pytest.raises(dataclass_error()):
        r.kernel = 3


def dataclass_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


@given(
    st.integers(1, 9),
    st.integers(1, 9),
    pair(1, 4),
    pair(1, 3),
    pair(0, 3),
    pair(1, 2),
    st.integers(1, 3),
    st.integers(1, 3),
)
def test_transposed_equivalent_reproduces_conv_transpose2d(
    h, w, kernel, stride, padding, dilation, c_in, c_out
):
    size = (h + 6, w + 6)
    try:
        eq = transposed_equivalent(size, kernel, stride, padding, dilation)
    except ValueError:
        return
    gen = torch.Generator().manual_seed(h * 31 + w)
    # Direct conv: c_in -> c_out channels; its transpose maps c_out -> c_in.
    weight = torch.randn(c_out, c_in, *kernel, generator=gen, dtype=torch.float64)
    y = torch.randn(1, c_out, *eq.output_size, generator=gen, dtype=torch.float64)
    expected = F.conv_transpose2d(
        y, weight, stride=stride, padding=padding, output_padding=eq.extra, dilation=dilation
    )
    # Zero insertion: s - 1 zeros between units.
    stretched = torch.zeros(1, c_out, *eq.stretched_size, dtype=torch.float64)
    stretched[:, :, :: stride[0], :: stride[1]] = y
    assert eq.zeros_inserted == (stride[0] - 1, stride[1] - 1)
    # Pad (negative = crop) d(k-1) - p before and d(k-1) - p + a after.
    pad = (eq.padding_before[1], eq.padding_after[1], eq.padding_before[0], eq.padding_after[0])
    padded = F.pad(stretched, pad)
    assert tuple(padded.shape[2:]) == eq.padded_size
    flipped = weight.flip(2, 3).transpose(0, 1)
    got = F.conv2d(padded, flipped, stride=1, dilation=dilation)
    assert tuple(got.shape[2:]) == eq.input_size == size
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_transposed_equivalent_dumoulin_visin_examples():
    # Relationship 8 (no padding, unit strides): i=4, k=3 -> o=2; transpose pads k-1=2.
    eq = transposed_equivalent(4, 3)
    assert (eq.output_size, eq.padding_before, eq.padding_after, eq.zeros_inserted) == (2, 2, 2, 0)
    # Relationship 14: i=6, k=3, s=2, p=1 -> o=3, a=1 extra row/column.
    eq = transposed_equivalent(6, 3, 2, 1)
    assert (eq.output_size, eq.extra, eq.padding_before, eq.padding_after) == (3, 1, 1, 2)
    assert (eq.stretched_size, eq.padded_size) == (5, 8)


# --- shapes of answers and validation -------------------------------------------------------


def test_int_in_int_out_tuple_in_tuple_out_and_broadcast():
    assert conv_output_size(5, 3, 2, 1) == 3
    assert conv_output_size((5, 7), 3, 2, 1) == (3, 4)
    assert conv_output_size(5, (3, 1), 2, 1) == (3, 4)
    assert conv_output_size((375, 500), 3) == (373, 498)
    assert effective_kernel(3, 2) == 5
    assert effective_kernel((3, 3), (1, 4)) == (3, 9)
    assert pool_output_size((7, 8), 2, ceil_mode=True) == (4, 4)
    assert conv_transpose_output_size((3,), 3, 2, 1, output_padding=1) == (6,)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: conv_output_size(0, 3), "size"),
        (lambda: conv_output_size(5, 0), "kernel"),
        (lambda: conv_output_size(5, 3, 0), "stride"),
        (lambda: conv_output_size(5, 3, padding=-1), "padding"),
        (lambda: conv_output_size(5, 3, dilation=0), "dilation"),
        (lambda: conv_output_size(5, 7), "does not fit"),
        (lambda: conv_output_size((5, 5), (3, 3, 3)), "dimensions"),
        (lambda: conv_output_size(5.0, 3), "integer"),
        (lambda: conv_output_size(True, 3), "integer"),
        (lambda: conv_output_size(5, 3, padding="full"), "padding"),
        (lambda: conv_output_size((5, 2), 3), r"kernel\[1\]"),
        (lambda: conv_transpose_output_size(3, 3, 2, output_padding=2), "output_padding"),
        (lambda: pool_output_size(8, 3, padding=2), "half the kernel"),
        (lambda: same_padding(3, 2), "size is required"),
    ],
)
def test_bad_arguments_name_the_argument(call, needle):
    with pytest.raises(ValueError, match=needle) as info:
        call()
    assert "\n" not in str(info.value)


@given(
    sizes_2d,
    pair(1, 5),
    pair(1, 3),
    pair(0, 3),
    pair(1, 3),
    pair(0, 2),
    st.booleans(),
)
def test_tuple_answers_are_the_per_dimension_int_answers(
    size, kernel, stride, padding, dilation, output_padding, ceil
):
    calls = [
        lambda *g: conv_output_size(*g[:5]),
        lambda *g: conv_transpose_output_size(*g),
        lambda *g: pool_output_size(*g[:5], ceil_mode=ceil),
        lambda *g: effective_kernel(g[1], g[4]),
    ]
    geometry = (size, kernel, stride, padding, dilation, output_padding)
    for call in calls:
        per_dim = [ours(call, *(v[j] for v in geometry)) for j in range(2)]
        together = ours(call, *geometry)
        if REJECT in per_dim:
            assert together == REJECT
        else:
            assert together == tuple(per_dim)
            assert all(type(v) is int for v in together)


def test_transposed_equivalent_refuses_string_padding():
    with pytest.raises(ValueError, match="same_padding"):
        transposed_equivalent(5, 3, 2, "same")


@given(st.integers(1, 30), st.integers(1, 7), st.integers(1, 4), st.integers(0, 3),
       st.integers(1, 3))
def test_conv_caffe_convention_truncates_like_cpp(size, kernel, stride, padding, dilation):
    extent = dilation * (kernel - 1) + 1
    numerator = size + 2 * padding - extent
    # C++ `int / int` truncates toward zero (conv_layer.cpp compute_output_shape).
    cpp = abs(numerator) // stride * (1 if numerator >= 0 else -1) + 1
    got = ours(conv_output_size, size, kernel, stride, padding, dilation, convention="caffe")
    assert got == (cpp if cpp >= 1 else REJECT)
    if numerator >= 0:  # wherever PyTorch accepts the geometry, Caffe agrees with it
        assert got == conv_output_size(size, kernel, stride, padding, dilation)
    transposed = conv_transpose_output_size(
        size, kernel, stride, 0, dilation, convention="caffe"
    )
    assert transposed == stride * (size - 1) + extent


def test_conventions_validate_padding_form():
    assert conv_output_size(4, 5, 2, convention="caffe") == 1  # overhang < stride: still 1
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(4, 5, 2)  # PyTorch refuses the same geometry
    assert conv_output_size(10, 3, 2, "valid", convention="tensorflow") == 4
    assert pool_output_size(10, 3, 2, "same", convention="tensorflow") == 5
    with pytest.raises(ValueError, match="'same' or 'valid'"):
        conv_output_size(10, 3, 2, 1, convention="tensorflow")
    with pytest.raises(ValueError, match="integer"):
        conv_output_size(10, 3, 2, "same", convention="caffe")
    with pytest.raises(ValueError, match="output_padding must be 0"):
        conv_transpose_output_size(3, 3, 2, 1, output_padding=1, convention="caffe")
    with pytest.raises(ValueError, match="tensorflow"):
        pool_output_size(10, 3, 2, "same")
    with pytest.raises(ValueError, match="convention"):
        conv_output_size(10, 3, convention="mxnet")


def test_as_pair_is_torch_pair_with_checks():
    from torch.nn.modules.utils import _pair

    from fcnkit.arith import as_pair
    from fcnkit.errors import InputError

    # torch's own _pair is the oracle for the accepted forms.
    for value in (3, (2, 5), [4, 1]):
        assert as_pair(value, "kernel") == tuple(_pair(value))
    assert as_pair((7,), "size") == (7, 7) and as_pair(torch.tensor(2).numpy()[()], "s") == (2, 2)
    for bad in (1.5, True, (1, 2, 3), "3", None):
        with pytest.raises(InputError, match="kernel"):
            as_pair(bad, "kernel")
    with pytest.raises(InputError, match="crop_size must be integers >= 1"):
        as_pair((0, 4), "crop_size", minimum=1)
