"""Gridding / HDC: coverage vs real torch dilated convolutions, the published rules vs the
exact coverage, and rate suggestions."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fcnkit.arith.gridding import (
    dilation_coverage,
    dilation_coverage_1d,
    hdc_check,
    hdc_max_distances,
    hdc_schedule,
    prefix_rule_ok,
    suggest_rates,
)
from fcnkit.errors import InputError


def _torch_paths(rates, k):
    """Path counts by composing real dilated convs (all-ones weights) on a delta input."""
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    for r in rates:
        w = torch.ones(1, 1, k, k, dtype=torch.float64)
        x = F.conv2d(x, w, padding=r * (k - 1), dilation=r)
    return x[0, 0].round().long().numpy()


@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(1, 4))
def test_coverage_matches_torch_delta(rates, k):
    cov = dilation_coverage(rates, k)
    assert cov.shape == (1 + (k - 1) * sum(rates),) * 2
    np.testing.assert_array_equal(cov, _torch_paths(rates, k))


def test_seed_examples():
    # Wang et al. / the seed's heat maps: 1,2,5 covers everything, 1,2,9 and 2,4,8 grid.
    ok = hdc_check([1, 2, 5])
    assert not ok.grids and ok.holes == 0 and ok.M == [1, 2, 5] and ok.m_rule_ok
    assert ok.receptive_field == 17 and ok.common_factor == 1
    bad = hdc_check([1, 2, 9])
    assert bad.grids and bad.M == [3, 5, 9] and not bad.m_rule_ok and bad.common_factor == 1
    assert bad.holes_1d == 4 and bad.holes == 25 * 25 - 21 * 21
    assert hdc_check([2, 4, 8]).common_factor == 2 and hdc_check([2, 4, 8]).grids
    # Same rates everywhere (the seed's 2,2,2 example): only even offsets are reached.
    same = dilation_coverage_1d([2, 2, 2])
    assert (same[1::2] == 0).all() and (same[::2] > 0).all()
    assert dilation_coverage([1, 2, 3]).sum() == 9**3  # 9 paths per layer


def test_m_recursion_by_hand():
    # M_3 = 5; M_2 = max(5 - 4, 5 - 2*3, 2) = 2; M_1 = max(2 - 2, 2 - 2*1, 1) = 1
    assert hdc_max_distances([1, 2, 5]) == [1, 2, 5]
    assert hdc_max_distances([1, 3, 1]) == [3, 5, 1]


def test_published_rules_versus_coverage():
    # The claims of the module docstring, exhaustively for K = 3.
    passes_and_grids = fails_and_clean = 0
    for n in range(2, 5):
        for rates in itertools.product(range(1, 10), repeat=n):
            rep = hdc_check(rates)
            if math.gcd(*rates) > 1:
                assert rep.grids
            if rep.m_rule_ok and rates[0] == 1:
                assert not rep.grids
            passes_and_grids += rep.m_rule_ok and rep.grids
            fails_and_clean += (not rep.m_rule_ok) and not rep.grids
    assert (passes_and_grids, fails_and_clean) == (886, 967)
    assert hdc_check([2, 3]).m_rule_ok and hdc_check([2, 3]).grids
    assert not hdc_check([1, 3, 1]).m_rule_ok and not hdc_check([1, 3, 1]).grids


@given(st.lists(st.integers(1, 12), min_size=1, max_size=5), st.integers(2, 5))
def test_prefix_rule_is_exact(rates, k):
    assert prefix_rule_ok(rates, k) == (not hdc_check(rates, k).grids)


@pytest.mark.parametrize("layers, target", [(3, 17), (4, 30), (6, 67), (2, 9), (1, 3)])
def test_suggestions_reach_target_without_holes(layers, target):
    found = suggest_rates(layers, target)
    assert found
    for s in found:
        assert len(s.rates) == layers and s.rates[0] == 1
        assert s.receptive_field >= target
        assert (dilation_coverage_1d(s.rates) > 0).all()
        assert s.receptive_field == 1 + 2 * sum(s.rates)
    assert [s.receptive_field for s in found] == sorted(s.receptive_field for s in found)
    # Closest: no hole-free sawtooth with a smaller receptive field >= target exists.
    best = found[0].receptive_field
    for group_len in range(1, min(layers, 3) + 1):
        for tail in itertools.combinations(range(2, target), group_len - 1):
            group = (1, *tail)
            rates = [group[i % group_len] for i in range(layers)]
            rf = 1 + 2 * sum(rates)
            if target <= rf < best:
                assert hdc_check(rates).grids


def test_suggestions_prefer_hdc_when_tied():
    first = suggest_rates(3, 17)[0]
    assert first.receptive_field == 17 and first.m_rule_ok


def test_impossible_target_gives_nothing():
    assert suggest_rates(1, 5) == []  # one layer must have rate 1: RF 3


@pytest.mark.parametrize(
    "call",
    [
        lambda: dilation_coverage([]),
        lambda: dilation_coverage([0, 1]),
        lambda: dilation_coverage([1, 2], kernel_size=0),
        lambda: hdc_check([1.5]),
        lambda: suggest_rates(0, 10),
        lambda: suggest_rates(3, 10, kernel_size=1),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(InputError):
        call()


@pytest.mark.parametrize("layers, target", [(6, 37), (5, 40), (8, 101)])
def test_suggestion_window_does_not_change_the_ranking(layers, target):
    # the enumeration keeps only `limit` last rates per prefix; a larger limit must agree
    assert suggest_rates(layers, target, limit=4) == suggest_rates(layers, target, limit=200)[:4]


@pytest.mark.parametrize(
    "plain, kernel, convs",
    [([2, 2, 4, 4], 3, 2), ([2, 2], 3, 2), ([2] * 6 + [4] * 3, 3, 1), ([2] * 3, 3, 1),
     ([2, 2, 2], 5, 1)],
)
def test_hdc_schedule_against_torch_delta(plain, kernel, convs):
    # Dilated ResNets (ResNet-18 OS 8 / 16, ResNet-50 OS 8 / 16) and one 5x5 stack.
    rates = hdc_schedule(plain, kernel, convs)
    assert len(rates) == len(plain)
    per_conv = [r for r in rates for _ in range(convs)]
    paths = _torch_paths(per_conv, kernel)
    assert (paths > 0).all()  # no holes: every pixel of the footprint reaches the output
    # ...and a footprint at least as wide as the plain per-block schedule's (the target).
    assert paths.shape[0] >= _torch_paths(plain, kernel).shape[0]
    assert (_torch_paths([r for r in plain for _ in range(convs)], kernel) == 0).any()


def test_hdc_schedule_bad_input():
    with pytest.raises(InputError, match="convs_per_rate"):
        hdc_schedule([2, 2], 3, 0)
    with pytest.raises(InputError, match="rates"):
        hdc_schedule([], 3)
