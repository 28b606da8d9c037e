"""The tiling policy of inference: when an image is cut into windows, and how big they are.

Plain constants (no torch), so the command line can show them as defaults. The geometry
of the tiles (where windows start, which input rows a strip needs) is
:mod:`fcnkit.arith.tiling`.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LABEL_STRIP", "DEFAULT_LOGIT_BUFFER_BYTES", "DEFAULT_MAX_PIXELS",
           "DEFAULT_OVERLAP", "DEFAULT_TILE", "DEFAULT_WINDOW",
           "HUGE_IMAGE_LOGIT_BUFFER_BYTES"]

#: Window size in pixels when sliding-window inference is asked for without a size
#: (``fcnkit eval --sliding``).
DEFAULT_WINDOW = 512
#: Tile size in pixels for images tiled because they exceed the pixel budget
#: (``fcnkit predict`` and ``fcnkit eval`` above ``--max-pixels``). Smaller than
#: DEFAULT_WINDOW so that a huge image costs its own bytes plus a small constant: one
#: 512-pixel tile's forward pass of FCN-8s ResNet-18 peaks at 64-85 MiB of activations,
#: a 256-pixel one at about 18 MiB (docs/benchmarks.md, "Predict memory on huge images").
DEFAULT_TILE = 256
#: Fraction of a window shared by neighbouring windows when none is given: a third, so
#: every pixel away from the border is seen by at least two tiles along each axis.
DEFAULT_OVERLAP = 0.33
#: Images with more pixels than this (1024 x 1024) are tiled even when no window is given,
#: so one forward pass never holds the activations of a huge photo.
DEFAULT_MAX_PIXELS = 1024 * 1024
#: Output rows upsampled and reduced to labels at a time when only labels are wanted
#: (:func:`fcnkit.inference.labels.labels_by_strips`): C x 64 x W floats stay in cache.
DEFAULT_LABEL_STRIP = 64
#: Budget of the float32 logits buffer of tiled prediction with a window that was asked
#: for (:func:`fcnkit.inference.labels.iter_logit_blocks`): wider images are split into
#: column blocks, so the buffer does not grow with the width (21 classes x 512 rows: 1560
#: columns, so a block owns about four 512-pixel tiles at overlap 0.33 and reruns one
#: more).
DEFAULT_LOGIT_BUFFER_BYTES = 64 * 2**20
#: The budget for images tiled because they exceed the pixel budget (with DEFAULT_TILE):
#: 21 classes x 256 rows: 1560 columns. With 64 MiB instead, predict at 2000 x 30000
#: peaked 19 MiB below the issue-23 bound rather than 103 (docs/benchmarks.md).
HUGE_IMAGE_LOGIT_BUFFER_BYTES = 32 * 2**20
