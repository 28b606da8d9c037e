"""arith.layer.describe_layer against what PyTorch's own modules do.

Oracles: the output shapes of real ``nn.Conv2d`` / ``nn.ConvTranspose2d`` /
``nn.MaxPool2d`` (and their refusal of a geometry), the inverse layer the report proposes,
instantiated in torch and run on the output, and TensorFlow's documented SAME size
``ceil(i / s)`` reproduced by explicit ``F.pad`` + ``nn.Conv2d``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fcnkit.arith.layer import describe_layer
from fcnkit.errors import InputError

sizes = st.tuples(st.integers(1, 24), st.integers(1, 24))
small = st.integers(1, 5)


def torch_output(module: nn.Module, size: tuple[int, int]) -> list[int] | None:
    """The module's output (H, W) for a zero input of ``size``, or None if torch refuses."""
    try:
        with torch.no_grad():
            return list(module(torch.zeros(1, 1, *size)).shape[2:])
    except RuntimeError:
        return None


@given(size=sizes, kernel=small, stride=small, padding=st.integers(0, 3),
       dilation=st.integers(1, 3))
def test_conv_size_and_its_inverse_match_torch(size, kernel, stride, padding, dilation):
    expected = torch_output(nn.Conv2d(1, 1, kernel, stride, padding, dilation), size)
    if expected is None:
        with pytest.raises(InputError):
            describe_layer(size=size, kernel=kernel, stride=stride, padding=padding,
                           dilation=dilation)
        return
    report = describe_layer(size=size, kernel=kernel, stride=stride, padding=padding,
                            dilation=dilation)
    assert report["output_size"] == expected
    assert report["effective_kernel"] == dilation * (kernel - 1) + 1
    inv = report["inverse"]
    deconv = nn.ConvTranspose2d(1, 1, inv["kernel"], inv["stride"], inv["padding"],
                                inv["output_padding"], dilation=inv["dilation"])
    # The proposed ConvTranspose2d really maps the output back to the input size.
    assert torch_output(deconv, tuple(expected)) == list(size) == inv["output_size"]
    # Zero insertion: s - 1 zeros between the output's units, then a stride-1 convolution
    # with the flipped kernel over the padded result gives the same size (Dumoulin & Visin).
    direct = report["transposed_as_direct"]
    stretched = [(o - 1) * stride + 1 for o in expected]
    assert direct["zeros_inserted"] == [stride - 1, stride - 1]
    padded = [s + b + a for s, b, a in zip(stretched, direct["padding_before"],
                                            direct["padding_after"])]
    conv1 = nn.Conv2d(1, 1, kernel, 1, 0, dilation)
    assert torch_output(conv1, tuple(padded)) == list(size)


@given(size=sizes, kernel=small, stride=small, padding=st.integers(0, 3),
       dilation=st.integers(1, 3), extra=st.integers(0, 4))
def test_conv_transpose_size_and_its_inverse_match_torch(size, kernel, stride, padding,
                                                          dilation, extra):
    try:
        module = nn.ConvTranspose2d(1, 1, kernel, stride, padding, extra, dilation=dilation)
    except ValueError:  # torch refuses output_padding >= max(stride, dilation) up front
        module = None
    expected = torch_output(module, size) if module is not None else None
    if expected is None or min(expected) < 1:
        with pytest.raises(InputError):
            describe_layer(size=size, kernel=kernel, stride=stride, padding=padding,
                           dilation=dilation, kind="conv_transpose", output_padding=extra)
        return
    report = describe_layer(size=size, kernel=kernel, stride=stride, padding=padding,
                            dilation=dilation, kind="conv_transpose", output_padding=extra)
    assert report["output_size"] == expected
    inv = report["inverse"]
    conv = nn.Conv2d(1, 1, inv["kernel"], inv["stride"], inv["padding"], inv["dilation"])
    assert torch_output(conv, tuple(expected)) == inv["output_size"]
    # The direct convolution inverts the shape exactly when output_padding < stride (torch
    # allows output_padding up to max(stride, dilation) - 1); otherwise a note says so.
    assert (inv["output_size"] == list(size)) == (extra < stride) == ("note" not in report)


@given(size=sizes, kernel=small, stride=small, padding=st.integers(0, 2),
       dilation=st.integers(1, 2), ceil_mode=st.booleans())
def test_max_pool_size_matches_torch(size, kernel, stride, padding, dilation, ceil_mode):
    try:
        pool = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
        expected = torch_output(pool, size)
    except ValueError:
        expected = None
    kwargs = dict(size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                  kind="pool", ceil_mode=ceil_mode)
    if expected is None or min(expected) < 1:
        with pytest.raises(InputError):
            describe_layer(**kwargs)
        return
    report = describe_layer(**kwargs)
    assert report["output_size"] == expected and report["ceil_mode"] == ceil_mode


@given(size=st.integers(2, 30), kernel=small, stride=small, dilation=st.integers(1, 3))
def test_tensorflow_same_is_explicit_padding_then_conv(size, kernel, stride, dilation):
    report = describe_layer(size=size, kernel=kernel, stride=stride, padding="same",
                            dilation=dilation, convention="tensorflow")
    # TensorFlow's documented SAME size: ceil(i / s).
    assert report["output_size"] == math.ceil(size / stride)
    ((before, after),) = report["same_padding"]
    x = F.pad(torch.zeros(1, 1, 1, size), (before, after))
    y = nn.Conv2d(1, 1, (1, kernel), (1, stride), 0, (1, dilation))(x)
    assert y.shape[-1] == report["output_size"]
    assert (report["inverse"] is None) == (before != after)


def test_pool_stride_defaults_to_the_kernel_as_in_torch():
    report = describe_layer(size=(7, 9), kernel=2, kind="pool")
    assert report["stride"] == 2
    assert report["output_size"] == torch_output(nn.MaxPool2d(2), (7, 9))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "conv", "output_padding": 1}, "transposed"),
        ({"kind": "conv_transpose", "ceil_mode": True}, "pooling"),
        ({"kind": "deconv"}, "kind must be one of"),
    ],
)
def test_options_that_do_not_apply_are_refused(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        describe_layer(size=5, kernel=3, **kwargs)
