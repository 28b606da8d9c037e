"""The bilinear upsampling kernel used to initialise FCN's transposed convolutions."""

from __future__ import annotations

from typing import Any

import numpy as np

from fcnkit.arith.sizes import as_pair
from fcnkit.errors import InputError

__all__ = ["bilinear_kernel", "bilinear_kernel_1d", "bilinear_upsampling_weight"]


def bilinear_kernel_1d(kernel_size: int, dtype: Any = np.float64) -> np.ndarray:
    """One axis of the bilinear kernel: ``w[i] = 1 - |i - c| / f``.

    ``f = (k + 1) // 2`` is the upsampling factor the kernel is meant for and
    ``c = f - 1`` (k odd) or ``f - 0.5`` (k even) its centre, as in FCN's
    ``surgery.upsample_filt`` (Long, Shelhamer & Darrell, BVLC ``fcn`` repository).

    Args:
        kernel_size: k, a positive integer.
        dtype: numpy dtype of the result.

    Returns:
        A (k,) array of tent weights, symmetric, maximal at the centre.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)):
        raise InputError(f"kernel_size must be a positive integer, got {kernel_size!r}")
    k = int(kernel_size)
    if k < 1:
        raise InputError(f"kernel_size must be a positive integer, got {k}")
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    i = np.arange(k, dtype=np.float64)
    return (1.0 - np.abs(i - c) / f).astype(dtype)


def bilinear_kernel(kernel_size: int | tuple[int, int], dtype: Any = np.float64) -> np.ndarray:
    """The (k, k) FCN bilinear upsampling filter.

    ``w[i, j] = (1 - |i - c| / f) (1 - |j - c| / f)`` with ``f = (k + 1) // 2`` and
    ``c = f - 1`` if k is odd else ``f - 0.5``. Used as the weight of a
    ``ConvTranspose2d(kernel=k, stride=f, padding=ceil((f-1)/2))`` (see
    :func:`fcnkit.arith.sizes.upsampling_recipe`), it performs bilinear interpolation by f
    in the interior of the image.

    Args:
        kernel_size: k, or a pair ``(kh, kw)`` for a separable non-square kernel.
        dtype: numpy dtype of the result (float64 by default).

    Returns:
        A (k, k) (or (kh, kw)) array.
    """
    kh, kw = as_pair(kernel_size, "kernel_size")
    return np.outer(bilinear_kernel_1d(kh), bilinear_kernel_1d(kw)).astype(dtype)


def bilinear_upsampling_weight(
    channels: int, kernel_size: int | tuple[int, int], dtype: Any = np.float32
) -> np.ndarray:
    """A (channels, channels, k, k) transposed-convolution weight that upsamples each channel.

    Channel c is mapped to channel c by :func:`bilinear_kernel` and there is no mixing
    between channels (FCN's ``surgery.interp``); copy it into a ``ConvTranspose2d``'s
    ``weight`` (whose layout is (in_channels, out_channels, kh, kw)).

    Args:
        channels: number of channels (in = out), positive.
        kernel_size: k or (kh, kw).
        dtype: numpy dtype (float32 by default, torch's default).

    Returns:
        The weight array, zero off the channel diagonal.
    """
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise InputError(f"channels must be a positive integer, got {channels!r}")
    kernel = bilinear_kernel(kernel_size, dtype=dtype)
    weight = np.zeros((int(channels), int(channels), *kernel.shape), dtype=dtype)
    idx = np.arange(int(channels))
    weight[idx, idx] = kernel
    return weight
