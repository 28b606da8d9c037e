"""Backbones: classifiers cut open so that they return named feature maps.

A backbone is an ``nn.Module`` whose ``forward(x)`` returns ``dict[str, Tensor]`` and which
declares, per feature name, its stride relative to the input (``strides``) and its number of
channels (``channels``) — the torchvision ``IntermediateLayerGetter`` / smp encoder idea.
``deepest`` names the coarsest feature. ``spatial_path(name)`` lists the modules that change
geometry (convolutions and poolings) on the way from the input to a feature, in order; the
FCN head feeds them to :mod:`fcnkit.arith` to compute crop offsets and receptive fields.
Strides are not typed in: :meth:`Backbone.declare_features` reads them off the same paths
with :func:`fcnkit.arith.receptive_field`, and channels off their last convolution.

Inputs are float ``(N, 3, H, W)`` images normalised with the ImageNet statistics torchvision's
classifiers were trained with (:data:`fcnkit.models.preprocess.IMAGENET`: RGB, values first
scaled to [0, 1]). Every backbone is built with ``weights=None``; weights are
loaded explicitly by :mod:`fcnkit.models.registry` — nothing here downloads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, cast

import torch
import torchvision
import torchvision.models.vgg as vgg_module
from torch import nn

from fcnkit.arith import hdc_schedule, receptive_field, same_padding
from fcnkit.errors import InputError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONES = ("vgg16", *RESNETS, "mobilenet_v3_large")

_SPATIAL = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)


def check_width(width: object) -> float:
    """``width`` as a float in (0, 1], else InputError.

    ``width`` scales every layer's channel count of a backbone (and VGG16's fc6/fc7); the
    depth, kernels, strides, paddings and so the receptive fields and crop offsets stay
    those of the standard network. Narrow copies train several times faster on a CPU
    (docs/models.md); pretrained weights exist only for width 1.
    """
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not (
            0.0 < float(width) <= 1.0):
        raise InputError(f"width must be a number in (0, 1] (fraction of the standard "
                         f"channel counts), got {width!r}")
    return float(width)


def scaled_channels(channels: int, width: float) -> int:
    """``channels × width`` rounded, at least 1 (the channel count of a narrow copy)."""
    return max(1, round(channels * width))


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


def path_stride(modules: Sequence[nn.Module]) -> int:
    """Effective stride (input pixels per feature pixel) of a path of spatial modules.

    Read from the modules' own geometry with :func:`fcnkit.arith.receptive_field`.

    Raises:
        ValueError: when the stride is not one integer for both axes (no such backbone here).
    """
    strides = set(receptive_field(list(modules), ndim=2)[-1].strides) if modules else {1}
    if len(strides) != 1 or Fraction(next(iter(strides))).denominator != 1:
        raise ValueError(f"a feature path has strides {sorted(strides)}; expected one integer")
    return int(next(iter(strides)))


def last_conv(modules: Sequence[nn.Module]) -> nn.Conv2d:
    """The last ``nn.Conv2d`` of a module list: it sets the channels of the map they make."""
    return [m for m in modules if isinstance(m, nn.Conv2d)][-1]


class Backbone(nn.Module, ABC):
    """Base class and contract of every backbone.

    A subclass defines ``forward(x) -> dict[str, Tensor]`` (the named features) and
    :meth:`spatial_path`, and calls :meth:`declare_features` at the end of ``__init__``.
    The FCN head and its crop computation rely on exactly these members:

    Attributes:
        strides: stride of each feature relative to the input (pixels), derived from
            :meth:`spatial_path` with :mod:`fcnkit.arith`.
        channels: channels of each feature (its path's last convolution).
        deepest: name of the coarsest feature (the last one declared).
    """

    strides: dict[str, int]
    channels: dict[str, int]
    deepest: str

    @abstractmethod
    def spatial_path(self, name: str) -> list[nn.Module]:
        """The convolutions and poolings from the input to feature ``name``, in forward order
        (what :func:`fcnkit.arith.receptive_field` reads); KeyError for an unknown name."""

    def declare_features(self, names: Sequence[str]) -> None:
        """Set ``strides``, ``channels`` and ``deepest`` for ``names`` (fine to coarse) from
        the modules on each feature's :meth:`spatial_path`."""
        paths = {name: self.spatial_path(name) for name in names}
        self.strides = {name: path_stride(path) for name, path in paths.items()}
        self.channels = {name: last_conv(path).out_channels for name, path in paths.items()}
        self.deepest = names[-1]

    @property
    def output_stride(self) -> int:
        """Stride of the coarsest feature map relative to the input (pixels)."""
        return self.strides[self.deepest]

    def feature_at_stride(self, stride: int) -> str:
        """Name of the feature whose stride is ``stride``; InputError if there is none."""
        for name, s in self.strides.items():
            if s == stride:
                return name
        raise InputError(
            f"backbone {type(self).__name__} has no feature at stride {stride}; "
            f"it has {self.strides}"
        )


class VGG16Backbone(Backbone):
    """VGG16 conv1_1…pool5 plus fc6/fc7 as convolutions (Long et al. 2015, §3.1).

    Features: ``pool3`` (stride 8, 256 ch), ``pool4`` (16, 512), ``fc7`` (32, 4096); the
    strides and channels are read off the modules (:meth:`Backbone.declare_features`).

    Args:
        faithful: the Caffe FCN geometry — conv1_1 padding 100, fc6 a 7×7 convolution without
            padding. Otherwise conv1_1 has padding 1 and fc6 padding 3, so every feature map
            is ``ceil(size / stride)`` and the grids stay aligned without crops.
        ceil_mode: ceil-mode max pooling, as in Caffe. It is what lets any input ≥ 1 px
            survive five poolings without padding, so both variants use it.
        batch_norm: a BatchNorm after every convolution of conv1_1…conv5_3 (torchvision's
            ``vgg16_bn`` layout, so its ``features.*`` weights would load): a VGG16 that
            trains from scratch. fc6/fc7 stay as they are, so the parameter shapes of the
            faithful and efficient geometries still agree.

    Submodule names follow torchvision's ``vgg16`` (``features.0`` … ``features.30``) so that
    its ImageNet ``features.*`` weights load directly; ``fc6``/``fc7`` take the classifier's
    first two Linear layers after :func:`fcnkit.models.surgery.linear_to_conv_weight`.
    """

    def __init__(self, *, faithful: bool = False, dropout: float = 0.5,
                 width: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__()
        self.faithful = faithful
        self.batch_norm = bool(batch_norm)
        self.width = check_width(width)
        # torchvision's VGG16 "D" configuration without building its 120M-parameter
        # classifier; initialised as torchvision.models.VGG does (Kaiming, fan_out).
        config = [v if v == "M" else scaled_channels(int(v), self.width)
                  for v in vgg_module.cfgs["D"]]
        features = vgg_module.make_layers(config, batch_norm=self.batch_norm)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(cast(torch.Tensor, m.bias))  # make_layers: bias=True
        if faithful:
            # Caffe voc-fcn*s/net.py: conv1_1 pad=100 so that fc6 (7×7, no pad) fits any
            # input (a published constant of that network, not derived).
            features[0].padding = (100, 100)
        pools = []
        for index, layer in enumerate(features):
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True
                pools.append(index)
        self.features = features
        # pool1..pool5 are the 5 max-pooling layers, in order.
        self._pool_index = {f"pool{i + 1}": index for i, index in enumerate(pools)}
        fc6_kernel = 7  # VGG16's classifier sees a 7×7×512 map: fc6 is a 7×7 convolution.
        # Efficient variant: symmetric "same" padding (stride 1), so fc6 keeps the pool5 grid.
        fc6_padding = 0 if faithful else same_padding(fc6_kernel)[0]
        fc_channels = scaled_channels(4096, self.width)
        self.fc6 = nn.Conv2d(last_conv(features).out_channels, fc_channels, fc6_kernel,
                             padding=fc6_padding)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(dropout)
        self.declare_features(("pool3", "pool4", "fc7"))

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


def _resnet_constructor(name: str) -> Callable[..., Any]:
    if name not in RESNETS:
        raise InputError(f"unknown ResNet {name!r}; choose one of {', '.join(RESNETS)}")
    constructor: Callable[..., Any] = getattr(torchvision.models, name)
    return constructor


class ResNetBackbone(Backbone):
    """torchvision ResNet-18/34/50/101 without ``avgpool``/``fc``.

    Features: ``layer2`` (stride 8), ``layer3`` (16), ``layer4`` (32), or fewer strides when
    dilated. Submodule names equal torchvision's, so its ImageNet weights (minus ``fc.*``)
    load directly.

    Args:
        name: "resnet18", "resnet34", "resnet50" or "resnet101".
        output_stride: the stride of ``layer2``, ``layer3`` or ``layer4`` in the plain
            network (8, 16 or 32, read off the modules); the layers whose plain stride is
            coarser stop downsampling (layer4 for 16, layer3 + layer4 for 8).
        dilations: ``None`` for the plain network; ``"hdc"`` for the hole-free schedule of
            :func:`fcnkit.arith.hdc_schedule` (kernel and convolutions per block read from
            the blocks); else one rate per residual block of the layers that stop
            downsampling. Those layers get stride 1 and every k×k (k > 1) convolution of a
            block gets the block's rate as dilation and the "same" padding
            (:func:`fcnkit.arith.same_padding`), so the map size is kept. This is done here
            rather than with torchvision's ``replace_stride_with_dilation`` because its
            BasicBlock (ResNet-18/34) refuses dilation > 1.

    Raises:
        InputError: for an unknown name, an output stride the network does not have, or
            dilations that do not fit the dilated blocks.
    """

    def __init__(
        self,
        name: str = "resnet18",
        *,
        output_stride: int = 32,
        dilations: Sequence[int] | str | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        net = _resnet_constructor(name)(weights=None)
        self.width = check_width(width)
        if self.width != 1.0:
            _narrow_resnet(net, self.width)
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4,
        )
        plain = {layer: path_stride(self.spatial_path(layer)) for layer in _RESNET_FEATURES}
        if output_stride not in plain.values():
            raise InputError(f"output_stride must be one of {sorted(plain.values())} for "
                             f"{name}, got {output_stride!r}")
        dilated = [layer for layer in _RESNET_FEATURES if plain[layer] > output_stride]
        blocks = [block for layer in dilated for block in getattr(self, layer)]
        # The plain dilated network: each block gets the stride its layer gave up
        # (torchvision's replace_stride_with_dilation; 2 and 4 at output stride 8).
        plain_rates = [plain[layer] // output_stride for layer in dilated
                       for _ in getattr(self, layer)]
        if dilations is None:
            if dilated:
                raise InputError(f"output_stride={output_stride} needs dilations ('hdc' or "
                                 f"{len(blocks)} rates)")
            rates = None
        elif isinstance(dilations, str):
            if dilations != "hdc" or not blocks:
                raise InputError(f"dilations: 'hdc' or one rate per dilated block, got "
                                 f"{dilations!r} at output_stride {output_stride}")
            convs = _dilatable_convs(blocks[0])
            rates = list(hdc_schedule(plain_rates, convs[0].kernel_size[0], len(convs)))
        else:
            rates = list(dilations)
            if len(rates) != len(blocks):
                raise InputError(
                    f"dilations: {name} at output_stride {output_stride} has {len(blocks)} "
                    f"dilated residual blocks ({' + '.join(dilated)}); got {len(rates)} "
                    f"rates {rates}"
                )
            if any(isinstance(r, bool) or int(r) != r or r < 1 for r in rates):
                raise InputError(f"dilations must be positive integers, got {rates}")
        if rates is not None:
            for block, rate in zip(blocks, rates):
                _dilate_block(block, int(rate))
        self.dilations = [int(r) for r in rates] if rates is not None else None
        self.declare_features(_RESNET_FEATURES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        out = {"layer2": self.layer2(x)}
        out["layer3"] = self.layer3(out["layer2"])
        out["layer4"] = self.layer4(out["layer3"])
        return out

    def spatial_path(self, name: str) -> list[nn.Module]:
        order = ["conv1", "maxpool", "layer1", *_RESNET_FEATURES]
        if name not in _RESNET_FEATURES:
            raise KeyError(name)
        modules: list[nn.Module] = []
        for part in order[: order.index(name) + 1]:
            modules.extend(spatial_modules(getattr(self, part)))
        return modules


_RESNET_FEATURES = ("layer2", "layer3", "layer4")


def _narrow_resnet(net: torchvision.models.ResNet, width: float) -> None:
    """Rebuild ``net``'s stem and four layers with ``width`` × torchvision's channels.

    Uses torchvision's own ``ResNet._make_layer`` (same block type, block counts, strides
    and submodule names) and then its initialisation: Kaiming-normal (fan_out) convolutions,
    BatchNorm weight 1 and bias 0 (torchvision ``ResNet.__init__``).
    """
    block = type(net.layer1[0])
    stem = net.conv1
    net.conv1 = nn.Conv2d(3, scaled_channels(stem.out_channels, width), stem.kernel_size,
                          stem.stride, stem.padding, bias=False)
    net.bn1 = nn.BatchNorm2d(net.conv1.out_channels)
    net.inplanes = net.conv1.out_channels
    for name in ("layer1", "layer2", "layer3", "layer4"):
        first = getattr(net, name)[0]
        # A block's "planes" is its first convolution's width (BasicBlock and Bottleneck);
        # its stride is the layer's.
        planes = first.conv1.out_channels
        setattr(net, name, net._make_layer(block, scaled_channels(planes, width),
                                           len(getattr(net, name)), stride=first.stride))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def hdc_rates(backbone: str, output_stride: int) -> list[int]:
    """The HDC rates of a dilated ResNet: one per dilated block (see :class:`ResNetBackbone`).

    Builds the backbone (random weights) and reads its blocks; e.g. ResNet-18 at output
    stride 8 → ``[1, 2, 4, 5]``.
    """
    rates = ResNetBackbone(backbone, output_stride=output_stride, dilations="hdc").dilations
    return list(cast(list[int], rates))  # set for every dilated backbone


def _dilatable_convs(block: nn.Module) -> list[nn.Conv2d]:
    # The k×k (k > 1) convolutions of a residual block's main path: the ones that dilate.
    return [m for m in spatial_modules(block) if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]


def _dilate_block(block: nn.Module, rate: int) -> None:
    # A stride-2 k×k conv becomes stride 1 with dilation r and "same" padding r*(k-1)/2:
    # output size kept, centres stay on the (now finer) grid. The 1×1 shortcut drops its
    # stride too.
    for conv in _dilatable_convs(block):
        conv.stride = (1, 1)
        conv.dilation = (rate, rate)
        pads = cast(tuple[tuple[int, int], ...],  # per dimension: tuple arguments
                    same_padding(tuple(conv.kernel_size), 1, (rate, rate)))
        conv.padding = tuple(before for before, _ in pads)
    downsample = getattr(block, "downsample", None)
    if downsample is not None:
        for m in downsample.modules():
            if isinstance(m, nn.Conv2d):
                m.stride = (1, 1)


class MobileNetV3Backbone(Backbone):
    """torchvision MobileNetV3-Large ``features`` (classifier dropped).

    Features are named ``features.<i>``: the last block at each of the three coarsest
    strides (8, 16, 32; FCN-8s fuses three), the strides read off the blocks' convolutions
    with :mod:`fcnkit.arith`, not typed in. Submodule names equal torchvision's, so its
    ``features.*`` weights load directly.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v3_large(weights=None).features
        last_at: dict[int, int] = {}
        for index in range(len(self.features)):
            last_at[path_stride(spatial_modules(self.features[: index + 1]))] = index
        self._taps = {f"features.{last_at[s]}": last_at[s] for s in sorted(last_at)[-3:]}
        self._last = max(self._taps.values())
        self.declare_features(list(self._taps))

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
    width: float = 1.0,
    batch_norm: bool = False,
) -> Backbone:
    """Build a backbone by name (see ``BACKBONES``) with random weights.

    Args:
        name: one of ``BACKBONES``.
        faithful: VGG16 only — the Caffe FCN geometry (see :class:`VGG16Backbone`).
        output_stride, dilations: ResNets only (see :class:`ResNetBackbone`).
        width: VGG16 and ResNets — fraction of the standard channel counts
            (:func:`check_width`).
        batch_norm: VGG16 only — BatchNorm after each convolution (:class:`VGG16Backbone`).
    """
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if faithful and name != "vgg16":
        raise InputError(f"faithful=True exists only for backbone 'vgg16', not {name!r}")
    if name not in RESNETS and (output_stride != 32 or dilations is not None):
        raise InputError(
            f"output_stride/dilations apply to ResNet backbones ({', '.join(RESNETS)}), "
            f"not {name!r}"
        )
    if batch_norm and name != "vgg16":
        raise InputError(f"batch_norm=True exists only for backbone 'vgg16' (the others "
                         f"have BatchNorm already), not {name!r}")
    width = check_width(width)
    if name == "vgg16":
        return VGG16Backbone(faithful=faithful, width=width, batch_norm=batch_norm)
    if name == "mobilenet_v3_large":
        if width != 1.0:
            raise InputError("width applies to the VGG16 and ResNet backbones; MobileNetV3 "
                             "has its own width multipliers in torchvision")
        return MobileNetV3Backbone()
    return ResNetBackbone(name, output_stride=output_stride, dilations=dilations, width=width)
