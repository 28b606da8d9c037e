"""``width``: narrow copies of the VGG16 and ResNet backbones keep the geometry.

Oracles: torchvision's own networks (module names, block types, block counts, strides of
every convolution) and PyTorch's output shapes; the channel counts are checked against the
scaled torchvision counts, not against the code that scales them.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from fcnkit.analysis import receptive_field_of
from fcnkit.errors import InputError
from fcnkit.models import build_model
from fcnkit.models.backbones import ResNetBackbone, build_backbone
from fcnkit.training.config import TrainConfig


def _convs(module: nn.Module) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("width", [0.25, 0.5])
def test_narrow_resnet_is_torchvisions_network_with_scaled_channels(name, width):
    reference = getattr(torchvision.models, name)(weights=None)
    narrow = ResNetBackbone(name, width=width)
    ref_convs = {k: v for k, v in _convs(reference).items() if not k.startswith("fc")}
    got = _convs(narrow)
    assert set(got) == set(ref_convs)  # same modules, same names, same block counts
    for key, conv in ref_convs.items():
        mine = got[key]
        assert (mine.kernel_size, mine.stride, mine.padding, mine.dilation) == (
            conv.kernel_size, conv.stride, conv.padding, conv.dilation), key
        assert mine.out_channels == max(1, round(conv.out_channels * width)), key
        assert mine.in_channels == (3 if key == "conv1"
                                    else max(1, round(conv.in_channels * width))), key
    # BatchNorm statistics of a fresh network, as torchvision initialises them.
    for m in narrow.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("options", [
    {"backbone": "resnet18"},
    # the full-width VGG16 twins: seconds each
    pytest.param({"backbone": "vgg16", "faithful": True}, marks=pytest.mark.slow),
    pytest.param({"backbone": "vgg16"}, marks=pytest.mark.slow),
])
def test_width_keeps_receptive_fields_crops_and_output_shapes(options):
    wide = build_model("fcn8s", num_classes=5, **options)
    narrow = build_model("fcn8s", num_classes=5, width=0.125, **options)
    assert narrow.crop_offsets == wide.crop_offsets
    def fields(model):
        return [(r.name, r.field, r.shape[2:]) for r in receptive_field_of(model, 64)]

    assert fields(narrow) == fields(wide)
    assert sum(p.numel() for p in narrow.parameters()) < sum(
        p.numel() for p in wide.parameters()) / 20
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        assert narrow.eval()(x).shape == (1, 5, 37, 53)


def test_narrow_vgg_scales_fc6_fc7():
    net = build_backbone("vgg16", width=0.25)
    assert (net.fc6.in_channels, net.fc6.out_channels) == (128, 1024)
    assert (net.fc7.in_channels, net.fc7.out_channels) == (1024, 1024)
    assert net.channels == {"pool3": 64, "pool4": 128, "fc7": 1024}


def test_dilated_fcn_takes_width():
    model = build_model("fcn_dilated", num_classes=3, backbone="resnet18", width=0.25,
                        dilations="hdc")
    assert model.dilations == [1, 2, 4, 5]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 40, 40)).shape == (1, 3, 40, 40)


@pytest.mark.parametrize("width", [0, -1, 1.5, float("nan"), True, "0.5"])
def test_bad_width_is_an_input_error(width):
    with pytest.raises(InputError, match="width"):
        build_model("fcn8s", num_classes=3, backbone="resnet18", width=width)


def test_width_has_no_pretrained_weights(tmp_path):
    with pytest.raises(InputError, match="width 1"):
        build_model("fcn8s", num_classes=3, backbone="resnet18", width=0.5,
                    backbone_weights=str(tmp_path / "resnet18.pth"))


def test_width_not_for_mobilenet():
    with pytest.raises(InputError, match="width"):
        build_model("fcn8s", num_classes=3, backbone="mobilenet_v3_large", width=0.5)


def test_train_config_passes_width_and_checks_its_range():
    from fcnkit.training.setup import model_options

    assert model_options(TrainConfig(data="x", width=0.25))["width"] == 0.25
    assert "width" not in model_options(TrainConfig(data="x"))
    with pytest.raises(InputError, match="width"):
        TrainConfig(data="x", width=0.0)
