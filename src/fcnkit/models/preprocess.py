"""The input normalisation a model's weights expect: a property of the weights, saved with them.

Weights are trained on images prepared one particular way, and give wrong logits on any
other. Two conventions matter for FCNs:

* ``"imagenet"`` — torchvision's classifiers and segmentation models (and fcnkit's own
  training): RGB, values scaled to [0, 1], minus the ImageNet mean ``(0.485, 0.456, 0.406)``,
  divided by the std ``(0.229, 0.224, 0.225)``.
* ``"caffe"`` — the Caffe FCNs (Long et al.) and pytorch-fcn (trained on them or converted
  from them): BGR, values 0–255, minus the per-channel mean of the ILSVRC training images
  ``(104.00698793, 116.66876762, 122.67891434)`` (B, G, R; ``voc_layers.py`` of
  ``fcn.berkeleyvision.org`` and ``torchfcn/datasets/voc.py``), no division.

Both are ``(x[order] * scale - mean) / std`` on an RGB image ``x`` in [0, 1], so one
:class:`Preprocessing` record describes either; it is stored in checkpoints and exported
metadata as a plain dict (:meth:`Preprocessing.to_dict`) and rebuilt with
:func:`preprocessing_from`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fcnkit.constants import IMAGENET_MEAN, IMAGENET_STD
from fcnkit.errors import InputError


@dataclass(frozen=True)
class Preprocessing:
    """``(x[channel_order] * scale - mean) / std`` for an RGB image ``x`` in [0, 1].

    Attributes:
        name: "imagenet", "caffe" or a custom name.
        channel_order: "RGB" or "BGR" (the order the network's first layer reads).
        scale: multiplier before subtracting the mean (1 for [0, 1], 255 for 0–255).
        mean, std: per channel, in ``channel_order`` and in units after ``scale``.
    """

    name: str
    channel_order: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for checkpoints / JSON metadata."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def _flip(self) -> bool:
        return self.channel_order == "BGR"

    def apply(self, image: torch.Tensor) -> torch.Tensor:
        """Normalise RGB ``image`` (3, H, W) or (N, 3, H, W), float in [0, 1]; a new tensor."""
        if image.ndim not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(f"expected an RGB image (3, H, W) or batch (N, 3, H, W), got "
                             f"shape {tuple(image.shape)}")
        x = image.flip(-3) if self._flip() else image
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * self.scale - mean) / std

    def invert(self, image: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`apply`: back to RGB in [0, 1] (not clamped)."""
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device).view(3, 1, 1)
        x = (image * std + mean) / self.scale
        return x.flip(-3) if self._flip() else x

    def transform(self) -> v2.Transform:
        """The same map as a torchvision v2 transform on ``tv_tensors.Image`` (masks pass).

        ``(x * s - m) / d`` equals ``v2.Normalize(mean=m / s, std=d / s)``; a BGR order is a
        channel permutation first.
        """
        normalize = v2.Normalize(mean=[m / self.scale for m in self.mean],
                                 std=[d / self.scale for d in self.std])
        if not self._flip():
            return normalize
        return v2.Compose([v2.Lambda(_to_bgr), normalize])


def _to_bgr(inpt: Any) -> Any:
    # Images (tv_tensors.Image or a plain (…, 3, H, W) tensor) swap R and B; masks pass.
    if isinstance(inpt, tv_tensors.Image):
        return tv_tensors.wrap(inpt.flip(-3), like=inpt)
    if type(inpt) is torch.Tensor and inpt.ndim >= 3 and inpt.shape[-3] == 3:
        return inpt.flip(-3)
    return inpt


IMAGENET = Preprocessing(
    name="imagenet", channel_order="RGB", scale=1.0,
    # torchvision's ImageNet statistics (fcnkit.constants, the one definition).
    mean=IMAGENET_MEAN, std=IMAGENET_STD,
)
CAFFE = Preprocessing(
    name="caffe", channel_order="BGR", scale=255.0,
    # ILSVRC mean pixel, B G R: fcn.berkeleyvision.org voc_layers.py, torchfcn voc.py.
    mean=(104.00698793, 116.66876762, 122.67891434), std=(1.0, 1.0, 1.0),
)
PREPROCESSINGS = {p.name: p for p in (IMAGENET, CAFFE)}


def preprocessing_from(value: str | Mapping[str, Any] | Preprocessing | None) -> Preprocessing:
    """A :class:`Preprocessing` from a name ("imagenet", "caffe"), a saved dict, or None
    (= "imagenet", the default of every fcnkit model).

    Raises:
        InputError: an unknown name or a malformed dict.
    """
    if value is None:
        return IMAGENET
    if isinstance(value, Preprocessing):
        return value
    if isinstance(value, str):
        if value not in PREPROCESSINGS:
            raise InputError(f"preprocessing: unknown {value!r}; choose one of "
                             f"{', '.join(PREPROCESSINGS)}")
        return PREPROCESSINGS[value]
    try:
        return Preprocessing(
            name=str(value["name"]), channel_order=str(value["channel_order"]),
            scale=float(value["scale"]),
            mean=tuple(float(v) for v in value["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in value["std"]),  # type: ignore[arg-type]
        )
    except (KeyError, TypeError, ValueError):
        raise InputError(f"preprocessing: cannot read {dict(value)!r}; expected a name "
                         f"({', '.join(PREPROCESSINGS)}) or the fields of Preprocessing") from None


def model_preprocessing(model: torch.nn.Module) -> Preprocessing:
    """What ``model`` expects (``model.preprocessing``; "imagenet" for models without one)."""
    return preprocessing_from(getattr(model, "preprocessing", None))
