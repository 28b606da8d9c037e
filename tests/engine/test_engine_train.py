"""The training loop on a tiny synthetic dataset: run directory, resume equivalence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fcnkit.engine.train as train_mod
from fcnkit.cli import build_parser
from fcnkit.cli.train import config_from_args, config_to_argv
from fcnkit.data import generate_synthetic_dataset
from fcnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint
from fcnkit.engine.config import TrainConfig
from fcnkit.errors import InputError


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(root, train=6, val=3, seed=3, size=(40, 56), workers=1)
    return root


def tiny_config(data, out, **changes):
    base = dict(
        data=f"voc:{data}", model="fcn8s", backbone="resnet18", epochs=2, batch_size=3,
        lr=0.01, crop=(32, 32), scale_range=(0.8, 1.25), out=str(out), workers=0,
        progress=False, log_every=1, threads=1, seed=5,
    )
    base.update(changes)
    return TrainConfig(**base)


def read_val(data):
    ids = (data / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for i in ids:
        image = np.asarray(Image.open(data / "JPEGImages" / f"{i}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(data / "SegmentationClass" / f"{i}.png"))
        yield image, mask


def brute_force_confusion(model, data, num_classes):
    """Independent evaluation: ImageNet normalisation by hand, argmax, np.bincount."""
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    model.eval()
    for image, mask in read_val(data):
        x = torch.from_numpy(((image / 255.0 - mean) / std).transpose(2, 0, 1)).float()
        with torch.no_grad():
            pred = model(x[None])[0].argmax(0).numpy()
        keep = mask != 255
        total += np.bincount(num_classes * mask[keep].astype(np.int64) + pred[keep],
                             minlength=num_classes**2).reshape(num_classes, num_classes)
    return total


def test_train_writes_run_directory(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = train_mod.train(tiny_config(tiny_data, out))
    for name in ("config.json", "metrics.jsonl", "curves.png", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert TrainConfig.from_dict(json.loads((out / "config.json").read_text())) == tiny_config(
        tiny_data, out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # 6 images / batch 3, 2 epochs
    assert [r["epoch"] for r in epochs] == [1, 2]
    # Poly decay: lr after step s is lr0 * (1 - s/4) ** 0.9, reaching 0 at the end.
    for r in steps:
        assert r["lr"] == pytest.approx(0.01 * (1 - r["step"] / 4) ** 0.9)
    assert result["step"] == 4 and result["effective_batch_size"] == 3

    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 4
    assert last["model_config"] == {"name": "fcn8s", "num_classes": 9, "backbone": "resnet18"}
    assert len(last["classes"]) == len(last["palette"]) == 9
    # The checkpoint's validation metrics equal an independent evaluation of its weights.
    model = model_from_checkpoint(last, num_classes=9, name="fcn8s")
    expected = brute_force_confusion(model, tiny_data, 9)
    assert np.array_equal(np.array(last["metrics"]["confusion"]), expected)
    assert last["metrics"]["pixel_acc"] == pytest.approx(np.trace(expected) / expected.sum())
    best = load_checkpoint(out / "best.pt")
    assert best["metrics"]["miou"] == max(r["miou"] for r in epochs)


@pytest.mark.parametrize("layout", [
    {"precision": "fp32", "channels_last": "off"},
    pytest.param({"precision": "bf16", "channels_last": "on"}, marks=pytest.mark.slow),
], ids=["fp32", "bf16-channels-last"])
def test_resume_gives_identical_weights(tiny_data, tmp_path, monkeypatch, layout):
    straight = train_mod.train(tiny_config(tiny_data, tmp_path / "a", workers=0, **layout))

    # Interrupt the second run as it enters its second epoch (after epoch 1's last.pt).
    original = train_mod.train_one_epoch

    def interrupted(*args, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(tiny_config(tiny_data, tmp_path / "b", **layout))
    monkeypatch.setattr(train_mod, "train_one_epoch", original)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    # Scramble the global RNGs: resuming must not depend on the process's state.
    torch.manual_seed(12345)
    np.random.seed(12345)
    resumed = train_mod.train(tiny_config(tiny_data, tmp_path / "b", resume=str(tmp_path / "b"),
                                          **layout))

    a = load_checkpoint(straight["last"])
    b = load_checkpoint(resumed["last"])
    assert a["step"] == b["step"] == 4
    assert a["model_state"].keys() == b["model_state"].keys()
    # Checkpoints stay float32 whatever the compute precision.
    assert {v.dtype for v in a["model_state"].values() if v.is_floating_point()} == {
        torch.float32}
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    for pa, pb in zip(a["optimizer_state"]["state"].values(),
                      b["optimizer_state"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert a["metrics"]["confusion"] == b["metrics"]["confusion"]
    # The resumed log continues the first one: steps 1..4 once each.
    records = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().split("\n")
               if x]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3, 4]


def test_resume_bad_input(tiny_data, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "x", resume=str(tmp_path / "nope")))
    assert not (tmp_path / "x").exists()
    run = tmp_path / "one"
    train_mod.train(tiny_config(tiny_data, run, epochs=1, max_steps_per_epoch=1))
    before = (run / "last.pt").read_bytes()
    done = train_mod.train(tiny_config(tiny_data, run, epochs=1, max_steps_per_epoch=1,
                                       resume=str(run)))
    assert done["step"] == 1 and (run / "last.pt").read_bytes() == before  # nothing to do
    with pytest.raises(InputError, match=r"is a fcn8s \(backbone resnet18\).*--backbone"):
        train_mod.train(tiny_config(tiny_data, run, backbone="resnet34", resume=str(run)))
    with pytest.raises(InputError, match=r"--model"):
        train_mod.train(tiny_config(tiny_data, run, model="fcn32s", resume=str(run)))
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot be read"):
        train_mod.train(tiny_config(tiny_data, tmp_path / "corrupt",
                                    resume=str(tmp_path / "corrupt")))
    assert (tmp_path / "corrupt" / "last.pt").read_bytes() == b"garbage"


def test_class_weights(tiny_data, tmp_path):
    config = tiny_config(tiny_data, tmp_path, class_weights="auto", train_split="train")
    dataset = train_mod.get_dataset(config, "train", train=True)
    weights = train_mod.class_weights_for(config, dataset, 9).double().numpy()
    # Brute force median-frequency balancing over the raw PNG masks.
    ids = (tiny_data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    pixels, image_pixels = np.zeros(9), np.zeros(9)
    for i in ids:
        mask = np.asarray(Image.open(tiny_data / "SegmentationClass" / f"{i}.png"))
        valid = mask[mask != 255]
        for c in range(9):
            n = (valid == c).sum()
            pixels[c] += n
            image_pixels[c] += valid.size if n else 0
    freq = np.divide(pixels, image_pixels, out=np.full(9, np.nan), where=image_pixels > 0)
    median = np.nanmedian(freq)
    expected = np.where(freq > 0, median / np.where(freq > 0, freq, 1), 0.0)
    # torch.nanmedian takes the lower middle value for an even count, numpy the mean.
    lower = np.sort(freq[~np.isnan(freq)])[(np.sum(~np.isnan(freq)) - 1) // 2]
    expected_lower = np.where(freq > 0, lower / np.where(freq > 0, freq, 1), 0.0)
    assert np.allclose(weights, expected, rtol=1e-5) or np.allclose(
        weights, expected_lower, rtol=1e-5)
    explicit = tiny_config(tiny_data, tmp_path, class_weights="1,2,3,4,5,6,7,8,9")
    assert train_mod.class_weights_for(explicit, dataset, 9).tolist() == list(range(1, 10))
    with pytest.raises(InputError, match="--class-weights"):
        train_mod.class_weights_for(tiny_config(tiny_data, tmp_path, class_weights="1,2"),
                                    dataset, 9)


def test_segmentation_loss_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = train_mod.segmentation_loss(logits, torch.full((2, 4, 4), 255), None)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, 0] = 255
    ref = torch.nn.CrossEntropyLoss(ignore_index=255)(logits, masks)
    assert torch.allclose(train_mod.segmentation_loss(logits, masks, None), ref)


def test_poly_factor():
    assert train_mod.poly_factor(0, 10, 0.9) == 1.0
    assert train_mod.poly_factor(10, 10, 0.9) == 0.0
    assert train_mod.poly_factor(12, 10, 0.9) == 0.0
    assert train_mod.poly_factor(5, 10, 1.0) == 0.5


def test_config_validation_and_cli_round_trip(tmp_path):
    with pytest.raises(ValueError, match="--epochs"):
        TrainConfig(data="d", epochs=0)
    with pytest.raises(ValueError, match="--optimizer"):
        TrainConfig(data="d", optimizer="rmsprop")
    with pytest.raises(ValueError, match="--sync-bn needs --device cuda"):
        TrainConfig(data="d", sync_bn=True)
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"data": "d", "bogus": 1})
    with pytest.raises(ValueError, match="--precision"):
        TrainConfig(data="d", precision="fp8")
    with pytest.raises(ValueError, match="--channels-last"):
        TrainConfig(data="d", channels_last="yes")
    # Runs written before --precision replaced --amp still load.
    assert TrainConfig.from_dict({"data": "d", "amp": True}) == TrainConfig(data="d")
    config = TrainConfig(data="voc:/x", crop=(64, 48), scale_range=(0.5, 1.5), hflip=False,
                         class_weights="auto", optimizer="adamw", lr=0.003,
                         precision="bf16", channels_last="off")
    argv = ["train", *config_to_argv(config)]
    assert config_from_args(build_parser().parse_args(argv)) == config
    assert TrainConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="--data is required"):
        config_from_args(build_parser().parse_args(["train"]))


def test_model_options_follow_the_registry():
    assert train_mod.model_options(TrainConfig(data="d")) == {"backbone": "resnet18"}
    # The d2l FCN has its ResNet-18 built in: the default --backbone is not passed to it.
    assert train_mod.model_options(TrainConfig(data="d", model="fcn_resnet18_d2l")) == {}
    assert train_mod.model_options(
        TrainConfig(data="d", model="fcn32s", upsample="deconv", backbone="vgg16")
    ) == {"backbone": "vgg16", "upsample": "deconv"}
    with pytest.raises(InputError, match="unknown model"):
        train_mod.model_options(TrainConfig(data="d", model="nope"))
