"""Limits on work and memory: estimate what a request costs before doing it, refuse above.

Every command whose work or memory grows with numbers the user types (a dilation rate, an
image size, a dataset size, a training crop) first estimates the cost with one of the
estimators below and calls :func:`check_budget`, which raises a one-line
:class:`~fcnkit.errors.InputError` naming the option, the estimate and the limit. The
estimators are plain arithmetic (stdlib only, never torch), so a refusal costs nothing.

The limits (docs/limits.md lists them with the reasoning):

==========================  ============================================================
``GRIDDING_MAX_CELLS``       cells of the gridding coverage map, RF x RF (RF = 1 + (K-1)
                             sum(rates)); 16 M cells = 128 MB of int64 counts
``GRIDDING_MAX_RF``          receptive-field side of ``gridding`` (1-D counts, suggestions)
``ANIMATION_MAX_CELL_DRAWS`` frames x cells recoloured per frame in ``animate``
``ANIMATION_MAX_TAPS``       output positions x kernel taps laid out by ``animate``
``SYNTH_MAX_IMAGE_PIXELS``   pixels of one synthetic image (``data synth --size``)
``SYNTH_MAX_TOTAL_PIXELS``   pixels of the whole synthetic dataset
memory budget                bytes a model forward/backward may need (``models``, ``rf``,
                             ``train --crop``): ``FCNKIT_MEMORY_LIMIT`` or half the RAM
==========================  ============================================================

Set ``FCNKIT_LIMITS_OFF=1`` to turn every check off (at your own risk: the process may then
be killed by the kernel's out-of-memory handler or run for hours).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from fcnkit.errors import InputError

#: Environment variable that disables every limit when set to 1/true/yes.
LIMITS_OFF_ENV = "FCNKIT_LIMITS_OFF"
#: Environment variable overriding the memory budget, in bytes ("8G", "512M" allowed).
MEMORY_LIMIT_ENV = "FCNKIT_MEMORY_LIMIT"

GRIDDING_MAX_CELLS = 16_000_000
GRIDDING_MAX_RF = 100_000
ANIMATION_MAX_CELL_DRAWS = 400_000
ANIMATION_MAX_TAPS = 1_000_000
SYNTH_MAX_IMAGE_PIXELS = 4096 * 4096
SYNTH_MAX_TOTAL_PIXELS = 2_000_000_000
SYNTH_MAX_IMAGES = 1_000_000

#: Float32 activations kept per input pixel by one forward pass of the widest fcnkit model
#: (FCN-VGG16): sum over its layers of channels / stride^2 = 64*2 + 128*2/4 + 256*3/16 +
#: 512*3/64 + 512*3/256 + 4096*2/1024 + ... ~= 290 (Simonyan & Zisserman 2015, Table 1,
#: configuration D), rounded up to 320 for score, fusion and upsampling layers.
ACTIVATION_FLOATS_PER_PIXEL = 320
#: Training keeps the activations for backward and their gradients: about 3x a forward.
TRAIN_MEMORY_FACTOR = 3
BYTES_PER_FLOAT = 4


def limits_disabled() -> bool:
    """True when ``FCNKIT_LIMITS_OFF`` is set to 1/true/yes."""
    return os.environ.get(LIMITS_OFF_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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


def format_count(value: float, unit: str = "") -> str:
    """``1.5e9`` → ``'1.5 G'`` + unit (bytes in binary units: ``'1.4 GiB'``)."""
    if unit == "B":
        for prefix, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value >= scale:
                return f"{value / scale:.3g} {prefix}"
        return f"{value:.0f} B"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{prefix} {unit}".rstrip()
    return f"{value:.0f} {unit}".rstrip()


def check_budget(what: str, estimate: float, limit: float, option: str, *, unit: str = "",
                 fix: str = "") -> None:
    """Raise :class:`InputError` when ``estimate`` exceeds ``limit`` (unless limits are off).

    Args:
        what: the quantity, e.g. ``"gridding coverage map"``.
        estimate: its estimated size (same unit as ``limit``).
        limit: the documented limit.
        option: the option(s) that set the size, named in the message (``"--kernel/RATES"``).
        unit: ``"B"`` for bytes (printed in KiB/MiB/GiB), else a word (``"cells"``).
        fix: what to do instead; default: lower the option.
    """
    if limits_disabled() or estimate <= limit:
        return
    advice = fix or f"lower {option}"
    raise InputError(
        f"{option}: the {what} would need {format_count(estimate, unit)}, above the limit of "
        f"{format_count(limit, unit)}; {advice} (or set {LIMITS_OFF_ENV}=1 to skip this check)"
    )


# ------------------------------------------------------------------------ estimators


def gridding_receptive_field(rates: Sequence[int], kernel_size: int) -> int:
    """Side of a stride-1 dilated stack's receptive field: ``1 + (K - 1) * sum(rates)``.

    (Yu & Koltun 2016, Sec. 2: each KxK layer of dilation r adds (K - 1) r.)
    """
    return 1 + (int(kernel_size) - 1) * sum(int(r) for r in rates)


def check_gridding(rates: Sequence[int], kernel_size: int,
                   suggest: Sequence[int] | None = None) -> None:
    """Refuse a ``gridding`` request whose coverage map or suggestion search is too large."""
    rf = gridding_receptive_field(rates, kernel_size)
    check_budget("receptive field side", rf, GRIDDING_MAX_RF, "RATES/--kernel", unit="pixels",
                 fix="use smaller rates or a smaller kernel")
    check_budget("coverage map (RF x RF)", rf * rf, GRIDDING_MAX_CELLS, "RATES/--kernel",
                 unit="cells", fix="use smaller rates or a smaller kernel")
    if suggest is not None and len(suggest) == 2:
        layers, target = (int(v) for v in suggest)
        check_budget("suggestion search (receptive field)", target, GRIDDING_MAX_RF,
                     "--suggest", unit="pixels")
        check_budget("suggestion search (layers)", layers, 1_000, "--suggest", unit="layers")


def _axis_cells(n: int, k: int, s: int, p: int, d: int, op: int, transposed: bool) -> int:
    """Cells drawn along one axis: the padded input, or for a transposed convolution its
    zero-inserted, padded equivalent input ((n - 1) s + 1 + 2 (d (k - 1) - p) + op;
    Dumoulin & Visin 2016, relationship 14)."""
    if transposed:
        return (n - 1) * s + 1 + 2 * max(0, d * (k - 1) - p) + op
    return n + 2 * p


def check_animation(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                    padding: Sequence[int], dilation: Sequence[int], transposed: bool,
                    output_padding: Sequence[int]) -> None:
    """Refuse an ``animate`` request that would draw too many cells (all args (H, W) pairs).

    Output positions (= frames) come from :mod:`fcnkit.arith.sizes`; invalid geometry is
    left to the animation's own checks (this function only measures).
    """
    from fcnkit.arith.sizes import conv_output_size, conv_transpose_output_size

    cells, frames, taps = 1, 1, 1
    for axis in range(2):
        n, k, s = size[axis], kernel[axis], stride[axis]
        p, d, op = padding[axis], dilation[axis], output_padding[axis]
        if min(n, k, s, d) < 1 or min(p, op) < 0:
            return
        cells *= _axis_cells(n, k, s, p, d, op, transposed)
        taps *= k
        try:
            out = (conv_transpose_output_size(n, k, s, p, d, op) if transposed
                   else conv_output_size(n, k, s, p, d))
        except ValueError:
            return
        frames *= max(0, int(out))
    check_budget("animation (frames x grid cells)", frames * (cells + frames),
                 ANIMATION_MAX_CELL_DRAWS, "--size/--kernel", unit="cell draws",
                 fix="animate a smaller layer (a few cells per side show the same geometry)")
    check_budget("animation tap layout (frames x kernel taps)", frames * taps,
                 ANIMATION_MAX_TAPS, "--size/--kernel", unit="taps",
                 fix="animate a smaller layer")


def check_synthetic(train: int, val: int, size: Sequence[int]) -> None:
    """Refuse a ``data synth`` request that is too large, before anything is written."""
    height, width = (int(v) for v in size)
    images = int(train) + int(val)
    check_budget("synthetic image", height * width, SYNTH_MAX_IMAGE_PIXELS, "--size",
                 unit="pixels", fix="use --size up to 4096,4096")
    check_budget("synthetic dataset", images, SYNTH_MAX_IMAGES, "--train/--val",
                 unit="images")
    check_budget("synthetic dataset", images * height * width, SYNTH_MAX_TOTAL_PIXELS,
                 "--train/--val/--size", unit="pixels")


def forward_activation_bytes(height: int, width: int, batch: int = 1) -> int:
    """Upper estimate of the float32 activations of one forward pass at ``height x width``."""
    return int(height) * int(width) * int(batch) * ACTIVATION_FLOATS_PER_PIXEL * BYTES_PER_FLOAT


def check_model_input(size: Sequence[int], option: str = "--size") -> None:
    """Refuse a model forward pass (``models``, ``rf``) whose activations exceed the budget."""
    height, width = (int(v) for v in size)
    check_budget("forward pass at this input size", forward_activation_bytes(height, width),
                 memory_budget(), option, unit="B",
                 fix=f"use a smaller {option} (the receptive field and stride do not depend "
                     "on it)")


def check_training_crop(crop: Sequence[int], batch_size: int) -> None:
    """Refuse a training crop x batch whose forward + backward memory exceeds the budget."""
    height, width = (int(v) for v in crop)
    estimate = TRAIN_MEMORY_FACTOR * forward_activation_bytes(height, width, batch_size)
    check_budget("training step (crop x batch, forward + backward)", estimate,
                 memory_budget(), "--crop/--batch-size", unit="B",
                 fix="use a smaller --crop or --batch-size")
