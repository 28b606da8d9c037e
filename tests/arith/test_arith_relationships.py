"""Dumoulin & Visin's size relationships: the paper's figures, and PyTorch as the oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from fcnkit.arith.relationships import size_relationship
from fcnkit.arith.sizes import conv_output_size, padding_for, pool_output_size
from fcnkit.errors import InputError

# (kind, i, k, s, p, d, a) -> (relationship, o): the examples of the paper's figures
# (arXiv:1603.07285, figures 2.1-2.7, 4.1-4.7, 5.1).
PAPER_FIGURES = [
    (("conv", 4, 3, 1, 0, 1, 0), (1, 2)),             # fig 2.1
    (("conv", 5, 4, 1, 2, 1, 0), (2, 6)),             # fig 2.2
    (("conv", 5, 3, 1, 1, 1, 0), (3, 5)),             # fig 2.3, half padding
    (("conv", 5, 3, 1, 2, 1, 0), (4, 7)),             # fig 2.4, full padding
    (("conv", 5, 3, 2, 0, 1, 0), (5, 2)),             # fig 2.5
    (("conv", 5, 3, 2, 1, 1, 0), (6, 3)),             # fig 2.6
    (("conv", 6, 3, 2, 1, 1, 0), (6, 3)),             # fig 2.7
    (("conv", 7, 3, 1, 0, 2, 0), (15, 3)),            # fig 5.1, dilation 2
    (("conv_transpose", 2, 3, 1, 0, 1, 0), (8, 4)),   # fig 4.1
    (("conv_transpose", 6, 4, 1, 2, 1, 0), (9, 5)),   # fig 4.2
    (("conv_transpose", 5, 3, 1, 1, 1, 0), (10, 5)),  # fig 4.3
    (("conv_transpose", 7, 3, 1, 2, 1, 0), (11, 5)),  # fig 4.4
    (("conv_transpose", 2, 3, 2, 0, 1, 0), (12, 5)),  # fig 4.5
    (("conv_transpose", 3, 3, 2, 1, 1, 0), (13, 5)),  # fig 4.6
    (("conv_transpose", 3, 3, 2, 1, 1, 1), (14, 6)),  # fig 4.7
    (("pool", 5, 3, 1, 0, 1, 0), (7, 3)),             # relationship 7
]


@pytest.mark.parametrize(("layer", "expected"), PAPER_FIGURES)
def test_paper_figures(layer, expected):
    kind, i, k, s, p, d, a = layer
    rel = size_relationship(kind=kind, size=i, kernel=k, stride=s, padding=p, dilation=d,
                            output_padding=a)
    assert (rel.number, rel.output_size) == expected
    assert rel.substituted.endswith(f"= {expected[1]}")


def _torch_size(kind, i, k, s, p, d, a, ceil_mode=False):
    x = torch.zeros(1, 1, i, i)
    if kind == "conv":
        layer = nn.Conv2d(1, 1, k, s, p, d, bias=False)
    elif kind == "conv_transpose":
        layer = nn.ConvTranspose2d(1, 1, k, s, p, a, dilation=d, bias=False)
    else:
        layer = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil_mode)
    try:
        with torch.no_grad():
            return layer(x).shape[-1]
    except RuntimeError:
        return None


@given(kind=st.sampled_from(["conv", "conv_transpose", "pool"]), i=st.integers(1, 12),
       k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 4), d=st.integers(1, 3),
       a=st.integers(0, 3), ceil_mode=st.booleans())
def test_every_relationship_matches_pytorch(kind, i, k, s, p, d, a, ceil_mode):
    if kind != "conv_transpose":
        a = 0
    if kind != "pool":
        ceil_mode = False
    if kind == "pool":
        assume(p <= k // 2)
    assume(a < max(s, d))
    expected = _torch_size(kind, i, k, s, p, d, a, ceil_mode)
    assume(expected is not None and expected >= 1)
    rel = size_relationship(kind=kind, size=i, kernel=k, stride=s, padding=p, dilation=d,
                            output_padding=a, ceil_mode=ceil_mode)
    assert rel.output_size == expected, rel


@given(i=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
       p=st.integers(0, 2), same=st.booleans())
def test_caffe_and_tensorflow_rules_match_the_size_functions(i, k, s, d, p, same):
    mode = "same" if same else "valid"
    try:
        tf = conv_output_size(i, k, s, mode, d, convention="tensorflow")
    except InputError:
        tf = None
    if tf is not None:
        rel = size_relationship(kind="conv", size=i, kernel=k, stride=s, padding=mode,
                                dilation=d, convention="tensorflow")
        assert rel.output_size == tf and rel.number is None
    try:
        caffe_pool = pool_output_size(i, k, s, p, convention="caffe")
    except InputError:
        return
    rel = size_relationship(kind="pool", size=i, kernel=k, stride=s, padding=p,
                            convention="caffe")
    assert rel.output_size == caffe_pool


def test_unknown_kind_is_one_line():
    with pytest.raises(InputError, match="kind must be one of"):
        size_relationship(kind="deconv", size=5, kernel=3)


@settings(max_examples=25)
@given(i=st.integers(1, 16), t=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3),
       d=st.integers(1, 3))
def test_padding_for_is_every_padding_pytorch_accepts(i, t, k, s, d):
    """Brute force over paddings with nn.Conv2d's actual output size."""
    # Output size grows with p, and exceeds t once 2p > t*s - i + d(k-1): stop there.
    weight = torch.zeros(1, 1, k, k)
    x = torch.zeros(1, 1, i, i)
    hits = []
    for p in range((t * s + d * (k - 1)) // 2 + 2):
        if i + 2 * p >= d * (k - 1) + 1 and \
                F.conv2d(x, weight, stride=s, padding=p, dilation=d).shape[-1] == t:
            hits.append(p)
    if hits:
        assert padding_for(i, t, k, s, d) == (min(hits), max(hits))
        assert hits == list(range(min(hits), max(hits) + 1))
    else:
        with pytest.raises(InputError, match="not reachable"):
            padding_for(i, t, k, s, d)
