"""FCN-32s/16s/8s, the d2l FCN and the dilated FCN, composed from backbones and heads.

Every model maps a float ``(N, 3, H, W)`` ImageNet-normalised image (see
:mod:`fcnkit.models.backbones`) to logits ``(N, num_classes, H, W)`` for any ``H, W >= 1``.

Alignment. Caffe's FCN aligns its score maps with crops whose offsets come from the layer
geometry (``caffe.coord_map``): the crop offset of a map A against a reference B is the
index in A of the pixel whose receptive-field centre coincides with B's pixel 0. Here the
same offsets are computed by :func:`fcnkit.arith.receptive.receptive_field` from the
modules' own kernel/stride/padding (:func:`fcn_crop_offsets`); nothing is typed in. For the
faithful VGG16 they come out as Caffe's 5, 9, 31 (FCN-8s), for the efficient VGG16 as 0.
Backbones whose stride-2 layers use "same" padding (ResNet, MobileNet) put feature pixel i
at input coordinate ``S*i`` while bilinear upsampling (and ``F.interpolate``) assumes
``S*i + (S-1)/2``: the exact offsets are then half-integers. Those maps are aligned at
pixel 0, as torchvision and d2l do, and the residual shift is recorded in
``model.misalignment`` (input pixels) so it is visible, not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fcnkit.arith import upsampling_recipe
from fcnkit.arith.receptive import ReceptiveField, receptive_field
from fcnkit.models.backbones import Backbone, build_backbone, spatial_modules
from fcnkit.models.heads import ConvHead, FCNHead, Interpolate, crop_to, make_upsampler
from fcnkit.models.surgery import bilinear_init_


def trace_field(modules: Sequence[nn.Module]) -> ReceptiveField:
    """Receptive field (2-D) of the map after ``modules``, applied in order from the input."""
    return receptive_field(list(modules), ndim=2)[-1]


def _shift(field: ReceptiveField, pixels: Sequence[int]) -> ReceptiveField:
    # Cropping `c` leading pixels moves pixel 0 by c*S: center(0) = (r-1)/2 - P + c*S.
    padding = tuple(
        Fraction(p) - c * Fraction(s) for p, s, c in zip(field.paddings, field.strides, pixels)
    )
    return ReceptiveField(field.size, field.stride, padding)


def crop_offset(a: ReceptiveField, b: ReceptiveField) -> tuple[Fraction, Fraction]:
    """Exact crop offset of map A against map B on the same grid, per dimension.

    The index j in A whose centre equals B's pixel 0: ``j = (c_B(0) - c_A(0)) / S_A``.

    Raises:
        ValueError: when A and B are not on grids of the same stride.
    """
    if tuple(a.strides) != tuple(b.strides) and len(a.strides) == len(b.strides):
        raise ValueError(f"maps are on different grids: strides {a.strides} and {b.strides}")
    ca, cb = a.center(0), b.center(0)
    ca = ca if isinstance(ca, tuple) else (ca, ca)
    cb = cb if isinstance(cb, tuple) else (cb, cb)
    return tuple(
        (Fraction(y) - Fraction(x)) / Fraction(s) for x, y, s in zip(ca, cb, a.strides)
    )


def _usable(offset: Sequence[Fraction]) -> tuple[tuple[int, int], tuple[float, float]]:
    """Integer crop offset, and the misalignment left over (in map pixels)."""
    ints, rest = [], []
    for value in offset:
        if value.denominator == 1:
            ints.append(int(value))
            rest.append(0.0)
        else:
            # A fractional offset cannot be cropped: align at pixel 0 (torchvision/d2l).
            ints.append(0)
            rest.append(float(value))
    return tuple(ints), tuple(rest)


def fcn_crop_offsets(backbone: Backbone, head: FCNHead) -> dict[str, object]:
    """Crop offsets of an FCN, computed from its modules' geometry with fcnkit.arith.

    Returns:
        ``{"offsets": {name: (dy, dx)}, "misalignment": {name: (py, px)}}`` where the names
        are the skip score layers (``score_pool4``…) and ``"final"`` (the input's pixel 0 in
        the last upsampled map). ``misalignment`` is in input pixels (0 when exact).
    """
    field = trace_field([*backbone.spatial_path(head.deepest), head.score_fr])
    offsets: dict[str, tuple[int, int]] = {}
    misalignment: dict[str, tuple[float, float]] = {}
    skip_offsets = []
    for name, up in zip(head.skips, head.upscores):
        upsampled = field.then(up)
        skip = trace_field([*backbone.spatial_path(name), head.skip_score(name)])
        ints, rest = _usable(crop_offset(skip, upsampled))
        key = "score_" + name.replace(".", "_")
        offsets[key] = ints
        misalignment[key] = tuple(r * float(s) for r, s in zip(rest, skip.strides))
        skip_offsets.append(ints)
        # The fused map starts where both maps exist: up-sampled pixel max(0, -offset).
        field = _shift(upsampled, [max(0, -o) for o in ints])
    final = field.then(head.upscore_final)
    identity = ReceptiveField.identity(2)
    ints, rest = _usable(crop_offset(final, identity))
    offsets["final"] = ints
    misalignment["final"] = rest
    head.set_offsets(skip_offsets, ints)
    return {"offsets": offsets, "misalignment": misalignment}


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
        at_once: FCN-8s "at-once" (Shelhamer, Long & Darrell 2017, §4.1): trained in one
            stage, with pool4 scaled by 0.01 and pool3 by 0.0001 before their score layers.
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
    ) -> None:
        super().__init__()
        if num_skips not in (0, 1, 2):
            raise ValueError(f"num_skips must be 0, 1 or 2, got {num_skips}")
        if at_once and num_skips != 2:
            raise ValueError("at_once is the single-stage FCN-8s; it needs 2 skips")
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
        recipe = upsampling_recipe(32)
        self.add_module("final_conv", nn.Conv2d(512, num_classes, kernel_size=1))
        self.add_module(
            "transpose_conv",
            nn.ConvTranspose2d(num_classes, num_classes, kernel_size=recipe.kernel,
                               padding=recipe.padding, stride=recipe.stride),
        )
        bilinear_init_(self.transpose_conv)
        self.output_stride = recipe.stride
        self.num_classes = num_classes
        exact = crop_offset(trace_field(spatial_modules(self)), ReceptiveField.identity(2))
        self.misalignment = {"final": float(exact[0])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crop_to(super().forward(x), (0, 0), x.shape[-2:])


class DilatedFCN(nn.Module):
    """A dilated ResNet (output stride 8 or 16) + torchvision-style :class:`ConvHead`.

    The head's scores are upsampled by the output stride with the chosen upsampler and
    cropped to the input (the upsampled map has ``S*ceil(H/S) >= H`` rows).
    ``upsample="resize"`` is torchvision's ``FCN``: ``F.interpolate`` (bilinear,
    ``align_corners=False``) straight to the input size. It equals ``"interpolate"`` when
    H and W are multiples of S; otherwise its scale factor is ``H / ceil(H/S)``, not S.

    Args:
        backbone: a :class:`~fcnkit.models.backbones.ResNetBackbone` built with dilations.
        num_classes: C.
        upsample: "bilinear", "deconv", "interpolate" or "resize".
        aux: add torchvision's auxiliary head (``aux_classifier``, a :class:`ConvHead` on
            the feature before the deepest, ``layer3``). In training mode ``forward``
            then returns ``{"out": logits, "aux": aux_logits}``; in eval mode the logits.
    """

    def __init__(self, backbone: Backbone, num_classes: int, upsample: str = "interpolate",
                 *, aux: bool = False):
        super().__init__()
        self.backbone = backbone
        self.classifier = ConvHead(backbone.channels[backbone.deepest], num_classes)
        self.resize_to_input = upsample == "resize"
        if self.resize_to_input:
            # Same geometry as "interpolate" for receptive-field tracing.
            self.upsample = Interpolate(backbone.output_stride)
        else:
            self.upsample = make_upsampler(num_classes, backbone.output_stride, upsample)
        names = list(backbone.strides)
        self.aux_feature = names[names.index(backbone.deepest) - 1] if aux else None
        self.aux_classifier = (
            ConvHead(backbone.channels[self.aux_feature], num_classes) if aux else None
        )
        self.output_stride = backbone.output_stride
        self.num_classes = num_classes
        self.dilations = list(getattr(backbone, "dilations", None) or [])

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
        features = self.backbone(x)
        return self._upsample(self.classifier(features[self.backbone.deepest]), x.shape[-2:])


def build_fcn(
    num_skips: int,
    *,
    num_classes: int,
    backbone: str = "vgg16",
    faithful: bool = False,
    upsample: str = "bilinear",
    at_once: bool = False,
) -> FCN:
    """FCN-32s/16s/8s (``num_skips`` 0/1/2) on a named backbone with random weights.

    ``faithful=True`` (VGG16 only) gives the Caffe network: conv1_1 padding 100, unpadded
    7×7 fc6, Caffe Deconvolution geometry (padding 0, full C × C weights), crops.
    With ``faithful=True``, ``upsample="bilinear"`` means Caffe's frozen bilinear
    Deconvolution (``lr_mult=0``), ``"deconv"`` the same layer learnable; ``"interpolate"``
    is refused (Caffe's crops depend on the deconvolution geometry). ``at_once`` (FCN-8s
    only) scales the skips as the single-stage FCN-8s does (see :class:`FCN`).
    """
    net = build_backbone(backbone, faithful=faithful)
    return FCN(net, num_classes, num_skips, upsample, caffe_geometry=faithful,
               at_once=at_once)
