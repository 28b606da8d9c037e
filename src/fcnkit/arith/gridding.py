"""Stacks of dilated convolutions: which input pixels one output pixel sees (gridding, HDC).

A stack of stride-1 convolutions with kernel K and dilation rates r_1..r_n (r_1 closest to
the input) gives every output pixel a receptive field of side 1 + (K - 1)*sum(r_i). It does
not necessarily *use* every pixel of it: with rates that share a factor (2, 4, 8) only a
lattice of pixels is reached -- the "gridding" effect (Wang et al. 2018, "Understanding
Convolution for Semantic Segmentation", the Hybrid Dilated Convolution (HDC) rules).

Counting: with all-ones K x K kernels, the number of paths from an input pixel to the
output pixel is the full convolution of the dilated all-ones kernels (a 1-D count per axis;
the 2-D map is the outer product, because a K x K all-ones kernel is separable). A pixel with
count 0 is a hole. :func:`dilation_coverage` returns that map; :func:`hdc_check` compares it
with the two published rules of thumb:

* the maximum-distance rule: M_n = r_n, M_i = max[M_{i+1} - 2 r_i, M_{i+1} -
  2(M_{i+1} - r_i), r_i], design goal M_2 <= K (written for K = 3 in the paper);
* the common-factor rule: the rates must not share a factor > 1.

How they relate to the actual coverage -- counted exhaustively for K = 3, 2 to 4 layers,
rates 1..9 (7371 stacks; ``tests/arith/test_arith_gridding.py`` re-checks the claims):

* A common factor g > 1 always grids (every path offset is a multiple of g): "gcd = 1"
  is necessary, never sufficient -- (1, 2, 9) has gcd 1 and 4 holes per axis.
* M_2 <= K together with r_1 = 1 never grids (162 of 162 stacks): sufficient.
* M_2 <= K alone is not: (2, 3) satisfies it and grids -- the paper presumes a dense
  first layer (r_1 = 1). 886 stacks pass the rule and grid (89 of them share a factor).
* The M-rule is not necessary either: 967 stacks fail it and have no holes, e.g. (1, 3, 1)
  (M_2 = 5) and (2, 1, 6). The M recursion depends on the order of the layers; the coverage
  does not (the path counts are a convolution, which commutes).
* The exact rule (proved here, checked for K = 2..5): sort the rates ascending; the stack
  is hole-free iff the smallest is 1 and each next rate r satisfies
  r <= (K - 1)*(sum of the smaller rates) + 1. Proof: by induction the smaller rates reach
  every offset in [0, (K - 1)P] (P their sum); adding taps {0, r, ..., (K - 1)r} keeps
  that contiguous iff r <= (K - 1)P + 1; if r is larger, offset (K - 1)P + 1 needs a rate
  >= r > (K - 1)P + 1 and is a hole. :func:`prefix_rule_ok` implements it.

``hdc_check(...).grids`` is computed from the coverage itself, not from the rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fcnkit.arith.receptive import receptive_field
from fcnkit.errors import InputError
from fcnkit.limits import MAX_RECEPTIVE_FIELD, check_at_most

__all__ = [
    "HDCReport",
    "RateSuggestion",
    "dilation_coverage",
    "dilation_coverage_1d",
    "hdc_check",
    "hdc_max_distances",
    "hdc_schedule",
    "prefix_rule_ok",
    "suggest_rates",
]


def _check_rates(rates: Sequence[int], kernel_size: int) -> tuple[int, ...]:
    rates = tuple(rates)
    if not rates:
        raise InputError("rates: give at least one dilation rate, e.g. 1,2,5")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise InputError(f"rates: dilation rates must be integers >= 1, got {list(rates)}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) \
            or kernel_size < 1:
        raise InputError(f"kernel_size must be an integer >= 1, got {kernel_size!r}")
    return tuple(int(r) for r in rates)


#: Path counts saturate at the largest int64: K**n paths overflow it after a few dozen
#: layers (31 layers of rate 1 with K = 3 already give ~2.9e27 paths to a 2-D pixel).
COUNT_CAP = int(np.iinfo(np.int64).max)


def dilation_coverage_1d(rates: Sequence[int], kernel_size: int = 3) -> np.ndarray:
    """Path counts along one axis: 1-D int64 array of length 1 + (K - 1)*sum(rates).

    Element i counts the paths from input offset i (0 = first pixel of the receptive
    field) to the output pixel: the full convolution of the dilated all-ones kernels.
    Counted exactly (Python ints); a count above :data:`COUNT_CAP` is stored as the cap, so
    zeros (holes) are always exact.
    """
    rates = _check_rates(rates, kernel_size)
    counts = np.ones(1, dtype=object)
    for r in rates:
        # dilated all-ones kernel: taps at 0, r, ..., (K - 1) r
        kernel = np.zeros((kernel_size - 1) * r + 1, dtype=object)
        kernel[::r] = 1
        counts = np.convolve(counts, kernel)
    return np.array([min(int(c), COUNT_CAP) for c in counts], dtype=np.int64)


def _saturating_outer(counts: np.ndarray) -> np.ndarray:
    """``outer(counts, counts)`` of non-negative int64 counts, saturating at COUNT_CAP
    (``a * b > cap`` iff ``a > cap // b`` for b > 0) instead of wrapping around."""
    limit = np.where(counts > 0, COUNT_CAP // np.maximum(counts, 1), COUNT_CAP)
    over = counts[:, None] > limit[None, :]
    with np.errstate(over="ignore"):
        product = np.outer(counts, counts)  # wraps where `over`; replaced below
    return np.where(over, np.int64(COUNT_CAP), product)


def prefix_rule_ok(rates: Sequence[int], kernel_size: int = 3) -> bool:
    """Exact hole-free test without building the map (proof in the module docstring).

    Sort the rates ascending; the stack has no holes iff the smallest is 1 and every
    next rate is at most (K - 1)*(sum of the rates before it) + 1. With K = 1 every layer
    reads one pixel whatever its rate: the field is that pixel, never a hole.
    """
    rates = _check_rates(rates, kernel_size)
    if kernel_size == 1:
        return True
    below = 0
    for r in sorted(rates):
        if r > (kernel_size - 1) * below + 1:
            return False
        below += r
    return True


def dilation_coverage(rates: Sequence[int], kernel_size: int = 3) -> np.ndarray:
    """How many paths reach each input pixel of one output pixel's receptive field.

    Args:
        rates: dilation rates of a stack of stride-1 K x K convolutions, first = closest
            to the input (the counts do not depend on the order; the HDC M values do).
        kernel_size: K, the same for every layer.

    Returns:
        2-D int64 array of shape (R, R), R = 1 + (K - 1)*sum(rates): entry [y, x] is the
        number of paths from input pixel (y, x) of the receptive field to the output pixel
        (0 = a hole). The output pixel sits over the centre (for odd K). Counts above
        :data:`COUNT_CAP` (the largest int64) are stored as the cap; zeros are exact.
    """
    counts = dilation_coverage_1d(rates, kernel_size)
    return _saturating_outer(counts)


def hdc_max_distances(rates: Sequence[int]) -> list[int]:
    """Wang et al.'s M_i, the maximum distance between nonzero taps seen by layer i.

    M_n = r_n; M_i = max[M_{i+1} - 2 r_i, M_{i+1} - 2 (M_{i+1} - r_i), r_i] (3-tap kernels).
    Returns [M_1, ..., M_n] (same order as ``rates``).
    """
    rates = _check_rates(rates, 3)
    m = [0] * len(rates)
    m[-1] = rates[-1]
    for i in range(len(rates) - 2, -1, -1):
        nxt, r = m[i + 1], rates[i]
        m[i] = max(nxt - 2 * r, nxt - 2 * (nxt - r), r)
    return m


@dataclass(frozen=True)
class HDCReport:
    """Verdict on a dilated stack (see :func:`hdc_check`).

    Attributes:
        rates: the dilation rates, first = closest to the input.
        kernel_size: K.
        M: Wang et al.'s maximum distances [M_1, ..., M_n] (their 3-tap formula for any K).
        m_rule_ok: M_2 <= K (True for a single layer, where the rule does not apply).
        common_factor: gcd of the rates (the rule wants 1).
        receptive_field: side of the receptive field, 1 + (K - 1)*sum(rates).
        holes: input pixels inside the receptive field no path reaches (2-D count).
        holes_1d: the same along one axis.
        grids: True when holes > 0 (the actual gridding verdict).
        coverage: the 2-D path-count map of :func:`dilation_coverage`.
    """

    rates: tuple[int, ...]
    kernel_size: int
    M: list[int]
    m_rule_ok: bool
    common_factor: int
    receptive_field: int
    holes: int
    holes_1d: int
    grids: bool
    coverage: np.ndarray

    def as_dict(self, include_coverage: bool = True) -> dict[str, Any]:
        """JSON-ready dict (``coverage`` as nested lists when asked for)."""
        out = {
            "rates": list(self.rates),
            "kernel_size": self.kernel_size,
            "M": list(self.M),
            "m_rule_ok": self.m_rule_ok,
            "common_factor": self.common_factor,
            "receptive_field": self.receptive_field,
            "holes": self.holes,
            "holes_1d": self.holes_1d,
            "grids": self.grids,
        }
        if include_coverage:
            out["coverage"] = self.coverage.tolist()
        return out


def hdc_check(rates: Sequence[int], kernel_size: int = 3) -> HDCReport:
    """Check a dilated stack against the HDC rules and against its actual coverage.

    Args:
        rates: dilation rates, first = closest to the input.
        kernel_size: K of every layer.

    Returns:
        An :class:`HDCReport`; ``grids`` comes from the coverage map (exact), ``m_rule_ok``
        and ``common_factor`` are the published rules of thumb for comparison.

    Raises:
        InputError: bad rates, or a receptive field above
            :data:`fcnkit.limits.MAX_RECEPTIVE_FIELD` (the map would not fit in memory).
    """
    rates = _check_rates(rates, kernel_size)
    side = 1 + (kernel_size - 1) * sum(rates)
    # The 2-D map has side^2 cells: bounded like every picture (fcnkit.limits).
    check_at_most("the receptive field 1 + (K-1)*sum(rates)", side, MAX_RECEPTIVE_FIELD,
                  "use smaller rates or fewer layers")
    m = hdc_max_distances(rates)
    counts = dilation_coverage_1d(rates, kernel_size)
    holes_1d = int((counts == 0).sum())
    side = counts.size
    covered = side - holes_1d
    holes = side * side - covered * covered  # 2-D zero iff either axis is zero
    return HDCReport(
        rates=rates,
        kernel_size=int(kernel_size),
        M=m,
        m_rule_ok=len(rates) < 2 or m[1] <= kernel_size,
        common_factor=math.gcd(*rates),
        receptive_field=side,
        holes=holes,
        holes_1d=holes_1d,
        grids=holes > 0,
        coverage=_saturating_outer(counts),
    )


@dataclass(frozen=True)
class RateSuggestion:
    """One suggested schedule: ``rates`` (a rising group repeated), its ``receptive_field``,
    ``holes`` (always 0 for returned suggestions), ``M`` values, whether Wang et al.'s
    ``m_rule_ok`` (M_2 <= K) holds, and the ``group`` repeated."""

    rates: tuple[int, ...]
    group: tuple[int, ...]
    receptive_field: int
    holes: int
    M: list[int]
    m_rule_ok: bool


def suggest_rates(
    num_layers: int, target_rf: int, kernel_size: int = 3, limit: int = 10, max_group: int = 4
) -> list[RateSuggestion]:
    """Sawtooth dilation schedules with no holes whose receptive field reaches ``target_rf``.

    A schedule repeats one strictly rising group (1, r_2, ..., r_m) -- the HDC sawtooth,
    e.g. 1, 2, 3, 1, 2, 3 -- truncated to ``num_layers`` layers. Candidates with holes are
    dropped (exact coverage, :func:`dilation_coverage_1d`).

    Args:
        num_layers: layers in the stack (>= 1).
        target_rf: wanted receptive-field side in pixels (>= 1).
        kernel_size: K of every layer (>= 2).
        limit: how many suggestions to return at most.
        max_group: longest rising group tried.

    Returns:
        Suggestions, best first: smallest receptive field >= target, then those that also
        satisfy Wang et al.'s M_2 <= K, then whole repetitions of the group (no truncated
        last group), then smallest largest rate (denser sampling), then
        longer groups (finer sawtooth), then lexicographic. Groups are at most
        ``max_group`` long and rates at most ceil((target_rf - 1)/(K - 1)).
        Empty when no such schedule exists (e.g. too few layers for the target).

    Raises:
        InputError: for non-positive arguments.
    """
    for name, value, low in (("num_layers", num_layers, 1), ("target_rf", target_rf, 1),
                             ("kernel_size", kernel_size, 2), ("limit", limit, 1),
                             ("max_group", max_group, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    # RF = 1 + (K - 1) * sum(rates) >= target  <=>  sum(rates) >= need
    need = max(0, -(-(target_rf - 1) // (kernel_size - 1)))
    max_rate = max(2, need)
    found: list[RateSuggestion] = []
    for m in range(1, min(max_group, num_layers) + 1):
        # group[j] appears copies[j] times in the truncated repetition
        copies = [-(-(num_layers - j) // m) for j in range(m)]

        def extend(group: tuple[int, ...], below: int, m: int = m,
                   copies: list[int] = copies) -> None:
            # below = sum of all rates smaller than the next one (with repetitions)
            if len(group) == m:
                rates = tuple(group[i % m] for i in range(num_layers))
                if sum(rates) >= need:
                    rf = 1 + (kernel_size - 1) * sum(rates)
                    m_values = hdc_max_distances(rates)
                    m_ok = len(rates) < 2 or m_values[1] <= kernel_size
                    found.append(RateSuggestion(rates, group, rf, 0, m_values, m_ok))
                return
            # hole-free iff each new rate <= (K - 1) * below + 1 (prefix rule, module doc)
            top = min(max_rate, (kernel_size - 1) * below + 1)
            low = group[-1] + 1
            j = len(group)
            if j == m - 1:
                # Last rate: only the `limit` smallest sums >= need from this prefix can
                # rank (every larger rate gives a strictly larger receptive field).
                low = max(low, -(-(need - below) // copies[j]))
                top = min(top, low + limit - 1)
            for r in range(low, top + 1):
                extend((*group, r), below + copies[j] * r)

        extend((1,), copies[0])
    ranked = sorted(
        found,
        key=lambda s: (s.receptive_field, not s.m_rule_ok, num_layers % len(s.group) != 0,
                       max(s.rates), -len(s.group), s.rates),
    )
    return ranked[:limit]


def hdc_schedule(
    plain_rates: Sequence[int], kernel_size: int = 3, convs_per_rate: int = 1
) -> tuple[int, ...]:
    """The hole-free sawtooth that replaces a plain dilated schedule (Wang et al. 2018, HDC).

    The plain dilated network (Yu & Koltun; torchvision's ``replace_stride_with_dilation``)
    gives every block of a layer that stopped downsampling the rate its stride would have
    had (2, 2, ..., 4, 4): equal rates, which grid. HDC keeps that schedule's receptive
    field with a rising sawtooth without holes: the receptive field of the plain per-block
    stack (:func:`fcnkit.arith.receptive_field` of K x K layers with those dilations) is the
    target of :func:`suggest_rates`, whose best schedule is returned once
    :func:`hdc_check` confirms that the per-convolution stack (each rate on each of a
    block's ``convs_per_rate`` convolutions) has no holes.

    Args:
        plain_rates: one rate per block of the plain dilated network.
        kernel_size: K of the dilated convolutions.
        convs_per_rate: K x K convolutions per block (2 in a ResNet BasicBlock, 1 in a
            Bottleneck).

    Returns:
        One rate per block.

    Raises:
        InputError: for bad arguments, or when no hole-free schedule exists.
    """
    plain = _check_rates(plain_rates, kernel_size)
    if isinstance(convs_per_rate, bool) or not isinstance(convs_per_rate, int) \
            or convs_per_rate < 1:
        raise InputError(f"convs_per_rate must be an integer >= 1, got {convs_per_rate!r}")
    target = receptive_field([(kernel_size, 1, 0, r) for r in plain])[-1].size
    suggestions = suggest_rates(len(plain), target, kernel_size)
    if not suggestions:
        raise InputError(f"no hole-free HDC schedule reaches the receptive field {target} of "
                         f"{list(plain)}; give the dilations explicitly")
    rates = suggestions[0].rates
    report = hdc_check([r for r in rates for _ in range(convs_per_rate)], kernel_size)
    if report.grids:
        raise InputError(f"HDC schedule {list(rates)} grids ({report.holes} holes); give the "
                         "dilations explicitly")
    return rates
