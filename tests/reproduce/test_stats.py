"""``fcnkit.reproduce.stats`` against hand-computed cases: paired deltas, one-sided
Student-t bounds (t quantiles from a printed table), the three kinds and every verdict
branch, the near-chance gate, fewer than 2 seeds, the constant prediction's mIoU on masks
whose pixel counts are known, and the overall verdict's wording."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fcnkit.errors import InputError
from fcnkit.reproduce import stats
from fcnkit.reproduce.stats import (
    INCONCLUSIVE,
    NEAR_CHANCE,
    NOT_REPRODUCED,
    REPRODUCED,
    Clause,
    compare,
    constant_miou,
    decide,
    one_sided_bounds,
    overall_verdict,
    paired_deltas,
)

#: t(0.95, df), from a printed table of Student's t (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
T95 = {1: 6.313752, 2: 2.919986, 3: 2.353363, 4: 2.131847}


def runs_of(a: list[float], b: list[float], metric: str = "miou") -> list[dict]:
    return ([{"variant": "a", "seed": s, "metrics": {metric: v}} for s, v in enumerate(a)]
            + [{"variant": "b", "seed": s, "metrics": {metric: v}} for s, v in enumerate(b)])


def test_paired_deltas_pair_by_seed_ascending_and_skip_what_one_side_lacks():
    runs = [
        {"variant": "a", "seed": 2, "metrics": {"miou": 0.50}},
        {"variant": "b", "seed": 0, "metrics": {"miou": 0.10}},
        {"variant": "a", "seed": 0, "metrics": {"miou": 0.30}},
        {"variant": "b", "seed": 2, "metrics": {"miou": 0.20}},
        {"variant": "a", "seed": 1, "metrics": {"miou": 0.40}},   # b has no seed 1
        {"variant": "a", "seed": 3, "metrics": {"miou": math.nan}},
        {"variant": "b", "seed": 3, "metrics": {"miou": 0.25}},  # a's seed 3 undefined
        {"variant": "c", "seed": 0, "metrics": {"miou": 0.90}},
    ]
    seeds, deltas = paired_deltas(runs, "a", "b", "miou")
    assert seeds == [0, 2]
    assert deltas == pytest.approx([0.20, 0.30])


def test_bounds_are_mean_minus_and_plus_t_sd_over_root_n():
    # deltas 0.03, 0.05, 0.04: mean 0.04, sample sd 0.01, n 3
    b = one_sided_bounds([0.03, 0.05, 0.04])
    half = T95[2] * 0.01 / math.sqrt(3)  # 0.016859
    assert (b["n"], b["mean"], b["sd"]) == (3, pytest.approx(0.04), pytest.approx(0.01))
    assert b["lower"] == pytest.approx(0.04 - half, abs=1e-7)
    assert b["upper"] == pytest.approx(0.04 + half, abs=1e-7)
    two = one_sided_bounds([0.1, 0.3])  # mean 0.2, sd 0.141421
    assert two["lower"] == pytest.approx(0.2 - T95[1] * 0.1, abs=1e-6)
    one = one_sided_bounds([0.1])
    assert (one["n"], one["mean"], one["lower"], one["upper"]) == (1, 0.1, None, None)
    assert one_sided_bounds([])["n"] == 0


@pytest.mark.parametrize("deltas,delta_min,verdict", [
    ([0.03, 0.05, 0.04], 0.02, REPRODUCED),       # mean 0.04 >= 0.02, lower 0.023 > 0
    ([0.03, 0.05, 0.04], 0.06, NOT_REPRODUCED),   # upper 0.0569 < 0.06
    ([0.03, 0.05, 0.04], 0.05, INCONCLUSIVE),     # mean 0.04 < 0.05 <= upper 0.0569
    ([0.10, -0.05, 0.10], 0.02, INCONCLUSIVE),    # mean 0.05 but lower -0.096 <= 0
    ([-0.03, -0.05, -0.04], 0.0, NOT_REPRODUCED),  # upper -0.023 < 0
])
def test_superiority(deltas, delta_min, verdict):
    assert decide("superiority", one_sided_bounds(deltas), delta_min=delta_min)[0] == verdict


@pytest.mark.parametrize("deltas,verdict", [
    ([0.03, 0.05, 0.04], REPRODUCED),          # lower 0.023 > -0.01
    ([-0.05, -0.04, -0.06], NOT_REPRODUCED),   # upper -0.033 < -0.01
    ([0.0, -0.02, 0.01], INCONCLUSIVE),        # bounds [-0.0291, +0.0224] contain -0.01
])
def test_non_inferiority(deltas, verdict):
    assert decide("non_inferiority", one_sided_bounds(deltas), margin=0.01)[0] == verdict


@pytest.mark.parametrize("deltas,verdict", [
    ([0.001, -0.001, 0.0], REPRODUCED),       # [-0.0017, +0.0017] inside +-0.02
    ([0.05, 0.06, 0.04], NOT_REPRODUCED),     # lower 0.033 > 0.02
    ([-0.05, -0.06, -0.04], NOT_REPRODUCED),  # upper -0.033 < -0.02
    # the recorded upsampling run, frozen - learned: mean 0.0157, sd 0.0090185,
    # bounds [+0.00046, +0.03087]: crosses +0.02 -> neither equal nor different
    ([0.015, 0.007, 0.025], INCONCLUSIVE),
])
def test_equivalence(deltas, verdict):
    assert decide("equivalence", one_sided_bounds(deltas), margin=0.02)[0] == verdict


def test_equivalence_does_not_pass_a_noisier_run_more_easily():
    # Same mean difference 0; the noisy run's interval is wider than the margin.
    quiet, noisy = [0.002, -0.002, 0.0], [0.05, -0.05, 0.0]
    assert decide("equivalence", one_sided_bounds(quiet), margin=0.02)[0] == REPRODUCED
    assert decide("equivalence", one_sided_bounds(noisy), margin=0.02)[0] == INCONCLUSIVE


@pytest.mark.parametrize("kind,threshold", [("superiority", {"delta_min": 0.0}),
                                            ("non_inferiority", {"margin": 0.01}),
                                            ("equivalence", {"margin": 0.02})])
def test_fewer_than_two_paired_seeds_is_inconclusive(kind, threshold):
    one = compare(runs_of([0.9], [0.1]), clause="c", kind=kind, a="a", b="b", metric="miou",
                  **threshold)
    assert (one["n"], one["verdict"]) == (1, INCONCLUSIVE)
    # two seeds each, but none in common
    disjoint = [{"variant": "a", "seed": 0, "metrics": {"miou": 0.9}},
                {"variant": "a", "seed": 1, "metrics": {"miou": 0.9}},
                {"variant": "b", "seed": 2, "metrics": {"miou": 0.1}},
                {"variant": "b", "seed": 3, "metrics": {"miou": 0.1}}]
    none = compare(disjoint, clause="c", kind=kind, a="a", b="b", metric="miou", **threshold)
    assert (none["n"], none["verdict"]) == (0, INCONCLUSIVE)


def test_the_gate_makes_every_comparison_inconclusive_but_keeps_its_numbers():
    runs = runs_of([0.13, 0.15, 0.14], [0.10, 0.10, 0.10])
    clause = Clause("a beats b", "superiority", "a", "b", "miou", delta_min=0.02)
    open_ = clause.compare(runs)
    gated = clause.compare(runs, near_chance=True)
    assert open_["verdict"] == REPRODUCED
    assert gated["verdict"] == NEAR_CHANCE == "inconclusive (near chance)"
    assert gated["deltas"] == open_["deltas"] and gated["lower"] == open_["lower"]


def test_comparison_record_has_the_issue_shape():
    record = compare(runs_of([0.3, 0.4], [0.1, 0.1]), clause="a beats b", kind="superiority",
                     a="a", b="b", metric="miou", delta_min=0.02)
    for key in ("clause", "kind", "a", "b", "metric", "delta_min", "deltas", "n", "mean",
                "lower", "upper", "verdict"):
        assert key in record
    assert "margin" not in record
    eq = compare(runs_of([0.3, 0.4], [0.1, 0.1]), clause="a = b", kind="equivalence", a="a",
                 b="b", metric="miou", margin=0.02)
    assert eq["margin"] == 0.02 and "delta_min" not in eq


def test_a_clause_refuses_an_unknown_kind_or_a_missing_threshold():
    with pytest.raises(InputError, match="kind"):
        Clause("x", "better", "a", "b", "miou", delta_min=0.1)
    with pytest.raises(InputError, match="delta_min"):
        Clause("x", "superiority", "a", "b", "miou")
    with pytest.raises(InputError, match="margin"):
        Clause("x", "equivalence", "a", "b", "miou", margin=-0.1)


def _comparison(verdict: str, name: str) -> dict:
    return {"clause": name, "verdict": verdict}


@pytest.mark.parametrize("verdicts,word", [
    ([REPRODUCED, REPRODUCED], REPRODUCED),
    ([REPRODUCED, INCONCLUSIVE], INCONCLUSIVE),
    ([REPRODUCED, NEAR_CHANCE], INCONCLUSIVE),
    ([INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED], NOT_REPRODUCED),
    ([], INCONCLUSIVE),
])
def test_the_overall_verdict_is_never_more_than_its_weakest_clause(verdicts, word):
    comparisons = [_comparison(v, f"clause {i}") for i, v in enumerate(verdicts)]
    got, listing = overall_verdict(comparisons)
    assert got == word
    for c in comparisons:
        assert f"{c['clause']}: {c['verdict']}" in listing
    assert listing.startswith(f"{verdicts.count(REPRODUCED)} of {len(verdicts)} clauses "
                              "reproduced")


def test_an_untested_clause_keeps_the_verdict_from_saying_reproduced():
    word, listing = overall_verdict([_comparison(REPRODUCED, "a")],
                                    [{"clause": "thin parts", "reason": "no part mask"}])
    assert word == INCONCLUSIVE
    assert listing.startswith("1 of 2 clauses reproduced, 1 not tested: no part mask;")
    assert "thin parts: not tested (no part mask)" in listing
    # a failed clause still fails the claim; two skips with one reason name it once
    word, listing = overall_verdict(
        [_comparison(NOT_REPRODUCED, "a")],
        [{"clause": "b", "reason": "r"}, {"clause": "c", "reason": "r"}])
    assert word == NOT_REPRODUCED
    assert listing.startswith("0 of 3 clauses reproduced, 2 not tested: r;")


def _folder_dataset(root, masks: list[np.ndarray], classes: list[str]) -> str:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i, mask in enumerate(masks):
            Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(
                root / "images" / split / f"{i}.png")
            Image.fromarray(mask.astype(np.uint8), mode="L").save(
                root / "masks" / split / f"{i}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return f"folder:{root}"


def test_constant_miou_is_the_best_single_class_everywhere(tmp_path):
    first = np.zeros((4, 4), np.uint8)
    first[0] = 1                                  # 12 x class 0, 4 x class 1
    second = np.zeros((4, 4), np.uint8)
    second[:2, :3] = 2                            # 6 x class 2
    second[3, :2] = 255                           # 2 void, 8 x class 0
    data = _folder_dataset(tmp_path, [first, second], ["bg", "a", "b"])
    # Class 0 everywhere: IoU_0 = 20/30 (void left out), IoU_1 = IoU_2 = 0 -> mIoU 2/9.
    # Class 2 everywhere: 6/30/3 = 1/15; class 1: 4/30/3 = 2/45.
    best = constant_miou(data)
    assert best["constant_miou"] == pytest.approx(2 / 9)
    assert (best["class"], best["class_name"]) == (0, "bg")
    assert stats.chance(best, 0.1)["gate"] == pytest.approx(2 / 9 + 0.1)


def test_best_variant_is_the_highest_mean_over_seeds():
    runs = runs_of([0.2, 0.4], [0.35, 0.3])
    assert stats.best_variant_miou(runs) == ("b", pytest.approx(0.325))


def test_power_is_the_half_width_against_the_threshold():
    # deltas 0.03, 0.05, 0.04: half-width t(0.95, 2)·0.01/√3 = 0.016859 (table above)
    record = compare(runs_of([0.53, 0.55, 0.54], [0.5, 0.5, 0.5]), clause="c",
                     kind="superiority", a="a", b="b", metric="miou", delta_min=0.02)
    assert record["power"]["half_width"] == pytest.approx(T95[2] * 0.01 / math.sqrt(3),
                                                          abs=1e-7)
    assert record["power"]["threshold"] == 0.02 and record["power"]["decisive"] is True
    # the same spread against a margin of 0.01 cannot decide
    wide = compare(runs_of([0.53, 0.55, 0.54], [0.5, 0.5, 0.5]), clause="c",
                   kind="equivalence", a="a", b="b", metric="miou", margin=0.01)
    assert wide["power"]["decisive"] is False
    # one seed: no interval, not decisive
    one = compare(runs_of([0.6], [0.5]), clause="c", kind="non_inferiority", a="a", b="b",
                  metric="miou", margin=0.01)
    assert one["power"] == {"half_width": None, "threshold": 0.01, "decisive": False}


def test_seeds_needed_against_hand_computed_t_quantiles() -> None:
    """t(0.95, 13) = 1.7709, t(0.95, 14) = 1.7613 (tables): with sd 0.0216 and a threshold
    of 0.01, 14 seeds give 1.7709·0.0216/√14 = 0.01022 (not below) and 15 give
    1.7613·0.0216/√15 = 0.00982 (below). With sd 0.0214 and 0.02: 5 seeds give
    2.1318·0.0214/√5 = 0.0204, 6 give 2.0150·0.0214/√6 = 0.0176."""
    from fcnkit.reproduce.stats import seeds_needed

    assert seeds_needed(0.0216, 0.01) == 15
    assert seeds_needed(0.0214, 0.02) == 6
    assert seeds_needed(0.0, 0.01) == 2  # no spread: the least a bound needs
    assert seeds_needed(None, 0.01) is None and seeds_needed(0.01, None) is None
    assert seeds_needed(1.0, 1e-6) is None  # beyond the limit


def test_a_half_width_is_printed_with_the_digits_that_tell_it_from_its_threshold() -> None:
    from fcnkit.reproduce.stats import half_width_text

    assert half_width_text(0.01954, 0.02) == "0.0195"  # not "0.020"
    assert half_width_text(0.0194, 0.02) == "0.019"
    assert half_width_text(0.0204, 0.02) == "0.0204"
    assert half_width_text(0.016, 0.02) == "0.016"
    assert half_width_text(0.2, 0.2) == "0.200000"  # equal: as far as it goes
