"""Review against independent oracles: real torch layers, Keras' documented
``Conv2DTranspose`` shape inference, brute-force coverage of stacked dilated convolutions
(torch gradients and exact Python-int path counts) and the size functions' own reading of
"SAME" / "Caffe". Each test pins one defect the review found (and the oracle exposing it)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from test_arith_taps import _evaluate  # the layer computed from the picture (shared oracle)

from fcnkit.arith import conv_transpose_output_size, dilation_coverage, hdc_check, prefix_rule_ok
from fcnkit.arith.layer import describe_layer
from fcnkit.arith.relationships import size_relationship
from fcnkit.arith.taps import animation_cost, tap_layout
from fcnkit.errors import InputError


def _keras_deconv_output_length(i, k, s, d, mode):
    """Keras ``conv_utils.deconv_output_length`` (output_padding None): the documented oracle."""
    k_eff = k + (k - 1) * (d - 1)
    return i * s if mode == "same" else i * s + max(k_eff - s, 0)


@pytest.mark.parametrize("convention", ["tensorflow", "pytorch"])
@given(i=st.integers(1, 12), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3),
       mode=st.sampled_from(["same", "valid"]))
def test_relationship_of_a_tensorflow_transposed_conv_is_keras_shape_inference(
        convention, i, k, s, d, mode):
    # The explorer shows size_relationship next to describe_layer; for a transposed layer
    # with padding "same"/"valid" it used the *forward* rule ceil(i / s) (5 -> 3 for k3 s2
    # SAME, where Keras' Conv2DTranspose gives 10).
    expected = _keras_deconv_output_length(i, k, s, d, mode)
    assert conv_transpose_output_size(i, k, s, mode, d, convention=convention) == expected
    rel = size_relationship(kind="conv_transpose", size=i, kernel=k, stride=s, padding=mode,
                            dilation=d, convention=convention)
    assert rel.output_size == expected
    assert rel.substituted.endswith(f"= {expected}")


def test_relationship_tensorflow_transposed_known_value():
    rel = size_relationship(kind="conv_transpose", size=5, kernel=3, stride=2, padding="same",
                            convention="tensorflow")
    assert rel.output_size == 10 and "Conv2DTranspose" in rel.source


def _brute_force_holes(rates, k):
    """Real torch: all-ones K x K kernels, no padding; the gradient of the single output
    pixel counts the paths from every input pixel. Returns the number of zero pixels."""
    side = 1 + (k - 1) * sum(rates)
    x = torch.zeros(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    y = x
    for r in rates:
        y = F.conv2d(y, torch.ones(1, 1, k, k, dtype=torch.float64), dilation=r)
    (grad,) = torch.autograd.grad(y.sum(), x)
    counts = grad[0, 0].numpy().astype(np.int64)
    assert np.array_equal(counts, dilation_coverage(rates, k))
    return int((counts == 0).sum())


@given(rates=st.lists(st.integers(1, 6), min_size=1, max_size=4), k=st.integers(1, 4))
def test_prefix_rule_agrees_with_brute_force_coverage(rates, k):
    # K = 1 is accepted by every gridding function; a stack of 1x1 convolutions has a
    # one-pixel field and no holes whatever the rates, but prefix_rule_ok said "holes"
    # for any rate > 1 (e.g. (2,), K = 1), disagreeing with hdc_check.
    holes = _brute_force_holes(rates, k)
    assert hdc_check(rates, k).grids == (holes > 0)
    assert prefix_rule_ok(rates, k) == (holes == 0)


def test_prefix_rule_one_by_one_kernels_never_grid():
    assert prefix_rule_ok([2], 1) and prefix_rule_ok([4, 6], 1)
    assert not hdc_check([4, 6], 1).grids


@given(size=st.tuples(st.integers(1, 5), st.integers(1, 5)), k=st.integers(2, 4),
       s=st.integers(1, 3), d=st.integers(2, 4), p=st.integers(0, 3), data=st.data())
def test_transposed_layout_with_output_padding_from_dilation(size, k, s, d, p, data):
    # PyTorch accepts output_padding < max(stride, dilation); with dilation > stride an
    # output_padding >= stride is valid and the equivalent direct convolution is still a
    # grid (pad d(k-1) - p before, d(k-1) - p + a after). tap_layout (and so `fcnkit
    # animate`) refused it as "not drawable".
    assume(d > s and p <= d * (k - 1))
    a = data.draw(st.integers(s, d - 1))
    x = np.random.default_rng(0).standard_normal(size)
    w = np.random.default_rng(1).standard_normal((k, k))
    try:
        expected = F.conv_transpose2d(torch.tensor(x)[None, None], torch.tensor(w)[None, None],
                                      stride=s, padding=p, output_padding=a,
                                      dilation=d)[0, 0].numpy()
    except RuntimeError:
        assume(False)
    assume(expected.size > 0)
    layout = tap_layout(size, k, s, p, d, True, a)
    assert layout.output_shape == expected.shape
    np.testing.assert_allclose(_evaluate(layout, x, w), expected, atol=1e-9)
    cost = animation_cost(size, (k, k), (s, s), (p, p), (d, d), True, (a, a))
    assert cost == (layout.positions, layout.cells.size)


def test_transposed_layout_output_padding_known_case_and_limit():
    # ConvTranspose k3 s1 d2 a1 on 3x3 -> 8x8 in PyTorch.
    layout = tap_layout(3, 3, stride=1, dilation=2, transposed=True, output_padding=1)
    assert layout.output_shape == (8, 8)
    with pytest.raises(InputError, match="output_padding"):
        tap_layout(3, 3, stride=1, dilation=2, transposed=True, output_padding=2)


INT64_MAX = 2**63 - 1


def _exact_counts_1d(rates, k):
    """Path counts along one axis with Python ints (no overflow): the brute-force oracle."""
    counts = [1]
    for r in rates:
        taps = [0] * ((k - 1) * r + 1)
        taps[::r] = [1] * k
        new = [0] * (len(counts) + len(taps) - 1)
        for i, c in enumerate(counts):
            for j, t in enumerate(taps):
                new[i + j] += c * t
        counts = new
    return counts


@pytest.mark.parametrize(("rates", "k"), [([1] * 31, 3), ([1] * 45, 3), ([1, 2] * 12, 4),
                                          ([1] * 63, 2), ([1, 1, 2, 3, 5, 8], 9)])
def test_path_counts_do_not_overflow_int64(rates, k):
    # 31 layers of rate 1 (receptive field 63, far below the limits) have up to ~2.9e27
    # paths per pixel in 2-D: int64 wrapped and dilation_coverage returned negative counts
    # (the JSON of `fcnkit gridding` printed them). Counts now saturate at int64's maximum.
    exact = _exact_counts_1d(rates, k)
    counts = dilation_coverage(rates, k)
    assert counts.dtype == np.int64 and counts.min() >= 0
    centre = len(exact) // 2
    for i in (0, centre // 2, centre):
        for j in (0, centre):
            assert counts[i, j] == min(exact[i] * exact[j], INT64_MAX)
    assert (counts == 0).sum() == sum(1 for a in exact for b in exact if a * b == 0)
    report = hdc_check(rates, k)
    assert report.holes == (counts == 0).sum() and report.coverage.min() >= 0


@pytest.mark.parametrize("spelling", ["SAME", "Same", " same ", "VALID", "Valid"])
@given(i=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3))
def test_describe_layer_reads_tensorflow_padding_in_any_case(spelling, i, k, s):
    # conv_output_size accepts "SAME" (TensorFlow's own spelling) like "same", but
    # describe_layer compared the raw string with "same"/"valid": "SAME" went on as an
    # integer padding, the inverse was dropped with a note about Caffe's truncating
    # division (a kernel that fits) and SAME's padding split was not reported.
    lower = spelling.strip().lower()
    try:
        expected = describe_layer(size=i, kernel=k, stride=s, padding=lower,
                                  convention="tensorflow")
    except InputError:
        assume(False)
    got = describe_layer(size=i, kernel=k, stride=s, padding=spelling, convention="tensorflow")
    assert {key: v for key, v in got.items() if key != "padding"} == \
        {key: v for key, v in expected.items() if key != "padding"}
    inverse = got["inverse"]
    if inverse is not None:  # the inverse it gives recovers the input size in torch
        y = torch.zeros(1, 1, got["output_size"], 1)
        back = F.conv_transpose2d(y, torch.zeros(1, 1, k, 1), stride=(s, 1),
                                  padding=(inverse["padding"], 0),
                                  output_padding=(inverse["output_padding"], 0))
        assert back.shape[2] == i == inverse["output_size"]


def test_describe_layer_upper_case_same_known_value():
    report = describe_layer(size=5, kernel=3, stride=2, padding="SAME", convention="tensorflow")
    assert report["output_size"] == 3 and report["same_padding"] == [[1, 1]]
    assert report["inverse"]["output_padding"] == 0 and "note" not in report


@pytest.mark.parametrize(("spelling", "kind", "padding"), [
    ("Caffe", "pool", 0), ("CAFFE", "conv", 0), (" caffe ", "pool", 1),
    ("TensorFlow", "pool", "same"), ("TENSORFLOW", "conv", "valid")])
@given(i=st.integers(1, 12), k=st.integers(2, 5), s=st.integers(1, 3))
def test_describe_layer_reads_the_convention_in_any_case(spelling, kind, padding, i, k, s):
    # The size functions accept "Caffe" like "caffe"; describe_layer compared the raw
    # string, so a Caffe pooling layer (which always rounds up) was reported with
    # ceil_mode False, and a TensorFlow one got PyTorch's ceil_mode field.
    lower = spelling.strip().lower()
    try:
        expected = describe_layer(size=i, kernel=k, stride=s, padding=padding, kind=kind,
                                  convention=lower)
    except InputError:
        assume(False)
    got = describe_layer(size=i, kernel=k, stride=s, padding=padding, kind=kind,
                         convention=spelling)
    assert got == expected
    rel = size_relationship(kind=kind, size=i, kernel=k, stride=s, padding=padding,
                            convention=spelling)
    assert rel.output_size == expected["output_size"]
