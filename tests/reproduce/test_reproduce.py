"""``fcnkit reproduce``: the exact claims pass; every training claim runs end to end on a
tiny budget and writes its table, JSON and figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcnkit.cli import main
from fcnkit.reproduce import (
    Budget,
    ReproduceConfig,
    gridding,
    padding,
    run_claim,
    runner,
    upsampling,
)
from fcnkit.reproduce.gridding import high_frequency_fraction
from fcnkit.reproduce.skips import ordered
from fcnkit.reproduce.upsampling import epochs_to_fraction

TINY = Budget(train=4, val=2, size=(40, 48), epochs=2, crop=(32, 32), batch_size=2,
              **runner.RECIPE)


def test_training_claims_share_one_recipe_and_pick_quick_or_full():
    budgets = {"skips": (runner.QUICK, runner.FULL),
               "gridding": (gridding.GRID_QUICK, gridding.GRID_FULL),
               "upsampling": (upsampling.UPSAMPLING_QUICK, upsampling.UPSAMPLING_FULL)}
    for quick, full in budgets.values():
        for budget in (quick, full):
            assert {k: getattr(budget, k) for k in runner.RECIPE} == runner.RECIPE
        assert (quick.train, quick.epochs) < (full.train, full.epochs)
        assert runner.budget_for(ReproduceConfig(quick=True), quick, full) is quick
        assert runner.budget_for(ReproduceConfig(), quick, full) is full
    # VGG16 has no BatchNorm: same width and optimizer, its own learning rate.
    assert (padding.FULL.width, padding.FULL.optimizer) == (runner.RECIPE["width"], "adamw")
    assert runner.budget_for(ReproduceConfig(budget=TINY)) is TINY


def test_matrix_claim_reproduces_exactly(tmp_path, capsys):
    assert main(["reproduce", "matrix", "--quick", "--out", str(tmp_path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["verdict"] == "reproduced"
    assert all(r["conv_equal"] and r["transposed_equal"] for r in results["random"])
    assert (tmp_path / "results.md").read_text().count("| yes |") == 2


@pytest.mark.slow
def test_receptive_fields_claim_matches_table_1(tmp_path):
    results = run_claim("receptive-fields", ReproduceConfig(quick=True, out=str(tmp_path)))
    assert {r["network"]: r["fcnkit_size"] for r in results["table1"]} == {
        "AlexNet": 355, "VGG16": 404}
    assert results["verdict"] == "reproduced"
    assert (tmp_path / "rf_growth_vgg16.png").stat().st_size > 0


def test_high_frequency_fraction_sees_a_period_2_lattice():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:16, 0:16]
    smooth = np.cos(2 * np.pi * x / 16)[None].astype(float)
    lattice = smooth + 0.5 * ((-1.0) ** (x + y))[None]
    assert high_frequency_fraction(smooth) < 1e-12
    assert high_frequency_fraction(lattice) > 0.2
    assert 0.0 <= high_frequency_fraction(rng.normal(size=(2, 9, 11))) <= 1.0


def test_epochs_to_ninety_percent_and_ordering():
    curve = [{"epoch": 1, "miou": 0.2}, {"epoch": 2, "miou": 0.55}, {"epoch": 3, "miou": 0.6}]
    assert epochs_to_fraction(curve) == 3 - 1  # 0.55 >= 0.9 * 0.6
    stat = {"std": 0.01}
    summary = {v: {"miou": {"mean": m, **stat}} for v, m in
               (("fcn32s", 0.5), ("fcn16s", 0.6), ("fcn8s", 0.7))}
    assert ordered(summary, "miou") == "yes"
    summary["fcn8s"]["miou"]["mean"] = 0.605
    assert ordered(summary, "miou") == "means only"


@pytest.mark.slow
@pytest.mark.parametrize("claim", ["skips", "upsampling", "gridding", "padding"])
def test_training_claims_smoke(claim, tmp_path):
    config = ReproduceConfig(seeds=1, out=str(tmp_path), budget=TINY, threads=1)
    results = run_claim(claim, config)
    assert results["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["claim"] == claim and stored["summary"]
    assert (tmp_path / "results.md").read_text().startswith(f"# fcnkit reproduce {claim}")
    for figure in results.get("figures", {}).values():
        assert (tmp_path / figure.split("/")[-1]).stat().st_size > 0


def test_training_claims_near_a_constant_prediction_are_inconclusive(monkeypatch):
    import numpy as np

    from fcnkit.metrics import ConfusionMatrix
    from fcnkit.reproduce import runner

    monkeypatch.setattr(runner, "class_names", lambda data: [f"c{i}" for i in range(9)])
    # A constant prediction (background everywhere) on masks where background dominates:
    # its mIoU is the background IoU over C classes, below 1/C.
    rng = np.random.default_rng(0)
    target = np.where(rng.random(10_000) < 0.8, 0, rng.integers(1, 9, 10_000))
    cm = ConfusionMatrix(9)
    cm.update(np.zeros_like(target), target)
    constant = cm.compute()["miou"]
    assert constant <= 1 / 9
    summary = {"a": {"miou": {"mean": constant, "std": 0.0}},
               "b": {"miou": {"mean": constant + 0.002, "std": 0.001}}}
    reason = runner.near_chance(summary, "synth:unused")
    assert reason is not None and "constant prediction" in reason
    summary["b"]["miou"]["mean"] = 0.6
    assert runner.near_chance(summary, "synth:unused") is None


@pytest.mark.slow
def test_an_interrupted_claim_keeps_finished_runs_and_resumes_the_cut_one(tmp_path):
    import dataclasses

    import torch

    from fcnkit.errors import InputError
    from fcnkit.reproduce.runner import dataset_for, train_variant, variant_config
    from fcnkit.training.loop import train

    config = ReproduceConfig(seeds=1, out=str(tmp_path), budget=TINY, threads=1)
    data = dataset_for(config, TINY)
    whole = train_variant(config, TINY, data, tmp_path / "whole", model="fcn8s", seed=0)
    assert [e["epoch"] for e in whole["epochs"]] == [1, 2]

    # A finished run is reused: nothing is retrained, the result is the same.
    stamp = (tmp_path / "whole" / "last.pt").stat().st_mtime_ns
    again = train_variant(config, TINY, data, tmp_path / "whole", model="fcn8s", seed=0)
    assert (tmp_path / "whole" / "last.pt").stat().st_mtime_ns == stamp
    assert again == whole

    # A run cut off after epoch 1 resumes to the uninterrupted weights, bit for bit.
    class Cut(Exception):
        pass

    def stop(record):
        raise Cut

    cut_config = variant_config(config, TINY, data, tmp_path / "cut", model="fcn8s", seed=0)
    with pytest.raises(Cut):
        train(cut_config, on_epoch=stop)
    resumed = train_variant(config, TINY, data, tmp_path / "cut", model="fcn8s", seed=0)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["miou"] == whole["miou"]
    states = [torch.load(tmp_path / d / "last.pt", weights_only=False)["model_state"]
              for d in ("whole", "cut")]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])

    # A run directory trained with other settings is refused, not mixed in.
    other = dataclasses.replace(TINY, lr=TINY.lr / 2)
    with pytest.raises(InputError, match="other settings.*lr"):
        train_variant(config, other, data, tmp_path / "whole", model="fcn8s", seed=0)
