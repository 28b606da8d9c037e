"""Foreign weights: torchvision fcn_resnet* and pytorch-fcn FCN32s/16s/8s/8sAtOnce.

Oracles: torchvision's own segmentation models (built with random weights, no download),
and a reference module written here with pytorch-fcn's (torchfcn 1.9.7) layer names,
registration order and forward, crops typed in as torchfcn types them (19; 5, 27; 5, 9, 31).
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from fcnkit.errors import InputError
from fcnkit.models import build_model
from fcnkit.models.preprocess import CAFFE, IMAGENET
from fcnkit.models.weights import (
    PYTORCH_FCN,
    TORCHVISION_FCN_OPTIONS,
    WeightsFile,
    load_weights,
    read_state_file,
    torchvision_dilations,
    transfer_matching,
)

NUM_CLASSES = 3


def _randomise_bn(model: nn.Module) -> None:
    # Fresh BN has mean 0 / var 1: random statistics make a wrong mapping visible.
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            nn.init.normal_(m.weight, 1.0, 0.1)
            nn.init.normal_(m.bias, 0.0, 0.1)


# torchvision ---------------------------------------------------------------------------

@pytest.mark.slow  # ResNet-50/101 FCNs at full width: seconds each
@pytest.mark.parametrize("name, aux", [("fcn_resnet50", False), ("fcn_resnet50", True),
                                       ("fcn_resnet101", False)])
def test_torchvision_fcn_logits_equal_after_loading(tmp_path, name, aux):
    torch.manual_seed(0)
    source = getattr(torchvision.models.segmentation, name)(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=aux)
    _randomise_bn(source)
    source.eval()
    path = tmp_path / f"{name}.pth"
    torch.save(source.state_dict(), path)
    model = build_model("fcn_dilated", num_classes=NUM_CLASSES, weights=str(path), aux=aux,
                        **TORCHVISION_FCN_OPTIONS[name]).eval()
    assert model.preprocessing == IMAGENET
    # 44 x 60: not a multiple of the output stride, so the resize to the input is exercised.
    x = torch.randn(1, 3, 44, 60)
    with torch.no_grad():
        expected = source(x)
        ours = model.forward_all(x)
    assert ours["out"].shape == (1, NUM_CLASSES, 44, 60)
    torch.testing.assert_close(ours["out"], expected["out"], atol=1e-5, rtol=1e-5)
    if aux:
        torch.testing.assert_close(ours["aux"], expected["aux"], atol=1e-5, rtol=1e-5)
        model.train()
        assert set(model(x)) == {"out", "aux"}


def test_torchvision_aux_head_is_skipped_and_reported_when_not_wanted(tmp_path):
    source = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=True)
    path = tmp_path / "tv.pth"
    torch.save(source.state_dict(), path)
    model = build_model("fcn_dilated", num_classes=NUM_CLASSES,
                        **TORCHVISION_FCN_OPTIONS["fcn_resnet50"])
    report = transfer_matching(model, read_state_file(path))
    assert report.counts()["new"] == 0
    assert report.skipped and all(k.startswith("aux_classifier.") for k in report.skipped)


def test_torchvision_dilations_are_read_from_torchvision():
    # torchvision keeps the previous rate in the first block of each dilated layer.
    assert torchvision_dilations("resnet50") == [1] + [2] * 5 + [2, 4, 4]
    assert torchvision_dilations("resnet101") == [1] + [2] * 22 + [2, 4, 4]
    with pytest.raises(ValueError, match="Bottleneck"):
        torchvision_dilations("resnet18")


def test_torchvision_weights_name_is_resolved_only_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InputError, match="never downloads") as info:
        build_model("fcn_dilated", weights="COCO_WITH_VOC_LABELS_V1",
                    **TORCHVISION_FCN_OPTIONS["fcn_resnet50"])
    assert "\n" not in str(info.value)
    # A cached file is used as is.
    source = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    entry = torchvision.models.get_model_weights("fcn_resnet50")["COCO_WITH_VOC_LABELS_V1"]
    cached = tmp_path / "hub" / "checkpoints" / entry.url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    model = build_model("fcn_dilated", weights="COCO_WITH_VOC_LABELS_V1", aux=True,
                        **TORCHVISION_FCN_OPTIONS["fcn_resnet50"])
    assert torch.equal(model.classifier.classifier.weight, source.classifier[4].weight)


# pytorch-fcn -----------------------------------------------------------------------------

class TorchFCNReference(nn.Module):
    """torchfcn's FCN32s / FCN16s / FCN8s / FCN8sAtOnce: names, order and forward."""

    def __init__(self, variant: str, n_class: int = NUM_CLASSES) -> None:
        super().__init__()
        self.variant = variant
        widths = [(3, 64), (64, 64), None, (64, 128), (128, 128), None,
                  (128, 256), (256, 256), (256, 256), None,
                  (256, 512), (512, 512), (512, 512), None,
                  (512, 512), (512, 512), (512, 512), None]
        block, conv = 1, 0
        for spec in widths:
            if spec is None:
                setattr(self, f"pool{block}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
                block, conv = block + 1, 0
                continue
            conv += 1
            pad = 100 if (block, conv) == (1, 1) else 1
            setattr(self, f"conv{block}_{conv}", nn.Conv2d(*spec, 3, padding=pad))
        self.fc6 = nn.Conv2d(512, 4096, 7)
        self.drop6 = nn.Dropout2d()
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop7 = nn.Dropout2d()
        self.score_fr = nn.Conv2d(4096, n_class, 1)
        up = nn.ConvTranspose2d
        if variant == "32s":
            self.upscore = up(n_class, n_class, 64, stride=32, bias=False)
        elif variant == "16s":
            self.score_pool4 = nn.Conv2d(512, n_class, 1)
            self.upscore2 = up(n_class, n_class, 4, stride=2, bias=False)
            self.upscore16 = up(n_class, n_class, 32, stride=16, bias=False)
        else:  # torchfcn's FCN8s registration order: pool3 before pool4, upscore8 early.
            self.score_pool3 = nn.Conv2d(256, n_class, 1)
            self.score_pool4 = nn.Conv2d(512, n_class, 1)
            self.upscore2 = up(n_class, n_class, 4, stride=2, bias=False)
            self.upscore8 = up(n_class, n_class, 16, stride=8, bias=False)
            self.upscore_pool4 = up(n_class, n_class, 4, stride=2, bias=False)
        for m in self.modules():  # small random weights, different per layer
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, (2.0 / m.weight[0].numel()) ** 0.5)
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0.0, 0.1)

    def forward(self, x):
        h = x
        taps = {}
        for block, n in zip(range(1, 6), (2, 2, 3, 3, 3)):
            for i in range(1, n + 1):
                h = torch.relu(getattr(self, f"conv{block}_{i}")(h))
            h = getattr(self, f"pool{block}")(h)
            taps[block] = h
        h = self.drop6(torch.relu(self.fc6(h)))
        h = self.drop7(torch.relu(self.fc7(h)))
        h = self.score_fr(h)
        if self.variant == "32s":
            h = self.upscore(h)
            return h[:, :, 19:19 + x.size(2), 19:19 + x.size(3)]
        pool4 = taps[4] * (0.01 if self.variant == "8s-atonce" else 1)
        upscore2 = self.upscore2(h)
        score_pool4c = self.score_pool4(pool4)[:, :, 5:5 + upscore2.size(2),
                                               5:5 + upscore2.size(3)]
        h = upscore2 + score_pool4c
        if self.variant == "16s":
            h = self.upscore16(h)
            return h[:, :, 27:27 + x.size(2), 27:27 + x.size(3)]
        upscore_pool4 = self.upscore_pool4(h)
        pool3 = taps[3] * (0.0001 if self.variant == "8s-atonce" else 1)
        score_pool3c = self.score_pool3(pool3)[:, :, 9:9 + upscore_pool4.size(2),
                                               9:9 + upscore_pool4.size(3)]
        h = self.upscore8(upscore_pool4 + score_pool3c)
        return h[:, :, 31:31 + x.size(2), 31:31 + x.size(3)]


_VARIANTS = {"32s": ("fcn32s", {}), "16s": ("fcn16s", {}), "8s": ("fcn8s", {}),
             "8s-atonce": ("fcn8s", {"at_once": True})}


# Each case builds two 134M-parameter VGG16 FCNs: seconds, hence slow.
@pytest.mark.slow
@pytest.mark.parametrize("variant", list(_VARIANTS))
def test_pytorch_fcn_logits_equal_after_loading(tmp_path, variant):
    torch.manual_seed(1)
    reference = TorchFCNReference(variant).eval()
    path = tmp_path / "torchfcn.pth"
    torch.save(reference.state_dict(), path)
    name, options = _VARIANTS[variant]
    model = build_model(name, num_classes=NUM_CLASSES, faithful=True, weights=str(path),
                        **options).eval()
    assert model.preprocessing == CAFFE  # travels with pytorch-fcn weights
    x = torch.randn(1, 3, 36, 44) * 50
    with torch.no_grad():
        expected, ours = reference(x), model(x)
    assert ours.shape == expected.shape == (1, NUM_CLASSES, 36, 44)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_pytorch_fcn_trainer_checkpoint_is_unwrapped_and_its_arch_checked(tmp_path):
    reference = TorchFCNReference("8s-atonce")
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "iteration": 100, "arch": "FCN8sAtOnce",
                "model_state_dict": reference.state_dict(), "best_mean_iu": 0.5}, path)
    model = build_model("fcn8s", num_classes=NUM_CLASSES, faithful=True, at_once=True,
                        weights=str(path))
    assert torch.equal(model.head.upscores[1].weight, reference.upscore_pool4.weight)
    # Without at_once the file's arch decides; an explicit at_once=False contradicts it.
    built = build_model("fcn8s", weights=str(path))
    assert built.at_once and built.head.upscores[1].weight.shape[0] == NUM_CLASSES
    with pytest.raises(InputError, match="FCN8sAtOnce") as info:
        build_model("fcn8s", num_classes=NUM_CLASSES, faithful=True, at_once=False,
                    weights=str(path))
    assert "\n" not in str(info.value)


@pytest.mark.slow  # full-width models: seconds
def test_bad_foreign_files_are_refused_naming_the_file_and_first_key(tmp_path):
    state = TorchFCNReference("16s").state_dict()
    path = tmp_path / "fcn16s.pth"
    torch.save({"score_fr.weight": state["score_fr.weight"]}, path)
    # Wrong architecture: Caffe VGG16 weights into a ResNet FCN (refused before any key).
    with pytest.raises(InputError, match=r"fcn16s\.pth.*faithful=True") as info:
        build_model("fcn16s", num_classes=NUM_CLASSES, backbone="resnet18", weights=str(path))
    assert "\n" not in str(info.value)
    model = build_model("fcn16s", num_classes=NUM_CLASSES, faithful=True)

    def refused(changed: dict, match: str) -> None:
        with pytest.raises(InputError, match=match) as info:
            load_weights(model, WeightsFile(changed, PYTORCH_FCN, "fcn16s.pth"))
        assert "\n" not in str(info.value) and "fcn16s.pth" in str(info.value)

    # Missing key (e.g. FCN-16s weights lacking their pool4 score layer).
    refused({k: v for k, v in state.items() if not k.startswith("score_pool4")},
            r"no key 'score_pool4\.weight' \(fcnkit 'head\.skip_scores\.score_pool4\.weight'\)")
    # Wrong class count.
    refused({**state, "score_fr.weight": torch.zeros(5, 4096, 1, 1)},
            r"'score_fr\.weight'.* shape 5x4096x1x1, the model expects 3x4096x1x1")
    # An unexpected key (FCN-8s weights into FCN-16s).
    refused({**state, "score_pool3.weight": torch.zeros(3, 256, 1, 1)}, "'score_pool3.weight'")
    # The intact state loads.
    load_weights(model, WeightsFile(state, PYTORCH_FCN, "fcn16s.pth"))


@pytest.mark.slow  # VGG16 FCNs at full width: seconds
def test_transfer_matching_reports_copied_skipped_new_for_staged_training(tmp_path):
    # FCN-32s -> FCN-16s: everything but the pool4 score layer and the 16s upsamplers.
    fcn32 = build_model("fcn32s", num_classes=NUM_CLASSES, faithful=True)
    path = tmp_path / "fcn32s.pth"
    torch.save(fcn32.state_dict(), path)
    fcn16 = build_model("fcn16s", num_classes=NUM_CLASSES, faithful=True)
    report = transfer_matching(fcn16, read_state_file(path))
    assert "head.skip_scores.score_pool4.weight" in report.new
    assert "head.upscore_final.weight" in report.skipped  # 64x64 kernel vs 32x32
    assert torch.equal(fcn16.backbone.fc7.weight, fcn32.backbone.fc7.weight)
    counts = report.counts()
    assert counts["copied"] + counts["new"] == len(fcn16.state_dict())


# Recognising a foreign file: no options needed ------------------------------------------

def _torchvision_file(tmp_path, *, aux, num_classes=NUM_CLASSES):
    torch.manual_seed(2)
    source = torchvision.models.segmentation.fcn_resnet50(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
    _randomise_bn(source)
    path = tmp_path / "fcn_resnet50.pth"
    torch.save(source.state_dict(), path)
    return source.eval(), path


@pytest.mark.slow  # a ResNet-50 FCN: seconds
def test_torchvision_file_builds_its_own_model_without_options(tmp_path):
    source, path = _torchvision_file(tmp_path, aux=True)
    model = build_model("fcn_dilated", weights=str(path)).eval()
    x = torch.randn(1, 3, 36, 52)
    with torch.no_grad():
        expected, ours = source(x), model.forward_all(x)
    torch.testing.assert_close(ours["out"], expected["out"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["aux"], expected["aux"], atol=1e-5, rtol=1e-5)
    # Options equal to the file's are accepted, torchvision's rates typed out included
    # (replace_stride_with_dilation=[False, True, True]: layer3 1,2,2,2,2,2; layer4 2,4,4).
    again = build_model("fcn_dilated", weights=str(path), backbone="resnet50",
                        num_classes=NUM_CLASSES, dilations="1,2,2,2,2,2,2,4,4", aux=False)
    assert getattr(again, "aux_classifier", None) is None
    assert torch.equal(again.classifier.classifier.weight, source.classifier[4].weight)


def test_conflicting_options_name_the_call_that_fits(tmp_path):
    _, path = _torchvision_file(tmp_path, aux=False)
    fits = ("build_model('fcn_dilated', num_classes=3, backbone='resnet50', output_stride=8, "
            "dilations='torchvision', upsample='resize', aux=False)")
    cases = [("fcn_dilated", {"backbone": "resnet101"}, "backbone='resnet50' (not 'resnet101')"),
             ("fcn_dilated", {"num_classes": 5}, "num_classes=3 (not 5)"),
             ("fcn_dilated", {"upsample": "bilinear", "dilations": "hdc"},
              "dilations='torchvision' (not 'hdc'), upsample='resize' (not 'bilinear')"),
             ("fcn_dilated", {"aux": True}, "aux=False (not True)"),
             ("fcn_dilated", {"width": 0.5}, "width=1.0 (not 0.5)"),
             ("fcn8s", {}, "model 'fcn_dilated' (not 'fcn8s')")]
    for name, options, needs in cases:
        with pytest.raises(InputError) as info:
            build_model(name, weights=str(path), **options)
        message = str(info.value)
        assert "\n" not in message and "fcn_resnet50.pth" in message, message
        assert "torchvision fcn_resnet50 checkpoint (3 classes)" in message
        assert needs in message and fits in message, message


def test_pytorch_fcn_and_torchvision_files_are_recognised_by_keys_and_shapes():
    from fcnkit.models.weights import fit_foreign_options, foreign_architecture

    common = {"conv1_1.weight": torch.zeros(64, 3, 3, 3),
              "score_fr.weight": torch.zeros(5, 4096, 1, 1)}
    pool4 = {"score_pool4.weight": torch.zeros(5, 512, 1, 1)}
    pool3 = {"score_pool3.weight": torch.zeros(5, 256, 1, 1)}
    for state, name in ((common, "fcn32s"), ({**common, **pool4}, "fcn16s"),
                        ({**common, **pool4, **pool3}, "fcn8s")):
        found = foreign_architecture(WeightsFile(state, PYTORCH_FCN, "t.pth"))
        assert found == {"name": name, "num_classes": 5, "backbone": "vgg16", "faithful": True}
    at_once = WeightsFile({**common, **pool4, **pool3}, PYTORCH_FCN, "t.pth",
                          {"arch": "FCN8sAtOnce"})
    assert foreign_architecture(at_once)["at_once"] is True
    fcn16 = WeightsFile({**common, **pool4}, PYTORCH_FCN, "fcn16s.pth")
    with pytest.raises(InputError) as info:
        fit_foreign_options(fcn16, "fcn32s", {"backbone": "resnet18"})
    assert ("pytorch-fcn FCN16s checkpoint (5 classes); it needs model 'fcn16s' (not 'fcn32s'), "
            "backbone='vgg16' (not 'resnet18')") in str(info.value)
    # --init-from: another stage of the same family, another class count.
    assert fit_foreign_options(fcn16, "fcn8s", {}, num_classes=9, transfer=True) == (
        9, {"backbone": "vgg16", "faithful": True})
    # A torchvision FCN on a ResNet fcnkit does not build (ResNet-152: 3-8-36-3 blocks).
    blocks = {f"backbone.layer{i}.{b}.conv1.weight": torch.zeros(1)
              for i, n in enumerate((3, 8, 36, 3), start=1) for b in range(n)}
    state = {"backbone.conv1.weight": torch.zeros(1), **blocks,
             "classifier.0.weight": torch.zeros(1), "classifier.4.weight": torch.zeros(4, 512)}
    with pytest.raises(InputError, match="ResNet has 3-8-36-3 blocks per layer"):
        foreign_architecture(WeightsFile(state, "torchvision", "tv152.pth"))


def test_a_fifo_weights_file_is_refused_before_it_is_opened(tmp_path):
    import os

    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)  # torch.load would block until a writer appears
    with pytest.raises(InputError, match="--init-from .*weights.pth is a FIFO"):
        read_state_file(fifo, "--init-from")
