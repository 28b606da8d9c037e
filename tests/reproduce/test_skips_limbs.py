"""``skips`` on its default limbs task: thin-part IoU clauses, the alignment control, the
power field, the --task option; thin-part scoring against a brute-force count."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.reproduce import Budget, ReproduceConfig, run_claim, runner, skips

TINY = Budget(train=4, val=2, size=(64, 64), epochs=1, crop=(48, 48), batch_size=2,
              **runner.RECIPE)


def test_full_runs_use_five_seeds_quick_two():
    assert ReproduceConfig().seed_list() == [0, 1, 2, 3, 4]
    assert ReproduceConfig(quick=True).seed_list() == [0, 1]


def test_thresholds_and_variants_are_declared():
    assert skips.TASK == "limbs" and "fcn8s-aligned" in skips.VARIANTS
    assert skips.MODELS["fcn8s-aligned"] == ("fcn8s", {"exact_align": True})
    clauses = {c.clause: c for c in skips.CLAUSES + skips.THIN_PART_CLAUSES}
    assert sum(c.metric == "thin_part_iou" for c in clauses.values()) == 2
    control = [c for c in clauses.values() if c.a == "fcn8s-aligned"]
    assert len(control) == 1 and control[0].metric == "boundary_iou"
    assert skips.PILOT_DATA_SEED != 0  # the claims' dataset seed is 0


def test_data_overrides_task_and_a_bad_task_is_one_line(tmp_path, capsys):
    config = ReproduceConfig(data="synth:/x", task="limbs", out=str(tmp_path))
    assert runner.dataset_for(config, TINY, "shapes") == "synth:/x"
    bad = ReproduceConfig(task="nope", out=str(tmp_path))
    with pytest.raises(InputError, match="--task nope"):
        runner.dataset_for(bad, TINY)
    assert main(["reproduce", "skips", "--task", "nope", "--out", str(tmp_path)]) == 2
    assert "--task nope" in capsys.readouterr().err


@pytest.mark.slow
def test_skips_on_limbs_scores_thin_parts_and_runs_the_control(tmp_path):
    import torch

    from fcnkit.data import open_dataset
    from fcnkit.data.synthetic import read_part_mask
    from fcnkit.data.transforms import eval_transform
    from fcnkit.runtime.checkpoint import model_from_checkpoint

    config = ReproduceConfig(seeds=2, out=str(tmp_path), budget=TINY, threads=1)
    results = run_claim("skips", config)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert "limbs" in stored["data"]
    assert {r["variant"] for r in stored["runs"]} == set(skips.VARIANTS)
    names = [c["clause"] for c in stored["comparisons"]]
    assert "FCN-8s beats FCN-16s on thin-part IoU" in names and not stored["skipped"]
    assert any("alignment control" in n for n in names)
    for c in stored["comparisons"]:
        assert set(c["power"]) == {"half_width", "threshold", "decisive"}
        if c["lower"] is not None:
            assert c["power"]["half_width"] == pytest.approx((c["upper"] - c["lower"]) / 2)
    assert "thin-part IoU" in results["table"]

    # thin-part IoU of one run, recounted pixel by pixel from the files
    data = stored["data"]
    root = data.split(":", 1)[1]
    run_dir = tmp_path / "runs" / "fcn8s-seed0"
    model = model_from_checkpoint(str(run_dir / "last.pt"))
    dataset = open_dataset(data, "val", transform=eval_transform())
    ids = open(f"{root}/ImageSets/Segmentation/val.txt").read().split()
    hits, truth, predicted = {}, {}, {}
    with torch.no_grad():
        for index, sample_id in enumerate(ids):
            image, mask = dataset[index]
            pred = model(torch.as_tensor(image)[None]).argmax(1)[0].numpy()
            part = read_part_mask(root, sample_id)
            for p, t, q in zip(pred.ravel(), np.asarray(mask).ravel(), part.ravel()):
                if q == 2 and t != 255:
                    truth[t] = truth.get(t, 0) + 1
                    predicted[p] = predicted.get(p, 0) + 1
                    hits[t] = hits.get(t, 0) + int(p == t)
    ious = [hits[c] / (truth[c] + predicted.get(c, 0) - hits[c]) for c in truth]
    want = sum(ious) / len(ious) if ious else math.nan
    got = next(r["metrics"]["thin_part_iou"] for r in stored["runs"]
               if r["variant"] == "fcn8s" and r["seed"] == 0)
    assert got == pytest.approx(want, abs=1e-9)


def test_pilot_criterion_takes_the_first_epoch_within_time():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "pilot_budgets.py"
    spec = importlib.util.spec_from_file_location("pilot_budgets", path)
    pilot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pilot)
    curve = [{"epoch": 1, "time_s": 30.0, "miou": 0.5},
             {"epoch": 2, "time_s": 60.0, "miou": 0.76},
             {"epoch": 3, "time_s": 95.0, "miou": 0.9}]
    assert pilot.criterion_met(curve, 0.75, 90.0) == {"met": True, "epoch": 2,
                                                      "time_s": 60.0, "miou": 0.76}
    assert pilot.criterion_met(curve, 0.8, 90.0) == {"met": False}  # 0.9 came too late


def test_full_design_trains_the_seeds_its_power_line_named_and_the_control_on_five():
    full = skips.seeds_by_variant(ReproduceConfig())
    assert skips.FULL_SEEDS == 18 and skips.CONTROL_SEEDS == 5
    for variant in ("fcn32s", "fcn16s", "fcn8s"):
        assert [s for s, v in full if v == variant] == list(range(18))
    assert [s for s, v in full if v == "fcn8s-aligned"] == [0, 1, 2, 3, 4]
    assert len(full) == 3 * 18 + 5
    # training order: seed by seed, so an interrupted run has whole seeds
    assert [s for s, _ in full] == sorted(s for s, _ in full)
    quick = skips.seeds_by_variant(ReproduceConfig(quick=True))
    assert sorted(quick) == sorted((s, v) for s in (0, 1) for v in skips.VARIANTS)
    three = skips.seeds_by_variant(ReproduceConfig(seeds=3))
    assert sorted(three) == sorted((s, v) for s in (0, 1, 2) for v in skips.VARIANTS)
