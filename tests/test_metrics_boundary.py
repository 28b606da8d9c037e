"""Boundary metrics (trimap, Boundary IoU) against brute force on small masks.

The oracles loop over every pixel pair with explicit chessboard distances, the definitions
of Kohli et al. (2009) for the trimap and of Cheng et al. (2021, mask_to_boundary: the mask
minus its erosion by a 3×3 kernel applied d times, zero padding outside the image) for
Boundary IoU.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnkit.metrics import BoundaryMetrics, ConfusionMatrix, boundary_width_for

VOID = 255


def brute_band(target: np.ndarray, d: int) -> np.ndarray:
    h, w = target.shape
    band = np.zeros((h, w), dtype=bool)
    for y, x in itertools.product(range(h), range(w)):
        for yy, xx in itertools.product(range(y - d, y + d + 1), range(x - d, x + d + 1)):
            inside = 0 <= yy < h and 0 <= xx < w
            if inside and target[yy, xx] != target[y, x]:
                band[y, x] = True
                break
    return band


def brute_inner_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    # Erode d times with a 3x3 kernel after padding one ring of zeros (the reference code).
    padded = np.pad(mask.astype(bool), 1)
    for _ in range(d):
        eroded = np.zeros_like(padded)
        for y, x in itertools.product(range(padded.shape[0]), range(padded.shape[1])):
            window = padded[max(0, y - 1): y + 2, max(0, x - 1): x + 2]
            eroded[y, x] = window.all()  # cv2.erode: pixels beyond the padded image are +inf
        eroded[0, :] = eroded[-1, :] = eroded[:, 0] = eroded[:, -1] = False  # the zero ring
        padded = eroded | False
        padded[0, :] = padded[-1, :] = padded[:, 0] = padded[:, -1] = False
    return mask.astype(bool) & ~padded[1:-1, 1:-1]


def brute_scores(preds, targets, k: int, d: int) -> dict:
    cm = ConfusionMatrix(k)
    inter, union = np.zeros(k), np.zeros(k)
    for pred, target in zip(preds, targets):
        band = brute_band(target, d)
        cm.update(pred[band], target[band])
        counted = target != VOID
        for c in range(k):
            g = brute_inner_boundary(target == c, d) & counted
            q = brute_inner_boundary(pred == c, d) & counted
            inter[c] += (g & q).sum()
            union[c] += (g | q).sum()
    biou = [i / u if u else math.nan for i, u in zip(inter, union)]
    scores = cm.compute()
    return {"trimap_pixel_acc": scores["pixel_acc"], "trimap_miou": scores["miou"],
            "boundary_iou_per_class": biou,
            "boundary_iou": float(np.nanmean(biou)) if not all(map(math.isnan, biou))
            else math.nan}


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-12


masks = st.integers(0, 2**31 - 1).map(np.random.default_rng)


@settings(max_examples=15, deadline=None)
@given(rng=masks, k=st.integers(2, 4), d=st.integers(1, 3), n=st.integers(1, 2),
       h=st.integers(3, 8), w=st.integers(3, 8))
def test_boundary_metrics_match_brute_force(rng, k, d, n, h, w):
    # Blocky masks (upsampled 2x) so that regions have interiors, plus void pixels.
    targets, preds = [], []
    for _ in range(n):
        t = np.kron(rng.integers(0, k, size=((h + 1) // 2, (w + 1) // 2)), np.ones((2, 2),
                    dtype=np.int64))[:h, :w]
        t[rng.random((h, w)) < 0.1] = VOID
        p = np.where(rng.random((h, w)) < 0.2, rng.integers(0, k, size=(h, w)), t)
        p[p == VOID] = 0
        targets.append(t)
        preds.append(p)
    bm = BoundaryMetrics(k, width=d)
    for p, t in zip(preds, targets):
        bm.update(p, t)
    got, want = bm.compute(), brute_scores(preds, targets, k, d)
    for key in ("trimap_pixel_acc", "trimap_miou", "boundary_iou"):
        assert _close(got[key], want[key]), (key, got[key], want[key])
    assert all(_close(a, b) for a, b in zip(got["boundary_iou_per_class"],
                                            want["boundary_iou_per_class"]))


def test_batch_update_equals_per_image_updates():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, size=(3, 12, 10))
    p = rng.integers(0, 3, size=(3, 12, 10))
    batched, single = BoundaryMetrics(3, width=2), BoundaryMetrics(3, width=2)
    batched.update(p, t)
    for i in range(3):
        single.update(p[i], t[i])
    assert batched.compute() == single.compute()
    merged = BoundaryMetrics(3, width=2).merge(single)
    assert torch_equal(merged.union, single.union)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_perfect_prediction_scores_one_and_a_shifted_edge_less():
    target = np.zeros((16, 16), dtype=np.int64)
    target[4:12, 4:12] = 1
    perfect = BoundaryMetrics(2, width=2)
    perfect.update(target, target)
    assert perfect.compute()["boundary_iou"] == 1.0
    assert perfect.compute()["trimap_miou"] == 1.0
    shifted = BoundaryMetrics(2, width=2)
    shifted.update(np.roll(target, 1, axis=1), target)
    # Boundary IoU is stricter than mask IoU for the same one-pixel shift.
    cm = ConfusionMatrix(2)
    cm.update(np.roll(target, 1, axis=1), target)
    assert shifted.compute()["boundary_iou"] < cm.compute()["miou"] < 1.0


def test_width_from_diagonal_and_validation():
    assert boundary_width_for(300, 400) == 10  # 2 % of the 500-px diagonal
    assert boundary_width_for(10, 10) == 1
    with pytest.raises(ValueError, match="width"):
        BoundaryMetrics(2, width=0)
    with pytest.raises(ValueError, match="shape"):
        BoundaryMetrics(2).update(np.zeros((4, 4), dtype=int), np.zeros((4, 5), dtype=int))


def test_a_width_beyond_the_image_gives_the_brute_force_scores_of_that_width():
    rng = np.random.default_rng(7)
    targets = [rng.integers(0, 3, (6, 7)) for _ in range(2)]
    preds = [rng.integers(0, 3, (6, 7)) for _ in range(2)]
    metrics = BoundaryMetrics(3, width=40)  # wider than the image: bounded to 7
    with pytest.warns(UserWarning, match="wider than the 6x7 images"):
        for pred, target in zip(preds, targets):
            metrics.update(pred, target)
    got, want = metrics.compute(), brute_scores(preds, targets, 3, 40)
    assert got["width"] == 40
    for key in ("trimap_pixel_acc", "trimap_miou", "boundary_iou"):
        assert _close(got[key], want[key]), key


def test_a_huge_width_on_small_images_is_fast():
    import time

    rng = np.random.default_rng(0)
    target = rng.integers(0, 9, (8, 32, 32))
    metrics = BoundaryMetrics(9, width=1024)
    start = time.perf_counter()
    with pytest.warns(UserWarning):
        metrics.update(target[::-1].copy(), target)
    assert time.perf_counter() - start < 5  # a 2049-wide window per pixel took minutes
