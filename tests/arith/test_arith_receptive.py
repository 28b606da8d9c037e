"""receptive_field vs brute force (gradient support through real torch layers) and
published numbers (Araujo et al. 2019 for VGG-16). Crop offsets: test_arith_crops.py."""

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fcnkit.arith.receptive import (
    ReceptiveField,
    layer_geometry,
    merge_receptive_fields,
    receptive_field,
)
from fcnkit.errors import InputError


def _vgg16_body(first_padding=1):
    layers = []
    for block, convs in enumerate((2, 2, 3, 3, 3)):
        for i in range(convs):
            layers.append((3, 1, first_padding if block == 0 and i == 0 else 1))
        layers.append((2, 2, 0))
    return layers


def test_vgg16_pool5_matches_araujo_et_al():
    # Distill 2019 table: VGG 16 -> r = 212, S = 32, P = 90.
    pool5 = receptive_field(_vgg16_body())[-1]
    assert (pool5.size, pool5.stride, pool5.padding) == (212, 32, 90)
    assert pool5.center(0) == Fraction(31, 2)


def test_small_examples_and_fractions():
    rf = receptive_field([(3, 1, 1), (3, 1, 1), (2, 2, 0)])
    assert [(r.size, r.stride, r.padding) for r in rf] == [(3, 1, 1), (5, 1, 2), (6, 2, 2)]
    assert rf[-1].center(0) == Fraction(1, 2) and rf[-1].center(3) == Fraction(13, 2)
    assert rf[-1].bounds(1) == (0, 5)
    dil = receptive_field([(3, 1, 2, 2)])[-1]
    assert dil.size == 5 and dil.center(0) == 0
    tr = receptive_field([{"kernel": 4, "stride": 2, "padding": 1, "transposed": True}])[-1]
    assert tr.stride == Fraction(1, 2) and tr.size == Fraction(5, 2)
    # Caffe coord_map for Deconvolution: x_in = (x_out + p - (k - 1)/2) / s
    for j in range(6):
        assert tr.center(j) == (j + 1 - Fraction(3, 2)) / 2
    assert tr.as_dict() == {"size": 2.5, "stride": 0.5, "padding": 1, "center": -0.25}


def test_per_dimension_and_objects():
    rf = receptive_field([((3, 5), 1, (1, 2)), {"kernel_size": 2, "stride": (2, 1)}])[-1]
    assert rf.size == (4, 6) and rf.stride == (2, 1) and rf.padding == (1, 2)
    assert rf.center((0, 0)) == (Fraction(1, 2), Fraction(1, 2))
    conv = torch.nn.Conv2d(1, 1, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    pool = torch.nn.MaxPool2d(3, stride=2, padding=1)
    deconv = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1, output_padding=1)
    geoms = [layer_geometry(m) for m in (conv, pool, deconv)]
    assert geoms[0].kernel == (3, 5) and geoms[0].dilation == (1, 2)
    assert geoms[2].transposed and geoms[2].output_padding == (1, 1)
    out = receptive_field([conv, pool, deconv])[-1]
    assert out.ndim == 2
    same = layer_geometry({"kernel": 4, "padding": "same", "dilation": 3})
    assert same.padding == (4,)  # torch: total 9, left 4


@pytest.mark.parametrize(
    "layers, match",
    [
        ([(3, 1)], "layers\\[0\\]"),
        ([(3, 0, 1)], "stride"),
        ([(3, 1, -1)], "padding"),
        ([{"stride": 2}], "kernel"),
        ([((3, 3, 3), 1, (1, 1))], "padding"),
        ([{"kernel": 3, "stride": 2, "output_padding": 1}], "output_padding"),
        ([{"kernel": 3, "stride": 2, "output_padding": 2, "transposed": True}], "output_padding"),
        ([{"kernel": 3, "padding": "full"}], "padding"),
    ],
)
def test_bad_layers(layers, match):
    with pytest.raises(InputError, match=match):
        receptive_field(layers)


def test_merge_rejects_misaligned_strides():
    a, b = ReceptiveField(3, 1, 1), ReceptiveField(4, 2, 1)
    with pytest.raises(InputError, match="strides"):
        merge_receptive_fields([a, b])
    m = merge_receptive_fields([ReceptiveField(3, 2, 1), ReceptiveField(7, 2, 0)])
    assert (m.size, m.stride, m.padding) == (8, 2, 1)  # union of [-1, 1] and [0, 6]


# ---- brute force: gradient support of one output pixel through real torch layers ----

layer_st = st.tuples(
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
    st.integers(1, 3),  # dilation
)


def _support(layers, length, index, transposed_flags=None):
    x = torch.ones(1, 1, length, dtype=torch.float64, requires_grad=True)
    y = x
    for i, (k, s, p, d) in enumerate(layers):
        w = torch.ones(1, 1, k, dtype=torch.float64)
        if transposed_flags and transposed_flags[i]:
            y = F.conv_transpose1d(y, w, stride=s, padding=p, dilation=d)
        else:
            y = F.conv1d(y, w, stride=s, padding=p, dilation=d)
    if index >= y.shape[-1]:
        return None
    y[0, 0, index].backward()
    return [i for i, g in enumerate(x.grad[0, 0].tolist()) if g != 0]


@given(st.lists(layer_st, min_size=1, max_size=4), st.data())
def test_direct_stacks_match_gradient_support(layers, data):
    rf = receptive_field(layers)[-1]
    margin = int(rf.size) + int(rf.padding) + 4
    length = 2 * margin + 8 * int(rf.stride)
    pad_out = [j for j in range(64) if rf.bounds(j)[0] >= 0 and rf.bounds(j)[1] < length]
    if not pad_out:
        return
    j = data.draw(st.sampled_from(pad_out))
    support = _support(layers, length, j)
    if support is None:
        return
    first, last = rf.bounds(j)
    # Extremes are reached by the outermost taps; holes come from dilation or from
    # strides larger than the kernel (pixels skipped).
    assert support[0] == first and support[-1] == last
    if all((d == 1 or k == 1) and k >= s for k, s, _, d in layers):
        assert support == list(range(first, last + 1))


@given(st.lists(layer_st, min_size=1, max_size=3), st.lists(st.booleans(), min_size=3,
                                                             max_size=3), st.data())
def test_stacks_with_transposed_layers_stay_inside_bounds(layers, flags, data):
    specs = [
        {"kernel": k, "stride": s, "padding": p, "dilation": d, "transposed": t}
        for (k, s, p, d), t in zip(layers, flags)
    ]
    rf = receptive_field(specs)[-1]
    length = 24
    j = data.draw(st.integers(0, 40))
    try:
        support = _support(layers, length, j, flags)
    except RuntimeError:  # torch rejects a transposed layer whose output would be empty
        return
    if not support:
        return
    first, last = rf.bounds(j)
    assert first <= support[0] and support[-1] <= last


@pytest.mark.slow  # seconds
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3))
def test_single_transposed_layer_is_exact(k, s, p, d):
    rf = receptive_field([{"kernel": k, "stride": s, "padding": p, "dilation": d,
                           "transposed": True}])[-1]
    length = 12
    for j in range(0, 10):
        support = _support([(k, s, p, d)], length, j, [True])
        if not support:
            continue
        first, last = rf.bounds(j)
        # taps hit input i with s*i - p + t*d == j: min/max are ceil/floor of the bounds
        reachable = [
            i for i in range(length) for t in range(k) if s * i - p + t * d == j
        ]
        assert support == sorted(set(reachable))
        assert first <= support[0] and support[-1] <= last
        if 0 <= first and last <= length - 1 and d == 1:
            assert support[0] == -(-Fraction(first).numerator // Fraction(first).denominator)
