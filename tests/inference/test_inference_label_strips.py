"""Labels without full-resolution logits: strip-wise upsampling + argmax equals the plain path.

Oracles: PyTorch's own transposed convolution over the whole map (for the input span), and
``model(x).argmax(1)`` (for the labels), compared bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fcnkit.arith.tiling import transposed_input_span
from fcnkit.inference.backends import TorchBackend
from fcnkit.inference.labels import (
    labels_by_strips,
    predict_labels,
    supports_label_strips,
    whole_image_labels,
)
from fcnkit.models import build_model


@st.composite
def spans(draw):
    stride = draw(st.integers(1, 8))
    kernel = draw(st.integers(1, 3 * stride))
    padding = draw(st.integers(0, kernel - 1))
    size = draw(st.integers(1, 9))
    out_size = (size - 1) * stride - 2 * padding + kernel
    if out_size < 1:
        return None
    start = draw(st.integers(0, out_size - 1))
    stop = draw(st.integers(start + 1, out_size))
    return kernel, stride, padding, size, start, stop


@given(spans())
def test_input_span_reproduces_the_output_rows_exactly(case) -> None:
    if case is None:
        return
    kernel, stride, padding, size, start, stop = case
    torch.manual_seed(0)
    x = torch.randn(1, 1, size, 1, dtype=torch.float64)
    w = torch.randn(1, 1, kernel, 1, dtype=torch.float64)
    whole = F.conv_transpose2d(x, w, stride=(stride, 1), padding=(padding, 0))
    first, last = transposed_input_span(start, stop, kernel=kernel, stride=stride,
                                        padding=padding, input_size=size)
    assert 0 <= first < last <= size
    part = F.conv_transpose2d(x[:, :, first:last], w, stride=(stride, 1), padding=(padding, 0))
    local = start - first * stride
    assert local >= 0
    assert torch.equal(part[:, :, local : local + stop - start], whole[:, :, start:stop])
    # No more input than the rows' footprint (plus the widening for kernel < stride:
    # from floor(start / s) to ceil((stop + 2p - k) / s), one more row at each rounding;
    # e.g. k=1, s=6, p=0, rows [16, 26) need input rows [2, 6)).
    assert last - first <= (stop - start + kernel + 2 * padding) // stride + 3


MODELS = [
    ("fcn8s", {"backbone": "resnet18"}),
    ("fcn8s", {"backbone": "resnet18", "upsample": "interpolate"}),
    ("fcn32s", {"backbone": "resnet18", "upsample": "deconv"}),
    ("fcn16s", {"backbone": "mobilenet_v3_large"}),
    ("fcn_dilated", {"backbone": "resnet18", "output_stride": 8, "upsample": "interpolate"}),
    ("fcn_resnet18_d2l", {}),
]


@pytest.mark.slow  # full-image and strip forwards of real backbones: seconds per model
@pytest.mark.parametrize(("name", "options"), MODELS)
def test_strip_labels_equal_the_argmax_of_the_full_logits(name, options) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, **options).eval()
    assert supports_label_strips(model)
    x = torch.randn(2, 3, 45, 71)
    with torch.no_grad():
        want = model(x).argmax(1)
        for rows in (1, 7, 64):
            assert torch.equal(labels_by_strips(model, x, rows=rows), want), rows
        assert torch.equal(predict_labels(model, x, num_classes=5), want)
        assert torch.equal(TorchBackend(model).predict_labels(x), want)


@pytest.mark.slow
def test_faithful_vgg_crop_offset_strips() -> None:
    """The Caffe FCN-32s crops the last upsampled map at offset 19: strips honour it."""
    torch.manual_seed(0)
    model = build_model("fcn32s", num_classes=3, backbone="vgg16", faithful=True).eval()
    assert model.final_offset == (19, 19)
    x = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        assert torch.equal(labels_by_strips(model, x, rows=16), model(x).argmax(1))


def test_models_without_the_protocol_use_the_plain_argmax() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1).eval()
    x = torch.randn(1, 3, 10, 12)
    assert not supports_label_strips(conv)
    with torch.no_grad():
        assert torch.equal(whole_image_labels(conv, x), conv(x).argmax(1))
