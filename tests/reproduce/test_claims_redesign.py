"""The statistics-free parts of the redesigned claims, each against an independent oracle:
padding's crops against the reference prototxts and a hand-computed trace; gridding's
image coverage against brute-force path enumeration, its interior mask against brute-force
distances, its checkerboard measure on hand-made maps, the dilated ResNet-18's gradient
support against fcnkit.arith's coverage map; and the context module's alignment."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from fcnkit.reproduce import gridding, padding


def test_padding_crops_equal_the_reference_prototxts_and_centre_output_0():
    # crop_param { offset } of voc-fcn32s / 16s / 8s train.prototxt
    # (shelhamer/fcn.berkeleyvision.org), typed here from the files.
    published = {"fcn32s": {"final": 19}, "fcn16s": {"score_pool4": 5, "final": 27},
                 "fcn8s": {"score_pool4": 5, "score_pool3": 9, "final": 31}}
    exact = padding.alignment()
    assert exact["verdict"] == "reproduced" and exact["kind"] == "exact"
    assert {r["model"]: r["computed"] for r in exact["rows"]} == published
    for row in exact["rows"]:
        assert row["trace"]["stride"] == 1.0 and row["trace"]["center_of_output_0"] == 0.0


def test_faithful_fcn32s_trace_by_hand():
    # Centre of unit 0 along the chain: c += ((k - 1)/2 - p)·j, j *= s. conv1_1 (k3, p100):
    # -99; each pool (k2, s2): +j/2 -> -98.5, -97.5, -95.5, -91.5, -83.5 (j = 32); fc6 (k7,
    # p0): +3·32 -> 12.5. The ×32 deconvolution (k64, s32, p0): output o gathers coarse
    # cells (o - 63)/32 … o/32, centred on (o - 31.5)/32, i.e. input 12.5 + o - 31.5 =
    # o - 19. Output pixel 0 after the crop of 19 is centred on input pixel 0.
    from fcnkit.models import build_model

    with torch.device("meta"):
        model = build_model("fcn32s", num_classes=21, backbone="vgg16", faithful=True,
                            upsample="deconv")
    assert model.crop_offsets["final"] == 19
    assert padding.forward_trace(model)["center_of_output_0"] == 0.0


def test_a_crop_that_differs_from_the_reference_is_not_reproduced(monkeypatch):
    monkeypatch.setitem(padding.REFERENCE_CROPS, "fcn32s", {"final": 22})  # seed 000's
    assert padding.alignment()["verdict"] == "not reproduced"


def _paths(rates, front):
    """Brute force: every (front-end tap, stack taps) path and the image offset it reads."""
    counts = Counter()
    for taps in itertools.product((0, 1, 2), repeat=len(rates)):
        cell = sum(t * r for t, r in zip(taps, rates))
        for pixel in range(front):
            counts[2 * cell + pixel] += 1
    return counts


@pytest.mark.parametrize("rates", [(1, 1, 1, 1), (2, 2, 4, 4), (1, 2, 4, 5), (3, 3)])
@pytest.mark.parametrize("front", [2, 4, 6])
def test_image_coverage_is_the_count_of_paths(rates, front):
    counts = _paths(rates, front)
    line = gridding.image_coverage_1d(rates, front)
    assert len(line) == max(counts) + 1
    assert [counts.get(i, 0) for i in range(len(line))] == line.tolist()


def test_common_factor_grids_in_the_image_only_below_the_gap():
    holes = {(s, k): gridding.coverage_report([int(r) for r in rates.split(",")],
                                              k)["holes_pixels"]
             for s, rates in gridding.SCHEDULES.items() for k in gridding.FRONTS}
    assert holes[("common-factor", 2)] > 0
    assert all(v == 0 for key, v in holes.items() if key != ("common-factor", 2))
    # the two dilated schedules have the same receptive field, in cells and in pixels
    assert gridding.coverage_report([2, 2, 4, 4], 2)["cells_span"] == \
        gridding.coverage_report([1, 2, 4, 5], 2)["cells_span"] == 25


def test_interior_mask_against_brute_force_distances():
    rng = np.random.default_rng(3)
    label = np.zeros((17, 19), np.uint8)
    label[3:14, 2:12] = 1
    label[8:, 9:] = 2
    label[0, :4] = 255
    label[rng.integers(0, 17, 3), rng.integers(0, 19, 3)] = 2
    expected = np.zeros(label.shape, bool)
    ys, xs = np.mgrid[0:17, 0:19]
    for y, x in itertools.product(range(17), range(19)):
        if label[y, x] == 255:
            continue
        other = label != label[y, x]
        nearest = math.sqrt(((ys[other] - y) ** 2 + (xs[other] - x) ** 2).min())
        expected[y, x] = nearest >= 3
    assert np.array_equal(gridding.interior_mask(label, 3), expected)
    assert gridding.interior_mask(np.ones((4, 5), np.uint8), 6).all()  # no boundary


def test_checkerboard_counts_disagreeing_neighbour_pairs():
    cells = np.ones((4, 5), bool)
    checker = np.indices((4, 5)).sum(axis=0) % 2
    assert gridding.neighbour_disagreement(checker, cells) == (31, 31)  # 4·4 + 3·5 pairs
    assert gridding.neighbour_disagreement(np.zeros((4, 5), int), cells) == (0, 31)
    cells[:, 2] = False  # a column out: 4 rows x 2 pairs across, 4 columns x 3 down
    assert gridding.neighbour_disagreement(checker, cells) == (20, 20)
    interior = np.zeros((7, 10), bool)
    interior[:4, :4] = True
    assert gridding.interior_cells(interior, (4, 5)).tolist() == [
        [True, True, False, False, False], [True, True, False, False, False],
        [False] * 5, [False] * 5]


def test_advantage_runs_are_hdc_minus_common_factor_per_seed():
    runs = [{"variant": gridding.variant(s, k), "seed": seed,
             "metrics": {"interior_miou": value}}
            for (s, k, seed, value) in [("hdc", 2, 0, 0.5), ("common-factor", 2, 0, 0.4),
                                        ("hdc", 2, 1, 0.6), ("common-factor", 2, 1, 0.3),
                                        ("hdc", 6, 0, 0.5)]]
    derived = gridding.advantage_runs(runs)
    assert [(r["variant"], r["seed"]) for r in derived] == [("HDC advantage k=2", 0),
                                                           ("HDC advantage k=2", 1)]
    assert [r["metrics"]["hdc_advantage"] for r in derived] == pytest.approx([0.1, 0.3])


def test_context_module_puts_cell_i_on_pixel_2i_plus_half():
    from fcnkit.models import build_model

    for front in (2, 4, 6):
        model = build_model("context_module", num_classes=1, front=front,
                            dilations="1,1,1,1", channels=1).eval()
        conv = model.features[0]
        assert conv.padding[0] == front // 2 - 1
        # the front end's taps of cell i are pixels 2i - pad … 2i - pad + k - 1
        first = 2 * 3 - conv.padding[0]
        assert (first + first + front - 1) / 2 == 2 * 3 + 0.5
        assert model(torch.randn(1, 3, 7, 9)).shape == (1, 1, 7, 9)
        assert model.coarse_scores(torch.randn(1, 3, 7, 9)).shape[-2:] == (4, 5)


@pytest.mark.slow
def test_resnet18_gridding_lives_in_the_feature_lattice_not_the_image():
    from fcnkit.arith import dilation_coverage

    result = gridding.resnet_gridding_support()
    stack = [2, 2, 2, 2, 4, 4, 4, 4]  # two basic blocks per layer, both convs dilated
    assert result["stack"]["rates"] == stack and result["logit"]["rates"] == stack + [1]
    holes = int((dilation_coverage(stack) == 0).sum())
    assert holes > 0
    assert result["stack"]["autograd_holes"] == holes == result["stack"]["analytic_holes"]
    assert result["stack"]["matches_analytic"] and result["logit"]["matches_analytic"]
    assert result["logit"]["autograd_holes"] == 0  # the head's 3×3 fills the lattice
    for which in ("stack", "logit"):
        assert result[which]["input_holes"] == 0 and not result[which]["input_clipped"]


def test_gridding_refuses_an_unknown_task_in_one_line(tmp_path, capsys):
    from fcnkit.cli import main

    assert main(["reproduce", "gridding", "--task", "zebras", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--task 'zebras'" in err and "objects" in err
    assert gridding.default_task() in ("regions", "objects")
