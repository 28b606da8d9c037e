"""Backbones: classifiers cut open so that they return named feature maps.

A backbone is an ``nn.Module`` whose ``forward(x)`` returns ``dict[str, Tensor]`` and which
declares, per feature name, its stride relative to the input (``strides``) and its number of
channels (``channels``) — the torchvision ``IntermediateLayerGetter`` / smp encoder idea.
``deepest`` names the coarsest feature. ``spatial_path(name)`` lists the modules that change
geometry (convolutions and poolings) on the way from the input to a feature, in order; the
FCN head feeds them to :mod:`fcnkit.arith` to compute crop offsets and receptive fields.

Inputs are float ``(N, 3, H, W)`` images normalised with the ImageNet statistics torchvision's
classifiers were trained with (mean ``(0.485, 0.456, 0.406)``, std ``(0.229, 0.224, 0.225)``,
RGB, values first scaled to [0, 1]). Every backbone is built with ``weights=None``; weights are
loaded explicitly by :mod:`fcnkit.models.registry` — nothing here downloads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
import torchvision.models.vgg as vgg_module
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = ("vgg16", *RESNETS, "mobilenet_v3_large")

_SPATIAL = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)


def spatial_modules(module: nn.Module) -> list[nn.Module]:
    """The convolutions and poolings of ``module`` along its main path, in forward order.

    Residual shortcuts (children named ``downsample``) are skipped: in torchvision's ResNets
    they have the same stride as the main path and do not move the sampling grid. Modules
    with a 1×1 kernel, stride 1 and no padding are kept; they leave the geometry unchanged.
    """
    if isinstance(module, _SPATIAL):
        return [module]
    found: list[nn.Module] = []
    for name, child in module.named_children():
        if name == "downsample":
            continue
        found.extend(spatial_modules(child))
    return found


class Backbone(nn.Module):
    """Base class: ``strides``/``channels`` per feature name and ``deepest``.

    Subclasses also define ``spatial_path(name) -> list[nn.Module]``.
    """

    strides: dict[str, int]
    channels: dict[str, int]
    deepest: str

    @property
    def output_stride(self) -> int:
        """Stride of the coarsest feature map relative to the input (pixels)."""
        return self.strides[self.deepest]

    def feature_at_stride(self, stride: int) -> str:
        """Name of the feature whose stride is ``stride``; ValueError if there is none."""
        for name, s in self.strides.items():
            if s == stride:
                return name
        raise ValueError(
            f"backbone {type(self).__name__} has no feature at stride {stride}; "
            f"it has {self.strides}"
        )


class VGG16Backbone(Backbone):
    """VGG16 conv1_1…pool5 plus fc6/fc7 as convolutions (Long et al. 2015, §3.1).

    Features: ``pool3`` (stride 8, 256 ch), ``pool4`` (16, 512), ``fc7`` (32, 4096).

    Args:
        faithful: the Caffe FCN geometry — conv1_1 padding 100, fc6 a 7×7 convolution without
            padding. Otherwise conv1_1 has padding 1 and fc6 padding 3, so every feature map
            is ``ceil(size / stride)`` and the grids stay aligned without crops.
        ceil_mode: ceil-mode max pooling, as in Caffe. It is what lets any input ≥ 1 px
            survive five poolings without padding, so both variants use it.

    Submodule names follow torchvision's ``vgg16`` (``features.0`` … ``features.30``) so that
    its ImageNet ``features.*`` weights load directly; ``fc6``/``fc7`` take the classifier's
    first two Linear layers after :func:`fcnkit.models.surgery.linear_to_conv_weight`.
    """

    def __init__(self, *, faithful: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        self.faithful = faithful
        # torchvision's VGG16 "D" configuration without building its 120M-parameter
        # classifier; initialised as torchvision.models.VGG does (Kaiming, fan_out).
        features = vgg_module.make_layers(vgg_module.cfgs["D"])
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        conv1_1 = features[0]
        # Caffe voc-fcn*s/net.py: conv1_1 pad=100 so that fc6 (7×7, no pad) fits any input.
        conv1_1.padding = (100, 100) if faithful else (1, 1)
        pools = []
        for index, layer in enumerate(features):
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True
                pools.append(index)
        self.features = features
        # pool1..pool5 are the 5 max-pooling layers, in order.
        self._pool_index = {f"pool{i + 1}": index for i, index in enumerate(pools)}
        fc6_kernel = 7  # VGG16's classifier sees a 7×7×512 map: fc6 is a 7×7 convolution.
        self.fc6 = nn.Conv2d(512, 4096, fc6_kernel, padding=0 if faithful else fc6_kernel // 2)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.strides = {"pool3": 8, "pool4": 16, "fc7": 32}
        self.channels = {"pool3": 256, "pool4": 512, "fc7": 4096}
        self.deepest = "fc7"

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        wanted = {self._pool_index["pool3"]: "pool3", self._pool_index["pool4"]: "pool4"}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                out[wanted[index]] = x
        x = self.drop6(self.relu6(self.fc6(x)))
        out["fc7"] = self.drop7(self.relu7(self.fc7(x)))
        return out

    def spatial_path(self, name: str) -> list[nn.Module]:
        if name in ("pool3", "pool4"):
            return spatial_modules(self.features[: self._pool_index[name] + 1])
        if name == "fc7":
            return [*spatial_modules(self.features), self.fc6, self.fc7]
        raise KeyError(name)


def _resnet_constructor(name: str):
    if name not in RESNETS:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {', '.join(RESNETS)}")
    return getattr(torchvision.models, name)


def _three_by_three_convs(block: nn.Module) -> list[nn.Conv2d]:
    return [m for m in spatial_modules(block) if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]


class ResNetBackbone(Backbone):
    """torchvision ResNet-18/34/50/101 without ``avgpool``/``fc``.

    Features: ``layer2`` (stride 8), ``layer3`` (16), ``layer4`` (32), or fewer strides when
    dilated. Submodule names equal torchvision's, so its ImageNet weights (minus ``fc.*``)
    load directly.

    Args:
        name: "resnet18", "resnet34", "resnet50" or "resnet101".
        dilations: ``None`` for the plain network, else one dilation rate per residual block of
            the layers that stop downsampling (layer4 for output stride 16, layer3 + layer4 for
            8). Those layers get stride 1 and every 3×3 convolution of a block gets the block's
            rate as dilation and padding (so the map size is kept). This is done here rather
            than with torchvision's ``replace_stride_with_dilation`` because its BasicBlock
            (ResNet-18/34) refuses dilation > 1.
        output_stride: 8, 16 or 32 (32 = not dilated); must match ``dilations``.
    """

    def __init__(
        self,
        name: str = "resnet18",
        *,
        output_stride: int = 32,
        dilations: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        net = _resnet_constructor(name)(weights=None)
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )
        dilated = dilated_layers(output_stride)
        blocks = [block for layer in dilated for block in getattr(self, layer)]
        if dilations is None:
            if dilated:
                raise ValueError(f"output_stride={output_stride} needs a list of dilations")
        else:
            if len(dilations) != len(blocks):
                raise ValueError(
                    f"dilations: {name} at output_stride {output_stride} has {len(blocks)} "
                    f"dilated residual blocks ({' + '.join(dilated)}); got {len(dilations)} "
                    f"rates {list(dilations)}"
                )
            if any(int(r) < 1 for r in dilations):
                raise ValueError(f"dilations must be positive integers, got {list(dilations)}")
            for block, rate in zip(blocks, dilations):
                _dilate_block(block, int(rate))
        self.dilations = [int(r) for r in dilations] if dilations is not None else None
        stride_after = {"layer1": 4}
        stride = 4
        for layer in ("layer2", "layer3", "layer4"):
            if layer not in dilated:
                stride *= 2
            stride_after[layer] = stride
        channels = {layer: _out_channels(getattr(self, layer)) for layer in stride_after}
        self.strides = {k: stride_after[k] for k in ("layer2", "layer3", "layer4")}
        self.channels = {k: channels[k] for k in self.strides}
        self.deepest = "layer4"

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        out = {"layer2": self.layer2(x)}
        out["layer3"] = self.layer3(out["layer2"])
        out["layer4"] = self.layer4(out["layer3"])
        return out

    def spatial_path(self, name: str) -> list[nn.Module]:
        order = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"]
        if name not in self.strides:
            raise KeyError(name)
        modules: list[nn.Module] = []
        for part in order[: order.index(name) + 1]:
            modules.extend(spatial_modules(getattr(self, part)))
        return modules


def dilated_layers(output_stride: int) -> tuple[str, ...]:
    """ResNet layers that trade their stride for dilation at ``output_stride`` (8, 16, 32)."""
    table = {32: (), 16: ("layer4",), 8: ("layer3", "layer4")}
    if output_stride not in table:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    return table[output_stride]


def resnet_block_counts(name: str, output_stride: int) -> list[int]:
    """Number of residual blocks in each layer dilated at ``output_stride`` (no weights built)."""
    blocks = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3],
              "resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
    if name not in blocks:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {', '.join(RESNETS)}")
    index = {"layer1": 0, "layer2": 1, "layer3": 2, "layer4": 3}
    return [blocks[name][index[layer]] for layer in dilated_layers(output_stride)]


def resnet_convs_per_block(name: str) -> int:
    """3×3 convolutions per residual block: 2 for BasicBlock (18/34), 1 for Bottleneck."""
    _resnet_constructor(name)
    return 2 if name in ("resnet18", "resnet34") else 1


def _dilate_block(block: nn.Module, rate: int) -> None:
    # A stride-2 3×3 conv becomes stride 1 with dilation r and padding r: output size kept,
    # centres stay on the (now finer) grid. The 1×1 shortcut drops its stride too.
    for conv in _three_by_three_convs(block):
        conv.stride = (1, 1)
        conv.dilation = (rate, rate)
        conv.padding = (rate * (conv.kernel_size[0] // 2), rate * (conv.kernel_size[1] // 2))
    downsample = getattr(block, "downsample", None)
    if downsample is not None:
        for m in downsample.modules():
            if isinstance(m, nn.Conv2d):
                m.stride = (1, 1)


def _out_channels(layer: nn.Module) -> int:
    # The last convolution of the main path sets the channels of a residual layer.
    return [m for m in spatial_modules(layer) if isinstance(m, nn.Conv2d)][-1].out_channels


class MobileNetV3Backbone(Backbone):
    """torchvision MobileNetV3-Large ``features`` (classifier dropped).

    Features are named ``features.<i>``: the last block at each of the strides 8, 16 and 32
    (found by multiplying the strides of the convolutions of each block, not typed in).
    Submodule names equal torchvision's, so its ``features.*`` weights load directly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v3_large(weights=None).features
        stride = 1
        last_at: dict[int, int] = {}
        for index, block in enumerate(self.features):
            for m in spatial_modules(block):
                stride *= m.stride[0] if isinstance(m.stride, tuple) else m.stride
            last_at[stride] = index
        self._taps = {f"features.{last_at[s]}": last_at[s] for s in (8, 16, 32)}
        self.strides = {name: s for name, s in zip(self._taps, (8, 16, 32))}
        self.channels = {
            name: [m for m in spatial_modules(self.features[i]) if isinstance(m, nn.Conv2d)][
                -1
            ].out_channels
            for name, i in self._taps.items()
        }
        self.deepest = f"features.{last_at[32]}"
        self._last = last_at[32]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        wanted = {i: name for name, i in self._taps.items()}
        for index, block in enumerate(self.features[: self._last + 1]):
            x = block(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    def spatial_path(self, name: str) -> list[nn.Module]:
        if name not in self._taps:
            raise KeyError(name)
        return spatial_modules(self.features[: self._taps[name] + 1])


def build_backbone(
    name: str,
    *,
    faithful: bool = False,
    output_stride: int = 32,
    dilations: Sequence[int] | None = None,
) -> Backbone:
    """Build a backbone by name (see ``BACKBONES``) with random weights.

    Args:
        name: one of ``BACKBONES``.
        faithful: VGG16 only — the Caffe FCN geometry (see :class:`VGG16Backbone`).
        output_stride, dilations: ResNets only (see :class:`ResNetBackbone`).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if faithful and name != "vgg16":
        raise ValueError(f"faithful=True exists only for backbone 'vgg16', not {name!r}")
    if name not in RESNETS and (output_stride != 32 or dilations is not None):
        raise ValueError(
            f"output_stride/dilations apply to ResNet backbones ({', '.join(RESNETS)}), "
            f"not {name!r}"
        )
    if name == "vgg16":
        return VGG16Backbone(faithful=faithful)
    if name == "mobilenet_v3_large":
        return MobileNetV3Backbone()
    return ResNetBackbone(name, output_stride=output_stride, dilations=dilations)
