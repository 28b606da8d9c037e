"""Shortcut baselines in torch (fcnkit.inference.baselines) against scikit-learn, brute force
and the reproduce package's own constant-prediction score."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fcnkit.inference.baselines import (
    constant_baseline,
    fit_logistic,
    load_split,
    patch_features,
    pixel_baselines,
)

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_shortcuts", ROOT / "benchmarks" / "bench_shortcuts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_shortcuts"] = module
    spec.loader.exec_module(module)
    return module


def test_patch_features_are_the_edge_replicated_window():
    rng = np.random.default_rng(0)
    image = rng.random((6, 7, 3)).astype(np.float32)
    f = patch_features(image)
    assert f.shape == (6, 7, 75)
    for y, x in [(0, 0), (3, 4), (5, 6)]:
        want = [image[min(max(y + dy, 0), 5), min(max(x + dx, 0), 6), c]
                for c in range(3) for dy in range(-2, 3) for dx in range(-2, 3)]
        np.testing.assert_array_equal(f[y, x], want)


def test_fit_logistic_matches_scikit_learn_on_blobs():
    sklearn = pytest.importorskip("sklearn.linear_model")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    centres = np.array([[0, 0, 0], [2, 0, 1], [0, 2, -1], [1, 1, 3]], float)
    y = np.repeat([0, 1, 3, 5], 150)  # labels with gaps: only these can be predicted
    x = centres[np.repeat(np.arange(4), 150)] + rng.normal(0, 1.0, (600, 3)) * [1, 2, 0.5]
    ours = fit_logistic(x, y)
    theirs = make_pipeline(StandardScaler(), sklearn.LogisticRegression(max_iter=1000))
    theirs.fit(x, y)
    test = rng.normal(0.8, 1.5, (2000, 3))
    agree = float((ours.predict(test) == theirs.predict(test)).mean())
    assert agree > 0.995
    coef = theirs[-1].coef_
    # same convex objective; scikit-learn's L-BFGS stops at its default tol=1e-4, so the
    # weights agree to about 1 % of their size, not to the last digit
    np.testing.assert_allclose(ours.weight.numpy(), coef, atol=1e-2)
    assert set(np.unique(ours.predict(test))) <= {0, 1, 3, 5}


def test_constant_baseline_equals_the_reproduce_gate(tmp_path):
    from fcnkit.data.synthetic import generate_synthetic_dataset
    from fcnkit.reproduce.stats import constant_miou

    root = generate_synthetic_dataset(tmp_path / "limbs", train=2, val=3, seed=3,
                                      size=(64, 64), task="limbs")
    spec = f"synth:{root}"
    val = load_split(spec, "val")
    from fcnkit.data import open_dataset

    ours = constant_baseline(val, len(open_dataset(spec, "val").classes))
    assert ours["miou"] == pytest.approx(constant_miou(spec)["constant_miou"], abs=1e-12)


@pytest.mark.slow
def test_torch_baselines_agree_with_scikit_learn_within_the_stated_tolerance(tmp_path):
    pytest.importorskip("sklearn")
    bench = _bench()
    results = bench.run("limbs", 6, 3, (64, 64), 0, 300, str(tmp_path / "limbs"),
                        sklearn=True)
    for name in ("colour", "patch5"):
        assert abs(results[name]["miou"] - results[f"{name}_sklearn"]["miou"]) \
            <= bench.SKLEARN_TOLERANCE, name
        assert results[f"{name}_sklearn"]["agrees"]
    again = pixel_baselines(f"synth:{tmp_path / 'limbs'}", pixels=300, seed=0)
    assert round(again["patch5"]["miou"], 4) == results["patch5"]["miou"]
