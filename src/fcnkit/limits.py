"""Limits on work and memory: estimate what a request costs before doing it, refuse above.

A geometry is cheap to describe and expensive to draw or run: an animation has one frame
per output position, the matrix C has (output pixels) x (input pixels) entries, a gridding
map has (1 + (K - 1) sum(rates))^2 cells, a forward pass at H x W keeps hundreds of floats
per pixel. Every command whose work or memory grows with numbers the user types (the CLI
and the explorer alike) first estimates the cost with plain arithmetic and calls
:func:`check_at_most`, which raises a one-line :class:`~fcnkit.errors.InputError` naming
the quantity, its estimate and the limit. Stdlib only (never torch), so :mod:`fcnkit.arith`
may use it and a refusal costs nothing.

The limits (docs/limits.md lists them with the reasoning):

=============================  =========================================================
``MAX_RECEPTIVE_FIELD``         side of a dilated stack's receptive field whose coverage
                                is computed (``gridding``, ``--suggest``, the explorer)
``MAX_COVERAGE_MAP_SIDE``       side up to which the 2-D coverage map is sent to a page
``MAX_STACK_LAYERS``            layers in one explorer stack or ``--suggest`` search
``MAX_INPUT_SIZE``              an input size per dimension (explorer; ``rf``/``models``)
``MAX_ANIMATION_FRAMES``        output positions (one frame each) an animation draws
``MAX_ANIMATION_CELL_DRAWS``    frames x grid cells drawn by ``animate``
``MAX_MATRIX_ENTRIES``          entries of a dense convolution matrix C
``MAX_TILES_PER_IMAGE``         sliding-window tiles (one forward pass each) per image
``SYNTH_MAX_IMAGE_PIXELS``      pixels of one synthetic image (``data synth``)
``SYNTH_MAX_IMAGES``            images of a synthetic dataset
``SYNTH_MAX_TOTAL_PIXELS``      pixels of the whole synthetic dataset
memory budget                   bytes a model forward/backward may need (``rf`` at a size,
                                a training crop x batch): ``FCNKIT_MEMORY_LIMIT`` or half
                                the RAM
=============================  =========================================================

Set ``FCNKIT_LIMITS_OFF=1`` to turn every check off (at your own risk: the process may then
be killed by the kernel's out-of-memory handler or run for hours).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from fcnkit.errors import InputError

__all__ = [
    "LIMITS_OFF_ENV",
    "MAX_ANIMATION_CELL_DRAWS",
    "MAX_ANIMATION_FRAMES",
    "MAX_COVERAGE_MAP_SIDE",
    "MAX_INPUT_SIZE",
    "MAX_JSON_DEPTH",
    "MAX_MATRIX_ENTRIES",
    "MAX_NUMBER_CHARS",
    "MAX_RECEPTIVE_FIELD",
    "MAX_STACK_LAYERS",
    "MAX_TILES_PER_IMAGE",
    "MEMORY_LIMIT_ENV",
    "SYNTH_MAX_IMAGES",
    "SYNTH_MAX_IMAGE_PIXELS",
    "SYNTH_MAX_TOTAL_PIXELS",
    "check_animation",
    "check_at_most",
    "check_model_input",
    "check_suggestion_search",
    "check_synthetic",
    "check_tiles",
    "boundary_width_within",
    "check_training_crop",
    "forward_activation_bytes",
    "limits_disabled",
    "memory_budget",
]

#: Environment variable that disables every limit when set to 1/true/yes/on.
LIMITS_OFF_ENV = "FCNKIT_LIMITS_OFF"
#: Environment variable overriding the memory budget, in bytes ("8G", "512M" allowed).
MEMORY_LIMIT_ENV = "FCNKIT_MEMORY_LIMIT"

#: Output positions an animation draws (one frame each): a 20 x 20 output.
MAX_ANIMATION_FRAMES = 400
#: Grid cells recoloured over a whole animation, frames x (cells per frame + frames): one
#: matplotlib patch each, about 10 us apiece, so ~4 s of drawing.
MAX_ANIMATION_CELL_DRAWS = 400_000
#: Entries of a dense convolution matrix C (rows x columns): 256 x 256, a 16 x 16 input
#: convolved to a 16 x 16 output.
MAX_MATRIX_ENTRIES = 65_536
#: Side of a dilated stack's receptive field, 1 + (K - 1) sum(rates), for which the
#: coverage is computed (the 2-D map has side^2 int64 cells: 8 MB at 1025).
MAX_RECEPTIVE_FIELD = 1025
#: Side up to which the 2-D coverage map is sent to a page or printed as JSON.
MAX_COVERAGE_MAP_SIDE = 129
#: Layers in one explorer stack or in a ``gridding --suggest`` search.
MAX_STACK_LAYERS = 32
#: Arrays/objects nested in a JSON text read from a request (the explorer's ``layers`` is a
#: list of objects: 2); Python's parser recurses once per level.
MAX_JSON_DEPTH = 8
#: Characters of one number literal in such a JSON text: every size fcnkit accepts has at
#: most 6 digits; ``int()`` of a long literal is quadratic in its length.
MAX_NUMBER_CHARS = 32
#: Input size (per dimension) the explorer, ``rf`` and ``models`` accept.
MAX_INPUT_SIZE = 100_000
#: Sliding-window tiles per image, each a forward pass: an 8000x8000 image in tiles of
#: 512 with the default overlap takes 529; --window 1 on a 150x210 image would take 31 500.
MAX_TILES_PER_IMAGE = 10_000
#: Example input (per side) ``fcnkit export`` traces: the model runs once at this size, and
#: with ``--dynamic`` the graph is right at every size, so a small trace is enough.
MAX_EXPORT_TRACE_SIZE = 2048
#: Pixels of one synthetic image: 4096 x 4096.
SYNTH_MAX_IMAGE_PIXELS = 4096 * 4096
#: Images of one synthetic dataset.
SYNTH_MAX_IMAGES = 1_000_000
#: Pixels of a whole synthetic dataset (about 6 GB of PNG input at 3 bytes per pixel).
SYNTH_MAX_TOTAL_PIXELS = 2_000_000_000

#: Float32 activations kept per input pixel by one forward pass of the widest fcnkit model
#: (FCN-VGG16): sum over its layers of channels / stride^2 = 64*2 + 128*2/4 + 256*3/16 +
#: 512*3/64 + 512*3/256 + 4096*2/1024 + ... ~= 290 (Simonyan & Zisserman 2015, Table 1,
#: configuration D), rounded up to 320 for score, fusion and upsampling layers.
ACTIVATION_FLOATS_PER_PIXEL = 320
#: Training keeps the activations for backward and their gradients: about 3x a forward.
TRAIN_MEMORY_FACTOR = 3
BYTES_PER_FLOAT = 4


def limits_disabled() -> bool:
    """True when ``FCNKIT_LIMITS_OFF`` is set to 1/true/yes/on."""
    return os.environ.get(LIMITS_OFF_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _format_bytes(value: float) -> str:
    for prefix, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.0f} B"


def check_at_most(what: str, value: float, maximum: float, fix: str, *,
                  unit: str = "") -> None:
    """Raise a one-line :class:`InputError` when ``value > maximum`` (unless limits are off).

    The one check of this module: every limit goes through it.

    Args:
        what: the quantity, e.g. ``"the matrix C has 300x300 entries"`` reads
            "the matrix C has 300x300 entries = 90000 is more than the limit 65536; ...".
        value: its value (an estimate for costs).
        maximum: the bound (inclusive).
        fix: what the user can change, e.g. ``"use a smaller input size"``.
        unit: ``"B"`` for bytes (printed in KiB/MiB/GiB/TiB), else a word (``"cells"``).
    """
    if value <= maximum or limits_disabled():
        return
    if unit == "B":
        shown, limit = _format_bytes(value), _format_bytes(maximum)
    else:
        shown, limit = f"{value:g}" if isinstance(value, float) else str(value), str(maximum)
        if unit:
            shown, limit = f"{shown} {unit}", f"{limit} {unit}"
    raise InputError(f"{what} = {shown} is more than the limit {limit}; {fix} "
                     f"(or set {LIMITS_OFF_ENV}=1 to skip this check)")


# ------------------------------------------------------------------------ memory budget


def _parse_bytes(text: str) -> int:
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    suffix = value[-1:] if value[-1:] in units and value[-1:] else ""
    number = value[: len(value) - len(suffix)] if suffix else value
    try:
        result = float(number) * units[suffix]
    except ValueError:
        result = math.nan
    if not math.isfinite(result) or result <= 0:
        raise InputError(f"{MEMORY_LIMIT_ENV}={text!r} must be a positive size like 8G or "
                         "512M")
    return int(result)


def physical_memory() -> int | None:
    """Bytes of physical RAM (POSIX sysconf), or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget() -> int:
    """Bytes one fcnkit process may plan to use: ``FCNKIT_MEMORY_LIMIT``, else half the RAM.

    Half, because the operating system, data-loader workers and other processes need the
    rest; 4 GiB when the RAM size cannot be read.
    """
    text = os.environ.get(MEMORY_LIMIT_ENV)
    if text:
        return _parse_bytes(text)
    ram = physical_memory()
    return ram // 2 if ram else 4 * 2**30


# ------------------------------------------------------------------------ estimators


def check_suggestion_search(layers: int, target_rf: int) -> None:
    """Refuse a dilation-schedule search (``gridding --suggest``) that is too large: its
    candidates' coverage is computed up to the target receptive field."""
    check_at_most("the suggestion's receptive field", int(target_rf), MAX_RECEPTIVE_FIELD,
                  "ask for a smaller receptive field")
    check_at_most("layers in the suggestion search", int(layers), MAX_STACK_LAYERS,
                  "ask for fewer layers")


def check_animation(frames: int, cells: int) -> None:
    """Refuse an animation with too many frames or cells to draw, before its tap layout is
    computed: ``frames`` output positions (one frame each) over a drawn grid of ``cells``
    cells (:func:`fcnkit.arith.taps.animation_cost` counts both from the layer)."""
    frames, cells = int(frames), int(cells)
    check_at_most("the animation's frames (one per output position)", frames,
                  MAX_ANIMATION_FRAMES, "animate a smaller layer (a few cells per side show "
                  "the same geometry)")
    # A frame draws every cell of the grid (the kernel's taps lie within it) plus the output.
    check_at_most("the animation's cell draws (frames x (grid cells + frames))",
                  frames * (cells + frames), MAX_ANIMATION_CELL_DRAWS,
                  "animate a smaller layer (a few cells per side show the same geometry)")


def check_tiles(rows: int, cols: int, window: Sequence[int], overlap: float) -> None:
    """Refuse a sliding-window pass of ``rows`` x ``cols`` tiles (one forward pass each) on
    one image when there are too many: a small window with a large overlap."""
    check_at_most(f"a {window[0]}x{window[1]} window with overlap {overlap:g} needs "
                  f"{rows}x{cols} tiles per image", int(rows) * int(cols), MAX_TILES_PER_IMAGE,
                  "use a larger --window or a smaller --overlap", unit="tiles")


def check_synthetic(train: int, val: int, size: Sequence[int]) -> None:
    """Refuse a synthetic dataset that is too large, before anything is written."""
    height, width = (int(v) for v in size)
    images = int(train) + int(val)
    check_at_most(f"a synthetic image of {height}x{width}", height * width,
                  SYNTH_MAX_IMAGE_PIXELS, "use a size up to 4096x4096", unit="pixels")
    check_at_most("the synthetic dataset's images (train + val)", images, SYNTH_MAX_IMAGES,
                  "ask for fewer images")
    check_at_most("the synthetic dataset's pixels (images x size)", images * height * width,
                  SYNTH_MAX_TOTAL_PIXELS, "ask for fewer or smaller images", unit="pixels")


def boundary_width_within(width: int, height: int, image_width: int) -> int:
    """The boundary width that does the work of ``width`` on a ``height x image_width``
    image: at most its longer side.

    Beyond it the trimap band and Boundary IoU's inner boundaries no longer change: every
    pixel is within chessboard distance max(H, W) - 1 of every other and within
    ceil(max(H, W) / 2) of the outside of the image. Without this bound the (2d+1)-wide
    windows grow with ``width`` alone (``eval --boundary-width 1024`` on 32x32 images:
    a 2049-wide window per pixel and per class).
    """
    return max(1, min(int(width), max(int(height), int(image_width))))


def forward_activation_bytes(height: int, width: int, batch: int = 1) -> int:
    """Upper estimate of the float32 activations of one forward pass at ``height x width``."""
    return int(height) * int(width) * int(batch) * ACTIVATION_FLOATS_PER_PIXEL * BYTES_PER_FLOAT


def check_model_input(size: Sequence[int], option: str = "size") -> None:
    """Refuse a model forward pass at ``size`` whose activations exceed the memory budget.

    ``option`` names what set the size in the message (``"--size"`` on the command line).
    """
    height, width = (int(v) for v in size)
    check_at_most(f"the memory of a forward pass at {height}x{width} (estimate)",
                  forward_activation_bytes(height, width), memory_budget(),
                  f"use a smaller {option} (the receptive field and stride do not depend on "
                  f"it) or raise {MEMORY_LIMIT_ENV}", unit="B")


def check_training_crop(crop: Sequence[int], batch_size: int) -> None:
    """Refuse a training ``crop`` x ``batch_size`` whose forward + backward memory exceeds
    the budget (the TrainConfig fields are named in the message)."""
    height, width = (int(v) for v in crop)
    estimate = TRAIN_MEMORY_FACTOR * forward_activation_bytes(height, width, batch_size)
    check_at_most(f"the memory of a training step at crop={height}x{width}, "
                  f"batch_size={batch_size} (forward + backward, estimate)", estimate,
                  memory_budget(), f"use a smaller crop or batch_size, or raise "
                  f"{MEMORY_LIMIT_ENV}", unit="B")
