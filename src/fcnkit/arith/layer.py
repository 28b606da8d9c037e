"""One layer's geometry as a report: output size, effective kernel and the layer inverting it.

:func:`describe_layer` is what ``fcnkit conv`` prints. It composes the size rules of
:mod:`fcnkit.arith.sizes` for one convolution, transposed convolution or pooling layer and
adds, for a convolution, the transposed convolution that maps its output back to the input
size (and the zero-insertion view of that transposed convolution); for a transposed
convolution, the direct convolution that maps back. Pure Python, no torch::

    >>> describe_layer(size=5, kernel=3, stride=2, padding=1)["inverse"]["output_padding"]
    0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fcnkit.arith import sizes
from fcnkit.errors import InputError

__all__ = ["LAYER_KINDS", "describe_layer"]

#: ``kind`` values: a direct convolution (``nn.Conv2d``), a transposed convolution
#: (``nn.ConvTranspose2d``), a pooling layer (``nn.MaxPool2d`` / ``nn.AvgPool2d``).
LAYER_KINDS = ("conv", "conv_transpose", "pool")

Dims = int | tuple[int, ...]


def _listify(value: Any) -> Any:
    """Tuples become lists, so the report is plain JSON data."""
    return list(value) if isinstance(value, tuple) else value


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def describe_layer(
    *,
    size: Dims,
    kernel: Dims,
    stride: Dims | None = None,
    padding: Dims | str = 0,
    dilation: Dims = 1,
    kind: str = "conv",
    output_padding: Dims = 0,
    ceil_mode: bool = False,
    convention: str = "pytorch",
) -> dict[str, Any]:
    """The geometry of one layer as a plain dict (JSON-ready: lists, ints, strings).

    Args:
        size: input size, int or per-dimension tuple such as ``(375, 500)``.
        kernel: kernel size k.
        stride: stride s; ``None`` means 1, or the kernel for ``kind="pool"`` (PyTorch's
            pooling default).
        padding: padding p on each side, or ``"same"`` / ``"valid"`` with
            ``convention="tensorflow"``.
        dilation: dilation d.
        kind: one of :data:`LAYER_KINDS`.
        output_padding: extra bottom/right units of a transposed convolution.
        ceil_mode: pooling rounds up (PyTorch ``ceil_mode=True``).
        convention: ``"pytorch"``, ``"caffe"`` or ``"tensorflow"`` (see
            :mod:`fcnkit.arith.sizes`).

    Returns:
        ``layer``, ``convention``, ``input_size``, ``kernel``, ``stride``, ``padding``,
        ``dilation``, ``effective_kernel`` = d(k - 1) + 1 and ``output_size``. A ``pool``
        adds ``ceil_mode`` (not for TensorFlow). A ``conv_transpose`` adds
        ``output_padding``, and ``inverse``, the ``conv`` with the same geometry and the
        size it maps the output to (the input size, unless ``output_padding >= stride``,
        which ``note`` then says). A ``conv`` adds ``inverse``, the ``conv_transpose`` with
        the ``output_padding`` that recovers the input size, and ``transposed_as_direct``,
        that transposed convolution as a stride-1 convolution of the zero-inserted, padded
        input with the flipped kernel (Dumoulin & Visin 2016, §4); ``same_padding``
        (before, after) per dimension for TensorFlow's ``"same"``. ``inverse`` is ``None``
        when no symmetric ``ConvTranspose2d`` exists, and ``note`` says why.

    Raises:
        InputError: an unknown kind or convention, ``output_padding`` on a layer that is
            not transposed, ``ceil_mode`` on a layer that is not pooling, or a geometry
            the size rules refuse (kernel larger than the padded input, stride 0, ...).
    """
    if kind not in LAYER_KINDS:
        raise InputError(f"kind must be one of {', '.join(LAYER_KINDS)}, got {kind!r}")
    if any(v != 0 for v in _as_list(output_padding)) and kind != "conv_transpose":
        raise InputError(
            "output_padding applies only to a transposed convolution; drop it or describe "
            "a transposed layer"
        )
    if ceil_mode and kind != "pool":
        raise InputError("ceil_mode applies only to pooling; drop it or describe a pooling layer")
    if stride is None:
        stride = kernel if kind == "pool" else 1
    # The size rules read "SAME" / " valid " / "Caffe" like the lower-case names; so must
    # the describers below, which compare with those names.
    if isinstance(padding, str):
        padding = padding.strip().lower()
    if isinstance(convention, str):
        convention = convention.strip().lower()

    report: dict[str, Any] = {
        "layer": kind,
        "convention": convention,
        "input_size": _listify(size),
        "kernel": _listify(kernel),
        "stride": _listify(stride),
        "padding": _listify(padding),
        "dilation": _listify(dilation),
    }
    report["effective_kernel"] = _listify(sizes.effective_kernel(kernel, dilation))
    layer = _Layer(size, kernel, stride, padding, dilation, convention)
    return _DESCRIBE[kind](layer, report, output_padding=output_padding, ceil_mode=ceil_mode)


@dataclass(frozen=True)
class _Layer:
    """The geometry every kind shares, as given (ints or per-dimension tuples)."""

    size: Any
    kernel: Any
    stride: Any
    padding: Any
    dilation: Any
    convention: str

    @property
    def geometry(self) -> tuple[Any, Any, Any, Any, Any]:
        return self.size, self.kernel, self.stride, self.padding, self.dilation


def _describe_pool(layer: _Layer, report: dict[str, Any], *, ceil_mode: bool,
                   **_: Any) -> dict[str, Any]:
    out = sizes.pool_output_size(*layer.geometry, ceil_mode=ceil_mode,
                                 convention=layer.convention)
    if layer.convention != "tensorflow":
        # Caffe's pooling always rounds up (sizes.pool_output_size).
        report["ceil_mode"] = bool(ceil_mode) or layer.convention == "caffe"
    report["output_size"] = _listify(out)
    return report


def _describe_conv_transpose(layer: _Layer, report: dict[str, Any], *, output_padding: Dims,
                             **_: Any) -> dict[str, Any]:
    out = sizes.conv_transpose_output_size(
        *layer.geometry, output_padding=output_padding, convention=layer.convention
    )
    report["output_padding"] = _listify(output_padding)
    report["output_size"] = _listify(out)
    if isinstance(layer.padding, str):
        return report
    # The direct convolution with the same geometry maps the output back.
    back = sizes.conv_output_size(out, layer.kernel, layer.stride, layer.padding,
                                  layer.dilation)
    report["inverse"] = {
        "layer": "conv",
        "kernel": _listify(layer.kernel),
        "stride": _listify(layer.stride),
        "padding": _listify(layer.padding),
        "dilation": _listify(layer.dilation),
        "output_size": _listify(back),
    }
    if back != layer.size:
        # o' = (i-1)s - 2p + d(k-1) + 1 + op maps back to i + floor(op / s): exact
        # only for op < s, which PyTorch does not demand (it needs op < max(s, d)).
        report["note"] = (
            "output_padding >= stride: the convolution with this geometry does not "
            "map the output back to the input size"
        )
    return report


def _symmetric_padding(layer: _Layer, report: dict[str, Any]) -> Any:
    """The convolution's padding as one symmetric amount per dimension (TensorFlow's
    ``"valid"`` is 0, its ``"same"`` the before-padding when before = after), or None
    when ``"same"`` pads asymmetrically; records ``same_padding`` in ``report``."""
    if layer.padding == "valid":
        return 0
    if layer.padding != "same":
        return layer.padding
    pairs = sizes.same_padding(layer.kernel, layer.stride, layer.dilation, size=layer.size)
    pair_list = [pairs] if isinstance(pairs[0], int) else list(pairs)
    report["same_padding"] = [list(p) for p in pair_list]
    if not all(before == after for before, after in pair_list):
        return None
    befores = tuple(before for before, _ in pair_list)
    return befores[0] if isinstance(pairs[0], int) else befores


def _describe_conv(layer: _Layer, report: dict[str, Any], **_: Any) -> dict[str, Any]:
    out = sizes.conv_output_size(*layer.geometry, convention=layer.convention)
    report["output_size"] = _listify(out)
    symmetric = _symmetric_padding(layer, report)
    if symmetric is None:
        report["inverse"] = None
        report["note"] = (
            "TensorFlow SAME padding is asymmetric here; no symmetric ConvTranspose2d "
            "inverts it (pad explicitly, or use tf.nn.conv2d_transpose with output_shape)"
        )
        return report
    try:
        eq = sizes.transposed_equivalent(layer.size, layer.kernel, layer.stride, symmetric,
                                         layer.dilation)
    except ValueError:
        # Only Caffe's truncating division gets here: its kernel overhangs the input.
        report["inverse"] = None
        report["note"] = (
            "the kernel overhangs the padded input (Caffe's truncating division still "
            "gives an output); PyTorch refuses this geometry, so no inverse is given"
        )
        return report
    recovered = sizes.conv_transpose_output_size(
        out, layer.kernel, layer.stride, symmetric, layer.dilation, eq.extra
    )
    report["inverse"] = {
        "layer": "conv_transpose",
        "kernel": _listify(layer.kernel),
        "stride": _listify(layer.stride),
        "padding": _listify(symmetric),
        "dilation": _listify(layer.dilation),
        "output_padding": _listify(eq.extra),
        "output_size": _listify(recovered),
    }
    report["transposed_as_direct"] = {
        "zeros_inserted": _listify(eq.zeros_inserted),
        "padding_before": _listify(eq.padding_before),
        "padding_after": _listify(eq.padding_after),
        "stride": 1,
        "kernel_flipped": True,
        "stretched_size": _listify(eq.stretched_size),
        "padded_size": _listify(eq.padded_size),
    }
    if layer.convention == "caffe" and any(v != 0 for v in _as_list(eq.extra)):
        report["note"] = (
            "Caffe's Deconvolution has no output_padding: it gives the smaller size; "
            "crop or pad to reach the original"
        )
    return report


#: One describer per layer kind (each adds its own fields to the shared report).
_DESCRIBE: dict[str, Callable[..., dict[str, Any]]] = {
    "conv": _describe_conv,
    "conv_transpose": _describe_conv_transpose,
    "pool": _describe_pool,
}
