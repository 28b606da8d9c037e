"""Weights out and staged training: safetensors round trip, --init-from, --recipe caffe, aux.

Oracles: the model's own logits before export (exact equality after the round trip),
torch's summed cross-entropy, and the parameter tensors themselves (copied or not).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.inference.export_safetensors import export_safetensors
from fcnkit.models import build_model
from fcnkit.models.preprocess import CAFFE
from fcnkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from fcnkit.training.config import TrainConfig
from fcnkit.training.loop import train
from fcnkit.training.recipe import (
    build_caffe_optimizer,
    caffe_recipe_defaults,
    segmentation_loss,
    training_loss,
)


@pytest.fixture(scope="module")
def tiny_data(synthetic_data):
    return synthetic_data(train=4, val=2, seed=3, size=(40, 48))  # shared: copy to modify


def _config(data, out, **changes):
    base = dict(data=f"voc:{data}", model="fcn32s", backbone="resnet18", epochs=1,
                batch_size=2, lr=0.01, crop=(32, 32), scale_range=(0.9, 1.1), out=str(out),
                workers=0, progress=False, log_every=1, threads=1, seed=1, precision="fp32")
    base.update(changes)
    return TrainConfig(**base)


@pytest.mark.slow  # seconds
def test_safetensors_round_trip_gives_identical_logits_and_metadata(tmp_path):
    model = build_model("fcn8s", num_classes=4, backbone="resnet18",
                        preprocessing="caffe").eval()
    config = {"name": "fcn8s", "num_classes": 4, "backbone": "resnet18",
              "preprocessing": "caffe"}
    ckpt = {"model_state": model.state_dict(), "model_config": config,
            "classes": ["a", "b", "c", "d"], "palette": [[0, 0, 0]] * 4}
    path = export_safetensors(ckpt, tmp_path / "m.safetensors")
    again = build_model("fcn8s", num_classes=4, backbone="resnet18", weights=str(path)).eval()
    assert again.preprocessing == CAFFE  # read from the metadata
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    # The file opens as a checkpoint too (eval / predict / --init-from).
    loaded = load_checkpoint(path)
    assert loaded["classes"] == ["a", "b", "c", "d"]
    rebuilt = model_from_checkpoint(loaded)
    assert rebuilt.preprocessing == CAFFE
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_export_cli_writes_safetensors_from_a_checkpoint(tmp_path, capsys):
    model = build_model("fcn32s", num_classes=3, backbone="resnet18")
    save_checkpoint(tmp_path / "best.pt", {"model_state": model.state_dict(),
                                           "model_config": {"name": "fcn32s", "num_classes": 3,
                                                            "backbone": "resnet18"}})
    assert main(["export", str(tmp_path / "best.pt"), "--format", "safetensors", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"].endswith("best.safetensors") and result["preprocessing"] == "imagenet"
    state = load_checkpoint(result["output"])["model_state"]
    assert torch.equal(state["head.score_fr.weight"], model.state_dict()["head.score_fr.weight"])
    # A .safetensors of another tool (no fcnkit metadata) is refused as a checkpoint.
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="other.safetensors.*without fcnkit metadata"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_summed_loss_and_aux_term_match_torch():
    logits = torch.randn(2, 3, 5, 6)
    aux = torch.randn(2, 3, 5, 6)
    masks = torch.randint(0, 3, (2, 5, 6))
    masks[0, 0] = 255
    summed = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255, reduction="sum")
    torch.testing.assert_close(segmentation_loss(logits, masks, None, reduction="sum"), summed)
    mean = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255)
    mean_aux = torch.nn.functional.cross_entropy(aux, masks, ignore_index=255)
    torch.testing.assert_close(
        training_loss({"out": logits, "aux": aux}, masks, None, aux_weight=0.5),
        mean + 0.5 * mean_aux)


def test_caffe_optimizer_biases_at_twice_the_lr_without_decay():
    model = build_model("fcn16s", num_classes=3, backbone="resnet18")
    settings = caffe_recipe_defaults("fcn16s")
    assert settings["lr"] == 1e-12 and settings["momentum"] == 0.99
    optimizer = build_caffe_optimizer(model, lr=1.0, momentum=0.99, weight_decay=5e-4)
    weights, biases = optimizer.param_groups
    assert (weights["lr"], weights["weight_decay"]) == (1.0, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (2.0, 0.0)
    named = dict(model.named_parameters())
    assert all(n.endswith("bias") for n, p in named.items()
               if any(p is q for q in biases["params"]))
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    in_groups = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert frozen > 0 and in_groups + frozen == sum(p.numel() for p in model.parameters())
    with pytest.raises(InputError, match="no published learning rate"):
        caffe_recipe_defaults("fcn_dilated")


@pytest.mark.slow  # three short training runs
def test_staged_training_32s_16s_8s_with_init_from(tiny_data, tmp_path):
    first = train(_config(tiny_data, tmp_path / "s32", model="fcn32s"))
    assert first["init_from"] is None
    second = train(_config(tiny_data, tmp_path / "s16", model="fcn16s",
                           init_from=first["last"]))
    counts = second["init_from"]
    # FCN-16s gains its stride-16 skip score (weight, bias) and upsampler; the x32 one of
    # FCN-32s does not fit.
    assert counts["new"] >= 2 and counts["skipped"] >= 1 and counts["copied"] > 100
    third = train(_config(tiny_data, tmp_path / "s8", model="fcn8s", init_from=second["last"]))
    assert third["init_from"]["new"] >= 2 and math.isfinite(third["train_loss"])
    s16 = load_checkpoint(second["last"])["model_state"]
    s32 = load_checkpoint(first["last"])["model_state"]
    assert "head.skip_scores.score_layer3.weight" in s16  # the ResNet pool4 analogue
    assert s16["backbone.conv1.weight"].shape == s32["backbone.conv1.weight"].shape


@pytest.mark.slow  # one epoch of training
def test_caffe_recipe_one_epoch_finite_loss_from_the_cli(tiny_data, tmp_path, capsys):
    code = main(["train", "--data", f"voc:{tiny_data}", "--model", "fcn32s", "--backbone",
                 "resnet18", "--recipe", "caffe", "--epochs", "1", "--out",
                 str(tmp_path / "caffe"), "--workers", "0", "--no-progress", "--threads",
                 "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["batch_size"] == 1 and math.isfinite(result["train_loss"])
    saved = json.loads((tmp_path / "caffe" / "config.json").read_text())
    assert saved["recipe"] == "caffe" and saved["lr"] == 1e-10 and saved["momentum"] == 0.99


@pytest.mark.slow  # one epoch of training
def test_aux_head_trains_with_its_loss_weight(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path / "aux", model="fcn_dilated",
                           backbone="resnet50", batch_size=2, aux_loss_weight=0.5,
                           model_options={"aux": True, "dilations": "torchvision",
                                          "upsample": "resize"}))
    assert math.isfinite(result["train_loss"])
    state = load_checkpoint(result["last"])["model_state"]
    assert any(k.startswith("aux_classifier.") for k in state)


# A plain torchvision state dict as --checkpoint and --init-from --------------------------

def _voc_tree(root, count=2, size=(36, 44)):
    """A Pascal VOC layout (the 21 VOC classes, no classes.txt) with random images/labels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "SegmentationClass").mkdir()
    ids = [f"img{i}" for i in range(count)]
    for sample_id in ids:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{sample_id}.png")
        labels = rng.integers(0, 21, size, dtype=np.uint8)
        labels[:3] = 255
        Image.fromarray(labels, mode="L").save(root / "SegmentationClass" / f"{sample_id}.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return ids


@pytest.fixture(scope="module")
def torchvision_fcn(tmp_path_factory):
    import torchvision

    torch.manual_seed(7)
    source = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    gen = torch.Generator().manual_seed(0)
    for m in source.modules():  # BN statistics away from 0/1: a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    path = tmp_path_factory.mktemp("tv") / "fcn_resnet50.pth"
    torch.save(source.state_dict(), path)
    return source.eval(), path


@pytest.mark.slow  # builds and runs torchvision FCN-ResNet50s
def test_eval_and_predict_take_a_plain_torchvision_state_dict(torchvision_fcn, tmp_path,
                                                               capsys):
    import numpy as np
    from PIL import Image

    source, path = torchvision_fcn
    ckpt = load_checkpoint(path)
    assert ckpt["model_config"] == {"name": "fcn_dilated", "num_classes": 21,
                                    "backbone": "resnet50", "output_stride": 8,
                                    "dilations": "torchvision", "upsample": "resize",
                                    "aux": True}
    model = model_from_checkpoint(ckpt)
    x = torch.randn(1, 3, 44, 60)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x)["out"], atol=1e-5, rtol=1e-5)

    root = tmp_path / "voc"
    ids = _voc_tree(root)
    assert main(["eval", "--checkpoint", str(path), "--data", f"voc:{root}", "--split", "val",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Oracle: torchvision's own model on ImageNet-normalised images, counted with numpy.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    correct = total = 0
    predictions = {}
    for sample_id in ids:
        rgb = np.asarray(Image.open(root / "JPEGImages" / f"{sample_id}.png"), np.float32)
        image = (torch.from_numpy(rgb).permute(2, 0, 1) / 255.0 - mean) / std
        with torch.no_grad():
            pred = source(image[None])["out"].argmax(1)[0].numpy()
        predictions[sample_id] = pred
        truth = np.asarray(Image.open(root / "SegmentationClass" / f"{sample_id}.png"))
        valid = truth != 255
        correct += int((pred[valid] == truth[valid]).sum())
        total += int(valid.sum())
    assert result["num_images"] == 2 and sum(result["pixels"]) == total
    assert result["pixel_acc"] == pytest.approx(correct / total)

    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(path), str(root / "JPEGImages" / "img0.png"),
                 "--out", str(out)]) == 0
    written = np.asarray(Image.open(out / "img0.png"))
    assert np.array_equal(written, predictions["img0"])


def test_init_from_a_torchvision_file_builds_its_model(torchvision_fcn, tiny_data):
    from fcnkit.cli import build_parser
    from fcnkit.cli.train import config_from_args
    from fcnkit.models.weights import read_state_file
    from fcnkit.training.setup import build_training_model

    _, path = torchvision_fcn
    args = build_parser().parse_args(["train", "--data", f"voc:{tiny_data}", "--init-from",
                                      str(path)])
    config = config_from_args(args)
    assert (config.model, config.backbone) == ("fcn_dilated", "resnet50")
    init = read_state_file(path, "init_from")
    model, model_config, report = build_training_model(config, 4, None, init=init)
    assert model_config == {"name": "fcn_dilated", "num_classes": 4, "backbone": "resnet50",
                            "output_stride": 8, "dilations": "torchvision",
                            "upsample": "resize", "aux": True}
    # Everything but the two class-score layers (4 classes here, 21 in the file) is copied.
    assert sorted(report.new) == ["aux_classifier.classifier.bias",
                                  "aux_classifier.classifier.weight",
                                  "classifier.classifier.bias", "classifier.classifier.weight"]
    assert torch.equal(model.backbone.layer4[2].conv2.weight,
                       init.state["backbone.layer4.2.conv2.weight"])
    with pytest.raises(InputError) as info:
        build_training_model(config.replace(backbone="resnet18"), 4, None, init=init)
    assert "init_from:" in str(info.value) and "backbone='resnet50' (not 'resnet18')" in str(
        info.value)


@pytest.fixture(scope="module")
def imagenet_resnet18(tmp_path_factory):
    """A torchvision ResNet-18 classifier's state dict under its release file name (random
    weights: nothing downloads), as a user keeps ImageNet weights on disk."""
    import torchvision

    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("imagenet") / "resnet18-f37072fd.pth"
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    return state, path


def test_backbone_weights_seed_a_fresh_run_and_are_not_read_on_resume(imagenet_resnet18,
                                                                     tiny_data, tmp_path):
    from fcnkit.cli import build_parser
    from fcnkit.cli.train import config_from_args
    from fcnkit.training.setup import build_training_model

    state, path = imagenet_resnet18
    args = build_parser().parse_args(["train", "--data", f"voc:{tiny_data}", "--model",
                                      "fcn8s", "--backbone-weights", str(path)])
    config = config_from_args(args)
    assert config.backbone_weights == str(path)
    model, model_config, report = build_training_model(config, 4, None)
    assert report is None and "backbone_weights" not in model_config
    # The oracle: the classifier's own tensors, in the backbone under the same names.
    for name in ("conv1.weight", "bn1.running_var", "layer3.1.conv2.weight"):
        assert torch.equal(model.backbone.state_dict()[name], state[name]), name
    # A resumed run has its own weights: the file is not read again (here it is gone).
    resumed = {"model_config": dict(model_config), "model_state": model.state_dict(),
               "path": "last.pt"}
    moved = config.replace(backbone_weights=str(tmp_path / "moved-away.pth"))
    again, _, _ = build_training_model(moved, 4, resumed)
    assert torch.equal(again.backbone.conv1.weight, state["conv1.weight"])


def test_init_from_that_fits_nothing_is_refused_not_trained_from_scratch(imagenet_resnet18,
                                                                        tiny_data):
    from fcnkit.models.weights import read_state_file
    from fcnkit.training.setup import build_training_model

    _, path = imagenet_resnet18
    config = _config(tiny_data, "unused", model="fcn8s", init_from=str(path))
    with pytest.raises(InputError) as info:
        build_training_model(config, 4, None, init=read_state_file(path, "init_from"))
    message = str(info.value)
    assert "\n" not in message and "0 of 122 copied" in message
    assert f"--backbone-weights {path}" in message  # an ImageNet classifier's file
