"""Convolution as a sparse matrix C, transposed convolution as Cᵀ, and numpy references.

Everything here is plain numpy/scipy, written for teaching and as test oracles:

* :func:`conv_matrix` builds the sparse C with ``C @ x.ravel() == conv2d(x).ravel()``;
  the transposed convolution with the same weight is ``C.T @ y.ravel()``
  (:func:`conv_transpose_via_matrix`), which is why it is called *transposed* (Dumoulin &
  Visin, "A guide to convolution arithmetic", section 4.1).
* :func:`conv2d` / :func:`conv_transpose2d` follow ``torch.nn.functional.conv2d`` /
  ``conv_transpose2d`` semantics (cross-correlation, symmetric padding, dilation,
  output_padding, no groups, no bias).
* :func:`correlate2d` / :func:`convolve2d`: single-channel 2-D correlation and true
  convolution (kernel rotated 180°), with scipy.signal's ``mode`` names.
* :func:`zero_insert`: the "fractionally strided" view, ``s - 1`` zeros between units.

Array layouts. ``x`` is (C, H, W) or (N, C, H, W) and the result has the same rank.
``weight`` is (C_out, C_in, kh, kw), the layout of ``nn.Conv2d.weight``. The *same* array is
the weight of the transposed convolution mapping C_out channels back to C_in, which is also
the layout of ``nn.ConvTranspose2d.weight`` ((in_channels, out_channels, kh, kw) of the
transposed layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from fcnkit.arith.sizes import as_pair, conv_output_size, conv_transpose_output_size
from fcnkit.errors import InputError

__all__ = [
    "conv2d",
    "conv_matrix",
    "conv_transpose2d",
    "conv_transpose_via_matrix",
    "convolve2d",
    "correlate2d",
    "zero_insert",
]


def _batched(name: str, x: Any) -> tuple[np.ndarray, bool]:
    """``x`` as (N, C, H, W) and whether it arrived unbatched (C, H, W)."""
    arr = np.asarray(x)
    if arr.ndim == 3:
        return arr[None], True
    if arr.ndim == 4:
        return arr, False
    raise InputError(f"{name} must have shape (C, H, W) or (N, C, H, W), got {arr.shape}")


def _weight(weight: Any, channels: int, role: str) -> np.ndarray:
    w = np.asarray(weight)
    if w.ndim != 4:
        raise InputError(f"weight must have shape (C_out, C_in, kh, kw), got {w.shape}")
    axis = 1 if role == "input" else 0
    if w.shape[axis] != channels:
        which = "C_in (axis 1)" if role == "input" else "C_out (axis 0)"
        raise InputError(
            f"weight {which} is {w.shape[axis]} but the {role} has {channels} channels"
        )
    return w


def conv2d(
    x: Any,
    weight: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """Reference 2-D convolution with PyTorch semantics (cross-correlation, no bias).

    ``out[n, o, i, j] = sum_{c,u,v} w[o, c, u, v] * xpad[n, c, i*s_h + u*d_h, j*s_w + v*d_w]``
    where ``xpad`` is x zero-padded by ``padding`` on each side.

    Args:
        x: (C_in, H, W) or (N, C_in, H, W).
        weight: (C_out, C_in, kh, kw).
        stride, padding, dilation: int or (h, w) pair.

    Returns:
        (C_out, OH, OW) or (N, C_out, OH, OW), the same rank as ``x``; the sizes are
        :func:`fcnkit.arith.conv_output_size`'s.
    """
    xb, unbatched = _batched("x", x)
    w = _weight(weight, xb.shape[1], "input")
    s, p = as_pair(stride, "stride"), as_pair(padding, "padding")
    d = as_pair(dilation, "dilation")
    kh, kw = w.shape[2:]
    oh, ow = conv_output_size(tuple(xb.shape[2:]), (kh, kw), s, p, d)
    dtype = np.result_type(xb.dtype, w.dtype, np.float32)
    xpad = np.pad(xb.astype(dtype), ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    out = np.zeros((xb.shape[0], w.shape[0], oh, ow), dtype=dtype)
    for u in range(kh):
        for v in range(kw):
            # Input rows hit by tap u: u*d, u*d + s, ..., one per output row.
            patch = xpad[
                :,
                :,
                u * d[0] : u * d[0] + (oh - 1) * s[0] + 1 : s[0],
                v * d[1] : v * d[1] + (ow - 1) * s[1] + 1 : s[1],
            ]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, u, v])
    return out[0] if unbatched else out


def conv_transpose2d(
    y: Any,
    weight: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    output_padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """Reference transposed convolution with PyTorch semantics (no bias, no groups).

    Every input unit ``y[n, o, i, j]`` scatters ``y * w[o, c, u, v]`` to output position
    ``(i*s_h + u*d_h - p_h, j*s_w + v*d_w - p_w)`` of channel c (the adjoint of
    :func:`conv2d`); ``output_padding`` appends rows/columns at the bottom/right.

    Args:
        y: (C_out, H, W) or (N, C_out, H, W) — the *direct* convolution's output channels.
        weight: (C_out, C_in, kh, kw), the direct convolution's weight (the layout of
            ``nn.ConvTranspose2d(C_out, C_in, ...).weight``).
        stride, padding, dilation, output_padding: int or (h, w) pair, PyTorch rules.

    Returns:
        (C_in, OH, OW) or (N, C_in, OH, OW), with the sizes of
        :func:`fcnkit.arith.conv_transpose_output_size`.
    """
    yb, unbatched = _batched("y", y)
    w = _weight(weight, yb.shape[1], "output")
    s, p = as_pair(stride, "stride"), as_pair(padding, "padding")
    d = as_pair(dilation, "dilation")
    a = as_pair(output_padding, "output_padding")
    kh, kw = w.shape[2:]
    h, wd = yb.shape[2:]
    oh, ow = conv_transpose_output_size((h, wd), (kh, kw), s, p, d, a)
    dtype = np.result_type(yb.dtype, w.dtype, np.float32)
    # Uncropped canvas: (H-1)s + d(k-1) + 1 units, plus output_padding, before removing p.
    full = np.zeros(
        (
            yb.shape[0],
            w.shape[1],
            (h - 1) * s[0] + d[0] * (kh - 1) + 1 + a[0],
            (wd - 1) * s[1] + d[1] * (kw - 1) + 1 + a[1],
        ),
        dtype=dtype,
    )
    for u in range(kh):
        for v in range(kw):
            full[
                :,
                :,
                u * d[0] : u * d[0] + (h - 1) * s[0] + 1 : s[0],
                v * d[1] : v * d[1] + (wd - 1) * s[1] + 1 : s[1],
            ] += np.einsum("nohw,oc->nchw", yb.astype(dtype), w[:, :, u, v])
    out = full[:, :, p[0] : p[0] + oh, p[1] : p[1] + ow]
    return out[0] if unbatched else out


def conv_matrix(
    input_shape: tuple[int, int, int],
    weight: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> sparse.csr_matrix:
    """The convolution as a sparse matrix C acting on ``x.ravel()``.

    Row ``(o, i, j)`` of C (C-order index into the (C_out, OH, OW) output) holds
    ``w[o, c, u, v]`` in column ``(c, i*s_h - p_h + u*d_h, j*s_w - p_w + v*d_w)`` for every
    tap that lands inside the input; taps that land in the zero padding contribute nothing,
    so padding needs no extra columns.

    Args:
        input_shape: (C_in, H, W).
        weight: (C_out, C_in, kh, kw).
        stride, padding, dilation: int or (h, w) pair, PyTorch semantics.

    Returns:
        A ``scipy.sparse.csr_matrix`` of shape (C_out*OH*OW, C_in*H*W) with
        ``C @ x.ravel() == conv2d(x, weight, ...).ravel()`` and, for the transposed
        convolution, ``C.T @ y.ravel() == conv_transpose2d(y, weight, ...).ravel()``.
        C has up to C_out*C_in*OH*OW*kh*kw non-zeros (and building it needs a few times
        that in index memory): it is meant for teaching and small tests, not real layers.
    """
    if len(tuple(input_shape)) != 3:
        raise InputError(f"input_shape must be (C_in, H, W), got {input_shape!r}")
    c_in, h, wd = (int(v) for v in input_shape)
    w = _weight(weight, c_in, "input")
    s, p = as_pair(stride, "stride"), as_pair(padding, "padding")
    d = as_pair(dilation, "dilation")
    c_out, _, kh, kw = w.shape
    oh, ow = conv_output_size((h, wd), (kh, kw), s, p, d)
    # Broadcast over (o, c, i, j, u, v) without materialising more than the index grid.
    o, c, i, j, u, v = np.meshgrid(
        np.arange(c_out),
        np.arange(c_in),
        np.arange(oh),
        np.arange(ow),
        np.arange(kh),
        np.arange(kw),
        indexing="ij",
        sparse=False,
    )
    rows_in = i * s[0] - p[0] + u * d[0]
    cols_in = j * s[1] - p[1] + v * d[1]
    inside = (rows_in >= 0) & (rows_in < h) & (cols_in >= 0) & (cols_in < wd)
    row = ((o * oh + i) * ow + j)[inside]
    col = ((c * h + rows_in) * wd + cols_in)[inside]
    val = w[o[inside], c[inside], u[inside], v[inside]]
    return sparse.csr_matrix((val, (row, col)), shape=(c_out * oh * ow, c_in * h * wd))


def conv_transpose_via_matrix(
    y: Any,
    weight: Any,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    output_padding: int | tuple[int, int] = 0,
) -> np.ndarray:
    """Transposed convolution computed literally as ``Cᵀ @ y.ravel()``.

    C is :func:`conv_matrix` for the direct convolution whose input has the transposed
    convolution's output size (output_padding included). When output_padding makes that
    direct convolution produce more rows/columns than ``y`` has (possible when
    ``output_padding >= stride``, allowed by PyTorch if ``dilation`` is larger), ``y`` is
    extended with zeros to match: those outputs do not exist in the transposed layer.

    Args:
        y: (C_out, H, W) or (N, C_out, H, W).
        weight: (C_out, C_in, kh, kw).
        stride, padding, dilation, output_padding: int or (h, w) pair.

    Returns:
        The same array as :func:`conv_transpose2d` (and ``F.conv_transpose2d``).
    """
    yb, unbatched = _batched("y", y)
    w = _weight(weight, yb.shape[1], "output")
    s, p = as_pair(stride, "stride"), as_pair(padding, "padding")
    d = as_pair(dilation, "dilation")
    a = as_pair(output_padding, "output_padding")
    kh, kw = w.shape[2:]
    oh, ow = conv_transpose_output_size(tuple(yb.shape[2:]), (kh, kw), s, p, d, a)
    c = conv_matrix((w.shape[1], oh, ow), w, s, p, d)
    dh, dw = conv_output_size((oh, ow), (kh, kw), s, p, d)
    y_full = np.zeros((yb.shape[0], yb.shape[1], dh, dw), dtype=np.result_type(yb, np.float32))
    y_full[:, :, : yb.shape[2], : yb.shape[3]] = yb
    flat = y_full.reshape(yb.shape[0], -1)
    out: np.ndarray = (c.T @ flat.T).T.reshape(yb.shape[0], w.shape[1], oh, ow)
    return out[0] if unbatched else out


_MODES = ("valid", "same", "full")


def correlate2d(x: Any, kernel: Any, mode: str = "valid") -> np.ndarray:
    """2-D cross-correlation of one channel: ``out[i, j] = sum_{u,v} k[u, v] x[i+u, j+v]``.

    This is what deep-learning "convolution" layers compute.

    Args:
        x: (H, W) array.
        kernel: (kh, kw) array.
        mode: as ``scipy.signal.correlate2d``: ``"valid"`` (no padding, H-kh+1 rows),
            ``"full"`` (every overlap, H+kh-1 rows), ``"same"`` (H rows, centred on the
            full result like scipy; for even kernels the extra unit is taken from the
            start).

    Returns:
        The correlation as a float array.
    """
    x2 = np.asarray(x)
    k2 = np.asarray(kernel)
    if x2.ndim != 2 or k2.ndim != 2:
        raise InputError(f"x and kernel must be 2-D, got shapes {x2.shape} and {k2.shape}")
    if mode not in _MODES:
        raise InputError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    kh, kw = k2.shape
    h, w = x2.shape
    if mode == "valid":
        if kh > h or kw > w:
            raise InputError(
                f"kernel {k2.shape} is larger than x {x2.shape}; use mode='full' or 'same'"
            )
        xp = x2
    else:
        xp = np.pad(x2, ((kh - 1, kh - 1), (kw - 1, kw - 1)))
    dtype = np.result_type(x2.dtype, k2.dtype, np.float32)
    oh, ow = xp.shape[0] - kh + 1, xp.shape[1] - kw + 1
    out = np.zeros((oh, ow), dtype=dtype)
    for u in range(kh):
        for v in range(kw):
            out += k2[u, v] * xp[u : u + oh, v : v + ow]
    if mode == "same":
        # Centre an (h, w) window in the full result, as scipy.signal does.
        top, left = (oh - h) // 2, (ow - w) // 2
        if kh % 2 == 0:
            top = (oh - h + 1) // 2
        if kw % 2 == 0:
            left = (ow - w + 1) // 2
        out = out[top : top + h, left : left + w]
    return out


def convolve2d(x: Any, kernel: Any, mode: str = "valid") -> np.ndarray:
    """True 2-D convolution: correlation with the kernel rotated by 180°.

    ``out[i, j] = sum_{u,v} k[u, v] x[i-u, j-v]``; equals :func:`correlate2d` with
    ``kernel[::-1, ::-1]``. Learned filters make the distinction immaterial for training
    (a learned kernel absorbs the flip) but it matters when copying weights between
    libraries and for the transposed convolution's equivalent direct convolution, whose
    kernel is flipped.

    Args:
        x: (H, W) array.
        kernel: (kh, kw) array.
        mode: ``"valid"``, ``"same"`` or ``"full"`` (scipy.signal's convention).

    Returns:
        The convolution as a float array.
    """
    k2 = np.asarray(kernel)
    if k2.ndim != 2:
        raise InputError(f"kernel must be 2-D, got shape {k2.shape}")
    if mode == "same":
        # scipy centres 'same' on the full convolution; flipping moves the even-size
        # offset to the other side, so compute 'full' and cut the centre directly.
        x2 = np.asarray(x)
        full = correlate2d(x2, k2[::-1, ::-1], "full")
        top = (k2.shape[0] - 1) // 2
        left = (k2.shape[1] - 1) // 2
        return full[top : top + x2.shape[0], left : left + x2.shape[1]]
    return correlate2d(x, k2[::-1, ::-1], mode)


def zero_insert(x: Any, stride: int | tuple[int, int]) -> np.ndarray:
    """Insert ``s - 1`` zeros between neighbouring units of the last two axes.

    The "fractionally strided" picture of a transposed convolution with stride s: after
    zero insertion (and padding ``d(k-1) - p``), a stride-1 convolution with the flipped
    kernel computes it (see :func:`fcnkit.arith.transposed_equivalent`).

    Args:
        x: array with at least 2 dimensions; the last two are (H, W).
        stride: s or (s_h, s_w), positive.

    Returns:
        Array of shape (..., (H-1) s_h + 1, (W-1) s_w + 1) with x at every s-th unit.
    """
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise InputError(f"x must have at least 2 dimensions (H, W), got shape {arr.shape}")
    sh, sw = as_pair(stride, "stride")
    if sh < 1 or sw < 1:
        raise InputError(f"stride must be positive, got {stride!r}")
    h, w = arr.shape[-2:]
    if h < 1 or w < 1:
        raise InputError(f"x must have non-empty H and W, got shape {arr.shape}")
    out = np.zeros((*arr.shape[:-2], (h - 1) * sh + 1, (w - 1) * sw + 1), dtype=arr.dtype)
    out[..., ::sh, ::sw] = arr
    return out
