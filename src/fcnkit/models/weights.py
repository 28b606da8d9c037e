"""Weights in: fcnkit, torchvision and pytorch-fcn state dicts, mapped by role; load reports.

Three layouts load into fcnkit models (:func:`load_weights`, used by ``build_model(weights=)``):

* **fcnkit** — ``model.state_dict()`` of the same build, a fcnkit checkpoint
  (``model_state``), or a ``.safetensors`` file written by ``fcnkit export`` (its metadata
  carries the model config, classes and preprocessing: :func:`read_safetensors`).
* **torchvision** ``fcn_resnet50`` / ``fcn_resnet101`` (``torchvision.models.segmentation``)
  into ``fcn_dilated`` built with ``dilations="torchvision"``, ``upsample="resize"`` and the
  same backbone (:data:`TORCHVISION_FCN_OPTIONS`). ``backbone.*`` names are equal (fcnkit's
  ResNet keeps torchvision's child names); torchvision's ``FCNHead`` is an ``nn.Sequential``
  (``0`` conv, ``1`` BN, ``2`` ReLU, ``3`` Dropout, ``4`` conv) whose positions map in order
  onto the children of fcnkit's :class:`~fcnkit.models.heads.ConvHead`
  (``conv, bn, relu, dropout, classifier``); ``aux_classifier`` likewise, loaded when the
  model has ``aux=True`` and skipped (reported) otherwise.
* **pytorch-fcn** (``torchfcn`` FCN32s / FCN16s / FCN8s / FCN8sAtOnce, and the Caffe
  conversions ``fcn*s_from_caffe.pth``) into the faithful VGG16 FCNs. Names are derived from
  each module's role, not from registration order (torchfcn registers FCN-8s's
  ``score_pool3`` before ``score_pool4`` and ``upscore8`` before ``upscore_pool4``):
  ``conv<block>_<i>`` is the i-th convolution after ``block - 1`` poolings, ``fc6``/``fc7``
  the convolutionalised classifier, ``score_<feature>`` the skip score layers, and the
  upsamplers are named by what they upsample — the first by its factor (``upscore2``), the
  later ones by the skip fused into their input (``upscore_pool4``), the last by its factor
  (``upscore8``, ``upscore16``; plain ``upscore`` in FCN-32s). A torchfcn trainer checkpoint
  (``model_state_dict``, ``arch``) is unwrapped, and its ``arch`` must match the model.

pytorch-fcn weights expect Caffe preprocessing, torchvision's ImageNet preprocessing
(:mod:`fcnkit.models.preprocess`); :func:`load_weights` returns which.

A torchvision or pytorch-fcn file says which network it fits: :func:`foreign_architecture`
reads the model name, class count and options off its keys and shapes, and
:func:`fit_foreign_options` completes the options a caller gave (``build_model``,
``fcnkit train --init-from``) or names the ones that conflict.

Every mismatch is an :class:`~fcnkit.errors.InputError` of one line naming the file and the
first key that does not fit. :func:`transfer_matching` copies what fits and reports the rest
(``fcnkit train --init-from``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision
from safetensors import safe_open
from torch import nn

from fcnkit.atomic import check_regular_file
from fcnkit.errors import InputError, first_line
from fcnkit.models.backbones import ResNetBackbone
from fcnkit.models.preprocess import CAFFE, IMAGENET, Preprocessing, preprocessing_from

FCNKIT, TORCHVISION, PYTORCH_FCN = "fcnkit", "torchvision", "pytorch-fcn"
SAFETENSORS_FORMAT = "fcnkit-weights/1"

#: ``build_model("fcn_dilated", **options)`` that reproduces torchvision's segmentation FCNs
#: (``replace_stride_with_dilation=[False, True, True]``, logits resized to the input).
TORCHVISION_FCN_OPTIONS: dict[str, dict[str, Any]] = {
    f"fcn_{backbone}": {"backbone": backbone, "output_stride": 8,
                        "dilations": "torchvision", "upsample": "resize"}
    for backbone in ("resnet50", "resnet101")
}


@dataclass
class WeightsFile:
    """A state dict read from a file, and what the file says about it.

    Attributes:
        state: tensor per key.
        layout: ``"fcnkit"``, ``"torchvision"`` or ``"pytorch-fcn"`` (from the key names).
        path: the file, for messages.
        metadata: fcnkit metadata (``model_config``, ``classes``, ``palette``,
            ``preprocessing``) when the file carries it; ``arch`` of a torchfcn trainer
            checkpoint.
    """

    state: dict[str, torch.Tensor]
    layout: str
    path: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadReport:
    """What :func:`transfer_matching` / :func:`load_weights` did, key by key (fcnkit names)."""

    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the file, not used (with reason)
    new: list[str] = field(default_factory=list)  # in the model, left as initialised
    layout: str = FCNKIT
    preprocessing: Preprocessing = IMAGENET

    def counts(self) -> dict[str, int]:
        """``{"copied": n, "skipped": n, "new": n}``."""
        return {"copied": len(self.copied), "skipped": len(self.skipped), "new": len(self.new)}


# Reading ---------------------------------------------------------------------------------

def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor],
                                                             dict[str, Any]]:
    """Tensors and decoded fcnkit metadata of a ``.safetensors`` file (no code runs).

    Returns:
        ``(state, metadata)``; metadata values are decoded from JSON (``{}`` for a file
        written by another tool).

    Raises:
        InputError: an unreadable file or malformed metadata.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputError(f"weights: cannot read {str(path)!r} as safetensors "
                         f"({first_line(exc)[:120]}); pass a file written by fcnkit export"
                         ) from None
    metadata: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return state, metadata


def read_state_file(path: str | os.PathLike[str], option: str = "weights") -> WeightsFile:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    Plain state dicts and the wrappers of fcnkit (``model_state``), torchfcn's trainer
    (``model_state_dict``) and common trainers (``state_dict``, ``model``) are accepted.

    Raises:
        InputError: missing or unreadable file, or a file that holds no tensors.
    """
    file = check_regular_file(path, option)  # a FIFO or device: one line, never a hang
    if not file.is_file():
        raise InputError(f"{option}: no such file {str(file)!r}; pass an existing .pth/.pt/"
                         ".safetensors file")
    metadata: dict[str, Any] = {}
    if file.suffix == ".safetensors":
        data, metadata = read_safetensors(file)
    else:
        try:
            data = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise InputError(
                f"{option}: cannot read {str(file)!r} as torch weights "
                f"({first_line(exc)[:120]}); pass a state_dict saved with torch.save"
            ) from None
    return weights_from_loaded(data, file, option, metadata)


def weights_from_loaded(
    data: Any, path: str | os.PathLike[str], option: str = "weights",
    metadata: Mapping[str, Any] | None = None,
) -> WeightsFile:
    """A :class:`WeightsFile` from what ``torch.load`` returned: a plain state dict, or the
    wrapper of fcnkit (``model_state``), torchfcn's trainer (``model_state_dict``) or common
    trainers (``state_dict``, ``model``), whose ``model_config``/``classes``/``palette``/
    ``arch`` become metadata.

    Raises:
        InputError: ``data`` holds no state dict of tensors.
    """
    found = dict(metadata or {})
    if isinstance(data, Mapping):
        for key in ("model_state", "model_state_dict", "state_dict", "model"):
            if isinstance(data.get(key), Mapping):
                for extra in ("model_config", "classes", "palette", "arch"):
                    if extra in data:
                        found[extra] = data[extra]
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data or not all(
        isinstance(v, torch.Tensor) for v in data.values()
    ):
        raise InputError(f"{option}: {str(path)!r} holds no state_dict of tensors")
    state = dict(data)
    return WeightsFile(state, detect_layout(state), str(path), found)


def detect_layout(state: Mapping[str, Any]) -> str:
    """``"pytorch-fcn"``, ``"torchvision"`` or ``"fcnkit"``, from the key names."""
    # torchfcn's layers sit at the top level under Caffe's names.
    if "conv1_1.weight" in state or "score_fr.weight" in state:
        return PYTORCH_FCN
    if "backbone.conv1.weight" in state and "classifier.0.weight" in state:
        return TORCHVISION
    return FCNKIT


# Name maps -------------------------------------------------------------------------------

def torchvision_prefixes(model: nn.Module) -> dict[str, str]:
    """fcnkit module prefix → torchvision ``fcn_resnet*`` prefix, for a ``DilatedFCN``."""
    out = {"backbone.": "backbone."}
    for head in ("classifier", "aux_classifier"):
        module = getattr(model, head, None)
        if module is None:
            continue
        # torchvision's FCNHead is a Sequential in the order of ConvHead's children.
        for index, (child, _) in enumerate(module.named_children()):
            out[f"{head}.{child}."] = f"{head}.{index}."
    return out


def pytorch_fcn_prefixes(model: nn.Module) -> dict[str, str]:
    """fcnkit module prefix → torchfcn name, for a faithful VGG16 :class:`FCN`."""
    out: dict[str, str] = {}
    fcn: Any = model  # nn.Module types its submodules as Tensor | Module
    block, conv = 1, 0
    for index, layer in enumerate(fcn.backbone.features):
        if isinstance(layer, nn.Conv2d):
            conv += 1
            out[f"backbone.features.{index}."] = f"conv{block}_{conv}."
        elif isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
    out["backbone.fc6."] = "fc6."
    out["backbone.fc7."] = "fc7."
    head = fcn.head
    out["head.score_fr."] = "score_fr."
    for name in head.skips:
        key = "score_" + name.replace(".", "_")
        out[f"head.skip_scores.{key}."] = f"{key}."
    for index, upscore in enumerate(head.upscores):
        # The first upsampler is named by its factor, the later ones by the skip fused
        # into their input (torchfcn: upscore2, upscore_pool4).
        role = f"upscore{upscore.stride[0]}" if index == 0 else f"upscore_{head.skips[index - 1]}"
        out[f"head.upscores.{index}."] = f"{role}."
    final = head.upscore_final
    out["head.upscore_final."] = "upscore." if not head.skips else f"upscore{final.stride[0]}."
    return out


def _source_name(key: str, prefixes: Mapping[str, str]) -> str:
    best = max((p for p in prefixes if key.startswith(p)), key=len, default=None)
    return key if best is None else prefixes[best] + key[len(best):]


def _model_kind(model: nn.Module) -> str:
    return type(model).__name__


def _prefixes_for(model: nn.Module, layout: str, path: str) -> dict[str, str]:
    if layout == FCNKIT:
        return {}
    if layout == TORCHVISION:
        if _model_kind(model) != "DilatedFCN" or getattr(model, "resize_to_input", None) is None:
            raise InputError(
                f"weights: {path!r} is a torchvision fcn_resnet50/101 checkpoint; load it into "
                "build_model('fcn_dilated', backbone='resnet50' or 'resnet101', "
                "output_stride=8, dilations='torchvision', upsample='resize')"
            )
        return torchvision_prefixes(model)
    backbone = getattr(model, "backbone", None)
    if _model_kind(model) != "FCN" or not getattr(backbone, "faithful", False):
        raise InputError(
            f"weights: {path!r} is a pytorch-fcn checkpoint (Caffe VGG16 FCN); load it into "
            "build_model('fcn32s'/'fcn16s'/'fcn8s', faithful=True)"
        )
    return pytorch_fcn_prefixes(model)


def _expected_arch(model: nn.Module) -> str:
    head: Any = model.head
    skips = len(head.skips)
    name = {0: "FCN32s", 1: "FCN16s", 2: "FCN8s"}[skips]
    return name + ("AtOnce" if getattr(model, "at_once", False) else "")


# Loading ---------------------------------------------------------------------------------

def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def _name_pair(key: str, source: str) -> str:
    return repr(key) if key == source else f"{source!r} (fcnkit {key!r})"


def load_weights(model: nn.Module, weights: WeightsFile) -> LoadReport:
    """Load every tensor of ``model`` from ``weights``, strictly, mapping names by layout.

    Keys the model does not have are refused, except a torchvision ``aux_classifier`` when
    the model was built without ``aux`` (reported as skipped).

    Returns:
        A :class:`LoadReport` (``preprocessing``: what the weights expect).

    Raises:
        InputError: one line naming the file and the first key that is missing, unexpected
            or of another shape (e.g. another class count).
    """
    mapped, report = map_state(model, weights)
    model.load_state_dict(mapped, strict=True)
    return report


def map_state(model: nn.Module, weights: WeightsFile) -> tuple[dict[str, torch.Tensor],
                                                                LoadReport]:
    """``weights``' tensors under ``model``'s own key names, checked key by key and shape by
    shape as :func:`load_weights` loads them (``model`` may live on the meta device).

    Returns:
        ``(state, report)``: a strict ``model.state_dict()``-shaped mapping and the report.

    Raises:
        InputError: as :func:`load_weights`.
    """
    path = weights.path
    prefixes = _prefixes_for(model, weights.layout, path)
    arch = weights.metadata.get("arch")
    if weights.layout == PYTORCH_FCN and isinstance(arch, str) and arch != _expected_arch(model):
        raise InputError(
            f"weights: {path!r} is a torchfcn {arch} checkpoint, but the model is "
            f"{_expected_arch(model)}; build the matching model (FCN8sAtOnce: "
            "build_model('fcn8s', faithful=True, at_once=True))"
        )
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    report = LoadReport(layout=weights.layout)
    for key, tensor in target.items():
        source = _source_name(key, prefixes)
        if source not in weights.state:
            raise InputError(f"weights: {path!r} does not fit this {_model_kind(model)}: it "
                             f"has no key {_name_pair(key, source)}; pass a {weights.layout} "
                             "checkpoint of the same architecture and options")
        value = weights.state[source]
        if value.shape != tensor.shape:
            raise InputError(
                f"weights: {path!r} does not fit this {_model_kind(model)}: key "
                f"{_name_pair(key, source)} has shape {_shape(value)}, the model expects "
                f"{_shape(tensor)}; build the model with the checkpoint's num_classes and "
                "options"
            )
        mapped[key] = value
        report.copied.append(key)
    used = {_source_name(k, prefixes) for k in target}
    for source in weights.state:
        if source in used:
            continue
        if weights.layout == TORCHVISION and source.startswith("aux_classifier."):
            report.skipped.append(source)
            continue
        raise InputError(f"weights: {path!r} does not fit this {_model_kind(model)}: its key "
                         f"{source!r} has no place in the model; pass a checkpoint of the "
                         "same architecture and options")
    report.preprocessing = weights_preprocessing(weights)
    return mapped, report


def weights_preprocessing(weights: WeightsFile) -> Preprocessing:
    """The preprocessing the weights were trained with: saved metadata, else by layout."""
    saved = weights.metadata.get("preprocessing")
    if saved is None:
        saved = (weights.metadata.get("model_config") or {}).get("preprocessing")
    if saved is not None:
        return preprocessing_from(saved)
    return CAFFE if weights.layout == PYTORCH_FCN else IMAGENET


def transfer_matching(model: nn.Module, weights: WeightsFile) -> LoadReport:
    """Copy every tensor whose (mapped) name and shape match; report the rest.

    For staged training (FCN-32s → 16s → 8s) and fine-tuning from foreign checkpoints:
    foreign layouts are mapped by role as in :func:`load_weights`; what does not match is
    skipped (file keys) or left as initialised (model keys).
    """
    prefixes = _prefixes_for(model, weights.layout, weights.path)
    target = model.state_dict()
    report = LoadReport(layout=weights.layout, preprocessing=weights_preprocessing(weights))
    update: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, tensor in target.items():
        source = _source_name(key, prefixes)
        value = weights.state.get(source)
        if value is not None and value.shape == tensor.shape:
            update[key] = value
            used.add(source)
            report.copied.append(key)
        else:
            report.new.append(key)
    report.skipped = [k for k in weights.state if k not in used]
    model.load_state_dict(update, strict=False)
    return report


# Recognising a foreign file's architecture ----------------------------------------------

# Bottleneck blocks per ResNet layer (He et al. 2016, Table 1): what tells resnet50 and
# resnet101 apart in a torchvision fcn_resnet* state dict.
_RESNET_BLOCKS: dict[tuple[int, ...], str] = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}


def _blocks(state: Mapping[str, Any], layer: str) -> int:
    prefix = f"backbone.{layer}."
    indices = {key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)}
    return 1 + max((int(i) for i in indices if i.isdigit()), default=-1)


def foreign_architecture(weights: WeightsFile) -> dict[str, Any] | None:
    """The ``build_model`` arguments of the model a torchvision or pytorch-fcn file fits.

    Read from the keys and shapes alone: torchvision ``fcn_resnet50`` / ``fcn_resnet101``
    (blocks per layer 3-4-6-3 / 3-4-23-3; classes = rows of ``classifier.4.weight``; ``aux``
    when ``aux_classifier.*`` is present) → ``fcn_dilated`` with
    :data:`TORCHVISION_FCN_OPTIONS`; pytorch-fcn → ``fcn8s`` (``score_pool3``), ``fcn16s``
    (``score_pool4``) or ``fcn32s``, ``faithful=True`` (classes = rows of
    ``score_fr.weight``; ``at_once`` only when a torchfcn trainer checkpoint's ``arch`` says
    ``FCN8sAtOnce``: the at-once and staged FCN-8s have the same keys).

    Returns:
        ``{"name", "num_classes", **options}``, or ``None`` for a fcnkit state dict.

    Raises:
        InputError: a torchvision FCN on a ResNet fcnkit does not build (e.g. ResNet-152).
    """
    state = weights.state
    if weights.layout == TORCHVISION:
        blocks = tuple(_blocks(state, f"layer{i}") for i in range(1, 5))
        backbone = _RESNET_BLOCKS.get(blocks)
        head = state.get("classifier.4.weight")
        if backbone is None or head is None:
            raise InputError(
                f"weights: {weights.path!r} is a torchvision segmentation FCN whose ResNet has "
                f"{'-'.join(map(str, blocks))} blocks per layer; fcnkit rebuilds fcn_resnet50 "
                "(3-4-6-3) and fcn_resnet101 (3-4-23-3) only")
        return {"name": "fcn_dilated", "num_classes": int(head.shape[0]),
                **TORCHVISION_FCN_OPTIONS[f"fcn_{backbone}"],
                "aux": any(k.startswith("aux_classifier.") for k in state)}
    if weights.layout == PYTORCH_FCN:
        score = state.get("score_fr.weight")
        if score is None:
            raise InputError(f"weights: {weights.path!r} looks like a pytorch-fcn file but has "
                             "no 'score_fr.weight'; pass a complete torchfcn state dict")
        name = ("fcn8s" if "score_pool3.weight" in state else
                "fcn16s" if "score_pool4.weight" in state else "fcn32s")
        config: dict[str, Any] = {"name": name, "num_classes": int(score.shape[0]),
                                  "backbone": "vgg16", "faithful": True}
        if weights.metadata.get("arch") == "FCN8sAtOnce":
            config["at_once"] = True
        return config
    return None


def _describe_foreign(weights: WeightsFile, arch: Mapping[str, Any]) -> str:
    if weights.layout == TORCHVISION:
        return f"torchvision fcn_{arch['backbone']}"
    return f"pytorch-fcn FCN{arch['name'][3:]}"


def _same_option(key: str, given: Any, wanted: Any, arch: Mapping[str, Any]) -> bool:
    if key == "dilations" and given != wanted:
        # An explicit list of torchvision's own rates is the same network.
        try:
            text = given.split(",") if isinstance(given, str) else list(given)
            rates = [int(str(r).strip()) for r in text]
        except (TypeError, ValueError):
            return False
        return rates == torchvision_dilations(arch["backbone"], arch["output_stride"])
    if key == "aux":
        return bool(given) <= bool(wanted)  # aux=False skips the file's aux head (reported)
    return bool(given == wanted)


def fit_foreign_options(
    weights: WeightsFile,
    name: str,
    options: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    transfer: bool = False,
    option: str = "weights",
) -> tuple[int | None, dict[str, Any]]:
    """Complete ``build_model(name, **options)`` so that it fits a torchvision or pytorch-fcn
    file: options left out are taken from the file (:func:`foreign_architecture`); options
    given must agree with it.

    Args:
        weights: the file read with :func:`read_state_file`.
        name: the model name asked for.
        options: the options given (``None`` values count as not given).
        num_classes: the class count asked for (``None``: the file's).
        transfer: for ``--init-from``: only the tensors that fit are copied, so the class
            count may differ and a pytorch-fcn file may seed another stage of FCN-32s/16s/8s.
        option: the argument named in messages.

    Returns:
        ``(num_classes, options)``; unchanged for a fcnkit file.

    Raises:
        InputError: one line naming the file, what it is, the options that conflict and the
            call that fits it.
    """
    arch = foreign_architecture(weights)
    given = {k: v for k, v in options.items() if v is not None}
    if arch is None:
        return num_classes, given
    wanted = {k: v for k, v in arch.items() if k not in ("name", "num_classes")}
    conflicts: list[str] = []
    family = ("fcn32s", "fcn16s", "fcn8s") if transfer and weights.layout == PYTORCH_FCN else ()
    if name != arch["name"] and name not in family:
        conflicts.append(f"model {arch['name']!r} (not {name!r})")
    if not transfer and num_classes is not None and num_classes != arch["num_classes"]:
        conflicts.append(f"num_classes={arch['num_classes']} (not {num_classes})")
    for key, value in wanted.items():
        if key == "at_once":
            continue  # checked by load_weights against the trainer checkpoint's arch
        if key in given and not _same_option(key, given[key], value, arch):
            conflicts.append(f"{key}={value!r} (not {given[key]!r})")
    if given.get("width", 1.0) != 1.0:
        conflicts.append(f"width=1.0 (not {given['width']!r})")
    if conflicts:
        call = ", ".join([repr(arch["name"]), f"num_classes={arch['num_classes']}",
                          *(f"{k}={v!r}" for k, v in wanted.items())])
        raise InputError(
            f"{option}: {weights.path!r} is a {_describe_foreign(weights, arch)} checkpoint "
            f"({arch['num_classes']} classes); it needs {', '.join(conflicts)}; build it as "
            f"build_model({call}) (options left out are read from the file)")
    merged = {**wanted, **given}
    if name != "fcn8s":
        merged.pop("at_once", None)  # staged training from FCN-8s-at-once weights
    if transfer:
        return num_classes, merged
    return (arch["num_classes"] if num_classes is None else num_classes), merged


def torchvision_dilations(backbone: str, output_stride: int = 8) -> list[int]:
    """Per-block rates of torchvision's dilated ResNets, read from torchvision's own model.

    torchvision's segmentation models pass ``replace_stride_with_dilation`` (for output
    stride 8: ``[False, True, True]``): the dilated layers get stride 1 and each block's 3×3
    convolution the dilation torchvision assigns it (the first block of a layer keeps the
    previous rate: 1, 2, 2, … then 2, 4, 4). Read from the built module, not typed in.

    Raises:
        InputError: for ResNet-18/34 (torchvision's BasicBlock refuses dilation).
    """
    # The layers whose plain stride is coarser than output_stride stop downsampling.
    plain = ResNetBackbone(backbone).strides
    dilated = [layer for layer in ("layer2", "layer3", "layer4") if plain[layer] > output_stride]
    replace = [layer in dilated for layer in ("layer2", "layer3", "layer4")]
    try:
        net = getattr(torchvision.models, backbone)(weights=None,
                                                    replace_stride_with_dilation=replace)
    except NotImplementedError as exc:
        raise InputError(f"dilations='torchvision' needs a Bottleneck ResNet (resnet50, "
                         f"resnet101), not {backbone!r}: {first_line(exc)}") from None
    rates = []
    for layer in dilated:
        for block in getattr(net, layer):
            convs = [m for m in block.modules()
                     if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1]
            rates.append(int(convs[-1].dilation[0]))
    return rates
