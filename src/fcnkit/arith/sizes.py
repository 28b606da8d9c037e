"""Output sizes of convolution, transposed convolution and pooling, and their inverse problems.

Conventions (every function):

* Each geometric argument (size, kernel, stride, padding, dilation, output_padding) is an
  ``int`` (one spatial dimension) or a ``tuple`` of ints (one per spatial dimension, e.g.
  ``(H, W)``). All ints in → an int out; any tuple in → a tuple out, with the ints broadcast
  to every dimension. Tuples must all have the same length.
* Semantics are PyTorch's (``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.MaxPool2d``,
  ``nn.AvgPool2d``) unless a ``convention`` or a string padding says otherwise. Padding is
  symmetric: ``padding`` units on *each* side.
* Every geometry PyTorch rejects is rejected here with a one-line
  :class:`~fcnkit.errors.InputError` (a ValueError) naming the argument (and the dimension,
  for tuples) and saying what would be accepted.

The formulas are those of Dumoulin & Visin, "A guide to convolution arithmetic for deep
learning" (arXiv:1603.07285), written with dilation as in PyTorch's documentation.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, overload

from fcnkit.errors import InputError

Dims = int | tuple[int, ...]

__all__ = [
    "Dims",
    "TransposedEquivalent",
    "UpsamplingRecipe",
    "as_pair",
    "conv_output_size",
    "conv_transpose_output_size",
    "effective_kernel",
    "output_padding_for",
    "padding_for",
    "pool_output_size",
    "same_padding",
    "transposed_equivalent",
    "upsampling_recipe",
]

CONVENTIONS = ("pytorch", "caffe", "tensorflow")


# ---------------------------------------------------------------------------------------------
# Broadcasting and validation helpers
# ---------------------------------------------------------------------------------------------


def _as_int(name: str, value: Any) -> int:
    """``value`` as a Python int (ints and numpy integers; not bools or floats)."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer or a tuple of integers, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(
            f"{name} must be an integer or a tuple of integers, got {value!r}"
        ) from None


def as_pair(value: Any, name: str, *, minimum: int | None = None) -> tuple[int, int]:
    """``value`` as an ``(h, w)`` pair of Python ints: the one place a 2-D argument is read.

    Args:
        value: an int (numpy integers too; not a bool or float), or a sequence of one or two
            of them (one value is used for both dimensions), as PyTorch's ``_pair`` accepts.
        name: the argument's name, used in the error message.
        minimum: when given, every value must be at least this.

    Returns:
        ``(h, w)``.

    Raises:
        InputError: for anything else, naming ``name`` and what would be accepted.
    """
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise InputError(f"{name} must be an int or a pair (h, w), got {value!r}")
    pair = tuple(_as_int(name, v) for v in values)
    if minimum is not None and min(pair) < minimum:
        raise InputError(f"{name} must be integers >= {minimum}, got {value!r}")
    return pair[0], pair[1]


def _broadcast(**named: Any) -> tuple[int | None, dict[str, list[Any]]]:
    """Broadcast int/tuple arguments to per-dimension lists.

    Returns ``(ndim, values)`` where ``ndim`` is None when every argument was a scalar (the
    answer is then a scalar) and ``values[name]`` is a list with one entry per dimension.
    Strings (such as ``padding="same"``) and None broadcast like ints.
    """
    ndim: int | None = None
    first: str | None = None
    for name, value in named.items():
        if isinstance(value, (tuple, list)):
            if len(value) == 0:
                raise InputError(f"{name} must not be an empty tuple")
            if ndim is None:
                ndim, first = len(value), name
            elif len(value) != ndim:
                raise InputError(
                    f"{name} has {len(value)} dimensions but {first} has {ndim}; "
                    "give one value per spatial dimension or a single int"
                )
    n = 1 if ndim is None else ndim
    values = {
        name: (list(value) if isinstance(value, (tuple, list)) else [value] * n)
        for name, value in named.items()
    }
    return ndim, values


def _label(name: str, ndim: int | None, dim: int) -> str:
    return name if ndim is None else f"{name}[{dim}]"


_T = TypeVar("_T")


def _pack(ndim: int | None, results: Sequence[_T]) -> _T | tuple[_T, ...]:
    return results[0] if ndim is None else tuple(results)


def _positive(name: str, value: Any) -> int:
    v = _as_int(name, value)
    if v < 1:
        raise InputError(f"{name} must be a positive integer, got {v}")
    return v


def _non_negative(name: str, value: Any) -> int:
    v = _as_int(name, value)
    if v < 0:
        raise InputError(f"{name} must be a non-negative integer, got {v}")
    return v


#: The order in which arguments are checked (the first bad one is reported); the paddings
#: may be 0, everything else must be positive.
_CHECK_ORDER = ("size", "target", "kernel", "stride", "dilation", "output_padding", "padding")
_NON_NEGATIVE = ("output_padding", "padding")


def _each_dimension(rule: Callable[..., _T], *, raw: Sequence[str] = (),
                    **named: Any) -> _T | tuple[_T, ...]:
    """Apply ``rule(label, **values)`` to every spatial dimension: the one place an argument
    is broadcast and checked.

    The named int/tuple arguments are broadcast (:func:`_broadcast`), then each value is
    checked once per dimension, in :data:`_CHECK_ORDER`: paddings must be non-negative
    integers, every other argument a positive integer; names in ``raw`` are passed as given
    (a string padding, an optional size). ``label(name)`` names an argument with its
    dimension (``kernel[1]``) for messages. Returns an int when every argument was a
    scalar, else a tuple with one result per dimension.
    """
    ndim, vals = _broadcast(**named)
    order = sorted(vals, key=lambda name: _CHECK_ORDER.index(name) if name in _CHECK_ORDER
                   else len(_CHECK_ORDER))
    results = []
    for j in range(1 if ndim is None else ndim):
        def label(name: str, j: int = j) -> str:
            return _label(name, ndim, j)

        checked: dict[str, Any] = {}
        for name in order:
            value = vals[name][j]
            if name in raw:
                checked[name] = value
            elif name in _NON_NEGATIVE:
                checked[name] = _non_negative(label(name), value)
            else:
                checked[name] = _positive(label(name), value)
        results.append(rule(label, **checked))
    return _pack(ndim, results)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# Forward sizes
# ---------------------------------------------------------------------------------------------


def effective_kernel(kernel: Dims, dilation: Dims = 1) -> Dims:
    """Extent of a dilated kernel: ``d * (k - 1) + 1`` input units.

    Args:
        kernel: kernel size k (int or per-dimension tuple).
        dilation: dilation d (spacing between kernel taps; 1 = dense).

    Returns:
        The effective kernel size, int or tuple like the inputs.
    """
    return _each_dimension(lambda label, kernel, dilation: dilation * (kernel - 1) + 1,
                           kernel=kernel, dilation=dilation)


def _check_convention(convention: Any, padding: Any) -> str:
    """Normalise ``convention`` and check that ``padding`` has the form it needs."""
    conv = str(convention).strip().lower()
    if conv not in CONVENTIONS:
        raise InputError(
            f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}"
        )
    if conv == "tensorflow" and not isinstance(padding, str):
        raise InputError(
            f"padding must be 'same' or 'valid' with convention='tensorflow', got {padding!r}"
        )
    if conv == "caffe" and isinstance(padding, str):
        raise InputError(
            f"padding must be an integer with convention='caffe' (Caffe has no {padding!r} "
            "mode); use same_padding(...) to compute one"
        )
    return conv


def _padding_mode(padding: Any) -> str | None:
    if isinstance(padding, str):
        mode = padding.strip().lower()
        if mode not in ("same", "valid"):
            raise InputError(f"padding must be an integer, 'same' or 'valid', got {padding!r}")
        return mode
    return None


@overload
def conv_output_size(size: int, kernel: int, stride: int = ..., padding: int | str = ...,
                     dilation: int = ..., convention: str = ...) -> int: ...
@overload
def conv_output_size(size: tuple[int, ...], kernel: Dims, stride: Dims = ...,
                     padding: Dims | str = ..., dilation: Dims = ...,
                     convention: str = ...) -> tuple[int, ...]: ...
@overload
def conv_output_size(size: Dims, kernel: Dims, stride: Dims = ..., padding: Dims | str = ...,
                     dilation: Dims = ..., convention: str = ...) -> Dims: ...
def conv_output_size(
    size: Dims,
    kernel: Dims,
    stride: Dims = 1,
    padding: Dims | str = 0,
    dilation: Dims = 1,
    convention: str = "pytorch",
) -> Dims:
    """Output size of a direct convolution (``nn.Conv2d`` / Caffe ``Convolution``).

    Args:
        size: input size i (int or per-dimension tuple).
        kernel: kernel size k.
        stride: stride s.
        padding: zeros added on *each* side p (int or tuple), or the TensorFlow modes
            ``"same"`` (output ``ceil(i / s)``; the padding is split with the extra unit
            after, see :func:`same_padding`) and ``"valid"`` (no padding:
            ``ceil((i - d(k-1)) / s)``).
        dilation: dilation d.
        convention: ``"pytorch"`` (default; the string paddings are accepted too),
            ``"tensorflow"`` (padding must be ``"same"`` or ``"valid"``) or ``"caffe"``
            (integer padding; Caffe's ``ConvolutionLayer::compute_output_shape`` divides
            with C++ integer division, which truncates toward zero, so a kernel that
            overhangs the padded input by less than one stride still yields 1 output
            instead of an error).

    Returns:
        ``floor((i + 2p - d(k-1) - 1) / s) + 1`` per dimension (Dumoulin & Visin,
        relationship 6 with dilation), int or tuple like the inputs.

    Raises:
        InputError: non-positive size/kernel/stride/dilation, negative padding, or an
            effective kernel larger than the padded input (PyTorch rejects it too).
    """
    conv = _check_convention(convention, padding)
    mode = _padding_mode(padding)
    return _each_dimension(partial(_conv_size, mode=mode, caffe=conv == "caffe"),
                           raw=("padding",) if mode else (), size=size, kernel=kernel,
                           stride=stride, padding=padding, dilation=dilation)


def _conv_size(label: Callable[[str], str], *, size: int, kernel: int, stride: int,
               padding: Any, dilation: int, mode: str | None, caffe: bool) -> int:
    """:func:`conv_output_size` along one dimension (arguments checked)."""
    i, k, s, d = size, kernel, stride, dilation
    extent = d * (k - 1) + 1
    if mode == "same":
        # TensorFlow "SAME": out = ceil(i / s), whatever the kernel.
        return _ceil_div(i, s)
    p = 0 if mode == "valid" else padding
    if caffe:
        # output_dim = (input_dim + 2 * pad - kernel_extent) / stride + 1 in C++ ints.
        out = int((i + 2 * p - extent) / s) + 1
        if out < 1:
            raise InputError(
                f"{label('kernel')}: the effective kernel {extent} overhangs "
                f"the padded input {i + 2 * p} by a stride or more (Caffe output < 1)"
            )
        return out
    if i + 2 * p < extent:
        raise InputError(
            f"{label('kernel')}: the effective kernel d*(k-1)+1 = {extent} does "
            f"not fit the padded input size + 2*padding = {i + 2 * p}; use a larger "
            "input, more padding or a smaller kernel/dilation"
        )
    # o = floor((i + 2p - d(k-1) - 1) / s) + 1; for "valid" this is ceil((i - d(k-1)) / s).
    return (i + 2 * p - extent) // s + 1


@overload
def conv_transpose_output_size(size: int, kernel: int, stride: int = ...,
                               padding: int | str = ..., dilation: int = ...,
                               output_padding: int = ..., convention: str = ...) -> int: ...
@overload
def conv_transpose_output_size(size: tuple[int, ...], kernel: Dims, stride: Dims = ...,
                               padding: Dims | str = ..., dilation: Dims = ...,
                               output_padding: Dims = ...,
                               convention: str = ...) -> tuple[int, ...]: ...
@overload
def conv_transpose_output_size(size: Dims, kernel: Dims, stride: Dims = ...,
                               padding: Dims | str = ..., dilation: Dims = ...,
                               output_padding: Dims = ..., convention: str = ...) -> Dims: ...
def conv_transpose_output_size(
    size: Dims,
    kernel: Dims,
    stride: Dims = 1,
    padding: Dims | str = 0,
    dilation: Dims = 1,
    output_padding: Dims = 0,
    convention: str = "pytorch",
) -> Dims:
    """Output size of a transposed convolution (``nn.ConvTranspose2d`` / Caffe ``Deconvolution``).

    Args:
        size: input size i of the transposed convolution (the direct convolution's output).
        kernel: kernel size k.
        stride: stride s (the upsampling factor).
        padding: p, the padding of the *direct* convolution this transposes (it removes
            ``p`` units from each side of the output). The strings ``"same"`` / ``"valid"``
            give TensorFlow/Keras ``Conv2DTranspose`` shape inference instead:
            ``i * s`` and ``i * s + max(d(k-1)+1 - s, 0)`` (output_padding must then be 0).
        dilation: dilation d.
        output_padding: a, extra units added on the bottom/right side only; PyTorch
            requires ``a < stride or a < dilation``. Caffe's Deconvolution has no
            output_padding (a = 0).
        convention: ``"pytorch"`` (default; string paddings accepted), ``"tensorflow"``
            (padding must be ``"same"`` / ``"valid"``) or ``"caffe"`` (integer padding,
            output_padding must be 0: ``s (i - 1) + d(k-1) + 1 - 2p``, Caffe's
            ``DeconvolutionLayer::compute_output_shape``).

    Returns:
        ``(i - 1) s - 2p + d(k-1) + a + 1`` per dimension (Dumoulin & Visin, relationship
        14 with dilation), int or tuple like the inputs.

    Raises:
        InputError: bad argument values, ``output_padding >= max(stride, dilation)``, or a
            non-positive output size (PyTorch rejects all of these).
    """
    conv = _check_convention(convention, padding)
    mode = _padding_mode(padding)
    return _each_dimension(
        partial(_conv_transpose_size, mode=mode, caffe=conv == "caffe"),
        raw=("padding",) if mode else (), size=size, kernel=kernel, stride=stride,
        padding=padding, dilation=dilation, output_padding=output_padding)


def _conv_transpose_size(label: Callable[[str], str], *, size: int, kernel: int, stride: int,
                         padding: Any, dilation: int, output_padding: int, mode: str | None,
                         caffe: bool) -> int:
    """:func:`conv_transpose_output_size` along one dimension (arguments checked)."""
    i, k, s, d, a = size, kernel, stride, dilation, output_padding
    extent = d * (k - 1) + 1
    if mode is not None:
        if a:
            raise InputError(
                f"output_padding must be 0 with padding={mode!r} (TensorFlow shape "
                "inference); use an integer padding to set output_padding"
            )
        # Keras deconv_output_length: SAME -> i*s, VALID -> i*s + max(extent - s, 0).
        return i * s if mode == "same" else i * s + max(extent - s, 0)
    p: int = padding  # checked non-negative by _each_dimension
    if caffe and a:
        raise InputError(
            f"{label('output_padding')} must be 0 with convention='caffe' "
            "(Caffe's Deconvolution layer has no output_padding)"
        )
    if a >= max(s, d):
        raise InputError(
            f"{label('output_padding')} = {a} must be smaller than either "
            f"stride ({s}) or dilation ({d}); use output_padding < {max(s, d)}"
        )
    out = (i - 1) * s - 2 * p + extent + a
    if out < 1:
        raise InputError(
            f"{label('padding')} = {p} is too large: the transposed convolution "
            f"output (i-1)*s - 2p + d*(k-1) + a + 1 = {out} is not positive; use "
            f"padding <= {((i - 1) * s + extent + a - 1) // 2}"
        )
    return out


def pool_output_size(
    size: Dims,
    kernel: Dims,
    stride: Dims | None = None,
    padding: Dims | str = 0,
    dilation: Dims = 1,
    ceil_mode: bool = False,
    convention: str = "pytorch",
) -> Dims:
    """Output size of a pooling layer (``nn.MaxPool2d`` / ``nn.AvgPool2d`` / Caffe ``Pooling``).

    Args:
        size: input size i (int or per-dimension tuple).
        kernel: window size k.
        stride: stride s; None means ``stride = kernel`` (PyTorch's default).
        padding: implicit padding p on each side (``"same"`` / ``"valid"`` with
            ``convention="tensorflow"``).
        dilation: window dilation d (only ``nn.MaxPool2d`` has it; ``nn.AvgPool2d`` is d = 1).
        ceil_mode: PyTorch only. False: ``o = floor((i + 2p - d(k-1) - 1) / s) + 1``.
            True: the same with ceil, then one window fewer if the last window would start
            at or beyond ``i + p`` (PyTorch's rule: every window must start inside the
            input or the left padding).
        convention: ``"pytorch"`` (default) or ``"caffe"``. Caffe's PoolingLayer always
            rounds up, ``o = ceil((i + 2p - k) / s) + 1``, and clips the last window
            (``o -= 1`` if ``(o - 1) s >= i + p``) *only when some padding is non-zero*
            (in any dimension: Caffe tests ``pad_h_ || pad_w_``). ``ceil_mode`` is not
            consulted: the FCN-era Caffe always rounds up (later BVLC Caffe added
            ``round_mode`` with default CEIL). Caffe pooling has no dilation and requires
            ``p < k``. Source: BVLC Caffe ``src/caffe/layers/pooling_layer.cpp``,
            ``PoolingLayer<Dtype>::LayerSetUp`` (commit 0323844, the FCN era).
            ``"tensorflow"``: ``tf.nn.max_pool`` / ``avg_pool`` share conv2d's SAME / VALID
            size rules (padding must be ``"same"`` or ``"valid"``; ``ceil_mode`` unused).

    Returns:
        The pooled size, int or tuple like the inputs.

    Raises:
        InputError: non-positive size/kernel/stride/dilation, negative padding, padding
            larger than half the kernel (PyTorch: ``p <= k // 2``, also with dilation;
            Caffe: ``p < k``), or an output smaller than 1.
    """
    conv = _check_convention(convention, padding)
    stride_arg: Any = kernel if stride is None else stride
    if conv == "tensorflow":
        return conv_output_size(size, kernel, stride_arg, padding, dilation, "tensorflow")
    if isinstance(padding, str):
        raise InputError(
            f"padding {padding!r} needs convention='tensorflow'; PyTorch pooling takes an "
            "integer padding"
        )
    ndim, vals = _broadcast(
        size=size, kernel=kernel, stride=stride_arg, padding=padding, dilation=dilation
    )
    any_padding = any(
        _non_negative(_label("padding", ndim, j), p) > 0 for j, p in enumerate(vals["padding"])
    )
    rule = (partial(_caffe_pool_size, any_padding=any_padding) if conv == "caffe"
            else partial(_pool_size, ceil_mode=ceil_mode))
    return _each_dimension(rule, size=size, kernel=kernel, stride=stride_arg, padding=padding,
                           dilation=dilation)


def _caffe_pool_size(label: Callable[[str], str], *, size: int, kernel: int, stride: int,
                     padding: int, dilation: int, any_padding: bool) -> int:
    """Caffe's pooled size along one dimension (arguments checked; see pool_output_size)."""
    i, k, s, p, d = size, kernel, stride, padding, dilation
    if d != 1:
        raise InputError(
            f"{label('dilation')} must be 1 with convention='caffe' "
            "(Caffe's Pooling layer has no dilation)"
        )
    if p >= k:
        raise InputError(
            f"{label('padding')} = {p} must be smaller than the kernel "
            f"({k}) with convention='caffe' (Caffe: CHECK_LT(pad_h_, kernel_h_))"
        )
    # pooled = ceil((i + 2p - k) / s) + 1 (pooling_layer.cpp, LayerSetUp/Reshape)
    out = _ceil_div(i + 2 * p - k, s) + 1
    # "If we have padding, ensure that the last pooling starts strictly inside the
    # image (instead of at the padding); otherwise clip the last." Caffe tests
    # `if (pad_h_ || pad_w_)`: padding in ANY dimension enables the clip in all.
    if any_padding and (out - 1) * s >= i + p:
        out -= 1
    if out < 1:
        raise InputError(
            f"{label('kernel')} = {k} does not fit the padded input "
            f"size + 2*padding = {i + 2 * p} (output size would be < 1); use a "
            "smaller kernel or more padding"
        )
    return out


def _pool_size(label: Callable[[str], str], *, size: int, kernel: int, stride: int,
               padding: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooled size along one dimension (arguments checked)."""
    i, k, s, p, d = size, kernel, stride, padding, dilation
    extent = d * (k - 1) + 1
    # PyTorch checks both pad <= (d(k-1)+1) // 2 (max_pool2d) and pad <= k // 2
    # (pool2d_shape_check); the second is the binding one since d(k-1)+1 >= k.
    if p > k // 2:
        raise InputError(
            f"{label('padding')} = {p} must be at most half the kernel "
            f"size {k}; use padding <= {k // 2}"
        )
    # PyTorch pooling_output_shape: floor (or ceil) of (i + 2p - d(k-1) - 1)/s, plus 1;
    # in ceil mode the last window must start inside the input or the left padding.
    numerator = i + 2 * p - extent + (s - 1 if ceil_mode else 0)
    out = numerator // s + 1
    if ceil_mode and (out - 1) * s >= i + p:
        out -= 1
    if out < 1:
        raise InputError(
            f"{label('kernel')}: the effective pooling window d*(k-1)+1 = "
            f"{extent} does not fit the padded input size + 2*padding = {i + 2 * p} "
            "(output size would be < 1); use a larger input or a smaller window"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Inverse problems
# ---------------------------------------------------------------------------------------------


def output_padding_for(
    size: Dims,
    target: Dims,
    kernel: Dims,
    stride: Dims = 1,
    padding: Dims = 0,
    dilation: Dims = 1,
) -> Dims:
    """The ``output_padding`` that makes a transposed convolution produce exactly ``target``.

    Args:
        size: input size i of the transposed convolution.
        target: the wanted output size (typically the input size of the direct convolution
            being inverted).
        kernel, stride, padding, dilation: the transposed convolution's geometry.

    Returns:
        ``a = target - ((i - 1) s - 2p + d(k-1) + 1)`` per dimension, int or tuple like the
        inputs.

    Raises:
        InputError: when ``target`` is not reachable; the message gives the reachable range
            ``[base, base + max(s, d) - 1]`` (limited to positive sizes).
    """
    return _each_dimension(_output_padding, size=size, target=target, kernel=kernel,
                           stride=stride, padding=padding, dilation=dilation)


def _output_padding(label: Callable[[str], str], *, size: int, target: int, kernel: int,
                    stride: int, padding: int, dilation: int) -> int:
    """:func:`output_padding_for` along one dimension (arguments checked)."""
    i, t, k, s, p, d = size, target, kernel, stride, padding, dilation
    base = (i - 1) * s - 2 * p + d * (k - 1) + 1
    lo, hi = max(base, 1), base + max(s, d) - 1
    a = t - base
    if not (0 <= a < max(s, d)) or t < 1:
        reach = f"[{lo}, {hi}]" if hi >= lo else "none (padding too large)"
        raise InputError(
            f"{label('target')} = {t} is not reachable from size {i} with "
            f"kernel {k}, stride {s}, padding {p}, dilation {d}: reachable output sizes "
            f"are {reach} (output_padding 0..{max(s, d) - 1})"
        )
    return a


def padding_for(
    size: int,
    target: int,
    kernel: int,
    stride: int = 1,
    dilation: int = 1,
) -> tuple[int, int]:
    """The paddings ``p`` for which a convolution maps ``size`` to exactly ``target``.

    ``o = floor((i + 2p - d(k-1) - 1) / s) + 1`` (Dumoulin & Visin, relationship 6 with
    dilation) equals ``t`` iff ``(t - 1) s <= i + 2p - d(k-1) - 1 <= (t - 1) s + s - 1``,
    so the solutions are the integers ``p >= 0`` with
    ``(t - 1) s - i + d(k-1) + 1 <= 2p <= t s - i + d(k-1)``: an interval, possibly empty.
    One dimension, PyTorch semantics (``nn.Conv2d``).

    Args:
        size: input size i.
        target: wanted output size t.
        kernel, stride, dilation: the convolution's k, s, d.

    Returns:
        ``(smallest, largest)`` padding giving ``target``.

    Raises:
        InputError: when no padding gives ``target``; the message gives the output sizes
            that paddings 0, 1, 2, ... reach.
    """
    i = _positive("size", size)
    t = _positive("target", target)
    k = _positive("kernel", kernel)
    s = _positive("stride", stride)
    d = _positive("dilation", dilation)
    span = d * (k - 1)
    low = max(0, _ceil_div((t - 1) * s - i + span + 1, 2))
    high = (t * s - i + span) // 2
    if high < low:
        reach = []
        for p in range(4):
            if i + 2 * p > span:
                reach.append(f"p={p}: {(i + 2 * p - span - 1) // s + 1}")
        raise InputError(
            f"target = {t} is not reachable from size {i} with kernel {k}, stride {s}, "
            f"dilation {d} by any padding ({', '.join(reach) or 'the kernel does not fit'}, "
            "...); change the stride or the kernel"
        )
    return low, high


def same_padding(
    kernel: Dims,
    stride: Dims = 1,
    dilation: Dims = 1,
    size: Dims | None = None,
) -> tuple[int, int] | tuple[tuple[int, int], ...]:
    """TensorFlow "SAME" padding: ``(before, after)``, the odd unit going after.

    TensorFlow pads so that ``out = ceil(i / s)``: the total padding is
    ``max((ceil(i / s) - 1) s + d(k-1) + 1 - i, 0)``, split ``before = total // 2``,
    ``after = total - before``. PyTorch's symmetric ``padding=`` can reproduce it only when the
    total is even; otherwise pad the extra unit explicitly (``F.pad``), as timm's
    ``pad_same`` does.

    Args:
        kernel: kernel size k.
        stride: stride s.
        dilation: dilation d.
        size: input size i. With stride 1 it is not needed (total = d(k-1), independent of
            i). With stride > 1 the total depends on ``i mod s``, so ``size`` is required
            and an InputError is raised without it.

    Returns:
        ``(before, after)`` for int arguments; a tuple of such pairs, one per dimension,
        when any argument is a tuple.
    """
    return _each_dimension(_same_padding, raw=("size",), kernel=kernel, stride=stride,
                           dilation=dilation, size=size)


def _same_padding(label: Callable[[str], str], *, kernel: int, stride: int, dilation: int,
                  size: Any) -> tuple[int, int]:
    """:func:`same_padding` along one dimension (kernel, stride, dilation checked)."""
    k, s, d = kernel, stride, dilation
    extent = d * (k - 1) + 1
    if size is None:
        if s != 1:
            raise InputError(
                f"size is required for same_padding with {label('stride')} = "
                f"{s} > 1 (the padding depends on size mod stride); pass size="
            )
        total = extent - 1
    else:
        i = _positive(label("size"), size)
        # TF: pad_total = max((out - 1) * s + extent - i, 0) with out = ceil(i / s)
        total = max((_ceil_div(i, s) - 1) * s + extent - i, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class UpsamplingRecipe:
    """A transposed convolution that upsamples by exactly ``factor``: ``out = factor * in``.

    Attributes:
        factor: the integer upsampling factor f.
        kernel: ``2f - f % 2`` (64 for f = 32, as in FCN-32s and the d2l FCN).
        stride: ``f``.
        padding: ``ceil((f - 1) / 2)``.
    """

    factor: int
    kernel: int
    stride: int
    padding: int

    def output_size(self, size: Dims) -> Dims:
        """Output size of ``ConvTranspose2d(kernel, stride, padding)`` on ``size``: f * size."""
        return conv_transpose_output_size(size, self.kernel, self.stride, self.padding)


def upsampling_recipe(factor: int) -> UpsamplingRecipe:
    """The FCN/Caffe bilinear-upsampling geometry for an integer factor f.

    With ``k = 2f - f % 2``, ``s = f``, ``p = ceil((f - 1) / 2)`` the transposed convolution
    gives ``(i - 1) f - 2p + k = f * i`` for every input size i: for even f, ``k - 2p = f``;
    for odd f, ``k - 2p = 2f - 1 - (f - 1) = f``. Pair it with
    :func:`fcnkit.arith.kernels.bilinear_kernel` ``(recipe.kernel)`` for bilinear weights.

    Args:
        factor: positive integer upsampling factor.

    Returns:
        A frozen :class:`UpsamplingRecipe` (``factor``, ``kernel``, ``stride``, ``padding``).
    """
    f = _positive("factor", factor)
    return UpsamplingRecipe(factor=f, kernel=2 * f - f % 2, stride=f, padding=_ceil_div(f - 1, 2))


@dataclass(frozen=True)
class TransposedEquivalent:
    """The direct convolution that computes the transpose of a given direct convolution.

    All size fields are ints, or tuples (one per dimension) when the arguments were tuples.
    Apply it to an array ``y`` of size ``output_size``: insert ``zeros_inserted`` zeros
    between neighbouring units (giving ``stretched_size``), pad ``padding_before`` zeros on
    the top/left and ``padding_after`` on the bottom/right (a negative value means crop that
    many units instead), then convolve with stride 1, the same dilation and the kernel
    flipped (rotated 180°, with in/out channels swapped): the result has ``input_size``
    units and equals ``conv_transpose2d(y, w, stride, padding, dilation, output_padding=extra)``.

    Attributes:
        input_size: i, the direct convolution's input size (= the result size).
        output_size: o, the direct convolution's output size (= the transpose's input).
        kernel, stride, padding, dilation: the direct convolution's geometry.
        zeros_inserted: ``s - 1`` zeros between input units (Dumoulin & Visin's i~).
        padding_before: ``d(k-1) - p``.
        padding_after: ``d(k-1) - p + a``.
        extra: ``a = (i + 2p - d(k-1) - 1) mod s``, the units the direct convolution's
            stride skipped at the bottom/right; also the ``output_padding`` a
            ``ConvTranspose2d`` needs to map o back to i.
        stretched_size: ``o + (o - 1)(s - 1)``, size after zero insertion.
        padded_size: ``stretched_size + padding_before + padding_after``.
        equivalent_stride: always 1.
        kernel_flipped: always True.
    """

    input_size: Dims
    output_size: Dims
    kernel: Dims
    stride: Dims
    padding: Dims
    dilation: Dims
    zeros_inserted: Dims
    padding_before: Dims
    padding_after: Dims
    extra: Dims
    stretched_size: Dims
    padded_size: Dims
    equivalent_stride: int = 1
    kernel_flipped: bool = True


def transposed_equivalent(
    size: Dims,
    kernel: Dims,
    stride: Dims = 1,
    padding: Dims = 0,
    dilation: Dims = 1,
) -> TransposedEquivalent:
    """Describe the direct convolution implementing the transpose of a direct convolution.

    Dumoulin & Visin, "A guide to convolution arithmetic", relationships 8-14 (with
    dilation d written into the kernel extent ``d(k-1)+1``): the transpose of a convolution
    with input i, kernel k, stride s, padding p has an equivalent direct convolution on the
    output o with ``s - 1`` zeros inserted between units, padding ``d(k-1) - p`` on each side
    plus ``a = (i + 2p - d(k-1) - 1) mod s`` extra on the bottom/right, stride 1, and the
    flipped kernel.

    Args:
        size: input size i of the *direct* convolution.
        kernel, stride, padding, dilation: its geometry (PyTorch semantics, int padding).

    Returns:
        A frozen :class:`TransposedEquivalent`.
    """
    if isinstance(padding, str) or (
        isinstance(padding, (tuple, list)) and any(isinstance(v, str) for v in padding)
    ):
        raise InputError(
            f"padding must be an integer or a tuple of integers here, got {padding!r}; for "
            "TensorFlow 'same' use same_padding(...) and pad explicitly, 'valid' is padding=0"
        )
    out = conv_output_size(size, kernel, stride, padding, dilation)
    ndim, vals = _broadcast(
        size=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation, out=out
    )
    fields: dict[str, list[int]] = {
        key: []
        for key in (
            "zeros_inserted",
            "padding_before",
            "padding_after",
            "extra",
            "stretched_size",
            "padded_size",
        )
    }
    n = 1 if ndim is None else ndim
    for j in range(n):
        i, k, s = int(vals["size"][j]), int(vals["kernel"][j]), int(vals["stride"][j])
        p, d, o = int(vals["padding"][j]), int(vals["dilation"][j]), int(vals["out"][j])
        span = d * (k - 1)
        a = (i + 2 * p - span - 1) % s  # relationship 14: the skipped units
        stretched = o + (o - 1) * (s - 1)
        fields["zeros_inserted"].append(s - 1)
        fields["padding_before"].append(span - p)
        fields["padding_after"].append(span - p + a)
        fields["extra"].append(a)
        fields["stretched_size"].append(stretched)
        fields["padded_size"].append(stretched + 2 * (span - p) + a)
    packed: dict[str, Any] = {key: _pack(ndim, v) for key, v in fields.items()}
    return TransposedEquivalent(
        input_size=size if ndim is None else tuple(vals["size"]),
        output_size=out,
        kernel=kernel if ndim is None else tuple(vals["kernel"]),
        stride=stride if ndim is None else tuple(vals["stride"]),
        padding=padding if ndim is None else tuple(vals["padding"]),
        dilation=dilation if ndim is None else tuple(vals["dilation"]),
        **packed,
    )
