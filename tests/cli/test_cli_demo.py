"""``fcnkit demo`` end to end on a tiny recipe, and ``fcnkit train`` bad input (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import fcnkit.demo as demo
from fcnkit.cli import main

TINY = {
    "dataset": {"train": 6, "val": 3, "seed": 1, "size": (40, 48)},
    "train": {"epochs": 1, "batch_size": 3, "lr": 0.01, "crop": (32, 32),
              "scale_range": (0.9, 1.1), "color_jitter": False, "threads": 1},
}


@pytest.mark.slow
def test_demo_quick_writes_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(demo.RECIPES["limbs"], "quick", TINY)
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["demo", "--quick", "--out", str(out), "--cache", str(cache),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "generated" in text and "miou" in text and str(out) in text
    for name in ("best.pt", "last.pt", "metrics.json", "metrics.jsonl", "curves.png",
                 "confusion.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= summary["miou"] <= 1.0 and summary["num_val_images"] == 3
    assert summary["task"] == "limbs" and len(summary["iou"]) == 4  # the default task
    masks = sorted((out / "predictions").glob("*.png"))
    overlays = sorted((out / "predictions").glob("*_overlay.jpg"))
    assert len(masks) == len(overlays) == 3  # NUM_PREDICTIONS capped by the 3 val images
    assert np.asarray(Image.open(masks[0])).shape == (40, 48)
    # The demo ends with the run's report (fcnkit report) and says where it is.
    report = out / "report.html"
    assert f"report: {report}" in text
    assert report.read_text().count('src="data:image/png;base64,') == 3 * 4

    # A second run finds the cached dataset and prints JSON on request.
    assert main(["demo", "--quick", "--out", str(out), "--cache", str(cache),
                 "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["run_dir"] == str(out) and result["miou"] == summary["miou"]
    assert result["files"]["report"] == str(out / "report.html")


def test_train_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and "does not exist" in err[0]
    assert main(["train"]) == 2
    assert "--data is required" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["demo", "--out", str(tmp_path / "file"), "--cache", str(tmp_path)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", "--data", "d", "--crop", "a,b"]) == 2  # argparse's: returned too
    assert "--crop" in capsys.readouterr().err


@pytest.mark.slow  # a whole (tiny) demo: dataset, training, predictions, report
def test_demo_precision_reaches_training(tmp_path, monkeypatch, capsys):
    from fcnkit.runtime.checkpoint import load_checkpoint

    monkeypatch.setitem(demo.RECIPES["limbs"], "quick", TINY)
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["demo", "--quick", "--out", str(out), "--cache", str(cache),
                 "--no-progress", "--precision", "fp32", "--json"]) == 0
    capsys.readouterr()
    assert load_checkpoint(out / "last.pt")["config"]["precision"] == "fp32"
    assert main(["demo", "--precision", "fp8"]) == 2
    assert "--precision" in capsys.readouterr().err
