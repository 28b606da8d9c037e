"""Exact labels from low-resolution scores: per-pixel work only where a label is in doubt.

When the last upsampling of a model is bilinear — ``F.interpolate`` (``align_corners=False``)
or a transposed convolution whose per-class kernels are one non-negative kernel without
bias (FCN's frozen bilinear "deconvolution") — every full-resolution score is a
non-negative combination of a few low-resolution scores, with the *same* weights for every
class:

    out_c(p) = Σ_j w_j(p) · s_c(j),   w_j(p) ≥ 0,   W(p) = Σ_j w_j(p) > 0.

Over a *cell* (a block of output pixels fed by the same low-resolution window J), class c
therefore cannot win anywhere when

    max_{j∈J} s_c(j)  <  max_a min_{j∈J} s_a(j),

because ``out_c(p) ≤ W(p)·max_J s_c`` and, for the class a that attains the right-hand
side, ``out_a(p) ≥ W(p)·min_J s_a``. Where two regions meet every class's window minimum
sits at the absent level, so a second test applies there: with a, b the two classes of
highest window maximum, c cannot win if ``s_a + s_b > 2·s_c`` at every position of the
window (then ``max(out_a, out_b) ≥ (out_a + out_b)/2 > out_c``). Inside a region one class
survives, and the whole cell takes its label without any full-resolution score. For 2×2
windows (every bilinear recipe) a cheaper sufficient test runs first: a cell whose four
corners have the same best class, each with no rival within the margin, is that class's
(:func:`_prune_by_corners`); the two tests above then run on the other cells only.

Cells with several survivors are labelled per pixel from their candidates only: each
candidate's blend with the upsampler's own weights, decided when the best candidate leads
by more than float32 rounding of either sum could change (:func:`_blend_doubtful`).
Pixels within that tolerance (near-ties), NaN or infinite scores go to the exact path: the
model's own last upsampling, on the scores as the model made them — of a small patch
around each undecided cell for a grouped transposed convolution (whose output there is
the whole map's bit for bit, :func:`_exact_patches`), of the whole map otherwise — so
every label is ``model(x).argmax(1)``'s bit for bit.

The cell tests keep a safety margin (:data:`MARGIN`, relative to the map's largest
|score|): a class is dropped only when it loses by far more than float32 rounding of a
sum of a few terms could ever change, so rounding never changes a label.

On CPU, for 2×2 windows, the whole labels stage — both pruning stages, the cells' labels
to pixels and the blend of the doubtful cells — runs as one compiled C function
(:mod:`fcnkit.inference.native`) instead of about 60 torch operations, each of which pays
a cold start right after a backbone; the same tests with the same margins. Without a C
compiler the torch operations run; the labels are the same either way (both are tested
against ``model(x).argmax(1)``).

The compiled stage settles the cells the blend cannot decide (exact ties, near-ties within
a few ulps) without calling the upsampler: a transposed convolution's float32 score is a
sum of at most four products, whose rounding depends only on the order of the sum and on
whether the products are fused, and ``_labels.c`` computes each of the 48 variants.
:func:`_emulation` finds the one the model's upsampler uses for a geometry, memory layout
and thread count by comparing every score of a random probe map, once (at the second
sighting of that geometry, so images whose sizes never repeat pay nothing); the labels of
those cells are then the argmax of exactly the model's float32 scores. An upsampler no
variant reproduces (another algorithm, a reduced-precision mode) keeps the exact path.
"""

from __future__ import annotations

import ctypes
import functools
import math
import weakref
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnkit.arith.tiling import (
    band_of_rows,
    band_weights,
    band_windows,
    output_bands,
    window_corner_pixels,
)
from fcnkit.inference import native
from fcnkit.models.heads import Interpolate

__all__ = [
    "COMPILED_DENSE_WORK",
    "DENSE_WORK",
    "MARGIN",
    "PRUNE_MIN_SCORES",
    "convex_upsampler",
    "corners_agree",
    "labels_by_pruning",
    "labels_from_scores",
    "prune_cells",
]

#: Relative safety margin of the pruning test. A float32 sum of at most 4 products (2×2
#: taps) is within ~8·2⁻²⁴·max|s|·W of the exact value; 1e-4 is ~800× that.
MARGIN = 1e-4

#: When the pixels of the doubtful cells × their candidates exceed this fraction of the
#: whole map's C × H × W, :func:`fcnkit.inference.labels.whole_image_labels` labels the
#: whole map per pixel instead: on 320×480 maps of 21 classes the pruning ran at
#: 0.44–0.54× the whole map's time at 1.1–1.5 % of its work, 0.68× at 4.2 % and 1.0× at
#: 12 % (``benchmarks/bench_lowres_cells.py --sweep``, docs/benchmarks.md); 3 % keeps a
#: margin for maps whose doubtful cells hold more candidates (random weights).
DENSE_WORK = 0.03
#: :data:`DENSE_WORK` of the compiled labels stage (:mod:`fcnkit.inference.native`), whose
#: per-pixel work costs far less: on 320×480 maps of 21 classes it ran at 0.43× the whole
#: map's time at 22 % of its work, 0.51× at 31 %, 0.74× at 39 % and 0.91× at 66 %; on
#: 150×210 maps of 4 classes 0.84× at 66 %, on 64×96 maps of 21 classes 0.68× at 56 %
#: (``bench_lowres_cells.py --sweep``, docs/benchmarks.md). No map measured lost to the
#: whole map; 50 % keeps a margin below the densest ones.
COMPILED_DENSE_WORK = 0.5
#: Below this many class scores (C × H × W) the whole map's per-pixel work is cheaper than
#: the pruning's fixed cost (~60 small operations, about 0.5 ms on 2 cores), whatever the
#: map: calm region maps of 4 classes at 150×210 (126 000 scores, the demo's) took
#: 1.5× the whole map's time, of 4 classes at 320×480 (614 000) 1.4–1.7× and of 21
#: classes at 160×240 (806 000) 1.0×, against 0.5× for 21 × 320 × 480 (3.2 M)
#: (``bench_lowres_cells.py --sweep --classes C --size H,W``). The compiled labels stage
#: has no such floor: 0.14–0.36× the whole map's time on the 4-class 150×210 maps below
#: 50 % work, 0.30–0.41× on 21-class 64×96 maps (129 000 scores) below 20 % work.
PRUNE_MIN_SCORES = 2**21

#: The blend of a doubtful cell's candidates (:func:`_blend_doubtful`) decides a pixel
#: when its best candidate leads by more than this many float32 ulps of the window's
#: largest |score| (plus the weight terms of :func:`_tap_tables`).
_BLEND_ULPS = 64
#: Keeps the tolerance positive for all-zero (or subnormal) windows.
_TINY = 1e-30


def convex_upsampler(upsampler: nn.Module) -> bool:
    """True when ``upsampler`` maps every class with the same non-negative weights and no
    bias: :class:`fcnkit.models.heads.Interpolate`, or a ``ConvTranspose2d`` (dilation 1)
    whose weight is one non-negative kernel on the class diagonal (grouped, or full C × C
    with zero off-diagonal filters, as Caffe's frozen bilinear Deconvolution). A learned
    deconvolution fails the check and takes the strip path.

    The answer is cached per module (checking the weight takes a few torch operations,
    about 0.16 ms right after a backbone: a tenth of ResNet-18's head), see
    :func:`_upsampler_facts`.
    """
    return _convex_facts(upsampler)[0]


def _convex_facts(upsampler: nn.Module) -> tuple[bool, _Factors | None]:
    """:func:`convex_upsampler` and, for a transposed convolution, its kernel's factors
    (:func:`_factor_kernel`), from one look at the weight."""
    if isinstance(upsampler, Interpolate):
        return True, None
    if not isinstance(upsampler, nn.ConvTranspose2d) or tuple(upsampler.dilation) != (1, 1):
        return False, None
    return _upsampler_facts(upsampler)


_Factors = tuple[list[tuple[str, tuple[float, ...], int, int]], float]
#: Per transposed convolution: copies of its weight and bias (None without), whether it is
#: convex and its kernel's factors (:func:`_upsampler_facts`).
_facts_cache: weakref.WeakKeyDictionary[
    nn.Module, tuple[list[native.Snapshot | torch.Tensor | None], tuple[bool, _Factors | None]]
] = weakref.WeakKeyDictionary()


def _upsampler_facts(upsampler: nn.ConvTranspose2d) -> tuple[bool, _Factors | None]:
    """Whether a transposed convolution is convex (:func:`convex_upsampler`) and its
    kernel's factors (:func:`_factor_kernel`), remembered per module while its weight and
    bias keep their values. The check compares them with copies (one ``memcmp`` each on
    CPU, :func:`fcnkit.inference.native.same_bytes`), not the version counter: an
    in-place write through ``.data`` does not bump it."""
    tensors = (upsampler.weight, upsampler.bias)
    cached = _facts_cache.get(upsampler)
    if cached is not None and all(_unchanged(copy, tensor)
                                  for copy, tensor in zip(cached[0], tensors)):
        return cached[1]
    facts = (_convex_transposed(upsampler), _factor_kernel(upsampler))
    _facts_cache[upsampler] = ([None if t is None else _copy(t) for t in tensors], facts)
    return facts


def _copy(tensor: torch.Tensor) -> native.Snapshot | torch.Tensor:
    tensor = tensor.detach()
    if tensor.device.type == "cpu" and tensor.is_contiguous():
        return native.Snapshot(tensor)
    return tensor.clone()


def _unchanged(copy: native.Snapshot | torch.Tensor | None,
               tensor: torch.Tensor | None) -> bool:
    if copy is None or tensor is None:
        return copy is None and tensor is None
    if isinstance(copy, native.Snapshot):
        return native.same_bytes(tensor, copy)
    return (copy.shape == tensor.shape and copy.dtype == tensor.dtype
            and copy.device == tensor.device and bool(torch.equal(copy, tensor)))


def _convex_transposed(upsampler: nn.ConvTranspose2d) -> bool:
    """:func:`convex_upsampler` for a transposed convolution, uncached."""
    if upsampler.bias is not None and bool(upsampler.bias.detach().ne(0).any()):
        return False
    weight = upsampler.weight.detach()
    classes = upsampler.out_channels
    if upsampler.in_channels != classes:
        return False
    if upsampler.groups == classes and weight.shape[1] == 1:
        kernels = weight[:, 0]
    elif upsampler.groups == 1:
        eye = torch.eye(classes, dtype=torch.bool, device=weight.device)
        if bool(weight[~eye].ne(0).any()):
            return False
        kernels = weight[eye]
    else:
        return False
    return bool((kernels >= 0).all()) and bool((kernels == kernels[:1]).all())


@functools.lru_cache(maxsize=64)
def _bands(size: int, offset: int, *, kernel: int, stride: int, padding: int,
           input_size: int) -> np.ndarray:
    """:func:`fcnkit.arith.tiling.output_bands`, cached and read-only."""
    bands = output_bands(size, offset, kernel=kernel, stride=stride, padding=padding,
                         input_size=input_size)
    bands.setflags(write=False)  # cached: shared between calls
    return bands


def _window_extrema(scores: torch.Tensor, bands: np.ndarray,
                    dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per band, the max and min of ``scores`` over the band's input rows along ``dim``.

    Windows of at most two rows (every bilinear recipe: kernel ≤ 2·stride) are read off
    the pairwise maxima of neighbouring rows, edge rows paired with themselves; longer
    windows are reduced one band at a time.
    """
    first, last = bands[:, 2], bands[:, 3]
    if int((last - first).max()) <= 2:
        edge_lo, edge_hi = scores.narrow(dim, 0, 1), scores.narrow(dim, -1, 1)
        padded = torch.cat([edge_lo, scores, edge_hi], dim)  # rows -1 .. n (edges repeated)
        n = padded.shape[dim] - 1
        a, b = padded.narrow(dim, 0, n), padded.narrow(dim, 1, n)  # window j: rows j-1, j
        # Window j holds rows j-1 and j (clamped): a span [i, i+2) is window i+1; the top
        # span [0, 1) is window 0 (row 0 twice); a bottom span [n-1, n) is window n (row
        # n-1 twice); any other one-row span [i, i+1) takes window i+1, a superset, which
        # only weakens the test.
        index = np.where((last - first == 1) & (first == 0), 0, first + 1)
        index = torch.as_tensor(index, device=scores.device)
        return (torch.maximum(a, b).index_select(dim, index),
                torch.minimum(a, b).index_select(dim, index))
    highs, lows = [], []
    for f, l in zip(first.tolist(), last.tolist()):
        window = scores.narrow(dim, f, l - f)
        highs.append(window.amax(dim))
        lows.append(window.amin(dim))
    return torch.stack(highs, dim), torch.stack(lows, dim)


def _window_pick(tensor: torch.Tensor, dim: int, bands: np.ndarray,
                 shift: int) -> torch.Tensor:
    """Per band along ``dim`` of an edge-replicated map (one extra row each side), row
    ``shift`` (0 or 1) of the band's 2-row window
    (:func:`fcnkit.arith.tiling.band_windows`)."""
    index = band_windows(bands) + shift
    if np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return tensor.narrow(dim, int(index[0]), len(index))  # the usual case
    return tensor.index_select(dim, torch.as_tensor(index, device=tensor.device))


def _two_row_windows(row_bands: np.ndarray, col_bands: np.ndarray) -> bool:
    """Every cell's window has at most 2 rows and 2 columns (every bilinear recipe:
    kernel ≤ 2·stride)."""
    return max(int((b[:, 3] - b[:, 2]).max()) for b in (row_bands, col_bands)) <= 2


def _pairwise_corners(scores: torch.Tensor, row_bands: np.ndarray,
                      col_bands: np.ndarray) -> list[torch.Tensor]:
    """The four scores of each cell's window when every window has at most 2 rows and 2
    columns: ``(N, C, Bh, Bw)`` each, top-left, top-right, bottom-left, bottom-right
    (window j holds rows j − 1 and j of the edge-replicated map, see
    :func:`_window_extrema`: a one-row edge window is its row twice)."""
    # (replicate padding returns NCHW; class reductions want the classes contiguous)
    padded = F.pad(scores, (1, 1, 1, 1), mode="replicate").contiguous(
        memory_format=torch.channels_last)
    return [_window_pick(_window_pick(padded, 2, row_bands, dy), 3, col_bands, dx)
            for dy in (0, 1) for dx in (0, 1)]


def prune_cells(
    scores: torch.Tensor, row_bands: np.ndarray, col_bands: np.ndarray, *,
    keep_survivors: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pruning test over cells (row band × column band).

    Args:
        scores: ``(N, C, h, w)`` low-resolution scores.
        row_bands, col_bands: bands as from ``_bands``.

    Returns:
        ``(label, sure)``: ``(N, Bh, Bw)`` int64, the only surviving class of each cell,
        and bool, True where exactly one class survives; with ``keep_survivors``,
        ``(label, survives)``: the ``(N, C, Bh, Bw)`` bool mask of the classes that
        survive in each cell.
    """
    corners = None
    if _two_row_windows(row_bands, col_bands):
        corners = _pairwise_corners(scores, row_bands, col_bands)
        # (outputs in channels_last: the class reductions below read classes contiguously)
        high = torch.empty_like(corners[0], memory_format=torch.channels_last)
        low = torch.empty_like(high)
        torch.maximum(torch.maximum(corners[0], corners[1]),
                      torch.maximum(corners[2], corners[3]), out=high)
        torch.minimum(torch.minimum(corners[0], corners[1]),
                      torch.minimum(corners[2], corners[3]), out=low)
    else:
        high, low = _window_extrema(scores, row_bands, 2)
        high = _window_extrema(high, col_bands, 3)[0]
        low = _window_extrema(low, col_bands, 3)[1]
    floor = low.amax(1, keepdim=True)  # max over classes of the window minimum
    # One scale for the whole map (its largest |score|): a margin at least as wide as
    # each window's own (so at least as safe), one reduction instead of two per cell.
    tolerance = MARGIN * (1.0 + scores.abs().amax())
    survives = high >= floor - tolerance  # NaN: False for all → in doubt
    if corners is not None and scores.shape[1] > 2 and not bool((survives.sum(1) == 1).all()):
        # Where two regions meet, every class's window minimum is at the level of an
        # absent class, so the floor keeps every class. A second test (run only when some
        # cell is still in doubt): with a, b the two classes of highest window maximum,
        # class c cannot win anywhere in the cell if s_a + s_b > 2 s_c at all four
        # corners, since the blends then satisfy max(out_a, out_b) ≥ (out_a + out_b) / 2
        # > out_c (same non-negative weights for every class). The margin covers the
        # rounding of the three blends.
        first = high.argmax(1, keepdim=True)  # classes contiguous: one pass (channels_last)
        others = high.clone(memory_format=torch.channels_last).scatter_(1, first, float("-inf"))
        pair = torch.cat([first, others.argmax(1, keepdim=True)], 1)
        beaten = None
        for corner in corners:
            lead = corner.gather(1, pair).sum(1, keepdim=True) - 2 * corner
            beaten = lead if beaten is None else torch.minimum(beaten, lead)
        assert beaten is not None
        survives &= ~(beaten > 4 * tolerance)
    # The class with the highest window maximum always survives (its maximum is at least
    # the floor, and no class beats it at all four corners), so where one class survives
    # it is that class.
    label = high.argmax(1)
    if keep_survivors:
        return label, survives
    return label, survives.sum(1) == 1


def labels_by_pruning(model: nn.Module, x: torch.Tensor, *,
                      stats: dict[str, int] | None = None) -> torch.Tensor:
    """``model(x).argmax(1)`` from the coarse scores, per-pixel work only in doubtful cells.

    Args:
        model: a model with the coarse-score protocol (``coarse_scores(x)``,
            ``final_upsampler``, ``final_offset``; see
            :func:`fcnkit.inference.labels.labels_by_strips`) whose ``final_upsampler``
            passes :func:`convex_upsampler`.
        x: normalised ``(N, 3, H, W)`` images.
        stats: if given, counts over the batch are added to it: ``cells``, ``doubtful``
            (cells with several candidates, labelled per pixel) and ``exact`` (doubtful
            cells the candidates' blend could not decide, computed by the model's own
            upsampler).

    Returns:
        ``(N, H, W)`` int64 class indices, equal to ``model(x).argmax(1)``.
    """
    if not convex_upsampler(model.final_upsampler):
        raise ValueError("labels_by_pruning needs a bilinear (convex) final upsampler")
    labels = labels_from_scores(model, model.coarse_scores(x), x.shape[-2:], stats=stats)
    assert labels is not None  # no max_work: never declined
    return labels


class _Grid(NamedTuple):
    """The cells of one geometry (image size, crop offset, coarse size, upsampler):
    output bands per axis, each output row's and column's band, and for 2×2 windows
    the cells' corner pixels (None otherwise)."""

    rows: np.ndarray
    cols: np.ndarray
    row_band: torch.Tensor
    col_band: torch.Tensor
    corners: torch.Tensor | None


@functools.lru_cache(maxsize=64)
def _grid(height: int, width: int, top: int, left: int, in_h: int, in_w: int, kernel: int,
          stride: int, padding: int) -> _Grid:
    geometry = {"kernel": kernel, "stride": stride, "padding": padding}
    rows = _bands(height, top, input_size=in_h, **geometry)
    cols = _bands(width, left, input_size=in_w, **geometry)
    corners = (torch.as_tensor(window_corner_pixels(rows, cols, in_h, in_w))
               if _two_row_windows(rows, cols) else None)
    return _Grid(rows, cols, torch.as_tensor(band_of_rows(rows)),
                 torch.as_tensor(band_of_rows(cols)), corners)


def labels_from_scores(model: nn.Module, scores: torch.Tensor,
                       size: tuple[int, int] | torch.Size, *,
                       stats: dict[str, int] | None = None,
                       max_work: float | None = float("inf")) -> torch.Tensor | None:
    """:func:`labels_by_pruning` on coarse scores already computed (``model.coarse_scores``)
    for images of ``size`` = ``(H, W)``.

    With a finite ``max_work``, returns None when the per-pixel work left — pixels of the
    doubtful cells × their candidate classes — exceeds ``max_work`` × the C × H × W of the
    whole map's argmax (noisy score maps, e.g. random weights, leave most cells in doubt
    with several candidates): that work then costs more than the whole map's
    (docs/benchmarks.md), and the caller does the latter. ``max_work=None`` takes the
    limit of the implementation that runs: :data:`COMPILED_DENSE_WORK` for the compiled
    labels stage (:mod:`fcnkit.inference.native`), :data:`DENSE_WORK` for torch's.

    Returns None as well when the model's last upsampling is not convex
    (:func:`convex_upsampler`: a learned deconvolution), whose labels cannot be pruned, and
    for a transposed convolution while oneDNN may run float32 convolutions in bf16 or tf32
    (:func:`_reduced_conv_precision`).

    The whole-cell test and the blend of the candidates keep a margin sized for float32
    rounding; scores in a lower precision (bf16 or fp16 autocast) would need a margin so
    wide that nothing is pruned, and are refused (use labels by strips for them).
    """
    if scores.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"labels_from_scores needs float32 scores, got {scores.dtype}")
    upsampler = model.final_upsampler
    convex, factors = _convex_facts(upsampler)
    if not convex or (isinstance(upsampler, nn.ConvTranspose2d) and _reduced_conv_precision()):
        return None
    kernel, stride, padding = (int(upsampler.kernel_size[0]), int(upsampler.stride[0]),
                               int(upsampler.padding[0]))
    top, left = (int(v) for v in model.final_offset)
    height, width = int(size[0]), int(size[1])
    geometry = (height, width, top, left, int(scores.shape[-2]), int(scores.shape[-1]),
                kernel, stride, padding)
    if scores.device.type == "cpu" and scores.dtype == torch.float32:
        labels = _labels_native(model, scores, geometry, factors, stats=stats,
                                max_work=COMPILED_DENSE_WORK if max_work is None else max_work)
        if labels is not _NOT_NATIVE:
            return labels  # type: ignore[return-value]
    return _labels_by_torch_ops(upsampler, scores, geometry, stats=stats,
                                max_work=DENSE_WORK if max_work is None else max_work)


#: torch's reader of the fp32 precision settings (a private function, eight times faster
#: than the ``torch.backends`` properties, which call it); the properties where absent.
_precision_getter = getattr(torch._C, "_get_fp32_precision_getter", None)


def _reduced_conv_precision() -> bool:
    """True when oneDNN may run float32 convolutions in a lower precision
    (``torch.backends.mkldnn.conv.fp32_precision`` "bf16" or "tf32", set there or
    inherited from ``torch.backends.mkldnn`` or ``torch.backends``): the margins above
    bound float32 rounding only, so such a model's labels take the whole map."""
    if _precision_getter is not None:
        levels = (_precision_getter("mkldnn", "conv"), _precision_getter("mkldnn", "all"),
                  _precision_getter("generic", "all"))
    else:
        levels = (torch.backends.mkldnn.conv.fp32_precision,
                  torch.backends.mkldnn.fp32_precision, torch.backends.fp32_precision)
    for precision in levels:
        if precision != "none":
            return precision != "ieee"
    return False


def _labels_by_torch_ops(upsampler: nn.Module, scores: torch.Tensor,
                         geometry: tuple[int, ...], *, stats: dict[str, int] | None,
                         max_work: float) -> torch.Tensor | None:
    """:func:`labels_from_scores` by torch operations (any window size, any device)."""
    height, width, top, left = geometry[:4]
    grid = _grid(*geometry)
    rows, cols = grid.rows, grid.cols
    # Classes contiguous per cell: the pools and class reductions below are several
    # times faster so, and the blend gathers whole score vectors (free when the model
    # runs channels_last, as the default backend does).
    # The exact path reruns the model's upsampler on the scores as the model made them:
    # another memory layout takes another kernel, whose rounding can break exact ties
    # the other way.
    model_scores = scores
    scores = scores.contiguous(memory_format=torch.channels_last)
    bound = scores.abs().amax()  # the map's largest |score|: NaN or ∞ if any score is
    largest = float(bound)
    if not math.isfinite(largest):
        return _model_tail_labels(upsampler, model_scores, (top, left), (height, width))
    # One margin scale for the whole map (its largest |score|): at least as wide as each
    # window's own, so at least as safe.
    tolerance = MARGIN * (1.0 + largest)
    if grid.corners is not None:
        label, doubtful, survivors, scale = _prune_by_corners(scores, grid, tolerance)
    else:
        label, survives = prune_cells(scores, rows, cols, keep_survivors=True)
        doubtful = (survives.sum(1) != 1).view(-1).nonzero().squeeze(1)
        survivors = survives.permute(0, 2, 3, 1).reshape(-1, scores.shape[1])[doubtful]
        scale = bound.expand(len(doubtful))  # the map's: at least each window's
    n, cells_h, cells_w = label.shape
    cells = n * cells_h * cells_w
    pairs = int(survivors.sum())  # (cell, class) pairs in doubt
    _count(stats, cells=cells, doubtful=len(doubtful), pairs=pairs)
    if pairs * height * width / cells > max_work * scores.shape[1] * n * height * width:
        return None
    # Cells' labels to pixels: columns on the cell map, then whole rows (2.2x rows first);
    # the buffer's spare last slot takes the blend's pixels beyond a cell's edge.
    buffer = torch.empty(n * height * width + 1, dtype=torch.int64, device=label.device)
    labels = buffer[:-1].view(n, height, width)
    row_band, col_band = grid.row_band.to(label.device), grid.col_band.to(label.device)
    torch.index_select(label.index_select(2, col_band), 1, row_band, out=labels)
    exact = doubtful
    if len(doubtful):
        tables = _tap_tables(upsampler, rows, cols, top, left, scores.shape[-2:])
        if tables is not None:
            exact = _blend_doubtful(scores, survivors, (cells_h, cells_w), buffer,
                                    (height, width), doubtful, (rows, cols), tables, scale)
    _count(stats, exact=len(exact))
    if len(exact) and not _exact_patches(upsampler, model_scores, labels, exact.tolist(),
                                         (rows, cols), (top, left)):
        band_rows = (exact // cells_w % cells_h).cpu().numpy()
        _exact_rows(upsampler, model_scores, labels, band_rows, rows, (top, left))
    return labels


def _model_tail_labels(upsampler: nn.Module, scores: torch.Tensor, offset: tuple[int, int],
                       size: tuple[int, int]) -> torch.Tensor:
    """The labels of a map with a NaN or infinite score, from the model's own tail: the
    pruning's bounds need finite scores (the model blends an infinity even with weight 0,
    and 0 · ∞ is NaN), so such maps (a diverged model) are labelled as the model does."""
    (top, left), (height, width) = offset, size
    return upsampler(scores)[:, :, top : top + height, left : left + width].argmax(1)


def _count(stats: dict[str, int] | None, **counts: int) -> None:
    """Add ``counts`` to the caller's ``stats`` (see :func:`labels_by_pruning`), if any."""
    if stats is not None:
        for name, value in counts.items():
            stats[name] = stats.get(name, 0) + value


#: :func:`_labels_native`'s answer when the compiled stage does not apply.
_NOT_NATIVE = object()


def _labels_native(model: nn.Module, scores: torch.Tensor, geometry: tuple[int, ...],
                   factors: _Factors | None, *, stats: dict[str, int] | None,
                   max_work: float) -> object:
    """:func:`labels_from_scores` for 2×2 windows by the compiled labels stage
    (:mod:`fcnkit.inference.native`): the same tests, margins and exact path. Returns
    :data:`_NOT_NATIVE` when it does not apply (no compiler, windows larger than 2×2, a
    kernel that does not factor)."""
    library = native.load()
    if library is None:
        return _NOT_NATIVE
    upsampler = model.final_upsampler
    plan = _plan_for(upsampler, factors, geometry)
    if plan is None:
        return _NOT_NATIVE
    top, left = geometry[2:4]
    # The C code reads classes contiguously per pixel (free when the model runs
    # channels_last); the exact path gets the scores as the model made them.
    by_pixel = scores.contiguous(memory_format=torch.channels_last)
    # Cells the blend cannot decide are labelled in C from the model's rounding, when it
    # is known for this geometry (:func:`_emulation`).
    key = _emulation_key(factors, scores, geometry)
    known = _EMULATIONS.get(key)
    emulation = known[1] if known is not None and known[0] is factors else None
    result = native.labels_2x2(library, by_pixel, plan, max_work=max_work,
                               emulation=emulation)
    if result.status == native.NONFINITE:
        return _model_tail_labels(upsampler, scores, (top, left), plan.size)
    cells, doubtful, pairs, undecided, emulated = result.stats
    _count(stats, cells=cells, doubtful=doubtful, pairs=pairs)
    if result.status == native.DECLINED:
        return None
    _count(stats, exact=undecided + emulated)
    if emulated:
        _count(stats, emulated=emulated)
    if undecided:
        grid = _grid(*geometry)
        if result.undecided is None:  # more than native.UNDECIDED_ROOM: every row
            band_rows = np.arange(len(grid.rows))
        elif emulation is None and _emulated(library, upsampler, factors, scores, by_pixel,
                                             plan, geometry, result):
            _count(stats, emulated=undecided)
            return result.labels
        elif _exact_patches(upsampler, scores, result.labels, result.undecided,
                            (grid.rows, grid.cols), (top, left)):
            return result.labels
        else:
            band_rows = np.asarray(result.undecided) // len(grid.cols) % len(grid.rows)
        _exact_rows(upsampler, scores, result.labels, band_rows, grid.rows, (top, left))
    return result.labels


#: Per kernel and geometry, the compiled stage's plan (:func:`_plan_for`), with the kernel
#: facts it was built for; bounded.
_PLANS: dict[tuple[int, tuple[int, ...]], tuple[object, native.Plan | None]] = {}


def _plan_for(upsampler: nn.Module, factors: _Factors | None, geometry: tuple[int, ...]
              ) -> native.Plan | None:
    """:func:`_native_plan` for this upsampler's blend spec (:func:`_spec_of`), looked up
    by the identity of its kernel facts (new whenever its weight changed; None for
    ``F.interpolate``, whose spec the geometry fixes) and the geometry: the spec's
    nested tuples are not hashed again for every image."""
    key = (id(factors), geometry)
    known = _PLANS.get(key)
    if known is not None and known[0] is factors:
        return known[1]
    spec = _spec_of(upsampler, factors, geometry[4:6])
    plan = _native_plan(geometry, spec) if spec is not None else None
    if len(_PLANS) >= _KEYS_KEPT:
        _PLANS.clear()
    _PLANS[key] = (factors, plan)
    return plan


#: Sightings of a geometry with undecided cells before its rounding is calibrated
#: (:func:`_emulation`): the first ones take the exact path, so images whose sizes never
#: repeat (a dataset of varied sizes) never pay a calibration.
_CALIBRATE_AFTER = 1
#: The roundings found by :func:`_emulation` (None: no variant reproduces the model's),
#: with the kernel facts they were found for, and how often each key has been seen
#: undecided before that; each bounded.
_EMULATIONS: dict[tuple[object, ...], tuple[object, native.Emulation | None]] = {}
_SIGHTINGS: dict[tuple[object, ...], tuple[object, int]] = {}
_KEYS_KEPT = 256


def _emulation_key(factors: _Factors | None, scores: torch.Tensor,
                   geometry: tuple[int, ...]) -> tuple[object, ...]:
    """What an emulated rounding is found for (:func:`_emulation`): the upsampler's kernel
    (``factors`` is a new object whenever its weight changed, so the key holds its
    identity instead of reading the kernel's bytes each call), the geometry (sizes, crop,
    kernel), the scores' batch size and memory layout (their strides also give the
    classes), and the thread count."""
    return (id(factors), geometry, scores.shape[0], scores.stride(), torch.get_num_threads())


def _emulated(library: ctypes.CDLL, upsampler: nn.Module, factors: _Factors | None,
              scores: torch.Tensor, by_pixel: torch.Tensor, plan: native.Plan,
              geometry: tuple[int, ...], result: native.NativeResult) -> bool:
    """Label the undecided cells of ``result`` from the model's own rounding, emulated
    (``_labels.c``: the order and fusing of a transposed convolution's four products,
    found by :func:`_emulation`, which may calibrate it now), instead of running the
    upsampler on them; False when no emulation is known for this geometry or a cell's
    scores are outside the range where it is exact (the exact path rewrites them all)."""
    emulation = _emulation(library, upsampler, factors, scores, geometry)
    return emulation is not None and native.emulate_cells(
        library, plan, by_pixel, emulation, result.undecided or [], result.labels)


def _emulation(library: ctypes.CDLL, upsampler: nn.Module, factors: _Factors | None,
               scores: torch.Tensor, geometry: tuple[int, ...]) -> native.Emulation | None:
    """How the model's transposed convolution rounds each score, for scores of this shape
    and memory layout on this many threads (:func:`_emulation_key`): the variant of
    ``_labels.c`` that reproduces every float32 score of the upsampler's output on a
    random probe map of the same shape and layout, in the crop the labels cover (about
    30 ms for 21 × 40 × 60 scores, once per key, after :data:`_CALIBRATE_AFTER`
    sightings); None when no variant does (another algorithm, reduced-precision
    convolutions) or the layout is not dense.

    Why a probe decides it: the rounding of a sum of four products depends on its order
    and fusing only, and a wrong variant differs from the model's within the first few
    hundred scores; the probe covers every output position and class of the geometry,
    borders and vector tails included. Oracles: ``tests/inference/test_inference_native.py``
    (labels against ``model(x).argmax(1)`` on exact ties and near-ties; an upsampler that
    rounds otherwise is refused)."""
    if (not isinstance(upsampler, nn.ConvTranspose2d) or scores.device.type != "cpu"
            or not (scores.is_contiguous()
                    or scores.is_contiguous(memory_format=torch.channels_last))):
        return None
    size, offset = geometry[:2], geometry[2:4]
    key = _emulation_key(factors, scores, geometry)
    known = _EMULATIONS.get(key)
    if known is not None and known[0] is factors:
        return known[1]
    sighting = _SIGHTINGS.get(key)
    seen = sighting[1] if sighting is not None and sighting[0] is factors else 0
    if seen < _CALIBRATE_AFTER:
        if len(_SIGHTINGS) >= _KEYS_KEPT:
            _SIGHTINGS.clear()
        _SIGHTINGS[key] = (factors, seen + 1)
        return None
    kernel = np.ascontiguousarray(upsampler.weight.detach()[0, 0].cpu().numpy(),
                                  dtype=np.float32)
    deconv = (*upsampler.kernel_size, *upsampler.stride, *upsampler.padding, *offset)
    probe = torch.empty_like(scores).normal_(generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = upsampler(probe)
    found = None
    if out.dtype == torch.float32 and out.device.type == "cpu":
        probe = probe.contiguous(memory_format=torch.channels_last)
        for variant in range(native.VARIANTS):
            emulation = native.Emulation(deconv, kernel, variant)
            if native.emulation_matches(library, probe, out, (size[0], size[1]),
                                        emulation) == 1:
                found = emulation
                break
    if len(_EMULATIONS) >= _KEYS_KEPT:
        _EMULATIONS.clear()
    _EMULATIONS[key] = (factors, found)
    return found


def _prune_by_corners(scores: torch.Tensor, grid: _Grid, tolerance: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pruning for 2×2 windows in two stages; each cell's label, and the doubtful
    cells (flat indices) with their surviving classes (``(D, C)`` bool) and their
    window's largest |score| (``(D,)``).

    1. Per low-resolution pixel, its best class and how many classes come within
       ``tolerance`` of it. A cell whose four corners have the same best class a, each
       with no other class within ``tolerance``, is a's: for every other class c,
       ``out_a − out_c = Σ_j w_j (s_a(j) − s_c(j)) > 0`` with the same non-negative
       weights, by far more than float32 rounding of either sum could change. (Two
       reductions over the map instead of per-class tests over every cell: the interior
       of a region costs nothing more.)
    2. The other cells only: the floor and corner tests of :func:`prune_cells` on their
       four corners' score vectors.
    """
    n, classes, height, width = scores.shape
    assert grid.corners is not None
    corner = grid.corners.to(scores.device)
    if n > 1:  # (4, N · cells): the images one after another
        offsets = torch.arange(n, device=scores.device) * (height * width)
        corner = (corner[:, None, :] + offsets[:, None]).reshape(4, -1)
    label, sure = corners_agree(scores, corner, tolerance)
    label = label.view(n, len(grid.rows), len(grid.cols))
    unsure = (~sure).nonzero().squeeze(1)
    if not len(unsure):
        return (label, unsure, torch.zeros(0, classes, dtype=torch.bool, device=label.device),
                torch.zeros(0, dtype=scores.dtype, device=label.device))
    # Stage 2: each unsure cell's four corners, (4, D, C), from the scores by pixel.
    by_pixel = scores.permute(0, 2, 3, 1).reshape(-1, classes)  # a view if channels_last
    corners = by_pixel.index_select(0, corner[:, unsure].reshape(-1)).view(4, -1, classes)
    high = corners.amax(0)
    survives = high >= corners.amin(0).amax(1, keepdim=True) - tolerance  # the floor test
    first = high.argmax(1, keepdim=True)
    if classes > 2:  # the corner test (prune_cells)
        second = high.scatter(1, first, float("-inf")).argmax(1, keepdim=True)
        pair = torch.cat([first, second], 1).expand(4, -1, -1)
        beaten = (corners.gather(2, pair).sum(2, keepdim=True) - 2 * corners).amin(0)
        survives &= ~(beaten > 4 * tolerance)
    single = survives.sum(1) == 1  # the class of highest window maximum always survives
    label.view(-1)[unsure[single]] = first[single, 0]
    several = ~single
    scale = corners.abs().amax(2).amax(0)[several]
    return label, unsure[several], survives[several], scale


def corners_agree(scores: torch.Tensor, corner: torch.Tensor, tolerance: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 1 of :func:`_prune_by_corners`: per cell (``corner``: ``(4, cells)`` flat
    pixel indices of its corners), the best class of its corners and whether the cell is
    sure to be that class's (flat, ``(N · cells,)``; the label is meaningful where sure)."""
    classes = scores.shape[1]
    top, best = scores.max(1)
    near = (scores >= (top - tolerance).unsqueeze(1)).sum(1)  # the top class and its rivals
    # One key per pixel, rivals × C + best class: a cell is sure when its four corners
    # hold the same key, below 2C (no rival but the best class itself).
    keys = (near * classes + best).take(corner)  # (4, N · cells)
    high = keys.amax(0)
    # (min, not amin: torch 2.14's int64 amin over a leading dim is ~60× slower)
    sure = (high == keys.min(0).values) & (high < 2 * classes)
    return high - classes, sure


def _tap_tables(upsampler: nn.Module, rows: np.ndarray, cols: np.ndarray, top: int,
                left: int, input_size: torch.Size
                ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Row and column weight tables (:func:`fcnkit.arith.tiling.band_weights`) of a
    convex upsampler and the relative tolerance of a blend with them, or None if its
    kernel does not factor into a row kernel times a column kernel.

    The tolerance bounds |blend − model's score| / max |s| (the window's largest score):
    each side sums at most 4 products of weights ≤ 1 in float32, within a few ulps
    (u = 2⁻²⁴) of the exact sum, and the weights themselves differ by at most:
    - a transposed convolution: the kernel's distance from the outer product of its row
      and column sums (0 up to rounding for the bilinear kernel), 4 taps of it;
    - ``F.interpolate``: nothing when the factor is a power of two (PyTorch's source index
      ``(o + ½)·(1/f) − ½`` is then exact in float32); otherwise 1/f is rounded, and the
      weight λ is off by up to ~2u·(index + 1), up to ``input size + 1``.
    64u covers the arithmetic ~8× over; the weight terms are added at 4× their bound.
    """
    spec = _blend_spec(upsampler, input_size)
    if spec is None:
        return None
    return _axis_tables(spec, rows, cols, top, left, input_size)


_Specs = tuple[tuple[str, tuple[float, ...], int, int], ...]


def _blend_spec(upsampler: nn.Module, input_size: torch.Size | tuple[int, int]
                ) -> tuple[_Specs, float] | None:
    """The row and column specs of :func:`_tap_tables` and its relative tolerance, or
    None if the kernel does not factor."""
    return _spec_of(upsampler, _convex_facts(upsampler)[1], input_size)


def _spec_of(upsampler: nn.Module, factors: _Factors | None,
             input_size: torch.Size | tuple[int, int]) -> tuple[_Specs, float] | None:
    """:func:`_blend_spec` with the kernel's factors already known."""
    ulp = float(np.finfo(np.float32).eps) / 2
    relative = _BLEND_ULPS * ulp
    if isinstance(upsampler, Interpolate):
        specs: _Specs = (("interpolate", (float(upsampler.factor),), 0, 0),) * 2
        factor = int(upsampler.factor)
        if factor & (factor - 1):
            relative += 4 * 2 * ulp * (max(int(n) for n in input_size) + 1) * 2
    else:
        if factors is None:
            return None
        specs, distance = tuple(factors[0]), factors[1]
        relative += 4 * 4 * distance
    return specs, relative


def _axis_tables(spec: tuple[_Specs, float], rows: np.ndarray, cols: np.ndarray, top: int,
                 left: int, input_size: torch.Size | tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """:func:`_tap_tables` from :func:`_blend_spec`."""
    specs, relative = spec
    tables = []
    for (kind, taps, stride, padding), bands, offset, n in zip(
            specs, (rows, cols), (top, left), input_size):
        size = int(bands[-1, 1])
        table = _cached_axis_weights(kind, taps, stride, padding, size, offset, int(n),
                                     bands.tobytes(), bands.shape)
        if table is None:
            return None
        tables.append(table)
    return tables[0], tables[1], relative


@functools.lru_cache(maxsize=64)
def _native_plan(geometry: tuple[int, ...], spec: tuple[_Specs, float]
                 ) -> native.Plan | None:
    """Everything the compiled labels stage needs that depends only on the geometry
    (:func:`_grid`'s arguments) and the upsampler's blend spec, built once."""
    height, width, top, left, in_h, in_w = geometry[:6]
    grid = _grid(*geometry)
    tables = _axis_tables(spec, grid.rows, grid.cols, top, left, (in_h, in_w))
    if grid.corners is None or tables is None:
        return None
    return native.plan(grid.corners, (grid.rows, grid.cols), tables[:2], (in_h, in_w),
                       margin=MARGIN, relative=tables[2], tiny=_TINY)


def _factor_kernel(upsampler: nn.ConvTranspose2d) -> _Factors | None:
    """The row and column specs of a convex transposed convolution's kernel (class 0's:
    all are equal) and the kernel's distance from their outer product, or None if it does
    not factor (then the blend cannot be trusted). Uncached: :func:`_upsampler_facts`
    remembers it per module."""
    weight = upsampler.weight.detach()
    kernel = weight[0, 0].double().cpu().numpy()
    total = kernel.sum()
    result: tuple[list[tuple[str, tuple[float, ...], int, int]], float] | None = None
    if total > 0:
        row_kernel, col_kernel = kernel.sum(1), kernel.sum(0) / total
        # Bilinear kernels are outer products; anything else takes the exact path.
        distance = float(np.abs(np.outer(row_kernel, col_kernel) - kernel).max())
        if distance <= 1e-6 * kernel.max():
            result = ([("deconv", tuple(row_kernel.tolist()), int(upsampler.stride[0]),
                        int(upsampler.padding[0])),
                       ("deconv", tuple(col_kernel.tolist()), int(upsampler.stride[1]),
                        int(upsampler.padding[1]))], distance)
    return result


@functools.lru_cache(maxsize=64)
def _cached_axis_weights(kind: str, taps: tuple[float, ...], stride: int, padding: int,
                         size: int, offset: int, input_size: int, bands_bytes: bytes,
                         bands_shape: tuple[int, ...]) -> np.ndarray | None:
    bands = np.frombuffer(bands_bytes, dtype=np.int64).reshape(bands_shape)
    return band_weights(kind, taps, stride, padding, size, offset, input_size, bands)


#: Written for a pixel position beyond its cell's band (cells are padded to the longest
#: band): flat indices at or beyond it are sent to the label buffer's spare slot.
_BEYOND = 2**40


@functools.lru_cache(maxsize=64)
def _band_axis(bands_bytes: bytes, bands_shape: tuple[int, ...], limit: int, scale: int,
               weights_bytes: bytes, weights_shape: tuple[int, ...]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """One axis of every band, for :func:`_blend_doubtful`:

    * the input rows of its window (clamped to ``limit``), ``(B, T)``;
    * its output rows × ``scale``, padded to the longest band with :data:`_BEYOND`,
      ``(B, S)``;
    * its weights on the window's rows (``weights``: the table of
      :func:`fcnkit.arith.tiling.band_weights`) and which of its S rows are real, as an
      index ``(B,)`` into the distinct patterns ``(P, T, S)`` and ``(P, S)`` (most bands
      share one: every interior band of an integer-factor upsampling).
    """
    bands = np.frombuffer(bands_bytes, dtype=np.int64).reshape(bands_shape)
    weights = np.frombuffer(weights_bytes, dtype=np.float64).reshape(weights_shape)
    span = int((bands[:, 1] - bands[:, 0]).max())
    taps = weights.shape[1]
    inputs = np.minimum(bands[:, 2, None] + np.arange(taps), limit - 1)
    outputs = bands[:, 0, None] + np.arange(span)
    valid = outputs < bands[:, 1, None]
    outputs = np.minimum(outputs, int(bands[-1, 1]) - 1)
    per_band = np.where(valid[:, :, None], weights[outputs], 0.0).transpose(0, 2, 1)
    keys = np.concatenate([per_band.reshape(len(bands), -1), valid], axis=1)
    _, first, pattern = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return (torch.as_tensor(inputs), torch.as_tensor(np.where(valid, outputs * scale, _BEYOND)),
            torch.as_tensor(pattern.reshape(-1)), per_band[first], valid[first])


@functools.lru_cache(maxsize=64)
def _cell_tables(row_patterns: bytes, row_valid: bytes, col_patterns: bytes, col_valid: bytes,
                 row_shape: tuple[int, ...], col_shape: tuple[int, ...]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each pair of row and column patterns (:func:`_band_axis`): the weight of
    window score (t, u) on pixel (y, x) of a cell, ``(Pr · Pc, T · U, Y · X)`` float32
    (outer products), and which pixels are real, ``(Pr · Pc, Y · X)``."""
    rows = np.frombuffer(row_patterns, dtype=np.float64).reshape(row_shape)
    cols = np.frombuffer(col_patterns, dtype=np.float64).reshape(col_shape)
    valid_r = np.frombuffer(row_valid, dtype=bool).reshape(len(rows), -1)
    valid_c = np.frombuffer(col_valid, dtype=bool).reshape(len(cols), -1)
    pairs = len(rows) * len(cols)
    table = np.einsum("aty,bux->abtuyx", rows, cols).reshape(
        pairs, rows.shape[1] * cols.shape[1], -1)
    valid = (valid_r[:, None, :, None] & valid_c[None, :, None, :]).reshape(pairs, -1)
    return torch.as_tensor(table, dtype=torch.float32), torch.as_tensor(valid)


def _blend_doubtful(scores: torch.Tensor, survivors: torch.Tensor, cells_hw: tuple[int, int],
                    buffer: torch.Tensor, size: tuple[int, int], doubtful: torch.Tensor,
                    bands: tuple[np.ndarray, np.ndarray],
                    tables: tuple[np.ndarray, np.ndarray, float], scale: torch.Tensor
                    ) -> torch.Tensor:
    """Label the pixels of the doubtful cells from their candidates only, all cells at once.

    A pixel's score of class c is ``Σ_t Σ_u wy(t) · wx(u) · s_c(first + t, first + u)`` over
    the cell's window (:func:`fcnkit.arith.tiling.band_weights`), computed here for the K
    surviving classes of each cell instead of the C classes of the whole map. It is not the
    model's rounding of that sum, so a pixel is decided only when no other candidate comes
    within the tolerance of :func:`_tap_tables` (relative to ``scale``, the largest |score|
    of each cell's window, finite) of its best one: the model's score and this one differ by
    less, so the model's argmax is the same class. Cells with a pixel inside the tolerance
    (near-ties, exact ties) are left to the exact path.

    Args:
        survivors: ``(D, C)`` bool, the candidate classes of each doubtful cell.
        scale: ``(D,)``, the largest |score| in each doubtful cell's window.
        cells_hw: ``(Bh, Bw)``, cells per image.
        buffer: the flat labels, ``N·H·W`` pixels and one spare slot; the cells' pixels
            are written into it.
        size: ``(H, W)``.
        doubtful: flat indices of the doubtful cells in ``(N, Bh, Bw)``.

    Returns:
        The flat indices of the cells this could not decide.
    """
    device = scores.device
    n, classes, in_h, in_w = scores.shape
    (cells_h, cells_w), (height, width) = cells_hw, size
    in_r, out_r, pattern_r, rows, valid_r = _band_axis(
        bands[0].tobytes(), bands[0].shape, in_h, width, tables[0].tobytes(), tables[0].shape)
    in_c, out_c, pattern_c, cols, valid_c = _band_axis(
        bands[1].tobytes(), bands[1].shape, in_w, 1, tables[1].tobytes(), tables[1].shape)
    weights, valid = (t.to(device) for t in _cell_tables(
        rows.tobytes(), valid_r.tobytes(), cols.tobytes(), valid_c.tobytes(), rows.shape,
        cols.shape))
    image = doubtful // (cells_h * cells_w)
    band_row, band_col = (doubtful // cells_w % cells_h).cpu(), (doubtful % cells_w).cpu()
    pattern = (pattern_r[band_row] * len(cols) + pattern_c[band_col]).to(device)
    # One entry per (doubtful cell, surviving class) pair, P in all, in cell order: the
    # work is set by the candidates there are, whatever the largest number in one cell.
    pair_cell, pair_class = survivors.nonzero().unbind(1)
    # Each pair's window scores (P, T·U), one flat gather from NHWC scores.
    by_pixel = scores.permute(0, 2, 3, 1).contiguous()  # free for channels_last scores
    window = ((image[:, None, None] * in_h + in_r[band_row].to(device)[:, :, None]) * in_w
              + in_c[band_col].to(device)[:, None, :]).flatten(1)  # (D, T·U) pixels
    corners = by_pixel.view(-1).take(window.index_select(0, pair_cell) * classes
                                     + pair_class[:, None]).to(torch.float32)
    # values[p, y·x] = Σ_{t,u} weights[cell's patterns, t·u, y·x] · corners[p, t·u]
    values = (weights.index_select(0, pattern.index_select(0, pair_cell))
              * corners[:, :, None]).sum(1)  # (P, Y·X)
    # Per cell and pixel: the top score, then the candidates within the tolerance of it,
    # counted and named in one sum: each adds base + its class (base ≥ C), so a sum below
    # 2·base is one candidate, whose class is the sum − base (exact in float32).
    base = float(max(1024, classes))
    top = torch.full((len(doubtful), values.shape[1]), float("-inf"), device=device)
    top.scatter_reduce_(0, pair_cell[:, None].expand_as(values), values, "amax")
    threshold = top - (tables[2] * (scale + _TINY))[:, None]
    close = values >= threshold.index_select(0, pair_cell)
    tally = torch.zeros_like(top).index_add_(0, pair_cell,
                                             close * (base + pair_class[:, None].float()))
    undecided = ((tally >= 2 * base) & valid.index_select(0, pattern)).any(1)
    flat = ((image * (height * width))[:, None, None] + out_r[band_row].to(device)[:, :, None]
            + out_c[band_col].to(device)[:, None, :]).flatten(1).clamp_(max=n * height * width)
    buffer.index_copy_(0, flat.view(-1), (tally - base).to(torch.int64).view(-1))
    return doubtful[undecided]


#: At most this many undecided cells are computed patch by patch (:func:`_exact_patches`);
#: beyond, the model's upsampling of the whole map costs less.
_PATCH_CELLS = 32


def _exact_patches(upsampler: nn.Module, scores: torch.Tensor, labels: torch.Tensor,
                   cells: list[int], bands: tuple[np.ndarray, np.ndarray],
                   offset: tuple[int, int]) -> bool:
    """Overwrite the pixels of each cell in ``cells`` (flat ``(N, Bh, Bw)`` indices) with
    the argmax of the model's own upsampler run on a patch of ``scores`` (the cell's
    window and one more low-resolution row and column on each side, in the scores' own
    memory layout). False, with nothing written, unless the upsampler is a grouped
    (per-class) transposed convolution and there are at most :data:`_PATCH_CELLS` cells.

    Why a patch gives the whole map's values bit for bit: a grouped transposed
    convolution computes each output pixel of each class from the same few taps in the
    same order wherever the pixel lies, as long as every input row and column feeding it
    is in the patch (``tests/inference/test_inference_lowres.py`` checks this against the
    whole map, edges included, in both layouts). A full C × C transposed convolution (the
    Caffe geometry) is a GEMM whose blocking depends on the size and rounds differently,
    and ``F.interpolate`` can round a patch 1 ulp off the whole map
    (:func:`fcnkit.inference.labels.labels_by_strips`): those take :func:`_exact_rows`.
    """
    classes = scores.shape[1]
    if (not isinstance(upsampler, nn.ConvTranspose2d) or upsampler.groups != classes
            or len(cells) > _PATCH_CELLS):
        return False
    rows, cols = bands
    top, left = offset
    _, _, in_h, in_w = scores.shape
    stride_y, stride_x = (int(v) for v in upsampler.stride)
    layout = (torch.channels_last if scores.is_contiguous(memory_format=torch.channels_last)
              and not scores.is_contiguous() else torch.contiguous_format)
    # Patches of one shape (all interior cells) go through the upsampler as one batch:
    # one call instead of one per cell (each ~0.25 ms right after a backbone); a batch
    # element's output is its own patch's bit for bit (the test above checks batches too).
    by_shape: dict[tuple[int, int], list[tuple[int, int, int, int, int]]] = {}
    for cell in cells:
        image, rest = divmod(cell, len(rows) * len(cols))
        i, j = divmod(rest, len(cols))
        r0, r1 = max(0, int(rows[i, 2]) - 1), min(in_h, int(rows[i, 3]) + 1)
        c0, c1 = max(0, int(cols[j, 2]) - 1), min(in_w, int(cols[j, 3]) + 1)
        by_shape.setdefault((r1 - r0, c1 - c0), []).append((image, i, j, r0, c0))
    writes = []
    for (ph, pw), group in by_shape.items():
        patches = torch.cat([scores[image : image + 1, :, r0 : r0 + ph, c0 : c0 + pw]
                             for image, _, _, r0, c0 in group])
        logits = upsampler(patches.contiguous(memory_format=layout))
        for k, (image, i, j, r0, c0) in enumerate(group):
            y0, y1 = (int(v) + top - stride_y * r0 for v in rows[i, :2])
            x0, x1 = (int(v) + left - stride_x * c0 for v in cols[j, :2])
            if y0 < 0 or x0 < 0 or y1 > logits.shape[-2] or x1 > logits.shape[-1]:
                return False  # a geometry whose patch does not cover the cell: whole map
            writes.append((image, i, j, logits[k, :, y0:y1, x0:x1].argmax(0)))
    for image, i, j, cell_labels in writes:
        labels[image, rows[i, 0] : rows[i, 1], cols[j, 0] : cols[j, 1]] = cell_labels
    return True


def _exact_rows(upsampler: nn.Module, scores: torch.Tensor, labels: torch.Tensor,
                band_rows: np.ndarray, rows: np.ndarray, offset: tuple[int, int]) -> None:
    """Overwrite the output rows of each band in ``band_rows`` with the argmax of the
    upsampler's own output over the whole map — the model's forward tail itself, on the
    scores as the model made them. (Not by strips: ``F.interpolate`` on a few rows can
    round a score 1 ulp away from the whole map's, which flips exact ties.)"""
    top, left = offset
    height, width = labels.shape[-2:]
    logits = upsampler(scores)[:, :, top : top + height, left : left + width]
    for band in np.unique(band_rows).tolist():
        start, stop = int(rows[band, 0]), int(rows[band, 1])
        # torch's own argmax: NaN scores are labelled as model(x).argmax(1) labels them
        labels[:, start:stop] = logits[:, :, start:stop].argmax(1)
