"""FCN heads: score layers, skip fusion with crops, and the three upsamplers.

Upsampling by an integer factor f uses the geometry of :func:`fcnkit.arith.upsampling_recipe`
(kernel ``2f - f % 2``, stride f, padding ``ceil((f - 1)/2)``: exactly ``f × in`` pixels out)
in three flavours:

* ``"bilinear"`` — a ``ConvTranspose2d`` with ``groups=C`` (:class:`GroupedBilinear`): every
  channel is upsampled by the same frozen :func:`fcnkit.arith.bilinear_kernel`, no channel
  mixing, ``requires_grad=False``. It costs about as much as interpolation, and runs in
  float32 under a CPU autocast.
* ``"deconv"`` — a full ``C × C`` ``ConvTranspose2d`` initialised with the bilinear kernel on
  the channel diagonal (zero elsewhere) and learnable, as in the FCN paper and d2l.
* ``"interpolate"`` — ``F.interpolate(mode="bilinear", align_corners=False)`` to ``f × in``.

All three place input pixel i at output coordinate ``f*i + (f - 1)/2``, so they agree in the
interior. At the borders the transposed convolutions see implicit zeros beyond the edge and
fade out, while ``F.interpolate`` clamps to the edge pixel: they differ in the outer
``ceil((f - 1)/2)``-ish pixels of each side (``docs/models.md`` shows the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from fcnkit.arith import bilinear_kernel, same_padding, upsampling_recipe
from fcnkit.errors import InputError
from fcnkit.models.surgery import bilinear_init_

UPSAMPLE_MODES = ("bilinear", "deconv", "interpolate")


class Interpolate(nn.Module):
    """Bilinear interpolation by an integer factor (``align_corners=False``), ``f × in`` out.

    It carries the geometry of the equivalent transposed convolution (``kernel_size``,
    ``stride``, ``padding``, ``dilation``, ``transposed=True`` from
    :func:`fcnkit.arith.upsampling_recipe`) so receptive-field and crop arithmetic treat it
    like the ``"bilinear"``/``"deconv"`` upsamplers — in the interior they are the same map.
    """

    transposed = True

    def __init__(self, factor: int) -> None:
        super().__init__()
        recipe = upsampling_recipe(factor)
        self.factor = recipe.factor
        self.kernel_size = (recipe.kernel, recipe.kernel)
        self.stride = (recipe.stride, recipe.stride)
        self.padding = (recipe.padding, recipe.padding)
        self.dilation = (1, 1)
        self.output_padding = (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode='bilinear', align_corners=False"


class GroupedBilinear(nn.ConvTranspose2d):
    """The ``"bilinear"`` upsampler: a ``ConvTranspose2d`` with ``groups=C`` and one frozen
    bilinear kernel per channel, which on a CPU runs in float32 even under autocast.

    Why: oneDNN has no fast bf16 path for a transposed convolution with one channel per
    group. FCN-8s's last ×8 upsampler (batch 8 × 21 × 32² → 256², channels_last) takes
    84 ms forward in bf16 against 17 ms in float32 on host C (AVX512-BF16;
    docs/benchmarks.md, "The loss and the last upsampler at full resolution"), and its
    full-resolution output is what the loss reads in float32 anyway. Elsewhere (no
    autocast, or CUDA) it is a plain ``ConvTranspose2d``; its state dict is the same.
    """

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None
                ) -> torch.Tensor:
        if input.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):  # in the weights' dtype (float32)
                return super().forward(input.to(self.weight.dtype), output_size)
        return super().forward(input, output_size)


def grouped_bilinear(channels: int, kernel: int | tuple[int, int],
                     stride: int | tuple[int, int], padding: int | tuple[int, int],
                     values: Any = None) -> GroupedBilinear:
    """A frozen :class:`GroupedBilinear` (no bias) with the same ``kernel × kernel`` weights
    in every channel: ``values`` (e.g. a kernel recorded in an ONNX file), by default
    :func:`fcnkit.arith.bilinear_kernel`."""
    layer = GroupedBilinear(channels, channels, kernel, stride=stride, padding=padding,
                            groups=channels, bias=False)
    if values is None:
        values = bilinear_kernel(layer.kernel_size[0])  # square, as upsampling_recipe makes
    weights = torch.as_tensor(values, dtype=layer.weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weights.expand_as(layer.weight))
    layer.weight.requires_grad_(False)
    return layer


def make_upsampler(
    channels: int, factor: int, mode: str = "bilinear", *, caffe_padding: bool = False
) -> nn.Module:
    """An upsampler by ``factor`` for ``channels`` channels (see the module docstring).

    Args:
        channels: C, channels in = out (class scores).
        factor: integer upsampling factor f ≥ 1.
        mode: "bilinear" (grouped, frozen), "deconv" (full C × C, learnable) or
            "interpolate".
        caffe_padding: the Caffe FCN geometry — padding 0 (output ``f*(in - 1) + k``, to be
            cropped) and, for "bilinear", a full C × C frozen weight (Caffe's Deconvolution
            with ``lr_mult=0``, counted in the parameters). Not available for "interpolate".

    Returns:
        An ``nn.Module`` mapping ``(N, C, h, w)`` to ``(N, C, f*h, f*w)`` (or the Caffe size).
    """
    if mode not in UPSAMPLE_MODES:
        raise InputError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
    recipe = upsampling_recipe(factor)
    if mode == "interpolate":
        if caffe_padding:
            raise InputError("upsample='interpolate' has no Caffe (padding 0) geometry")
        return Interpolate(factor)
    padding = 0 if caffe_padding else recipe.padding
    if mode == "bilinear" and not caffe_padding:
        return grouped_bilinear(channels, recipe.kernel, recipe.stride, padding)
    layer = nn.ConvTranspose2d(channels, channels, recipe.kernel, stride=recipe.stride,
                               padding=padding, bias=False)
    bilinear_init_(layer)
    if mode == "bilinear":
        layer.weight.requires_grad_(False)
    return layer


def overlap(offset: int, size_a: int, size_b: int) -> tuple[slice, slice]:
    """Slices of two maps on one pixel grid that cover their common part (one dimension).

    ``offset`` is the index in map A of map B's pixel 0 (Caffe's crop offset). Returns
    ``(slice_a, slice_b)``; B is cropped only where A does not cover it. Integer sizes only:
    the tensor functions below (:func:`fuse`, :func:`crop_to`) do the same with sizes that
    may be symbolic.
    """
    start_b = max(0, -offset)
    stop_b = min(size_b, size_a - offset)
    if stop_b <= start_b:
        raise RuntimeError(
            f"maps do not overlap: offset {offset}, sizes {size_a} and {size_b}"
        )
    return slice(start_b + offset, stop_b + offset), slice(start_b, stop_b)


# Export note (fuse, crop_to). ``torch.export`` / ``torch.onnx.export(dynamo=True)`` trace
# with symbolic sizes; a Python comparison of two sizes (``min``, ``if a == b``) is
# evaluated once at trace time and its outcome frozen into the graph, which then returns
# wrong sizes at other inputs (a trace at 64×96 answered 375×500 with 376×504). So sizes
# are only combined with ``torch.sym_min`` and checked with ``torch._check`` (a symbolic
# assertion, not a branch); the crop offsets themselves are integers fixed by the layer
# geometry, so they may stay Python ints.


def fuse(a: torch.Tensor, b: torch.Tensor, offset: Sequence[int]) -> torch.Tensor:
    """``a + b`` over their common part; ``offset[d]`` = index in ``a`` of ``b``'s pixel 0.

    Correct for symbolic (dynamic) spatial sizes: per dimension the common part starts at
    ``max(offset, 0)`` in A and ``max(-offset, 0)`` in B and is
    ``min(size_a - start_a, size_b - start_b)`` long (``torch.sym_min``). RuntimeError if
    the maps do not overlap.
    """
    window_a, window_b = [], []
    for dim, off in zip((-2, -1), offset):
        start_a, start_b = max(int(off), 0), max(-int(off), 0)
        length = torch.sym_min(a.shape[dim] - start_a, b.shape[dim] - start_b)
        def message(off: object = off) -> str:
            return f"maps do not overlap at offset {off}"

        torch._check(length > 0, message)
        window_a.append(slice(start_a, start_a + length))
        window_b.append(slice(start_b, start_b + length))
    index_a: tuple[Any, ...] = (..., *window_a)
    index_b: tuple[Any, ...] = (..., *window_b)
    return a[index_a] + b[index_b]


def fractional_shift(x: torch.Tensor, shift: Sequence[float]) -> torch.Tensor:
    """``y[..., i, j] = x[..., i + shift[0], j + shift[1]]`` by linear interpolation between
    the two nearest pixels per dimension (indices clamped at the border).

    A whole shift moves pixels exactly; a half shift averages two neighbours. It moves a
    map's pixel grid by a fraction of a pixel, which an integer crop cannot.
    """
    for dim, d in zip((x.ndim - 2, x.ndim - 1), shift):
        if d == 0:
            continue
        n = x.shape[dim]
        whole = math.floor(d)
        frac = float(d) - whole
        index = torch.arange(n, device=x.device) + whole
        low = x.index_select(dim, index.clamp(0, n - 1))
        if frac == 0.0:
            x = low
            continue
        high = x.index_select(dim, (index + 1).clamp(0, n - 1))
        x = (1.0 - frac) * low + frac * high
    return x


def crop_to(x: torch.Tensor, offset: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """``x[..., oy:oy+h, ox:ox+w]``; RuntimeError if ``x`` does not cover that window.

    ``size`` may be symbolic (the input's size under ``torch.export``); it is checked with
    ``torch._check``, never compared in Python.
    """
    window = []
    for dim, start, length in zip((-2, -1), offset, size):
        start = int(start)
        torch._check(
            start >= 0 and start + length <= x.shape[dim],
            lambda: f"cannot crop {tuple(size)} at offset {tuple(offset)} "
            f"from a {tuple(x.shape[-2:])} map",
        )
        window.append(slice(start, start + length))
    index: tuple[Any, ...] = (..., *window)
    return x[index]


def _score_name(feature: str) -> str:
    return "score_" + feature.replace(".", "_")


class FCNHead(nn.Module):
    """The FCN-32s/16s/8s decoder: one class for every number of skips.

    Scores the deepest feature with a 1×1 convolution (``score_fr``), then for each skip in
    order upsamples the running score map to the skip's stride, adds the skip's 1×1 score
    (``score_<name>``) over their common part, and finally upsamples to stride 1 and crops to
    the input size. FCN-32s is ``skips=[]``, FCN-16s ``["pool4"]``, FCN-8s
    ``["pool4", "pool3"]`` (Long et al. 2015, §4.2).

    Crop offsets are not stored here: :class:`fcnkit.models.fcn.FCN` computes them from the
    layer geometry with :mod:`fcnkit.arith` and hands them over with :meth:`set_offsets`.

    Args:
        channels: channels per backbone feature name.
        strides: stride per backbone feature name.
        deepest: name of the coarsest feature.
        skips: feature names to fuse, coarse to fine (strides must decrease and divide).
        num_classes: C, channels of the scores.
        upsample: "bilinear", "deconv" or "interpolate" (see :func:`make_upsampler`).
        caffe_geometry: Caffe's Deconvolution geometry (padding 0, full C × C weights).
    """

    def __init__(
        self,
        channels: Mapping[str, int],
        strides: Mapping[str, int],
        deepest: str,
        skips: Sequence[str],
        num_classes: int,
        upsample: str = "bilinear",
        *,
        caffe_geometry: bool = False,
    ) -> None:
        super().__init__()
        self.deepest = deepest
        self.skips = list(skips)
        self.score_fr = nn.Conv2d(channels[deepest], num_classes, 1)
        self.skip_scores = nn.ModuleDict()
        self.upscores = nn.ModuleList()
        stride = strides[deepest]
        for name in self.skips:
            if name not in strides:
                raise InputError(f"skip {name!r} is not a backbone feature ({', '.join(strides)})")
            if strides[name] >= stride or stride % strides[name]:
                raise InputError(
                    f"skip {name!r} has stride {strides[name]}, which must divide and be "
                    f"finer than the previous stride {stride}"
                )
            self.upscores.append(
                make_upsampler(num_classes, stride // strides[name], upsample,
                               caffe_padding=caffe_geometry)
            )
            self.skip_scores[_score_name(name)] = nn.Conv2d(channels[name], num_classes, 1)
            stride = strides[name]
        self.final_stride = stride
        self.upscore_final = make_upsampler(num_classes, stride, upsample,
                                            caffe_padding=caffe_geometry)
        self._skip_offsets: list[tuple[int, int]] = [(0, 0)] * len(self.skips)
        self._final_offset: tuple[int, int] = (0, 0)
        # Fixed factors on each skip feature before its score layer: 1 except for FCN-8s
        # at-once (Shelhamer et al. 2017 §4.1: pool4 × 0.01, pool3 × 0.0001).
        self.skip_scales: list[float] = [1.0] * len(self.skips)
        # Sub-pixel shifts (map pixels) of the alignment control (:meth:`set_exact_shifts`);
        # all zero in the standard heads.
        self._skip_shifts: list[tuple[float, float]] = [(0.0, 0.0)] * len(self.skips)
        self._final_shift: tuple[float, float] = (0.0, 0.0)

    def set_offsets(self, skip_offsets: Sequence[Sequence[int]], final: Sequence[int]) -> None:
        """Crop offsets per skip (index in the skip's score map of the upsampled map's pixel
        0) and of the input's pixel 0 in the final upsampled map, each ``(dy, dx)``."""
        if len(skip_offsets) != len(self.skips):
            raise InputError(f"need {len(self.skips)} skip offsets, got {len(skip_offsets)}")
        self._skip_offsets = [(int(a), int(b)) for a, b in skip_offsets]
        self._final_offset = (int(final[0]), int(final[1]))

    def set_exact_shifts(self, skip_shifts: Sequence[Sequence[float]],
                         final: Sequence[float]) -> None:
        """Align the fused maps exactly: resample each skip's score map by ``skip_shifts``
        (its pixels; the fractional crop offsets integer crops leave over,
        :func:`fcnkit.arith.integer_crop`) before the fusion, and the fused map by ``final``
        (coarse-map pixels) before the last upsampling, with :func:`fractional_shift`."""
        if len(skip_shifts) != len(self.skips):
            raise InputError(f"need {len(self.skips)} skip shifts, got {len(skip_shifts)}")
        self._skip_shifts = [(float(a), float(b)) for a, b in skip_shifts]
        self._final_shift = (float(final[0]), float(final[1]))

    def skip_score(self, name: str) -> nn.Conv2d:
        """The 1×1 score layer of skip feature ``name``."""
        return cast(nn.Conv2d, self.skip_scores[_score_name(name)])

    @property
    def final_offset(self) -> tuple[int, int]:
        """``(dy, dx)``: index in the last upsampled map of the input's pixel 0."""
        return self._final_offset

    def coarse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The fused score map before the last upsampling (stride ``final_stride``)."""
        scores: torch.Tensor = self.score_fr(features[self.deepest])
        for name, up, offset, scale, shift in zip(self.skips, self.upscores,
                                                  self._skip_offsets, self.skip_scales,
                                                  self._skip_shifts):
            upsampled = up(scores)
            feature = features[name] if scale == 1.0 else features[name] * scale
            skip = self.skip_score(name)(feature)
            if shift != (0.0, 0.0):
                skip = fractional_shift(skip, shift)
            # Caffe: fuse = upscore + crop(score_skip, upscore); here the crop is the overlap.
            scores = fuse(skip, upsampled, offset)
        if self._final_shift != (0.0, 0.0):
            scores = fractional_shift(scores, self._final_shift)
        return scores

    def forward(
        self, features: Mapping[str, torch.Tensor], input_size: Sequence[int]
    ) -> torch.Tensor:
        out = self.upscore_final(self.coarse(features))
        return crop_to(out, self._final_offset, input_size)


class ConvHead(nn.Module):
    """torchvision's ``FCNHead``: 3×3 conv (no bias) → BN → ReLU → Dropout(0.1) → 1×1 conv.

    Args:
        in_channels: channels of the backbone's deepest feature.
        num_classes: C.
        hidden: channels of the 3×3 conv; default ``in_channels // 4`` as in torchvision.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(1, in_channels // 4)
        kernel = 3
        self.conv = nn.Conv2d(in_channels, hidden, kernel, padding=same_padding(kernel)[0],
                              bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.classifier(self.dropout(self.relu(self.bn(self.conv(x)))))
        return scores
