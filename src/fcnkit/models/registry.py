"""``build_model(name, num_classes=21, **options)`` and ``list_models()``.

Nothing downloads: ``weights`` (a local file of full-model weights) and
``backbone_weights`` (a torchvision weights name found in the TORCH_HOME cache, or a local
file) are both ``None`` by default, and a missing file is an :class:`InputError` that says
how to supply it.

Models and their options:

==================  =====================================================================
name                options (defaults first)
==================  =====================================================================
fcn32s              backbone ("vgg16", "resnet18", "resnet34", "resnet50", "resnet101",
fcn16s              "mobilenet_v3_large"), faithful (False; True = Caffe VGG16 FCN),
fcn8s               upsample ("bilinear", "deconv", "interpolate"); fcn8s also at_once
                    (False; True = the single-stage FCN-8s, skips scaled 0.01 / 0.0001);
                    width (1.0; a fraction in (0, 1] of the backbone's channel counts,
                    VGG16 and ResNets: same geometry, fewer channels), batch_norm
                    (False; True = VGG16 with a BatchNorm after each body convolution);
                    fcn16s and fcn8s also exact_align (False; True = the alignment
                    control: fractional crop offsets resampled so fused maps align exactly)
fcn_resnet18_d2l    upsample ("deconv" only: the d2l design)
fcn_dilated         backbone ("resnet18", "resnet34", "resnet50", "resnet101"),
                    output_stride (8, 16), dilations ("hdc", "torchvision", or one rate
                    per dilated block as a list or "1,2,5,9"),
                    upsample ("bilinear", "deconv", "interpolate", "resize"),
                    aux (False; True = torchvision's auxiliary head on layer3), width
context_module      front (2; the k of a k×k stride-2 front end, even), dilations
                    ("1,2,4,5"; the 3×3 stack's rates), channels (32): a small context
                    module without a backbone (:mod:`fcnkit.models.context`)
==================  =====================================================================

Every model also takes ``weights``, ``backbone_weights`` and ``preprocessing`` ("imagenet",
"caffe"; default: what the weights expect, see :mod:`fcnkit.models.preprocess`), and
carries it as ``model.preprocessing``. torchvision's ``fcn_resnet50``/``fcn_resnet101`` are
``fcn_dilated`` with the options in :data:`fcnkit.models.weights.TORCHVISION_FCN_OPTIONS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from fcnkit.errors import InputError
from fcnkit.models.backbones import BACKBONES, RESNETS, ResNetBackbone
from fcnkit.models.context import ContextNet
from fcnkit.models.fcn import D2LFCN, DilatedFCN, build_fcn
from fcnkit.models.heads import UPSAMPLE_MODES
from fcnkit.models.preprocess import IMAGENET, preprocessing_from
from fcnkit.models.surgery import vgg16_classifier_to_fc
from fcnkit.models.weights import (
    LoadReport,
    WeightsFile,
    fit_foreign_options,
    foreign_architecture,
    load_weights,
    map_state,
    read_state_file,
    torchvision_dilations,
)

_COMMON = ("weights", "backbone_weights", "preprocessing")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "fcn32s": ("backbone", "faithful", "upsample", "width", "batch_norm", *_COMMON),
    "fcn16s": ("backbone", "faithful", "upsample", "width", "batch_norm", "exact_align",
               *_COMMON),
    "fcn8s": ("backbone", "faithful", "upsample", "at_once", "width", "batch_norm",
              "exact_align", *_COMMON),
    "fcn_resnet18_d2l": ("upsample", *_COMMON),
    "fcn_dilated": ("backbone", "output_stride", "dilations", "upsample", "aux", "width",
                    *_COMMON),
    "context_module": ("front", "dilations", "channels", *_COMMON),
}
_SKIPS = {"fcn32s": 0, "fcn16s": 1, "fcn8s": 2}
# The backbone each model builds when none is given (the defaults of _build_*).
_DEFAULT_BACKBONE = {"fcn32s": "vgg16", "fcn16s": "vgg16", "fcn8s": "vgg16",
                     "fcn_resnet18_d2l": "resnet18", "fcn_dilated": "resnet18",
                     "context_module": "context_module"}  # no backbone: its own name


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, in a stable order."""
    return list(_OPTIONS)


def model_options(name: str) -> tuple[str, ...]:
    """Keyword options :func:`build_model` accepts for ``name`` (besides num_classes)."""
    _check_name(name)
    return _OPTIONS[name]


def _check_name(name: str) -> None:
    if name not in _OPTIONS:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(_OPTIONS)}")


def build_model(name: str, *, num_classes: int | None = None, **options: Any) -> nn.Module:
    """Build a segmentation model by name; random weights unless files are given.

    Args:
        name: one of :func:`list_models`.
        num_classes: C, channels of the logits (default: the class count of a torchvision
            or pytorch-fcn ``weights`` file, else 21 as in PASCAL VOC).
        **options: see the module docstring. ``None`` for any option means its default.
            ``weights``: path of a full-model state dict (a plain ``state_dict`` or a fcnkit
            checkpoint with ``model_state``), loaded strictly. A torchvision
            ``fcn_resnet50/101`` or pytorch-fcn file is recognised by its keys and shapes
            and the options it needs are filled in
            (:func:`~fcnkit.models.weights.fit_foreign_options`): ``build_model(
            "fcn_dilated", weights="fcn_resnet50.pth")`` is torchvision's network.
            ``backbone_weights``: a torchvision weights name for the backbone
            (``"IMAGENET1K_V1"``, ``"DEFAULT"``), used only if already in the TORCH_HOME
            cache, or a local ``.pth`` path; for VGG16 the classifier's fc6/fc7 are
            transplanted as convolutions.

    Returns:
        An ``nn.Module``: ``model(x)`` with x float ``(N, 3, H, W)`` (ImageNet-normalised)
        returns logits ``(N, num_classes, H, W)`` for any H, W >= 1; ``model.output_stride``
        is the stride of the coarsest score map.

    Raises:
        InputError: unknown name, unknown option or bad option value (lists valid ones), or
            a weights file that is missing or does not fit (a foreign file whose options
            conflict with the ones given: the message names the options to pass).
    """
    opts = _checked_options(name, num_classes, options)
    weights = opts.pop("weights", None)
    backbone_weights = opts.pop("backbone_weights", None)
    preprocessing = opts.pop("preprocessing", None)
    weights_file = None
    if weights is not None:
        # Read first: a torchvision / pytorch-fcn file says which network it fits.
        weights_file = _weights_file(name, opts.get("backbone", _DEFAULT_BACKBONE[name]),
                                     weights)
        num_classes, opts = fit_foreign_options(weights_file, name, opts,
                                                num_classes=num_classes)
    num_classes = 21 if num_classes is None else num_classes
    model, backbone_name, target = _build_network(name, num_classes, opts,
                                                  has_backbone_weights=backbone_weights
                                                  is not None)
    if backbone_weights is not None:
        if opts.get("width", 1.0) != 1.0:
            raise InputError(f"backbone_weights: pretrained {backbone_name} weights fit only "
                             f"width 1, not width={opts['width']!r}")
        state = load_backbone_state(backbone_name, backbone_weights)
        load_backbone_weights(target, backbone_name, state, str(backbone_weights))
    # What the weights expect, unless the caller says otherwise.
    carrier: Any = model  # nn.Module types attribute writes as Tensor | Module
    carrier.preprocessing = preprocessing_from(preprocessing)
    if weights_file is not None:
        report = load_model_weights(model, weights_file)
        if preprocessing is None:
            carrier.preprocessing = report.preprocessing
    return model


def _checked_options(name: str, num_classes: int | None,
                     options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the ``None`` values, after checking the name, that every option
    belongs to the model and that ``num_classes`` is a positive integer (or None)."""
    _check_name(name)
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise InputError(
            f"model {name!r} has no option {', '.join(unknown)}; valid options: "
            f"num_classes, {', '.join(_OPTIONS[name])}"
        )
    if num_classes is not None and (isinstance(num_classes, bool) or
                                    not isinstance(num_classes, int) or num_classes < 1):
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    return {k: v for k, v in options.items() if v is not None}


def _build_network(name: str, num_classes: int, opts: dict[str, Any], *,
                   has_backbone_weights: bool) -> tuple[nn.Module, str, Any]:
    """``(model, backbone name, module that takes backbone weights)`` for one family."""
    model: nn.Module
    if name in _SKIPS:
        model, backbone_name = _build_fcn(name, num_classes, **opts)
        return model, backbone_name, model.backbone
    if name == "fcn_resnet18_d2l":
        model = _build_d2l(num_classes, **opts)
        return model, "resnet18", model  # the d2l model is its own backbone
    if name == "context_module":
        if has_backbone_weights:
            raise InputError("backbone_weights: context_module has no backbone; pass "
                             "weights (a whole-model file) instead")
        return ContextNet(num_classes, **opts), "context_module", None
    model, backbone_name = _build_dilated(num_classes, **opts)
    return model, backbone_name, model.backbone


def _weights_file(name: str, backbone: str, spec: Any) -> WeightsFile:
    # fcn_dilated also takes torchvision's segmentation weights names (fcn_resnet50's
    # "COCO_WITH_VOC_LABELS_V1", "DEFAULT"), resolved in the TORCH_HOME cache only.
    if isinstance(spec, WeightsFile):
        return spec
    text = str(spec)
    looks_like_file = os.sep in text or Path(text).suffix or Path(text).exists()
    if name == "fcn_dilated" and not looks_like_file:
        tv_name = f"fcn_{backbone}"
        if tv_name not in torchvision.models.list_models():
            raise InputError(f"weights: {text!r} is not a file, and torchvision has no "
                             f"{tv_name} weights; pass a local .pth/.safetensors file")
        path = cached_weights_path(tv_name, text, option="weights")
        return read_state_file(path, "weights")
    return read_state_file(text, "weights")


def _check_choice(option: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise InputError(
            f"{option} must be one of {', '.join(map(str, choices))}, got {value!r}"
        )


def _build_fcn(
    name: str,
    num_classes: int,
    *,
    backbone: str = "vgg16",
    faithful: bool = False,
    upsample: str = "bilinear",
    at_once: bool = False,
    width: float = 1.0,
    batch_norm: bool = False,
    exact_align: bool = False,
) -> tuple[nn.Module, str]:
    _check_choice("backbone", backbone, BACKBONES)
    if at_once not in (True, False):
        raise InputError(f"at_once must be True or False, got {at_once!r}")
    if exact_align not in (True, False):
        raise InputError(f"exact_align must be True or False, got {exact_align!r}")
    _check_choice("upsample", upsample, UPSAMPLE_MODES)
    if faithful not in (True, False):
        raise InputError(f"faithful must be True or False, got {faithful!r}")
    if batch_norm not in (True, False):
        raise InputError(f"batch_norm must be True or False, got {batch_norm!r}")
    if faithful and backbone != "vgg16":
        raise InputError(f"faithful=True is the Caffe VGG16 network; use backbone='vgg16', "
                         f"not {backbone!r}")
    if faithful and upsample == "interpolate":
        raise InputError("faithful=True needs upsample='bilinear' (Caffe's frozen "
                         "Deconvolution) or 'deconv' (learnable); 'interpolate' has no crops")
    model = build_fcn(_SKIPS[name], num_classes=num_classes, backbone=backbone,
                      faithful=bool(faithful), upsample=upsample, at_once=bool(at_once),
                      width=width, batch_norm=bool(batch_norm),
                      exact_align=bool(exact_align))
    return model, backbone


def _build_d2l(num_classes: int, *, upsample: str = "deconv") -> nn.Module:
    if upsample != "deconv":
        raise InputError(
            "fcn_resnet18_d2l is d2l's dense deconvolution (upsample='deconv'); for "
            f"upsample={upsample!r} use build_model('fcn32s', backbone='resnet18', "
            f"upsample={upsample!r})"
        )
    return D2LFCN(num_classes)


def _build_dilated(
    num_classes: int,
    *,
    backbone: str = "resnet18",
    output_stride: int = 8,
    dilations: str | Sequence[int] = "hdc",
    upsample: str = "bilinear",
    aux: bool = False,
    width: float = 1.0,
) -> tuple[nn.Module, str]:
    _check_choice("backbone", backbone, RESNETS)
    _check_choice("output_stride", output_stride, (8, 16))
    # "resize": F.interpolate straight to the input size, as torchvision's FCN does.
    _check_choice("upsample", upsample, (*UPSAMPLE_MODES, "resize"))
    if aux not in (True, False):
        raise InputError(f"aux must be True or False, got {aux!r}")
    if isinstance(dilations, str) and dilations.strip() == "torchvision":
        dilations = torchvision_dilations(backbone, output_stride)
    if isinstance(dilations, str) and dilations.strip() != "hdc":
        # "1,2,5,9" (from a command line or a config file) is a list of rates.
        parts = [p.strip() for p in dilations.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise InputError(f"dilations must be 'hdc' or a list of ints like 1,2,5,9, got "
                             f"{dilations!r}")
        dilations = [int(p) for p in parts]
    if isinstance(dilations, str):
        rates: str | list[int] = "hdc"  # the backbone reads the schedule off its blocks
    else:
        try:
            rates = [int(r) for r in dilations]
        except (TypeError, ValueError):
            raise InputError(
                f"dilations must be 'hdc' or a list of ints, got {dilations!r}"
            ) from None
    net = ResNetBackbone(backbone, output_stride=output_stride, dilations=rates, width=width)
    return DilatedFCN(net, num_classes, upsample, aux=bool(aux)), backbone


# Weights ---------------------------------------------------------------------------------

def _read_state(path: str | os.PathLike[str], option: str) -> dict[str, torch.Tensor]:
    return read_state_file(path, option).state


def _weights_enum(backbone: str) -> Any:
    return torchvision.models.get_model_weights(backbone)


def cached_weights_path(model: str, name: str, *, option: str = "backbone_weights") -> Path:
    """Where torchvision weights ``name`` of ``model`` sit in the TORCH_HOME cache.

    Raises:
        InputError: unknown name, or not cached (the message gives the URL and the cache
            path to put the file at; fcnkit never downloads).
    """
    enum = _weights_enum(model)
    try:
        entry = enum[name]
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise InputError(
            f"{option}: {name!r} is neither a file nor a torchvision weights name "
            f"for {model} ({names}, DEFAULT)"
        ) from None
    cached: Path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)
    if not cached.is_file():
        raise InputError(
            f"{option}: {model} {entry.name} is not in the torch cache and fcnkit "
            f"never downloads; put {entry.url} at {cached} or pass a local file"
        )
    return cached


def load_backbone_state(backbone: str, spec: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict ``backbone_weights=spec`` names, without downloading anything.

    Args:
        backbone: torchvision model name ("vgg16", "resnet18", ...).
        spec: a local file path, or a torchvision weights name (``"IMAGENET1K_V1"``,
            ``"DEFAULT"``) that must already be in ``$TORCH_HOME/hub/checkpoints``.

    Raises:
        InputError: unknown name, or weights not cached (the message gives the URL and the
            cache path to put the file at, or says to pass a local file).
    """
    text = str(spec)
    if os.sep in text or text.endswith((".pth", ".pt")) or Path(text).exists():
        return _read_state(text, "backbone_weights")
    return _read_state(cached_weights_path(backbone, text), "backbone_weights")


def _adapt_resnet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _adapt_mobilenet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("features.")}


def _adapt_vgg(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = vgg16_classifier_to_fc(state)
    out.update({k: v for k, v in state.items() if k.startswith(("fc6.", "fc7."))})
    return out


def _adapt_d2l(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # d2l's body is resnet18's children 0..7: conv1 bn1 relu maxpool layer1..layer4.
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    rename = {name: str(i) for i, name in enumerate(order)}
    out = {}
    for key, value in _adapt_resnet(state).items():
        head, _, rest = key.partition(".")
        out[f"{rename.get(head, head)}.{rest}"] = value
    return out


def load_backbone_weights(
    module: nn.Module, backbone: str, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Load torchvision classifier weights into a backbone (or the d2l body), in place.

    VGG16's classifier Linear layers become fc6/fc7 convolutions (fc6/fc7 stay random when
    the file has only ``features.*``); ResNet ``fc.*`` and MobileNet ``classifier.*`` are
    dropped. Every other parameter of the backbone must be in the file.

    Raises:
        InputError: when the file does not fit (names the file and the first missing keys).
    """
    allowed_missing: tuple[str, ...]
    if isinstance(module, D2LFCN):
        adapted, allowed_missing = _adapt_d2l(state), ("final_conv.", "transpose_conv.")
    elif backbone == "vgg16":
        adapted, allowed_missing = _adapt_vgg(state), ("fc6.", "fc7.")
    elif backbone == "mobilenet_v3_large":
        adapted, allowed_missing = _adapt_mobilenet(state), ()
    else:
        adapted, allowed_missing = _adapt_resnet(state), ()
    try:
        result = module.load_state_dict(adapted, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise InputError(
            f"backbone_weights: {source} does not fit {backbone} ({detail[:160]}); pass "
            f"torchvision {backbone} classifier weights"
        ) from None
    missing = [k for k in result.missing_keys if not k.startswith(allowed_missing)]
    if missing or result.unexpected_keys:
        bad = missing or result.unexpected_keys
        raise InputError(
            f"backbone_weights: {source} does not fit {backbone} "
            f"({'missing' if missing else 'unexpected'} {', '.join(bad[:3])}); pass "
            f"torchvision {backbone} classifier weights"
        )


def load_model_weights(
    model: nn.Module, weights: str | os.PathLike[str] | WeightsFile
) -> LoadReport:
    """Load full-model weights strictly: a fcnkit state dict / checkpoint / .safetensors, or
    a torchvision or pytorch-fcn checkpoint mapped by :mod:`fcnkit.models.weights`.

    Returns:
        The :class:`~fcnkit.models.weights.LoadReport` (layout, preprocessing expected).

    Raises:
        InputError: missing/unreadable file, or weights of another architecture (one line
            naming the file and the first key that does not fit).
    """
    if not isinstance(weights, WeightsFile):
        weights = read_state_file(weights, "weights")
    return load_weights(model, weights)


def foreign_checkpoint(weights: WeightsFile) -> dict[str, Any] | None:
    """A torchvision or pytorch-fcn file as the fields of a fcnkit checkpoint
    (``model_config``, ``model_state`` under fcnkit's key names, no classes), or ``None`` for
    a fcnkit state dict. The names are mapped on a model built on the meta device (no
    memory, no initialisation), and every key and shape is checked as :func:`load_weights`
    checks them.

    Raises:
        InputError: the file does not fit the model its keys describe (one line).
    """
    arch = foreign_architecture(weights)
    if arch is None:
        return None
    config = dict(arch)
    with torch.device("meta"):
        model = build_model(**config)
    state, report = map_state(model, weights)
    if report.preprocessing != IMAGENET:
        config["preprocessing"] = report.preprocessing.name
    return {"model_state": state, "model_config": config,
            "classes": [], "palette": [], "weights_layout": weights.layout}
