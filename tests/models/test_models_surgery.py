"""Surgery: convolutionalize equals the classifier, fc6/fc7 transplant, bilinear init."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from fcnkit.arith import bilinear_kernel
from fcnkit.models import bilinear_init_, convolutionalize
from fcnkit.models.backbones import VGG16Backbone
from fcnkit.models.registry import load_backbone_weights
from fcnkit.models.surgery import linear_to_conv_weight


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval()


@pytest.mark.slow
def test_convolutionalized_vgg16_gives_the_same_logits_and_a_map_on_larger_inputs(vgg16):
    fully_conv = convolutionalize(vgg16).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = vgg16(x)
        got = fully_conv(x)
        assert got.shape == (1, 1000, 1, 1)
        torch.testing.assert_close(got.flatten(1), expected, atol=1e-4, rtol=1e-4)
        # 256 px: the feature map is 8x8, the 7x7 fc6 window fits twice per axis.
        wide = fully_conv(torch.randn(1, 3, 256, 288))
    assert wide.shape == (1, 1000, 2, 3)
    assert not any(isinstance(m, nn.Linear) for m in fully_conv.modules())


@pytest.mark.slow  # a full AlexNet twice: seconds
def test_convolutionalized_alexnet_gives_the_same_logits():
    torch.manual_seed(1)
    alexnet = torchvision.models.alexnet(weights=None).eval()
    fully_conv = convolutionalize(alexnet).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(fully_conv(x).flatten(1), alexnet(x), atol=1e-4, rtol=1e-4)


def test_convolutionalize_rejects_other_models():
    with pytest.raises(ValueError, match="features"):
        convolutionalize(torchvision.models.resnet18(weights=None))


@pytest.mark.slow
def test_vgg16_classifier_weights_become_fc6_fc7(vgg16):
    # The path build_model(backbone_weights=file) takes after reading the file (the file
    # reading itself is tested with ResNet-18 in test_models_registry.py: VGG16 is 528 MB).
    backbone = VGG16Backbone().eval()
    load_backbone_weights(backbone, "vgg16", vgg16.state_dict(), "vgg16 state")
    # Oracle: torchvision's own classifier up to relu7 on a 224x224 image. The efficient
    # fc6 (padding 3) computes the Linear layer at the centre pixel of the 7x7 pool5 map.
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        pooled = torch.flatten(vgg16.avgpool(vgg16.features(x)), 1)
        relu7 = vgg16.classifier[:5](pooled)
        fc7 = backbone(x)["fc7"]
    assert fc7.shape[-2:] == (7, 7)
    torch.testing.assert_close(fc7[0, :, 3, 3], relu7[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        backbone.fc6.weight, vgg16.classifier[0].weight.reshape(4096, 512, 7, 7)
    )


def test_linear_to_conv_weight_checks_the_window():
    with pytest.raises(ValueError, match="channels"):
        linear_to_conv_weight(torch.zeros(4, 10), (3, 3))


@pytest.mark.parametrize("groups", [1, 3])
def test_bilinear_init_puts_the_kernel_on_the_channel_diagonal(groups):
    layer = nn.ConvTranspose2d(3, 3, 6, stride=3, padding=2, groups=groups, bias=False)
    bilinear_init_(layer)
    kernel = torch.as_tensor(bilinear_kernel(6), dtype=torch.float32)
    for c in range(3):
        torch.testing.assert_close(layer.weight[c, 0 if groups == 3 else c], kernel)
    if groups == 1:
        assert float(layer.weight.detach().sum()) == pytest.approx(3 * float(kernel.sum()))
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        bilinear_init_(nn.ConvTranspose2d(3, 2, 4))
