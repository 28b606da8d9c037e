"""FCN-32s/16s/8s, the d2l FCN and the dilated FCN, composed from backbones and heads.

Every model maps a float ``(N, 3, H, W)`` ImageNet-normalised image (see
:mod:`fcnkit.models.backbones`) to logits ``(N, num_classes, H, W)`` for any ``H, W >= 1``.

Alignment. Caffe's FCN aligns its score maps with crops whose offsets come from the layer
geometry (``caffe.coord_map``): the crop offset of a map A against a reference B is the
index in A of the pixel whose receptive-field centre coincides with B's pixel 0. Here the
same offsets are computed by :func:`fcnkit.arith.skip_fusion_crops` from the modules' own
kernel/stride/padding (:func:`fcn_crop_offsets` gathers the modules); nothing is typed in.
For the
faithful VGG16 they come out as Caffe's 5, 9, 31 (FCN-8s), for the efficient VGG16 as 0.
Backbones whose stride-2 layers use "same" padding (ResNet, MobileNet) put feature pixel i
at input coordinate ``S*i`` while bilinear upsampling (and ``F.interpolate``) assumes
``S*i + (S-1)/2``: the exact offsets are then half-integers. Those maps are aligned at
pixel 0, as torchvision and d2l do, and the residual shift is recorded in
``model.misalignment`` (input pixels) so it is visible, not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import nn

from fcnkit.arith import (
    ReceptiveField,
    crop_offset,
    receptive_field,
    skip_fusion_crops,
    upsampling_recipe,
)
from fcnkit.errors import InputError
from fcnkit.models.backbones import (
    Backbone,
    build_backbone,
    last_conv,
    path_stride,
    spatial_modules,
)
from fcnkit.models.heads import ConvHead, FCNHead, crop_to, make_upsampler
from fcnkit.models.surgery import bilinear_init_


def fcn_crop_offsets(backbone: Backbone, head: FCNHead) -> dict[str, object]:
    """Crop offsets of an FCN, computed from its modules' geometry with fcnkit.arith.

    Hands the crops to ``head`` (:meth:`FCNHead.set_offsets`) and returns them.

    Returns:
        ``{"offsets": {name: (dy, dx)}, "misalignment": {name: (py, px)}}`` where the names
        are the skip score layers (``score_pool4``…) and ``"final"`` (the input's pixel 0 in
        the last upsampled map). ``misalignment`` is in input pixels (0 when exact).
    """
    crops = skip_fusion_crops(
        [*backbone.spatial_path(head.deepest), head.score_fr],
        [(up, [*backbone.spatial_path(name), head.skip_score(name)])
         for name, up in zip(head.skips, head.upscores)],
        head.upscore_final,
    )
    head.set_offsets(crops.skip_offsets, crops.final_offset)
    names = [*head.skip_scores, "final"]
    return {
        "offsets": dict(zip(names, [*crops.skip_offsets, crops.final_offset])),
        "misalignment": dict(zip(names, [*crops.skip_misalignment,
                                         crops.final_misalignment])),
    }


def _origin_misalignment(modules: Sequence[nn.Module]) -> dict[str, float]:
    # An output cropped at pixel 0 (d2l, torchvision): the exact offset of the input's pixel
    # 0 in it is the shift left over, in input pixels (the map has stride 1).
    field = receptive_field(list(modules), ndim=2)[-1]
    offset = crop_offset(field, ReceptiveField.identity(2))
    return {"final": float(offset[0]) if offset[0] == offset[1] else tuple(map(float, offset))}


def _scalar_if_square(pairs: dict[str, tuple]) -> dict[str, object]:
    return {k: (v[0] if v[0] == v[1] else v) for k, v in pairs.items()}


class FCN(nn.Module):
    """Backbone + :class:`FCNHead`: FCN-32s (no skips), FCN-16s (1 skip), FCN-8s (2 skips).

    Attributes:
        backbone, head: the two parts.
        output_stride: stride of the coarsest score map (32 for these models).
        crop_offsets: ``{layer: int}`` computed by fcnkit.arith (``score_pool4``,
            ``score_pool3``, ``final``); a ``(dy, dx)`` pair only if they differ.
        misalignment: ``{layer: float}`` residual shift in input pixels that integer crops
            cannot remove (0 for VGG16; see the module docstring).
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        num_skips: int,
        upsample: str = "bilinear",
        *,
        caffe_geometry: bool = False,
    ) -> None:
        super().__init__()
        if num_skips not in (0, 1, 2):
            raise InputError(f"num_skips must be 0, 1 or 2, got {num_skips}")
        stride = backbone.output_stride
        skips = [backbone.feature_at_stride(stride // 2 ** (i + 1)) for i in range(num_skips)]
        self.backbone = backbone
        self.head = FCNHead(
            backbone.channels, backbone.strides, backbone.deepest, skips, num_classes,
            upsample, caffe_geometry=caffe_geometry,
        )
        geometry = fcn_crop_offsets(backbone, self.head)
        self.crop_offsets = _scalar_if_square(geometry["offsets"])
        self.misalignment = _scalar_if_square(geometry["misalignment"])
        self.output_stride = backbone.output_stride
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x), x.shape[-2:])


class D2LFCN(nn.Sequential):
    """d2l's FCN (Dive into Deep Learning §14.11), layer for layer.

    ResNet-18 without ``avgpool``/``fc`` (children ``0``–``7``), ``final_conv`` =
    ``Conv2d(512, C, 1)``, ``transpose_conv`` = ``ConvTranspose2d(C, C, 64, stride=32,
    padding=16)`` (the ×32 :func:`fcnkit.arith.upsampling_recipe`) with the bilinear kernel on
    the channel diagonal — a dense C × C × 64 × 64 weight. The state-dict keys equal d2l's.

    d2l only feeds sizes divisible by 32. For other sizes the body gives ``ceil(H/32)`` rows
    and the output ``32*ceil(H/32) >= H`` rows; it is cropped to the input at pixel 0.
    ``misalignment["final"]`` records the shift the arithmetic finds (15.5 px: ResNet puts
    feature pixel i at 32 i, the ×32 upsampler at 32 i + 15.5).
    """

    def __init__(self, num_classes: int = 21) -> None:
        net = torchvision.models.resnet18(weights=None)
        super().__init__(*list(net.children())[:-2])
        body = spatial_modules(self)
        recipe = upsampling_recipe(path_stride(body))  # x32: the body's stride
        body_channels = last_conv(body).out_channels  # 512 for ResNet-18
        self.add_module("final_conv", nn.Conv2d(body_channels, num_classes, kernel_size=1))
        self.add_module(
            "transpose_conv",
            nn.ConvTranspose2d(num_classes, num_classes, kernel_size=recipe.kernel,
                               padding=recipe.padding, stride=recipe.stride),
        )
        bilinear_init_(self.transpose_conv)
        self.output_stride = recipe.stride
        self.num_classes = num_classes
        self.misalignment = _origin_misalignment(spatial_modules(self))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crop_to(super().forward(x), (0, 0), x.shape[-2:])


class DilatedFCN(nn.Module):
    """A dilated ResNet (output stride 8 or 16) + torchvision-style :class:`ConvHead`.

    The head's scores are upsampled by the output stride with the chosen upsampler and
    cropped to the input at pixel 0 (the upsampled map has ``S*ceil(H/S) >= H`` rows).
    ``misalignment["final"]`` is the shift the arithmetic finds between output pixel 0 and
    input pixel 0 (3.5 px at output stride 8: the dilated ResNet puts feature pixel i at
    8 i, the ×8 upsampler at 8 i + 3.5), as for the other models.

    Args:
        backbone: a :class:`~fcnkit.models.backbones.ResNetBackbone` built with dilations.
        num_classes: C.
        upsample: "bilinear", "deconv" or "interpolate" (the default is the registry's).
    """

    def __init__(self, backbone: Backbone, num_classes: int, upsample: str = "bilinear"):
        super().__init__()
        self.backbone = backbone
        self.classifier = ConvHead(backbone.channels[backbone.deepest], num_classes)
        self.upsample = make_upsampler(num_classes, backbone.output_stride, upsample)
        self.output_stride = backbone.output_stride
        self.num_classes = num_classes
        self.dilations = list(getattr(backbone, "dilations", None) or [])
        self.misalignment = _origin_misalignment([
            *backbone.spatial_path(backbone.deepest), *spatial_modules(self.classifier),
            self.upsample,
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        scores = self.upsample(self.classifier(features[self.backbone.deepest]))
        return crop_to(scores, (0, 0), x.shape[-2:])


def build_fcn(
    num_skips: int,
    *,
    num_classes: int,
    backbone: str = "vgg16",
    faithful: bool = False,
    upsample: str = "bilinear",
) -> FCN:
    """FCN-32s/16s/8s (``num_skips`` 0/1/2) on a named backbone with random weights.

    ``faithful=True`` (VGG16 only) gives the Caffe network: conv1_1 padding 100, unpadded
    7×7 fc6, Caffe Deconvolution geometry (padding 0, full C × C weights), crops.
    With ``faithful=True``, ``upsample="bilinear"`` means Caffe's frozen bilinear
    Deconvolution (``lr_mult=0``), ``"deconv"`` the same layer learnable; ``"interpolate"``
    is refused (Caffe's crops depend on the deconvolution geometry).
    """
    net = build_backbone(backbone, faithful=faithful)
    return FCN(net, num_classes, num_skips, upsample, caffe_geometry=faithful)
