"""Bounds on the work one request may ask for: one place for the CLI and the explorer.

A geometry is cheap to describe and expensive to draw: an animation has one frame per
output position, the matrix C has (output pixels) x (input pixels) entries and a gridding
map has (1 + (K - 1) sum(rates))^2 cells. ``fcnkit animate``, ``fcnkit gridding`` and
``fcnkit explore`` refuse anything above these bounds with a one-line
:class:`~fcnkit.errors.InputError` (:func:`check_at_most`) instead of running out of memory.
Stdlib only, so :mod:`fcnkit.arith` may use it.
"""

from __future__ import annotations

from fcnkit.errors import InputError

__all__ = [
    "MAX_ANIMATION_FRAMES",
    "MAX_COVERAGE_MAP_SIDE",
    "MAX_INPUT_SIZE",
    "MAX_MATRIX_ENTRIES",
    "MAX_RECEPTIVE_FIELD",
    "MAX_STACK_LAYERS",
    "check_at_most",
]

#: Output positions an animation draws (one frame each): a 20 x 20 output.
MAX_ANIMATION_FRAMES = 400
#: Entries of a dense convolution matrix C (rows x columns): 256 x 256, a 16 x 16 input
#: convolved to a 16 x 16 output.
MAX_MATRIX_ENTRIES = 65_536
#: Side of a dilated stack's receptive field, 1 + (K - 1) sum(rates), for which the
#: coverage is computed (the 2-D map has side^2 int64 cells: 8 MB at 1025).
MAX_RECEPTIVE_FIELD = 1025
#: Side up to which the 2-D coverage map is sent to a page or printed as JSON.
MAX_COVERAGE_MAP_SIDE = 129
#: Layers in one explorer stack.
MAX_STACK_LAYERS = 32
#: Input size (per dimension) the explorer accepts.
MAX_INPUT_SIZE = 100_000


def check_at_most(what: str, value: int, maximum: int, fix: str) -> None:
    """Raise a one-line InputError when ``value > maximum``.

    Args:
        what: the quantity, e.g. ``"the matrix C has 300x300 entries"`` reads
            "... = 90000, more than the limit 65536".
        value: its value.
        maximum: the bound (inclusive).
        fix: what the user can change, e.g. ``"use a smaller input size"``.
    """
    if value > maximum:
        raise InputError(f"{what} = {value} is more than the limit {maximum}; {fix}")
