"""Which of Dumoulin & Visin's size relationships a layer falls under, with its formula.

Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" (arXiv:1603.07285),
state the output size of a layer as a numbered relationship per case: relationships 1-6
for convolutions (no padding / padding / half / full padding, unit or non-unit strides),
7 for pooling, 8-14 for transposed convolutions (the transpose of the convolution with the
same k, s, p; ``a`` is the output padding) and 15 for dilated convolutions. The explorer
shows which one applies; :func:`size_relationship` names it and evaluates it *literally*
(the paper's formula with the values substituted), so a test can hold every case against
what PyTorch computes. Conventions the paper does not cover (Caffe's rounding, TensorFlow
SAME / VALID, dilated transposed and padded or ceil-mode pooling) are given with their
source instead of a number.

One spatial dimension, plain ints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fcnkit.arith.layer import LAYER_KINDS
from fcnkit.arith.sizes import CONVENTIONS
from fcnkit.errors import InputError

__all__ = ["SizeRelationship", "size_relationship"]


@dataclass(frozen=True)
class SizeRelationship:
    """One layer's size rule.

    Attributes:
        number: Dumoulin & Visin's relationship number, or None for a rule from another
            source (then ``source`` says which).
        case: the case in the paper's words, e.g. "zero padding, non-unit strides".
        formula: the rule in the paper's symbols (i, k, s, p, d, a; o for the output).
        substituted: the rule with this layer's values and the result.
        output_size: the result of evaluating the rule.
        source: where the rule comes from.
    """

    number: int | None
    case: str
    formula: str
    substituted: str
    output_size: int
    source: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return asdict(self)


_PAPER = "Dumoulin & Visin 2016"


def _floor_div(a: int, b: int) -> int:
    return a // b


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def size_relationship(
    *,
    kind: str,
    size: int,
    kernel: int,
    stride: int | None = None,
    padding: int | str = 0,
    dilation: int = 1,
    output_padding: int = 0,
    ceil_mode: bool = False,
    convention: str = "pytorch",
) -> SizeRelationship:
    """The size relationship that applies to one layer, evaluated for its values.

    Args:
        kind: ``"conv"``, ``"conv_transpose"`` or ``"pool"``
            (:data:`fcnkit.arith.layer.LAYER_KINDS`). For ``conv_transpose``, ``size`` is
            the transposed layer's input i' and k, s, p, d are those of the convolution it
            transposes (PyTorch's ``ConvTranspose2d`` arguments).
        size, kernel, stride, padding, dilation, output_padding, ceil_mode: the layer, as
            in :func:`fcnkit.arith.layer.describe_layer` (ints; ``padding`` may be
            ``"same"`` / ``"valid"`` with ``convention="tensorflow"``; ``stride=None`` is
            1, or the kernel for pooling).
        convention: ``"pytorch"``, ``"caffe"`` or ``"tensorflow"``.

    Returns:
        A :class:`SizeRelationship`. It does not validate the geometry: call
        :func:`fcnkit.arith.layer.describe_layer` for that (the explorer does both).

    Raises:
        InputError: an unknown kind or convention.
    """
    if kind not in LAYER_KINDS:
        raise InputError(f"kind must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
    convention = convention.strip().lower() if isinstance(convention, str) else convention
    if convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    i, k, d, a = int(size), int(kernel), int(dilation), int(output_padding)
    s = int(stride) if stride is not None else (k if kind == "pool" else 1)
    if convention == "tensorflow" or isinstance(padding, str):
        mode = str(padding).strip().lower()
        if kind == "conv_transpose":
            return _keras_transpose(mode, i, k, s, d)
        return _tensorflow(mode, i, k, s, d)
    p = int(padding)
    if kind == "pool":
        found = _pool(i, k, s, p, d, ceil_mode, convention)
        if found is not None:
            return found
        # Padded or dilated pooling follows the convolution rule (PyTorch nn.MaxPool2d).
    if kind == "conv_transpose":
        return _conv_transpose(i, k, s, p, d, a)
    return _conv(i, k, s, p, d, convention)


def _rule(number: int | None, case: str, formula: str, expression: str, value: int,
          source: str = _PAPER) -> SizeRelationship:
    return SizeRelationship(number, case, formula, f"o = {expression} = {value}", value,
                            source)


def _tensorflow(mode: str, i: int, k: int, s: int, d: int) -> SizeRelationship:
    if mode == "same":
        return _rule(None, "TensorFlow SAME padding", "o = ceil(i / s)",
                     f"ceil({i} / {s})", _ceil_div(i, s), "TensorFlow tf.nn.conv2d")
    span = d * (k - 1)
    return _rule(None, "TensorFlow VALID padding", "o = ceil((i - d(k - 1)) / s)",
                 f"ceil(({i} - {span}) / {s})", _ceil_div(i - span, s),
                 "TensorFlow tf.nn.conv2d")


def _keras_transpose(mode: str, i: int, k: int, s: int, d: int) -> SizeRelationship:
    """Keras ``Conv2DTranspose`` shape inference (``conv_utils.deconv_output_length``),
    the rule :func:`fcnkit.arith.conv_transpose_output_size` follows for a string padding."""
    source = "Keras Conv2DTranspose (conv_utils.deconv_output_length)"
    if mode == "same":
        return _rule(None, "transposed, TensorFlow SAME padding", "o = i s",
                     f"{i}*{s}", i * s, source)
    extent = d * (k - 1) + 1
    return _rule(None, "transposed, TensorFlow VALID padding",
                 "o = i s + max(d(k - 1) + 1 - s, 0)",
                 f"{i}*{s} + max({d}*({k} - 1) + 1 - {s}, 0)", i * s + max(extent - s, 0),
                 source)


def _pool(i: int, k: int, s: int, p: int, d: int, ceil_mode: bool,
          convention: str) -> SizeRelationship | None:
    """Pooling's own rules; None when the convolution rule applies (padded or dilated)."""
    if convention == "caffe":
        value = _ceil_div(i + 2 * p - k, s) + 1
        clip = p > 0 and (value - 1) * s >= i + p
        expression = f"ceil(({i} + 2*{p} - {k}) / {s}) + 1" + (" - 1" if clip else "")
        return _rule(None, "Caffe pooling (always rounds up; last window clipped "
                     "when padded)", "o = ceil((i + 2p - k) / s) + 1",
                     expression, value - int(clip), "Caffe pooling_layer.cpp")
    if ceil_mode:
        value = _ceil_div(i + 2 * p - d * (k - 1) - 1, s) + 1
        clip = (value - 1) * s >= i + p
        expression = (f"ceil(({i} + 2*{p} - {d}*({k} - 1) - 1) / {s}) + 1"
                      + (" - 1" if clip else ""))
        return _rule(None, "ceil_mode pooling (last window must start inside the input)",
                     "o = ceil((i + 2p - d(k - 1) - 1) / s) + 1", expression,
                     value - int(clip), "PyTorch nn.MaxPool2d")
    if p == 0 and d == 1:
        return _rule(7, "pooling", "o = floor((i - k) / s) + 1",
                     f"floor(({i} - {k}) / {s}) + 1", _floor_div(i - k, s) + 1)
    return None


def _conv_transpose(i: int, k: int, s: int, p: int, d: int, a: int) -> SizeRelationship:
    if d != 1:
        value = (i - 1) * s - 2 * p + d * (k - 1) + a + 1
        return _rule(None, "dilated transposed convolution",
                     "o = (i - 1)s - 2p + d(k - 1) + a + 1",
                     f"({i} - 1)*{s} - 2*{p} + {d}*({k} - 1) + {a} + 1", value,
                     "PyTorch nn.ConvTranspose2d")
    if s == 1 and a == 0:
        if p == 0:
            return _rule(8, "transposed: no zero padding, unit strides",
                         "o = i + (k - 1)", f"{i} + ({k} - 1)", i + (k - 1))
        if k % 2 == 1 and p == (k - 1) // 2:
            return _rule(10, "transposed: half (same) padding, unit strides", "o = i",
                         f"{i}", i)
        if p == k - 1:
            return _rule(11, "transposed: full padding, unit strides", "o = i - (k - 1)",
                         f"{i} - ({k} - 1)", i - (k - 1))
        return _rule(9, "transposed: zero padding, unit strides", "o = i + (k - 1) - 2p",
                     f"{i} + ({k} - 1) - 2*{p}", i + (k - 1) - 2 * p)
    if a == 0:
        if p == 0:
            return _rule(12, "transposed: no zero padding, non-unit strides",
                         "o = s(i - 1) + k", f"{s}*({i} - 1) + {k}", s * (i - 1) + k)
        return _rule(13, "transposed: zero padding, non-unit strides",
                     "o = s(i - 1) + k - 2p", f"{s}*({i} - 1) + {k} - 2*{p}",
                     s * (i - 1) + k - 2 * p)
    return _rule(14, "transposed: zero padding, non-unit strides, output padding a",
                 "o = s(i - 1) + a + k - 2p", f"{s}*({i} - 1) + {a} + {k} - 2*{p}",
                 s * (i - 1) + a + k - 2 * p)


def _conv(i: int, k: int, s: int, p: int, d: int, convention: str) -> SizeRelationship:
    """A direct convolution (and padded / dilated pooling)."""
    if convention == "caffe":
        # Caffe divides with C++ ints (truncation toward zero), conv_layer.cpp.
        value = int((i + 2 * p - d * (k - 1) - 1) / s) + 1
        return _rule(None, "Caffe convolution (C++ integer division)",
                     "o = trunc((i + 2p - d(k - 1) - 1) / s) + 1",
                     f"trunc(({i} + 2*{p} - {d}*({k} - 1) - 1) / {s}) + 1", value,
                     "Caffe conv_layer.cpp")
    if d != 1:
        return _rule(15, "dilated convolution",
                     "o = floor((i + 2p - k - (k - 1)(d - 1)) / s) + 1",
                     f"floor(({i} + 2*{p} - {k} - ({k} - 1)*({d} - 1)) / {s}) + 1",
                     _floor_div(i + 2 * p - k - (k - 1) * (d - 1), s) + 1)
    if s == 1:
        if p == 0:
            return _rule(1, "no zero padding, unit strides", "o = (i - k) + 1",
                         f"({i} - {k}) + 1", (i - k) + 1)
        if k % 2 == 1 and p == (k - 1) // 2:
            return _rule(3, "half (same) padding, unit strides", "o = i", f"{i}", i)
        if p == k - 1:
            return _rule(4, "full padding, unit strides", "o = i + (k - 1)",
                         f"{i} + ({k} - 1)", i + (k - 1))
        return _rule(2, "zero padding, unit strides", "o = (i - k) + 2p + 1",
                     f"({i} - {k}) + 2*{p} + 1", (i - k) + 2 * p + 1)
    if p == 0:
        return _rule(5, "no zero padding, non-unit strides", "o = floor((i - k) / s) + 1",
                     f"floor(({i} - {k}) / {s}) + 1", _floor_div(i - k, s) + 1)
    return _rule(6, "zero padding, non-unit strides", "o = floor((i + 2p - k) / s) + 1",
                 f"floor(({i} + 2*{p} - {k}) / {s}) + 1", _floor_div(i + 2 * p - k, s) + 1)
