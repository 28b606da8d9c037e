"""Whole-image and sliding-window (tiled) inference for fully convolutional models.

A fully convolutional network accepts any input size, so the simplest inference is one
forward pass over the whole image. Two reasons to tile instead:

* memory: activations grow with H·W, so a 4000×3000 photo may not fit in one pass;
* matching the training scale: a model trained on 320×480 crops sees the same context
  per window at test time.

Sliding-window inference runs the model on overlapping ``window`` tiles, *sums* the
logits each tile produces into an accumulator and divides by a count map (how many
tiles covered each pixel), so every pixel gets the mean of its tiles' logits. The last
tile in each direction is placed flush with the image border, so the tiles cover the
image exactly and the count map is never zero. An image smaller than the window in a
dimension is processed in one piece along that dimension.

Rows of tiles are processed top to bottom and the rows of pixels that no later tile can
touch are released as soon as they are final (:func:`iter_logit_strips`): one buffer of
``C × window_h × W`` floats, not ``C × H × W``. Labels go further
(:func:`iter_logit_blocks`): the columns are split into blocks whose buffer fits a fixed
budget, each block runs the tiles that cover it, so peak memory for the logits does not
grow with the width either; :func:`predict_labels` relies on that for huge images.
The image itself may stay uint8 (``tile_transform`` converts one tile at a time).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from fcnkit.arith.sizes import as_pair
from fcnkit.arith.tiling import check_overlap, sliding_window_starts, transposed_input_span
from fcnkit.inference import native
from fcnkit.inference.argmax import channel_argmax
from fcnkit.inference.lowres import (
    PRUNE_MIN_SCORES,
    labels_from_scores,
)
from fcnkit.inference.picture import PictureTiles
from fcnkit.inference.tiling import (
    DEFAULT_LABEL_STRIP,
    DEFAULT_LOGIT_BUFFER_BYTES,
    DEFAULT_OVERLAP,
)
from fcnkit.limits import check_tiles
from fcnkit.models.heads import GroupedBilinear

__all__ = [
    "as_window",
    "sliding_window_starts",
    "iter_logit_strips",
    "iter_logit_blocks",
    "column_blocks",
    "predict_logits",
    "predict_labels",
    "labels_by_strips",
    "labels_from_coarse",
    "whole_image_labels",
    "channel_argmax",
]


def as_window(window: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """Normalise a window argument to ``(height, width)`` in pixels, or ``None``.

    Args:
        window: ``None`` (whole image), an int (square window) or a pair ``(h, w)``.

    Raises:
        InputError: the window is not one or two positive integers.
    """
    if window is None:
        return None
    return as_pair(window, "window", minimum=1)


def _forward_logits(model: nn.Module, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Run ``model`` on ``x`` and check it returned (N, num_classes, H, W) logits."""
    out = model(x)
    if isinstance(out, dict):  # torchvision segmentation models return {"out": ..., "aux": ...}
        out = out["out"]
    expected = (x.shape[0], num_classes, x.shape[-2], x.shape[-1])
    if tuple(out.shape) != expected:
        raise ValueError(
            f"model returned logits of shape {tuple(out.shape)} for an input of shape "
            f"{tuple(x.shape)}; expected {expected} "
            f"(num_classes={num_classes}, logits at input size)"
        )
    return out


def iter_logit_strips(
    model: nn.Module,
    image: torch.Tensor,
    *,
    num_classes: int,
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    tile_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield the averaged logits of ``image`` as horizontal strips, top to bottom.

    The model is called as is (no ``eval()``/``no_grad`` here: callers decide). Logits of
    overlapping tiles are summed and divided by the count of tiles covering each pixel.

    Args:
        model: maps (N, 3, h, w) to logits (N, num_classes, h, w) for any h, w (a tensor,
            or a dict whose ``"out"`` entry is that tensor).
        image: (N, 3, H, W) float tensor, normalised and on the model's device (or
            raw / elsewhere, with a ``tile_transform`` that fixes that per tile).
        num_classes: number of classes the model predicts.
        window: ``None`` for one whole-image pass, else the tile size (int or (h, w)).
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        tile_transform: applied to each tile (or to the whole image without a window)
            just before the model, e.g. ``lambda t: normalize(t).to("cuda")``: a huge image
            can then stay raw on the CPU while only one tile at a time is normalised and
            moved. Must be pointwise in space (per-pixel), so tiling does not change it.

    Yields:
        ``(row0, logits)`` with logits (N, num_classes, rows, W) float32 on ``image``'s
        device for image rows ``[row0, row0 + rows)``; the strips partition ``[0, H)`` in
        order. With a window, each strip is a view into a buffer the next step reuses:
        use it (e.g. its argmax) or ``clone()`` it before asking for the next strip.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be a (N, C, H, W) tensor, got shape {tuple(image.shape)}")
    win = as_window(window)
    check_overlap(overlap)
    n, _, height, width = image.shape

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        if tile_transform is not None:
            x = tile_transform(x)
        return _forward_logits(model, x, num_classes).to(image.device, torch.float32)

    if win is None:
        yield 0, logits_of(image)
        return
    win_h, win_w = min(win[0], height), min(win[1], width)
    rows = sliding_window_starts(height, win_h, overlap)
    cols = sliding_window_starts(width, win_w, overlap)
    check_tiles(len(rows), len(cols), (win_h, win_w), overlap)
    yield from _row_major_strips(logits_of, image, num_classes, rows, cols, win_h, win_w,
                                 span=(0, width))


def _row_major_strips(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    num_classes: int,
    rows: list[int],
    cols: list[int],
    win_h: int,
    win_w: int,
    *,
    span: tuple[int, int],
) -> Iterator[tuple[int, torch.Tensor]]:
    """Averaged logits of the tiles at ``rows`` × ``cols``, strip by strip, over the image
    columns ``span = [c0, c1)`` that those tiles cover (tiles visited row-major: a pixel's
    tile logits are summed in the order of (tile row, tile column)).

    Yields ``(row0, logits)`` with logits ``(N, C, rows, c1 - c0)``, views into a buffer
    the next step reuses. Columns of ``span`` that tiles outside ``cols`` also cover are
    not final: callers keep only the columns every covering tile is in ``cols`` for.
    """
    n, height = image.shape[0], image.shape[-2]
    c0, c1 = span
    # One fixed buffer of ``win_h`` rows (a tile row's height): after each tile row its
    # final rows are divided in place and yielded, and the pending overlap rows are moved
    # up. No per-row concatenation, so peak memory is one buffer, not two.
    acc = torch.zeros((n, num_classes, win_h, c1 - c0), dtype=torch.float32,
                      device=image.device)
    count = torch.zeros((1, 1, win_h, c1 - c0), dtype=torch.float32, device=image.device)
    for i, top in enumerate(rows):
        # ``acc`` row 0 is image row ``top``: the previous step moved the rows up to here.
        for left in cols:
            tile = _read_tile(image, top, left, win_h, win_w)
            acc[:, :, :, left - c0 : left - c0 + win_w] += logits_of(tile)
            count[:, :, :, left - c0 : left - c0 + win_w] += 1.0
        # Rows above the next tile row's top are final: no later tile touches them.
        done = (rows[i + 1] if i + 1 < len(rows) else height) - top
        final = acc[:, :, :done].div_(count[:, :, :done])
        yield top, final
        pending = win_h - done
        # Move the pending rows up in chunks of ``done`` rows (source and destination of
        # each copy do not overlap), then clear the rows the next tile row fills.
        for start in range(0, pending, done):
            stop = min(pending, start + done)
            acc[:, :, start:stop].copy_(acc[:, :, start + done : stop + done])
            count[:, :, start:stop].copy_(count[:, :, start + done : stop + done])
        acc[:, :, pending:].zero_()
        count[:, :, pending:].zero_()


def _read_tile(image: Any, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The window of ``image`` (a tensor, or a :class:`~fcnkit.inference.picture.PictureTiles`
    that copies each tile out of a decoded picture) at ``(top, left)``."""
    if isinstance(image, torch.Tensor):
        return image[:, :, top : top + height, left : left + width]
    return image.tile(top, left, height, width)


def column_blocks(width: int, win_w: int, overlap: float,
                  max_columns: int) -> list[tuple[int, int, list[int]]]:
    """Split the tile columns of an image ``width`` wide into blocks of at most about
    ``max_columns`` buffer columns: ``[(own0, own1, starts), ...]``.

    Block ``b`` *owns* the image columns ``[own0, own1)`` (the blocks partition
    ``[0, width)``) and needs the tiles starting at ``starts``: every tile that covers one
    of its columns, so each owned pixel gets the logits of all its tiles. Owned ranges
    begin at tile starts; a tile overlapping two blocks is run once for each (the price
    of a buffer that does not grow with the width). One block when everything fits.
    """
    cols = sliding_window_starts(width, win_w, overlap)
    if width <= max_columns or len(cols) == 1:
        return [(0, width, cols)]
    blocks: list[tuple[int, int, list[int]]] = []
    first = 0
    while first < len(cols):
        own0 = 0 if first == 0 else cols[first]
        # Grow the run of tiles owned by this block while the buffer span fits (a run
        # holds at least one tile).
        last = first + 1
        while last < len(cols):
            needed = [s for s in cols if s < cols[last] + 1 and s + win_w > own0]
            if needed[-1] + win_w - needed[0] > max_columns:
                break
            last += 1
        own1 = width if last == len(cols) else cols[last]
        starts = [s for s in cols if s < own1 and s + win_w > own0]
        blocks.append((own0, own1, starts))
        first = last
    return blocks


def iter_logit_blocks(
    model: nn.Module,
    image: torch.Tensor | PictureTiles,
    *,
    num_classes: int,
    window: int | tuple[int, int],
    overlap: float = DEFAULT_OVERLAP,
    tile_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_buffer_bytes: int = DEFAULT_LOGIT_BUFFER_BYTES,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield the averaged sliding-window logits of ``image`` as final rectangles, with a
    logits buffer of at most about ``max_buffer_bytes`` whatever the image width.

    The image columns are split into blocks (:func:`column_blocks`); each block runs the
    row-major tiling of :func:`iter_logit_strips` over the tiles that cover it, into a
    buffer ``C × window_h × span`` wide, and yields its owned columns. A pixel's tile
    logits are summed in the same (tile row, tile column) order as the one-buffer path,
    so the logits, and their argmax, are bit for bit those of :func:`predict_logits`
    (given a model whose output for a tile does not change when run twice). Tiles
    straddling two blocks run twice; an image whose buffer fits runs each tile once.

    Args:
        model, num_classes, overlap, tile_transform: as for :func:`iter_logit_strips`.
        image: as for :func:`iter_logit_strips`, or a
            :class:`~fcnkit.inference.picture.PictureTiles` (a decoded picture read one
            tile at a time, so a huge image is not also held as an array).
        window: the tile size (int or (h, w)); required.
        max_buffer_bytes: budget for the float32 logits buffer (at least one tile's
            columns are always allowed).

    Yields:
        ``(row0, col0, logits)``: logits ``(N, C, rows, cols)`` for image rows
        ``[row0, row0 + rows)`` and columns ``[col0, col0 + cols)``; the rectangles
        partition the image. Views into a reused buffer: use or ``clone()`` them before
        asking for the next one.
    """
    if image.dim() != 4:
        raise ValueError(f"image must be a (N, C, H, W) tensor, got shape {tuple(image.shape)}")
    win = as_window(window)
    if win is None:
        raise ValueError("iter_logit_blocks needs a window")
    check_overlap(overlap)
    n, _, height, width = image.shape
    win_h, win_w = min(win[0], height), min(win[1], width)

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        if tile_transform is not None:
            x = tile_transform(x)
        return _forward_logits(model, x, num_classes).to(image.device, torch.float32)

    per_column = n * num_classes * win_h * 4  # float32 bytes of one buffer column
    max_columns = max(win_w, max_buffer_bytes // per_column)
    rows = sliding_window_starts(height, win_h, overlap)
    check_tiles(len(rows), len(sliding_window_starts(width, win_w, overlap)), (win_h, win_w),
                overlap)
    for own0, own1, starts in column_blocks(width, win_w, overlap, max_columns):
        c0 = starts[0]
        for top, strip in _row_major_strips(logits_of, image, num_classes, rows, starts,
                                            win_h, win_w, span=(c0, starts[-1] + win_w)):
            yield top, own0, strip[..., own0 - c0 : own1 - c0]


def predict_logits(
    model: nn.Module,
    image: torch.Tensor,
    *,
    num_classes: int,
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    tile_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits for a batch, by one whole-image pass or by averaged sliding windows.

    Args:
        model: fully convolutional model, logits at input size (see :func:`iter_logit_strips`).
        image: (N, 3, H, W) normalised float tensor on the model's device.
        num_classes: number of classes the model predicts.
        window: ``None`` (whole image), an int (square tile) or ``(h, w)``; a tile larger
            than the image is clipped to it, so ``window >= image`` equals whole-image.
        overlap: fraction of a tile shared with its neighbour, in ``[0, 1)``.
        tile_transform: per-tile preprocessing (see :func:`iter_logit_strips`).

    Returns:
        (N, num_classes, H, W) float32 logits (tile logits averaged where tiles overlap).
    """
    strips = [s.clone() for _, s in iter_logit_strips(
        model, image, num_classes=num_classes, window=window, overlap=overlap,
        tile_transform=tile_transform,
    )]
    return strips[0] if len(strips) == 1 else torch.cat(strips, dim=2)


def predict_labels(
    model: nn.Module,
    image: torch.Tensor,
    *,
    num_classes: int,
    window: int | tuple[int, int] | None = None,
    overlap: float = DEFAULT_OVERLAP,
    tile_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-pixel class indices (argmax of the averaged logits), strip by strip.

    Same result as ``predict_logits(...).argmax(1)`` but never holds the full
    (N, C, H, W) logits when tiling, so huge images need memory for the int64 label map
    plus one column block's buffer of logits (:func:`iter_logit_blocks`). Arguments as
    for :func:`predict_logits`.

    Returns:
        (N, H, W) int64 class indices, on the image's device.
    """
    if as_window(window) is None:
        check_overlap(overlap)
        x = tile_transform(image) if tile_transform is not None else image
        return whole_image_labels(model, x).to(image.device)
    labels = torch.empty((image.shape[0], *image.shape[-2:]), dtype=torch.int64,
                         device=image.device)
    for top, left, block in iter_logit_blocks(
        model, image, num_classes=num_classes, window=window, overlap=overlap,
        tile_transform=tile_transform,
    ):
        labels[:, top : top + block.shape[2], left : left + block.shape[3]] = \
            channel_argmax(block)
    return labels


def supports_label_strips(model: nn.Module) -> bool:
    """True for models that expose ``coarse_scores(x)``, ``final_upsampler`` and
    ``final_offset`` (every fcnkit FCN) and do not opt out with ``strip_labels_exact =
    False`` (a resize to the input size): their labels can skip the full-resolution logits."""
    return getattr(model, "strip_labels_exact", True) and all(
        hasattr(model, name) for name in ("coarse_scores", "final_upsampler", "final_offset"))


def whole_image_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x).argmax(1)`` for a whole image, without full-resolution logits if possible.

    For models with the coarse-score protocol, float32 scores and a bilinear last
    upsampling, the labels come from the coarse scores by candidate pruning
    (:func:`fcnkit.inference.lowres.labels_from_scores`: whole cells take their only
    possible class, per-pixel work only where several classes remain), unless that work
    exceeds :data:`fcnkit.inference.lowres.COMPILED_DENSE_WORK` of the whole map's (with
    the compiled labels stage, :mod:`fcnkit.inference.native`; without it,
    :data:`fcnkit.inference.lowres.DENSE_WORK`, and only on maps of at least
    :data:`fcnkit.inference.lowres.PRUNE_MIN_SCORES` class scores). Such maps,
    smaller ones, learned last upsamplings and bf16 scores (but those a
    :class:`~fcnkit.models.heads.GroupedBilinear` upsamples in float32 under a CPU
    autocast, which are pruned as float32) take the model's last
    upsampling of the whole map and its argmax when those logits fit in
    :data:`fcnkit.inference.tiling.DEFAULT_LOGIT_BUFFER_BYTES`, else
    :func:`labels_by_strips`. Other models use a backend's own ``predict_labels(x)`` when
    it has one, else the plain argmax of the logits. All paths give the same labels
    (tests/inference/test_inference_lowres.py).
    """
    if supports_label_strips(model):
        return labels_from_coarse(model, model.coarse_scores(x), x.shape[-2:])
    own = getattr(model, "predict_labels", None)
    if callable(own):
        return own(x)
    out = model(x)
    if isinstance(out, dict):
        out = out["out"]
    return channel_argmax(out)


def labels_from_coarse(model: nn.Module, scores: torch.Tensor,
                       size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """The labels of :func:`whole_image_labels` from ``model.coarse_scores(x)`` already
    computed, for images of ``size`` = ``(H, W)``: the choice of path it describes."""
    scores = _upsampler_input(model, scores)
    height, width = int(size[0]), int(size[1])
    class_scores = scores.shape[0] * scores.shape[1] * height * width
    if (scores.dtype == torch.float32 and _pruning_pays(model)
            and (class_scores >= PRUNE_MIN_SCORES
                 or (scores.is_cpu and native.load() is not None))):
        # max_work None: DENSE_WORK, or COMPILED_DENSE_WORK for the compiled labels stage;
        # None back for a last upsampling that is not convex (a learned deconvolution).
        labels = labels_from_scores(model, scores, (height, width), max_work=None)
        _record_pruning(model, declined=labels is None)
        if labels is not None:
            return labels
    if class_scores * 4 <= DEFAULT_LOGIT_BUFFER_BYTES:
        # The model's own tail at once: on a map this size, faster than by strips
        # (benchmarks/bench_lowres_cells.py --sweep, docs/benchmarks.md).
        top, left = (int(v) for v in model.final_offset)
        logits = model.final_upsampler(scores)
        return channel_argmax(logits[:, :, top : top + height, left : left + width])
    return _strip_labels(model, scores, height, width, DEFAULT_LABEL_STRIP)


def _upsampler_input(model: nn.Module, scores: torch.Tensor) -> torch.Tensor:
    """The float32 scores the model's last upsampling computes from. Under a CPU autocast
    a :class:`~fcnkit.models.heads.GroupedBilinear` casts its bf16/fp16 input to float32
    itself (exactly) and upsamples in float32, so the labels of the float32 copy are the
    model's own, and the float32 paths (candidate pruning among them) apply. Any other
    case keeps ``scores`` as they are."""
    upsampler = model.final_upsampler
    if (scores.dtype in (torch.bfloat16, torch.float16) and scores.is_cpu
            and isinstance(upsampler, GroupedBilinear) and torch.is_autocast_enabled("cpu")
            and upsampler.weight.dtype == torch.float32):
        return scores.float()
    return scores


#: After this many maps in a row declined as too noisy, a model's next maps skip the
#: pruning test (whose cost is then wasted: ResNet-18 with random weights, +10.9 % head
#: against +6.7 % for the whole map, docs/benchmarks.md) ...
PRUNE_DECLINES_BEFORE_PAUSE = 3
#: ... for this many maps, then try again. Labels are the same either way.
PRUNE_PAUSE = 32
_pruning_state: weakref.WeakKeyDictionary[nn.Module, list[int]] = weakref.WeakKeyDictionary()


def _pruning_pays(model: nn.Module) -> bool:
    """False while ``model`` is paused after repeated declines (then counts the pause)."""
    state = _pruning_state.get(model)
    if state is None or state[1] == 0:
        return True
    state[1] -= 1
    return False


def _record_pruning(model: nn.Module, *, declined: bool) -> None:
    """Counts consecutive declines per model: ``[declines, maps left in the pause]``."""
    state = _pruning_state.setdefault(model, [0, 0])
    state[0] = state[0] + 1 if declined else 0
    if state[0] >= PRUNE_DECLINES_BEFORE_PAUSE:
        state[0], state[1] = 0, PRUNE_PAUSE


def labels_by_strips(model: nn.Module, x: torch.Tensor, *,
                     rows: int = DEFAULT_LABEL_STRIP,
                     scores: torch.Tensor | None = None) -> torch.Tensor:
    """Labels ``model(x).argmax(1)`` computed ``rows`` output rows at a time.

    The model's coarse scores (stride 8 for FCN-8s) are computed once; the last upsampling
    and the argmax then run strip by strip, on the input rows each strip needs
    (:func:`fcnkit.arith.tiling.transposed_input_span`), so the ``(N, C, H, W)`` logits are
    never materialised: memory holds ``C × rows × W`` floats, which stay in cache.

    Exactness: each strip's logits are the same terms as the whole map's rows (same
    weights, same padding, the span covers every contributing input row; for bilinear
    interpolation by a power-of-two factor the source coordinates shift by an exact
    integer), and ``argmax`` returns the first maximal class in both, so the labels equal
    the plain path's in float32 (``tests/inference/test_inference_label_strips.py``).
    One exception is known: ``F.interpolate`` on a strip of a few input rows can round a
    score 1 ulp away from the whole map's (0.6874999 against 0.6875 for 8-row strips of
    a map of 0/1 scores), which flips an exact tie between two classes; the default
    path uses strips only for maps whose logits exceed 64 MiB
    (:func:`labels_from_coarse`).

    Args:
        model: a model with ``coarse_scores(x)``, ``final_upsampler`` (a transposed
            convolution or :class:`fcnkit.models.heads.Interpolate`: ``kernel_size``,
            ``stride``, ``padding``) and ``final_offset`` ``(dy, dx)``.
        x: normalised ``(N, 3, H, W)`` images.
        rows: output rows per strip.
        scores: ``model.coarse_scores(x)`` if already computed.

    Returns:
        ``(N, H, W)`` int64 class indices.
    """
    if scores is None:
        scores = model.coarse_scores(x)
    return _strip_labels(model, scores, x.shape[-2], x.shape[-1], rows)


def _strip_labels(model: nn.Module, scores: torch.Tensor, height: int, width: int,
                  rows: int) -> torch.Tensor:
    """:func:`labels_by_strips` on coarse scores already computed."""
    upsampler = model.final_upsampler
    kernel, stride, padding = (int(upsampler.kernel_size[0]), int(upsampler.stride[0]),
                               int(upsampler.padding[0]))
    top, left = (int(v) for v in model.final_offset)
    n = scores.shape[0]
    labels = torch.empty((n, height, width), dtype=torch.int64, device=scores.device)
    for start in range(0, height, rows):
        stop = min(height, start + rows)
        first, last = transposed_input_span(
            start + top, stop + top, kernel=kernel, stride=stride, padding=padding,
            input_size=scores.shape[-2],
        )
        strip = upsampler(scores[:, :, first:last])
        local = start + top - first * stride  # output row `start + top`, in the strip
        strip = strip[:, :, local : local + stop - start, left : left + width]
        labels[:, start:stop] = channel_argmax(strip)
    return labels
