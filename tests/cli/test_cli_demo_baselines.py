"""``fcnkit demo --task limbs`` prints and records the shortcut baselines beside the FCN."""

from __future__ import annotations

import json

import pytest

import fcnkit.demo as demo
from fcnkit.cli import main

TINY = {
    "dataset": {"train": 4, "val": 2, "seed": 1, "size": (64, 64)},
    "train": {"epochs": 1, "batch_size": 2, "lr": 0.01, "crop": (48, 48),
              "scale_range": (0.9, 1.1), "color_jitter": False, "threads": 1},
}


@pytest.mark.slow
def test_demo_on_limbs_reports_the_baselines(tmp_path, monkeypatch, capsys):
    from fcnkit.reproduce.stats import constant_miou

    monkeypatch.setitem(demo.RECIPES["limbs"], "quick", TINY)
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["demo", "--quick", "--task", "limbs", "--out", str(out), "--cache",
                 str(cache), "--no-progress"]) == 0
    text = capsys.readouterr().out
    for line in ("5x5-patch logistic regression", "colour-only logistic regression",
                 "best constant class", "FCN-8s"):
        assert line in text, line
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["task"] == "limbs" and "limbs" in summary["dataset"]
    base = summary["baselines"]
    # the constant baseline, recomputed by the reproduce package's own scan
    assert base["constant"]["miou"] == pytest.approx(
        constant_miou(f"voc:{summary['dataset']}")["constant_miou"], abs=1e-12)
    for name in ("colour", "patch5"):
        assert 0.0 <= base[name]["miou"] <= 1.0
    assert f"{base['patch5']['miou']:.3f}" in text


def test_demo_task_is_checked(tmp_path, capsys):
    assert main(["demo", "--task", "regions", "--out", str(tmp_path / "x")]) == 2
    assert "--task" in capsys.readouterr().err
    from fcnkit.errors import InputError

    with pytest.raises(InputError, match="--task regions"):
        demo.run_demo(task="regions", out=tmp_path / "y", cache=tmp_path)
