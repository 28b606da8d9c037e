"""Thin-part IoU (fcnkit.metrics.ThinPartIoU) against a brute-force pixel count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fcnkit.metrics import ThinPartIoU


def _brute_force(preds, targets, parts, num_classes, limb=2):
    """Per class, count limb pixels one by one: hits, truths, predictions."""
    hits = [0] * num_classes
    truth = [0] * num_classes
    predicted = [0] * num_classes
    for pred, target, part in zip(preds, targets, parts):
        for p, t, q in zip(pred.ravel(), target.ravel(), part.ravel()):
            if q != limb or t == 255:
                continue
            truth[t] += 1
            predicted[p] += 1
            hits[t] += int(p == t)
    ious = [hits[c] / (truth[c] + predicted[c] - hits[c])
            for c in range(num_classes) if truth[c] > 0]
    return sum(ious) / len(ious) if ious else math.nan


def test_thin_part_iou_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    metric = ThinPartIoU(4)
    preds, targets, parts = [], [], []
    for _ in range(3):
        target = rng.integers(0, 4, (9, 11))
        target[rng.random((9, 11)) < 0.1] = 255
        pred = rng.integers(0, 4, (9, 11))
        part = rng.integers(0, 3, (9, 11))
        metric.update(pred, target, part)
        preds.append(pred), targets.append(target), parts.append(part)
    got = metric.compute()
    assert got["thin_part_iou"] == pytest.approx(_brute_force(preds, targets, parts, 4))
    assert got["pixels"] == sum(int(((p == 2) & (t != 255)).sum())
                                for p, t in zip(parts, targets))


def test_hand_computed_case_ignores_non_limb_pixels_and_absent_classes():
    # limb pixels: class 1 at (0,0),(0,1) predicted 1, 0 -> IoU(1) = 1/2; class 2 at (1,1)
    # predicted 1 -> IoU(2) = 0, and the miss adds a false positive to class 1: 1/3.
    target = np.array([[1, 1, 0], [0, 2, 2]])
    part = np.array([[2, 2, 0], [1, 2, 1]])
    pred = np.array([[1, 0, 3], [3, 1, 0]])
    metric = ThinPartIoU(4)
    metric.update(pred, target, part)
    assert metric.compute()["thin_part_iou"] == pytest.approx((1 / 3 + 0) / 2)


def test_no_limb_pixel_is_nan_and_shapes_must_match():
    metric = ThinPartIoU(3)
    metric.update(np.zeros((2, 2), int), np.ones((2, 2), int), np.ones((2, 2), int))
    assert math.isnan(metric.compute()["thin_part_iou"])
    with pytest.raises(ValueError, match="part mask shape"):
        metric.update(np.zeros((2, 2), int), np.ones((2, 2), int), np.ones((2, 3), int))
