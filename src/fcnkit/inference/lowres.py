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
side, ``out_a(p) ≥ W(p)·min_J s_a``. Inside a region one class survives, and the whole
cell takes its label without any full-resolution score. Only cells with several survivors
are computed per pixel, by the model's own upsampler on the cell's input span
(:func:`fcnkit.arith.tiling.transposed_input_span`), which gives the same terms as the
whole map, so those labels are ``model(x).argmax(1)``'s bit for bit.

The comparison keeps a safety margin (:data:`MARGIN`, relative to the window's largest
|score|): a class is dropped only when it loses by far more than float32 rounding of a
sum of a few terms could ever change, so rounding never changes a label. Ties and NaN
scores keep every class in doubt and go to the exact path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnkit.arith.tiling import transposed_input_spans
from fcnkit.models.heads import Interpolate

__all__ = ["MARGIN", "convex_upsampler", "labels_by_pruning", "prune_cells"]

#: Relative safety margin of the pruning test. A float32 sum of at most 4 products (2×2
#: taps) is within ~8·2⁻²⁴·max|s|·W of the exact value; 1e-4 is ~800× that.
MARGIN = 1e-4

#: Cells per side of the tiles in which doubtful cells are computed per pixel.
TILE_CELLS = 2


def convex_upsampler(upsampler: nn.Module) -> bool:
    """True when ``upsampler`` maps every class with the same non-negative weights and no
    bias: :class:`fcnkit.models.heads.Interpolate`, or a ``ConvTranspose2d`` (dilation 1)
    whose weight is one non-negative kernel on the class diagonal (grouped, or full C × C
    with zero off-diagonal filters, as Caffe's frozen bilinear Deconvolution). A learned
    deconvolution fails the check and takes the strip path."""
    if isinstance(upsampler, Interpolate):
        return True
    if not isinstance(upsampler, nn.ConvTranspose2d) or tuple(upsampler.dilation) != (1, 1):
        return False
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


def _bands(size: int, offset: int, *, kernel: int, stride: int, padding: int,
           input_size: int) -> np.ndarray:
    """Output rows ``[0, size)`` (full-map row = row + offset) grouped into bands of
    consecutive rows fed by the same input rows: an ``(B, 4)`` array of
    ``(start, stop, first, last)``."""
    rows = np.arange(size, dtype=np.int64) + offset
    first, last = transposed_input_spans(rows, rows + 1, kernel=kernel, stride=stride,
                                         padding=padding, input_size=input_size)
    new = np.ones(size, dtype=bool)
    new[1:] = (first[1:] != first[:-1]) | (last[1:] != last[:-1])
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], size)
    return np.stack([starts, stops, first[starts], last[starts]], axis=1)


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


def prune_cells(
    scores: torch.Tensor, row_bands: np.ndarray, col_bands: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pruning test over cells (row band × column band).

    Args:
        scores: ``(N, C, h, w)`` low-resolution scores.
        row_bands, col_bands: bands as from ``_bands``.

    Returns:
        ``(label, sure)``: ``(N, Bh, Bw)`` int64, the only surviving class of each cell,
        and bool, True where exactly one class survives.
    """
    high, low = _window_extrema(scores, row_bands, 2)
    high = _window_extrema(high, col_bands, 3)[0]
    low = _window_extrema(low, col_bands, 3)[1]
    floor = low.amax(1, keepdim=True)  # max over classes of the window minimum
    scale = torch.maximum(high.abs().amax(1, keepdim=True), low.abs().amax(1, keepdim=True))
    survives = high >= floor - MARGIN * (1.0 + scale)  # NaN: False for all → in doubt
    sure = survives.sum(1) == 1
    return survives.to(torch.uint8).argmax(1), sure


def _upsample_rows(upsampler: nn.Module, patches: torch.Tensor, dy: int, dx: int,
                   th: int, tw: int) -> torch.Tensor:
    """Rows ``[dy, dy + th)`` × columns ``[dx, dx + tw)`` of ``upsampler(patches)``.

    For a transposed convolution the crop is folded into its padding (``p + dy``): output
    ``o`` of the layer with padding ``p + dy`` is output ``o + dy`` with padding ``p``, the
    same sum of the same taps, and the rows outside the tile are never computed (a tile's
    input span would otherwise produce ~2× the tile's pixels).
    """
    if isinstance(upsampler, nn.ConvTranspose2d):
        pad_h, pad_w = upsampler.padding
        full_h = (patches.shape[-2] - 1) * upsampler.stride[0] - 2 * pad_h \
            + upsampler.kernel_size[0]
        full_w = (patches.shape[-1] - 1) * upsampler.stride[1] - 2 * pad_w \
            + upsampler.kernel_size[1]
        if dy + th <= full_h - dy and dx + tw <= full_w - dx:
            out = F.conv_transpose2d(patches, upsampler.weight, upsampler.bias,
                                     upsampler.stride, (pad_h + dy, pad_w + dx),
                                     groups=upsampler.groups)
            return out[:, :, :th, :tw]
    return upsampler(patches)[:, :, dy : dy + th, dx : dx + tw]


def labels_by_pruning(model: nn.Module, x: torch.Tensor, *,
                      stats: dict[str, int] | None = None) -> torch.Tensor:
    """``model(x).argmax(1)`` from the coarse scores, per-pixel work only in doubtful cells.

    Args:
        model: a model with the coarse-score protocol (``coarse_scores(x)``,
            ``final_upsampler``, ``final_offset``; see
            :func:`fcnkit.inference.labels.labels_by_strips`) whose ``final_upsampler``
            passes :func:`convex_upsampler`.
        x: normalised ``(N, 3, H, W)`` images.
        stats: if given, ``cells`` and ``doubtful`` (counts over the batch) are added to it.

    Returns:
        ``(N, H, W)`` int64 class indices, equal to ``model(x).argmax(1)``.
    """
    upsampler = model.final_upsampler
    if not convex_upsampler(upsampler):
        raise ValueError("labels_by_pruning needs a bilinear (convex) final upsampler")
    scores = model.coarse_scores(x)
    kernel, stride, padding = (int(upsampler.kernel_size[0]), int(upsampler.stride[0]),
                               int(upsampler.padding[0]))
    top, left = (int(v) for v in model.final_offset)
    n, height, width = x.shape[0], x.shape[-2], x.shape[-1]
    geometry = {"kernel": kernel, "stride": stride, "padding": padding}
    rows = _bands(height, top, input_size=scores.shape[-2], **geometry)
    cols = _bands(width, left, input_size=scores.shape[-1], **geometry)
    label, sure = prune_cells(scores, rows, cols)
    row_sizes = torch.as_tensor(rows[:, 1] - rows[:, 0], device=label.device)
    col_sizes = torch.as_tensor(cols[:, 1] - cols[:, 0], device=label.device)
    labels = label.repeat_interleave(row_sizes, 1).repeat_interleave(col_sizes, 2)
    doubtful = (~sure).nonzero().cpu().numpy()
    if stats is not None:
        stats["cells"] = stats.get("cells", 0) + int(sure.numel())
        stats["doubtful"] = stats.get("doubtful", 0) + len(doubtful)
    if len(doubtful):
        _exact_tiles(upsampler, scores, labels, doubtful, rows, cols, (top, left), geometry)
    assert labels.shape == (n, height, width)
    return labels


def _exact_tiles(upsampler: nn.Module, scores: torch.Tensor, labels: torch.Tensor,
                 doubtful: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                 offset: tuple[int, int], geometry: dict[str, int]) -> None:
    """Overwrite ``labels`` in every tile of ``TILE_CELLS²`` cells that holds a doubtful
    cell with the argmax of the upsampler's own output there (exact: the same terms as
    the whole map). Tiles whose input patches have the same shape and crop go through
    the upsampler as one batch (all interior tiles do)."""
    tiles = np.unique(doubtful // np.array([1, TILE_CELLS, TILE_CELLS]), axis=0)
    image, tile_row, tile_col = tiles.T
    y0 = rows[tile_row * TILE_CELLS, 0]
    y1 = rows[np.minimum((tile_row + 1) * TILE_CELLS, len(rows)) - 1, 1]
    x0 = cols[tile_col * TILE_CELLS, 0]
    x1 = cols[np.minimum((tile_col + 1) * TILE_CELLS, len(cols)) - 1, 1]
    top, left = offset
    r0, r1 = transposed_input_spans(y0 + top, y1 + top, input_size=scores.shape[-2],
                                    **geometry)
    c0, c1 = transposed_input_spans(x0 + left, x1 + left, input_size=scores.shape[-1],
                                    **geometry)
    stride = geometry["stride"]
    dy, dx = y0 + top - r0 * stride, x0 + left - c0 * stride
    keys = np.stack([r1 - r0, c1 - c0, dy, dx, y1 - y0, x1 - x0], axis=1)
    shapes, group = np.unique(keys, axis=0, return_inverse=True)
    by_pixel = scores.permute(0, 2, 3, 1)  # (N, h, w, C): gather whole score vectors
    device = scores.device

    def grid(origin: np.ndarray, length: int) -> torch.Tensor:
        return torch.as_tensor(origin[:, None] + np.arange(length), device=device)

    for g, (ph, pw, gy, gx, th, tw) in enumerate(shapes.tolist()):
        members = np.flatnonzero(group.reshape(-1) == g)
        index = torch.as_tensor(image[members], device=device)[:, None, None]
        patches = by_pixel[index, grid(r0[members], ph)[:, :, None],
                           grid(c0[members], pw)[:, None, :]].permute(0, 3, 1, 2)
        tile_scores = _upsample_rows(upsampler, patches.contiguous(), gy, gx, th, tw)
        # Class scores contiguous per pixel: argmax (first maximal class, as the whole
        # map's) reads each pixel's scores in one run.
        tile_labels = tile_scores.permute(0, 2, 3, 1).contiguous().argmax(-1)
        labels[index, grid(y0[members], th)[:, :, None],
               grid(x0[members], tw)[:, None, :]] = tile_labels
