"""Prediction panels: image | ground truth | prediction | errors."""

from __future__ import annotations

import numpy as np

from fcnkit.data.palette import voc_palette
from fcnkit.viz.predictions import ERROR_COLOUR, pixel_accuracy, prediction_panels


def test_panels_mark_wrong_and_void_pixels():
    rng = np.random.default_rng(0)
    image = rng.random((3, 4, 5)).astype(np.float32)
    truth = np.array([[0, 1, 1, 2, 255]] * 4)
    prediction = np.array([[0, 1, 2, 2, 1]] * 4)
    panels = prediction_panels(image, truth, prediction)
    assert all(p.shape == (4, 5, 3) and p.dtype == np.uint8 for p in panels.values())
    np.testing.assert_array_equal(panels["image"][1, 2], np.round(image[:, 1, 2] * 255))
    assert tuple(panels["errors"][0, 2]) == ERROR_COLOUR      # 1 predicted as 2
    assert tuple(panels["errors"][0, 4]) == (0, 0, 0)         # void
    assert tuple(panels["errors"][0, 0]) != ERROR_COLOUR      # right
    palette = voc_palette(3)
    assert tuple(panels["truth"][0, 1]) == palette[1]
    assert tuple(panels["prediction"][0, 2]) == palette[2]


def test_pixel_accuracy_counts_non_void_pixels():
    truth = np.array([[0, 1, 255], [2, 2, 255]])
    prediction = np.array([[0, 0, 1], [2, 1, 0]])
    assert pixel_accuracy(truth, prediction) == 2 / 4
    assert np.isnan(pixel_accuracy(np.full((2, 2), 255), np.zeros((2, 2))))
