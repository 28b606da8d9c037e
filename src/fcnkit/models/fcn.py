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
from typing import Any, cast

import torch
import torch.nn.functional as F
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
from fcnkit.models.heads import ConvHead, FCNHead, Interpolate, crop_to, make_upsampler
from fcnkit.models.surgery import bilinear_init_


def fcn_crop_offsets(backbone: Backbone, head: FCNHead) -> dict[str, dict[str, Any]]:
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


def _origin_misalignment(modules: Sequence[nn.Module]) -> dict[str, float | tuple[float, ...]]:
    # An output cropped at pixel 0 (d2l, torchvision): the exact offset of the input's pixel
    # 0 in it is the shift left over, in input pixels (the map has stride 1).
    field = receptive_field(list(modules), ndim=2)[-1]
    offset = crop_offset(field, ReceptiveField.identity(2))
    return {"final": float(offset[0]) if offset[0] == offset[1] else tuple(map(float, offset))}


def _align_exactly(backbone: Backbone, head: FCNHead,
                   geometry: dict[str, dict[str, Any]]) -> dict[str, object]:
    # integer_crop leaves a fractional offset whole (crop 0): the left-over, in the map's
    # own pixels, is misalignment / stride (the 1x1 skip score keeps the feature's stride;
    # the final map has stride 1 and is shifted in the coarse map, final_stride per pixel).
    shifts = geometry["misalignment"]
    skip_shifts = [tuple(v / backbone.strides[name] for v in shifts[key])
                   for name, key in zip(head.skips, head.skip_scores)]
    final = tuple(v / head.final_stride for v in shifts["final"])
    head.set_exact_shifts(skip_shifts, final)
    return {name: 0.0 for name in shifts}


def _scalar_if_square(pairs: dict[str, Any]) -> dict[str, object]:
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
        at_once: FCN-8s "at-once" (Shelhamer, Long & Darrell 2017, §4.1): trained in one
            stage, with pool4 scaled by 0.01 and pool3 by 0.0001 before their score layers.
        exact_align: the alignment control. Where integer crops leave a fractional offset
            (ResNet, MobileNet: ``misalignment`` ≠ 0), each skip's score map is resampled by
            its left-over offset before the fusion and the fused map by the final one
            before the last upsampling (:func:`fcnkit.models.heads.fractional_shift`), so
            every fused pixel's centre lies exactly where the arithmetic
            (:func:`fcnkit.arith.skip_fusion_crops`) puts it; ``misalignment`` is then 0 and
            the shifts removed are in ``aligned_shifts`` (input pixels).
    """

    # Shelhamer et al. (2017) §4.1 and pytorch-fcn's FCN8sAtOnce: fixed skip factors,
    # coarse to fine.
    AT_ONCE_SKIP_SCALES = (0.01, 0.0001)

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        num_skips: int,
        upsample: str = "bilinear",
        *,
        caffe_geometry: bool = False,
        at_once: bool = False,
        exact_align: bool = False,
    ) -> None:
        super().__init__()
        if num_skips not in (0, 1, 2):
            raise InputError(f"num_skips must be 0, 1 or 2, got {num_skips}")
        if at_once and num_skips != 2:
            raise InputError("at_once is the single-stage FCN-8s; it needs 2 skips")
        stride = backbone.output_stride
        skips = [backbone.feature_at_stride(stride // 2 ** (i + 1)) for i in range(num_skips)]
        self.backbone = backbone
        self.head = FCNHead(
            backbone.channels, backbone.strides, backbone.deepest, skips, num_classes,
            upsample, caffe_geometry=caffe_geometry,
        )
        self.at_once = bool(at_once)
        if self.at_once:
            self.head.skip_scales = list(self.AT_ONCE_SKIP_SCALES)
        geometry = fcn_crop_offsets(backbone, self.head)
        self.crop_offsets = _scalar_if_square(geometry["offsets"])
        self.misalignment = _scalar_if_square(geometry["misalignment"])
        self.exact_align = bool(exact_align)
        self.aligned_shifts: dict[str, object] = {}
        if self.exact_align:
            self.aligned_shifts = self.misalignment
            self.misalignment = _align_exactly(backbone, self.head, geometry)
        self.output_stride = backbone.output_stride
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.backbone(x), x.shape[-2:])
        return logits

    # Labels without full-resolution logits (fcnkit.inference.labels.labels_by_strips):
    # forward(x) == crop_to(final_upsampler(coarse_scores(x)), final_offset, x.shape[-2:]).
    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores before the last upsampling (see :attr:`final_upsampler`)."""
        return self.head.coarse(self.backbone(x))

    @property
    def final_upsampler(self) -> nn.Module:
        """The last upsampling layer (kernel_size/stride/padding of a transposed conv)."""
        return self.head.upscore_final

    @property
    def final_offset(self) -> tuple[int, int]:
        """``(dy, dx)``: where the input's pixel 0 is in the last upsampled map."""
        return self.head.final_offset


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
        bilinear_init_(cast(nn.ConvTranspose2d, self.transpose_conv))
        self.output_stride = recipe.stride
        self.num_classes = num_classes
        self.misalignment = _origin_misalignment(spatial_modules(self))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.Sequential.forward is unannotated in torch (untyped_calls_exclude misses super()).
        out = super().forward(x)  # type: ignore[no-untyped-call]
        return crop_to(out, (0, 0), x.shape[-2:])

    # The coarse-score protocol of FCN (fcnkit.inference.labels.labels_by_strips).
    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``final_conv`` scores at stride 32, before ``transpose_conv``."""
        for module in list(self)[:-1]:
            x = module(x)
        return x

    @property
    def final_upsampler(self) -> nn.Module:
        return cast(nn.Module, self.transpose_conv)

    @property
    def final_offset(self) -> tuple[int, int]:
        return (0, 0)


class DilatedFCN(nn.Module):
    """A dilated ResNet (output stride 8 or 16) + torchvision-style :class:`ConvHead`.

    The head's scores are upsampled by the output stride with the chosen upsampler and
    cropped to the input at pixel 0 (the upsampled map has ``S*ceil(H/S) >= H`` rows).
    ``misalignment["final"]`` is the shift the arithmetic finds between output pixel 0 and
    input pixel 0 (3.5 px at output stride 8: the dilated ResNet puts feature pixel i at
    8 i, the ×8 upsampler at 8 i + 3.5), as for the other models.
    ``upsample="resize"`` is torchvision's ``FCN``: ``F.interpolate`` (bilinear,
    ``align_corners=False``) straight to the input size. It equals ``"interpolate"`` when
    H and W are multiples of S; otherwise its scale factor is ``H / ceil(H/S)``, not S.

    Args:
        backbone: a :class:`~fcnkit.models.backbones.ResNetBackbone` built with dilations.
        num_classes: C.
        upsample: "bilinear", "deconv", "interpolate" or "resize" (the default is the
            registry's).
        aux: add torchvision's auxiliary head (``aux_classifier``, a :class:`ConvHead` on
            the feature before the deepest, ``layer3``). In training mode ``forward``
            then returns ``{"out": logits, "aux": aux_logits}``; in eval mode the logits.
    """

    def __init__(self, backbone: Backbone, num_classes: int, upsample: str = "bilinear",
                 *, aux: bool = False):
        super().__init__()
        self.backbone = backbone
        self.classifier = ConvHead(backbone.channels[backbone.deepest], num_classes)
        self.resize_to_input = upsample == "resize"
        if self.resize_to_input:
            # Same geometry as "interpolate" for receptive-field tracing.
            self.upsample: nn.Module = Interpolate(backbone.output_stride)
        else:
            self.upsample = make_upsampler(num_classes, backbone.output_stride, upsample)
        names = list(backbone.strides)
        self.aux_feature = names[names.index(backbone.deepest) - 1] if aux else None
        self.aux_classifier = (
            ConvHead(backbone.channels[self.aux_feature], num_classes)
            if self.aux_feature is not None else None  # set iff aux
        )
        self.output_stride = backbone.output_stride
        self.num_classes = num_classes
        self.dilations = list(getattr(backbone, "dilations", None) or [])
        self.misalignment = _origin_misalignment([
            *backbone.spatial_path(backbone.deepest), *spatial_modules(self.classifier),
            self.upsample,
        ])

    def _upsample(self, scores: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if self.resize_to_input:
            return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
        return crop_to(self.upsample(scores), (0, 0), size)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"out": logits}`` plus ``"aux"`` (aux head logits) when built with ``aux``."""
        features = self.backbone(x)
        size = x.shape[-2:]
        out = {"out": self._upsample(self.classifier(features[self.backbone.deepest]), size)}
        if self.aux_classifier is not None:
            out["aux"] = self._upsample(self.aux_classifier(features[self.aux_feature]), size)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        if self.aux_classifier is not None and self.training:
            return self.forward_all(x)
        return self._upsample(self.coarse_scores(x), x.shape[-2:])

    # The coarse-score protocol of FCN (fcnkit.inference.labels.labels_by_strips). With
    # upsample="resize" the scale is H / ceil(H/S), not a fixed transposed geometry, so
    # strip-wise labels are not exact and inference takes the plain path.
    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's scores at the output stride, before ``upsample``."""
        scores: torch.Tensor = self.classifier(self.backbone(x)[self.backbone.deepest])
        return scores

    @property
    def strip_labels_exact(self) -> bool:
        return not self.resize_to_input

    @property
    def final_upsampler(self) -> nn.Module:
        return self.upsample

    @property
    def final_offset(self) -> tuple[int, int]:
        return (0, 0)


def build_fcn(
    num_skips: int,
    *,
    num_classes: int,
    backbone: str = "vgg16",
    faithful: bool = False,
    upsample: str = "bilinear",
    at_once: bool = False,
    width: float = 1.0,
    batch_norm: bool = False,
    exact_align: bool = False,
) -> FCN:
    """FCN-32s/16s/8s (``num_skips`` 0/1/2) on a named backbone with random weights.

    ``faithful=True`` (VGG16 only) gives the Caffe network: conv1_1 padding 100, unpadded
    7×7 fc6, Caffe Deconvolution geometry (padding 0, full C × C weights), crops.
    With ``faithful=True``, ``upsample="bilinear"`` means Caffe's frozen bilinear
    Deconvolution (``lr_mult=0``), ``"deconv"`` the same layer learnable; ``"interpolate"``
    is refused (Caffe's crops depend on the deconvolution geometry). ``at_once`` (FCN-8s
    only) scales the skips as the single-stage FCN-8s does (see :class:`FCN`). ``width``
    scales the backbone's channel counts (:func:`fcnkit.models.backbones.check_width`);
    ``batch_norm`` (VGG16 only) adds a BatchNorm after each convolution of the body.
    ``exact_align`` is the alignment control (see :class:`FCN`).
    """
    net = build_backbone(backbone, faithful=faithful, width=width, batch_norm=batch_norm)
    return FCN(net, num_classes, num_skips, upsample, caffe_geometry=faithful,
               at_once=at_once, exact_align=exact_align)
