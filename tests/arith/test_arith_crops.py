"""Crop offsets (Caffe coord_map) against what real torch layers compute.

Oracle: a *ramp probe*. Feed x_i = i through 1-D layers whose weights average their taps
(direct convolutions and poolings) or interpolate bilinearly (transposed convolutions with
the bilinear kernel): every output pixel whose taps all fall inside the input then holds
exactly the input coordinate of its centre. Which pixels are clean is found by feeding
ones through the same layers (a clean output is exactly 1). Published numbers: the Caffe
voc-fcn crops 5, 9, 31 (FCN-8s), 5, 27 (FCN-16s), 19 (FCN-32s).
"""

from fractions import Fraction
from math import floor

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fcnkit.arith import (
    ReceptiveField,
    bilinear_kernel_1d,
    crop_offset,
    integer_crop,
    receptive_field,
    skip_fusion_crops,
    upsampling_recipe,
)

LENGTH = 160


def _run(layers, x):
    """Apply 1-D layers (k, s, p, d) or {"kernel", "stride", "padding", "transposed"}."""
    for layer in layers:
        if isinstance(layer, dict):  # bilinear transposed convolution
            w = torch.as_tensor(bilinear_kernel_1d(layer["kernel"]))[None, None]
            x = F.conv_transpose1d(x, w, stride=layer["stride"], padding=layer["padding"])
        else:
            k, s, p, d = layer
            w = torch.full((1, 1, k), 1.0 / k, dtype=torch.float64)
            x = F.conv1d(x, w, stride=s, padding=p, dilation=d)
    return x


def _probe(layers):
    """(centres, clean) per output pixel: the ramp's values and where they are exact."""
    ramp = torch.arange(LENGTH, dtype=torch.float64)[None, None]
    centres = _run(layers, ramp)[0, 0]
    clean = (_run(layers, torch.ones_like(ramp))[0, 0] - 1).abs() < 1e-9
    return centres, clean


def _up(factor, caffe):
    recipe = upsampling_recipe(factor)
    return {"kernel": recipe.kernel, "stride": factor, "padding": 0 if caffe else recipe.padding,
            "transposed": True}


direct = st.tuples(st.integers(1, 4), st.integers(0, 3), st.integers(1, 2))  # k, p, d


def _stage(convs, pool_k, stride):
    return [(k, 1, p, d) for k, p, d in convs] + [(pool_k, stride, 0, 1)]


@pytest.mark.slow  # seconds
@settings(max_examples=40, deadline=None)
@given(st.lists(direct, min_size=1, max_size=3), st.lists(direct, min_size=1, max_size=3),
       st.integers(2, 3), st.sampled_from([1, 2]))
def test_crop_offset_is_where_the_ramps_agree(convs_a, convs_b, pool_k, stride):
    a, b = _stage(convs_a, pool_k, stride), _stage(convs_b, pool_k, stride)
    offset = crop_offset(receptive_field(a)[-1], receptive_field(b)[-1])[0]
    (ca, clean_a), (cb, clean_b) = _probe(a), _probe(b)
    checked = 0
    for m in range(len(cb)):
        lo = m + floor(offset)
        hi = lo + (Fraction(offset).denominator != 1)
        if not clean_b[m] or lo < 0 or hi >= len(ca) or not (clean_a[lo] and clean_a[hi]):
            continue
        checked += 1
        if lo == hi:  # a whole offset: pixel m of B and m + offset of A share their centre
            assert abs(float(ca[lo]) - float(cb[m])) < 1e-9
        else:  # between two pixels of A: no crop can align them
            assert float(ca[lo]) < float(cb[m]) < float(ca[hi])
    assert checked


def _fusion_probe(coarse, skips, up, crops, x):
    """The FCN head in torch on probe x: (per fusion: upsampled part, skip part), output."""
    running, fused = _run(coarse, x), []
    for skip_layers, (offset,) in zip(skips, crops.skip_offsets):
        upsampled, skip = _run([up], running), _run(skip_layers, x)
        # fcnkit.models.heads.overlap: the upsampled map is cut where the skip ends
        start = max(0, -offset)
        stop = min(upsampled.shape[-1], skip.shape[-1] - offset)
        running = upsampled[..., start:stop]
        fused.append((running[0, 0], skip[0, 0, start + offset : stop + offset]))
    return fused, _run([up], running)[0, 0, crops.final_offset[0]:]


@pytest.mark.slow  # seconds
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.lists(direct, min_size=1, max_size=2), st.integers(2, 3)),
                min_size=3, max_size=3),
       st.integers(0, 12), st.booleans())
def test_skip_fusion_crops_align_the_ramps(stages, first_padding, caffe):
    # An FCN-8s in one dimension: three stride-2 stages, skips after stages 1 and 2, x2
    # upsamplers (Caffe's padding 0 or the exact-size recipe), x2 to the input.
    layers = [(3, 1, first_padding, 1)]
    for convs, pool_k in stages:
        layers += _stage(convs, pool_k, 2)
    ends = [i for i, layer in enumerate(layers) if layer[1] == 2]
    skips = [layers[: ends[1] + 1], layers[: ends[0] + 1]]
    up = _up(2, caffe)
    crops = skip_fusion_crops(layers, [(up, skip) for skip in skips], up, ndim=1)
    assume(crops.final_offset[0] >= 0)  # else the output does not cover the input
    ramp = torch.arange(LENGTH, dtype=torch.float64)[None, None]
    fused, out = _fusion_probe(layers, skips, up, crops, ramp)
    fused_ones, out_ones = _fusion_probe(layers, skips, up, crops, torch.ones_like(ramp))
    checked = 0
    for (upsampled, skip), (up_ones, skip_ones), left in zip(fused, fused_ones,
                                                              crops.skip_misalignment):
        clean = ((up_ones - 1).abs() < 1e-9) & ((skip_ones - 1).abs() < 1e-9)
        # same centres, or apart by exactly the reported misalignment (input pixels)
        difference = (upsampled - skip)[clean]
        checked += len(difference)
        assert torch.allclose(difference, torch.full_like(difference, left[0]), atol=1e-9)
    clean = (out_ones - 1).abs() < 1e-9
    positions = torch.arange(len(out), dtype=torch.float64)
    expected = positions[clean] - crops.final_misalignment[0]
    assert torch.allclose(out[clean], expected, atol=1e-9)
    assert checked and clean.any()


def test_caffe_voc_fcn_crops():
    # Published (shelhamer/fcn.berkeleyvision.org voc-fcn*s, caffe.coord_map): FCN-8s crops
    # 5 (score_pool4), 9 (score_pool3), 31 (final); FCN-16s 5, 27; FCN-32s 19.
    body = []
    for convs in (2, 2, 3, 3, 3):
        body += [(3, 1, 1)] * convs + [(2, 2, 0)]
    body[0] = (3, 1, 100)  # conv1_1
    pool3, pool4 = body[:10], body[:17]
    score_fr = body + [(7, 1, 0), (1, 1, 0), (1, 1, 0)]
    score4, score3 = pool4 + [(1, 1, 0)], pool3 + [(1, 1, 0)]

    def up(f):
        return {"kernel": 2 * f, "stride": f, "transposed": True}

    fcn8 = skip_fusion_crops(score_fr, [(up(2), score4), (up(2), score3)], up(8), ndim=1)
    assert (fcn8.skip_offsets, fcn8.final_offset) == (((5,), (9,)), (31,))
    fcn16 = skip_fusion_crops(score_fr, [(up(2), score4)], up(16), ndim=1)
    assert (fcn16.skip_offsets, fcn16.final_offset) == (((5,),), (27,))
    fcn32 = skip_fusion_crops(score_fr, [], up(32), ndim=2)
    assert fcn32.final_offset == (19, 19) and fcn32.final_misalignment == (0.0, 0.0)


def test_integer_crop_and_cropped_field():
    assert integer_crop([Fraction(5), Fraction(-1, 2)]) == ((5, 0), (0.0, -0.5))
    field = receptive_field([(3, 2, 1), (3, 2, 1)])[-1]
    (centres, clean) = _probe([(3, 2, 1, 1), (3, 2, 1, 1)])
    moved = field.cropped(3)
    for j in range(len(centres) - 3):
        if clean[j + 3]:  # cropping 3 pixels: new pixel j is old pixel j + 3
            assert abs(moved.center(j) - float(centres[j + 3])) < 1e-9
    assert crop_offset(moved, field) == (-3,)
    # centres 0 and 1/2 on a stride-2 grid: a quarter of a pixel apart
    assert crop_offset(ReceptiveField(3, 2, 1), ReceptiveField(4, 2, 1)) == (Fraction(1, 4),)
