"""Training under faults: the last/best crash window, divergence, a bad sample mid-run,
--resume auto, and strict JSON when no validation pixel is labelled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fcnkit.runtime.checkpoint as ckpt_io
import fcnkit.training.loop as train_mod
from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.runtime.checkpoint import load_checkpoint
from fcnkit.training.config import TrainConfig

MIOU_BY_EPOCH = {1: 0.2, 2: 0.6, 3: 0.4}


@pytest.fixture(scope="module")
def tiny_data(synthetic_data):
    return synthetic_data(train=4, val=2, seed=1, size=(32, 32))  # shared: copy to modify


def tiny_config(data, out, **changes):
    base = dict(data=f"voc:{data}", model="fcn32s", epochs=2, batch_size=2, crop=(32, 32),
                out=str(out), workers=0, progress=False, threads=1, max_steps_per_epoch=1)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def scripted_validation(monkeypatch):
    """validate() returns a scripted mIoU per epoch (counted by calls)."""
    calls = {"n": 0, "epochs": []}

    def fake_validate(model, loader, *, num_classes, device, classes):
        calls["n"] += 1
        return {"miou": MIOU_BY_EPOCH[calls["epochs"][-1]], "pixel_acc": 0.5}

    original = train_mod.train_one_epoch

    def counting(state, epoch):
        calls["epochs"].append(epoch + 1)
        return original(state, epoch)

    monkeypatch.setattr(train_mod, "validate", fake_validate)
    monkeypatch.setattr(train_mod, "train_one_epoch", counting)
    return calls


@pytest.mark.slow  # trains end to end
def test_crash_between_best_and_last_is_repaired_on_resume(tiny_data, tmp_path, monkeypatch,
                                                           scripted_validation):
    run = tmp_path / "run"
    original_save = ckpt_io.save_checkpoint
    saved = []

    def crash_after_best_of_epoch_2(path, payload):
        original_save(path, payload)
        saved.append((path.name, payload["epoch"]))
        if path.name == "best.pt" and payload["epoch"] == 2:
            raise KeyboardInterrupt  # the process dies between the two writes

    monkeypatch.setattr(ckpt_io, "save_checkpoint", crash_after_best_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny_config(tiny_data, run, epochs=3))
    # best.pt was written first: the crash leaves last.pt one epoch behind, never a stale best
    assert saved == [("best.pt", 1), ("last.pt", 1), ("best.pt", 2)]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    monkeypatch.setattr(ckpt_io, "save_checkpoint", original_save)

    result = train_mod.train(tiny_config(tiny_data, run, epochs=3, resume=str(run)))
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == 2 and best["metrics"]["miou"] == 0.6  # epoch 2 re-run: best
    assert last["epoch"] == 3 and last["best_miou"] == 0.6 and last["best_epoch"] == 2
    assert result["best_miou"] == 0.6


@pytest.mark.slow  # trains end to end
def test_best_miou_repaired_from_a_newer_best_pt(tiny_data, tmp_path, scripted_validation):
    # An older fcnkit wrote last.pt first: best.pt of epoch 2 saved, last.pt's best_miou
    # stale. Resuming with no epochs left must still report the best on disk.
    run = tmp_path / "run"
    train_mod.train(tiny_config(tiny_data, run, epochs=2))
    last = load_checkpoint(run / "last.pt")
    last["best_miou"], last["best_epoch"] = 0.2, 1
    ckpt_io.save_checkpoint(run / "last.pt", last)
    result = train_mod.train(tiny_config(tiny_data, run, epochs=2, resume=str(run)))
    assert result["best_miou"] == 0.6


@pytest.mark.slow  # trains end to end, once per case
@pytest.mark.parametrize(("flags", "cause"), [
    (["--lr", "5"], "lr=5 is high for sgd"),
    (["--lr", "0.01", "--momentum", "0.995"], "momentum=0.995"),
    (["--optimizer", "adamw", "--lr", "0.001", "--weight-decay", "0.5"], "weight_decay=0.5"),
    (["--lr", "0.001"], "may still be too high"),
])
def test_divergence_stops_with_one_line_naming_the_cause(tiny_data, tmp_path, capsys,
                                                         monkeypatch, flags, cause):
    # The loss turns NaN at the 3rd step (epoch 2), as a diverging run's does.
    original, calls = train_mod.training_loss, []

    def diverging(*args, **kwargs):
        calls.append(1)
        loss = original(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(train_mod, "training_loss", diverging)
    run = tmp_path / "run"
    code = main(["train", "--data", f"voc:{tiny_data}", "--model", "fcn32s", "--epochs", "3",
                 "--batch-size", "2", "--crop", "32,32", "--workers", "0", "--no-progress",
                 "--max-steps-per-epoch", "2", "--log-every", "1", "--out", str(run), *flags])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, err
    # The loss is read back once per log window (here every step): found at step 3.
    assert "diverged" in errors[0] and "step 3" in errors[0] and cause in errors[0]
    assert load_checkpoint(run / "last.pt")["epoch"] == 1  # the last finite epoch
    assert "diverged" in (run / "error.txt").read_text()


@pytest.mark.slow  # trains end to end
def test_nan_weights_are_never_saved(tiny_data, tmp_path, monkeypatch):
    # A finite loss but a weight gone NaN by the epoch's last step: refused before saving.
    original = train_mod.train_one_epoch

    def poisoning(state, epoch):
        result = original(state, epoch)
        with torch.no_grad():
            next(state.model.parameters()).fill_(float("inf"))
        return result

    monkeypatch.setattr(train_mod, "train_one_epoch", poisoning)
    with pytest.raises(train_mod.TrainingDiverged, match="became NaN/inf"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / "best.pt").exists()


def test_divergence_message_blames_the_data_when_pixels_are_not_finite():
    config = TrainConfig(data="d", lr=0.001)
    message = train_mod.divergence_message(config, "the loss became nan", 7, bad_data=True)
    assert "the data" in message and "lr=" not in message.split("likely cause:")[1][:40]


@pytest.mark.slow  # trains end to end
def test_bad_sample_mid_training_leaves_error_txt(tiny_data, tmp_path, capsys, private_copy):
    # a copy with one training image truncated: found when the loader reaches it
    data = private_copy(tiny_data, "data")
    ids = (tiny_data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    victim = data / "JPEGImages" / f"{ids[-1]}.jpg"
    victim.write_bytes(victim.read_bytes()[:50])
    run = tmp_path / "run"
    code = main(["train", "--data", f"voc:{data}", "--model", "fcn32s", "--epochs", "2",
                 "--batch-size", "2", "--crop", "32,32", "--workers", "0", "--no-progress",
                 "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and len([x for x in err.splitlines() if "error:" in x]) == 1
    text = (run / "error.txt").read_text()
    assert victim.name in text and "--resume" in text


@pytest.mark.slow  # trains end to end
def test_resume_auto_starts_fresh_then_continues(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", f"voc:{tiny_data}", "--model", "fcn32s", "--batch-size", "2",
            "--crop", "32,32", "--workers", "0", "--no-progress", "--max-steps-per-epoch", "1",
            "--out", str(run), "--resume", "auto", "--json"]
    assert main([*argv, "--epochs", "1"]) == 0  # nothing to resume: fresh
    first = json.loads(capsys.readouterr().out)
    assert first["epoch"] == 1 and first["step"] == 1
    assert main([*argv, "--epochs", "2"]) == 0  # continues from last.pt
    second = json.loads(capsys.readouterr().out)
    assert second["step"] == 2 and load_checkpoint(run / "last.pt")["epoch"] == 2
    with pytest.raises(InputError, match="--data is required"):
        from fcnkit.cli import build_parser
        from fcnkit.cli.train import config_from_args

        config_from_args(build_parser().parse_args(
            ["train", "--resume", "auto", "--out", str(tmp_path / "empty")]))


@pytest.mark.slow  # trains end to end
def test_train_json_is_strict_when_no_val_pixel_is_labelled(tiny_data, tmp_path, capsys,
                                                             private_copy):
    data = private_copy(tiny_data, "data")
    for mask in (data / "SegmentationClass").glob("val_*.png"):
        array = np.full_like(np.asarray(Image.open(mask)), 255)
        Image.fromarray(array, mode="L").save(mask)
    code = main(["train", "--data", f"voc:{data}", "--model", "fcn32s", "--epochs", "1",
                 "--batch-size", "2", "--crop", "32,32", "--workers", "0", "--no-progress",
                 "--max-steps-per-epoch", "1", "--out", str(tmp_path / "run"), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in --json"))
    assert result["best_miou"] is None and result["best"] is None
    assert not (tmp_path / "run" / "best.pt").exists()
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl"))
    # the text summary lists only the files that were written
    main(["train", "--resume", str(tmp_path / "run"), "--epochs", "1"])
    summary = capsys.readouterr().out
    assert "best.pt" not in summary and "last.pt" in summary
