"""Fully convolutional networks: backbones, heads, FCN-32s/16s/8s, surgery, registry.

``build_model(name, num_classes=21, **options)`` builds any model of :func:`list_models`;
see :mod:`fcnkit.models.registry` for the options and ``docs/models.md`` for the family.
Inputs are float ``(N, 3, H, W)`` images normalised with torchvision's ImageNet statistics
(:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`); outputs are logits ``(N, C, H, W)``.
"""

from fcnkit.constants import IMAGENET_MEAN, IMAGENET_STD
from fcnkit.models.backbones import BACKBONES, Backbone, build_backbone
from fcnkit.models.fcn import FCN
from fcnkit.models.heads import UPSAMPLE_MODES, FCNHead
from fcnkit.models.registry import build_model, list_models, model_options
from fcnkit.models.surgery import bilinear_init_, convolutionalize

__all__ = [
    "BACKBONES",
    "FCN",
    "Backbone",
    "FCNHead",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "UPSAMPLE_MODES",
    "bilinear_init_",
    "build_backbone",
    "build_model",
    "convolutionalize",
    "list_models",
    "model_options",
]
