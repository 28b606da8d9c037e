"""Network surgery: fully connected → convolution, weight transplant, bilinear init.

Long, Shelhamer & Darrell (2015, §3.1) observe that a fully connected layer reading a
``C × kh × kw`` map is a ``kh × kw`` convolution without padding whose weight is the Linear
weight reshaped to ``(out, C, kh, kw)`` (PyTorch flattens ``(C, H, W)`` in that order), and
that every later Linear layer is a 1×1 convolution. The resulting network computes the
classifier's scores for every ``kh × kw`` window of the final feature map in one pass: on
the classifier's own input size it returns the same logits as a ``1 × 1`` map.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from fcnkit.arith import as_pair, bilinear_kernel
from fcnkit.errors import InputError


def linear_to_conv_weight(weight: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Reshape a Linear weight ``(out, C*kh*kw)`` into a Conv2d weight ``(out, C, kh, kw)``.

    Raises:
        InputError: when ``in_features`` is not divisible by ``kh*kw``.
    """
    out_features, in_features = weight.shape
    kh, kw = kernel
    if in_features % (kh * kw):
        raise InputError(
            f"a Linear layer with {in_features} inputs cannot read a {kh}x{kw} map "
            "(in_features must be channels * kh * kw)"
        )
    return weight.reshape(out_features, in_features // (kh * kw), kh, kw)


def linear_to_conv(linear: nn.Linear, kernel: tuple[int, int] = (1, 1)) -> nn.Conv2d:
    """The ``kernel``-sized, unpadded Conv2d that computes ``linear`` on every window."""
    weight = linear_to_conv_weight(linear.weight.detach(), kernel)
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if linear.bias is not None:
            cast(torch.Tensor, conv.bias).copy_(linear.bias.detach())  # built with bias
    return conv


def convolutionalize(model: nn.Module) -> nn.Sequential:
    """Turn a torchvision VGG / AlexNet classifier into a fully convolutional network.

    The classifier's first Linear layer becomes a convolution with the kernel of the map it
    reads (the output size of ``model.avgpool``, an ``AdaptiveAvgPool2d``: 7×7 for VGG, 6×6
    for AlexNet), each later Linear a 1×1 convolution; ReLU/Dropout are kept. The adaptive
    pooling is dropped: on the classifier's native input (224×224) the feature map already
    has that size, so the pooling is the identity there.

    Args:
        model: a module with ``features``, ``avgpool`` (AdaptiveAvgPool2d) and
            ``classifier`` (Sequential of Linear/ReLU/Dropout), e.g.
            ``torchvision.models.vgg16(weights=None)`` or ``alexnet``.

    Returns:
        ``nn.Sequential(features, classifier)`` — sharing ``features`` with ``model``, with a
        new convolutional ``classifier``. On a 224×224 input it returns the original logits
        shaped ``(N, 1000, 1, 1)``; on larger inputs an ``(N, 1000, h, w)`` score map with
        ``h = (feature height) - kh + 1``.

    Raises:
        InputError: for a model without that structure.
    """
    for attr in ("features", "avgpool", "classifier"):
        if not hasattr(model, attr):
            raise InputError(
                f"convolutionalize needs a VGG/AlexNet-style model with .{attr}; "
                f"got {type(model).__name__}"
            )
    output_size = getattr(model.avgpool, "output_size", None)
    try:
        kernel = as_pair(output_size, "model.avgpool.output_size", minimum=1)
    except InputError:
        raise InputError("convolutionalize: model.avgpool must be AdaptiveAvgPool2d(size) "
                         f"with a fixed size, got output_size={output_size!r}") from None
    layers: list[nn.Module] = []
    first = True
    for layer in cast(nn.Sequential, model.classifier):
        if isinstance(layer, nn.Linear):
            layers.append(linear_to_conv(layer, kernel if first else (1, 1)))
            first = False
        elif isinstance(layer, (nn.ReLU, nn.Dropout)):
            layers.append(type(layer)(**_module_kwargs(layer)))
        else:
            raise InputError(f"convolutionalize: cannot convert {type(layer).__name__}")
    if first:
        raise InputError("convolutionalize: the classifier has no Linear layer")
    return nn.Sequential(cast(nn.Module, model.features), nn.Sequential(*layers))


def _module_kwargs(layer: nn.Module) -> dict[str, Any]:
    if isinstance(layer, nn.ReLU):
        return {"inplace": layer.inplace}
    return {"p": layer.p, "inplace": layer.inplace}


def bilinear_init_(layer: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """Initialise a transposed convolution as bilinear upsampling, in place.

    Channel c maps to channel c through :func:`fcnkit.arith.bilinear_kernel` (the
    ``kh × kw`` kernel of the layer) and all other weights are zero (FCN's ``surgery.interp``).
    For a grouped layer (``groups == in_channels == out_channels``) every group gets the
    kernel. The bias, if any, is left as it is (d2l keeps ``ConvTranspose2d``'s default one).

    Returns:
        ``layer``.

    Raises:
        InputError: when in and out channels differ (there is no channel diagonal).
    """
    c_in, c_out_per_group, kh, kw = layer.weight.shape
    groups = layer.groups
    if c_in != c_out_per_group * groups:
        raise InputError(
            f"bilinear_init_ needs in_channels == out_channels, got {c_in} and "
            f"{c_out_per_group * groups}"
        )
    kernel = torch.as_tensor(bilinear_kernel((kh, kw)), dtype=layer.weight.dtype)
    with torch.no_grad():
        layer.weight.zero_()
        if c_out_per_group == 1:
            layer.weight[:, 0] = kernel
        else:
            index = torch.arange(c_in)
            layer.weight[index, index] = kernel
    return layer


def vgg16_classifier_to_fc(
    state_dict: Mapping[str, torch.Tensor], fc6_kernel: tuple[int, int] = (7, 7)
) -> dict[str, torch.Tensor]:
    """Map torchvision VGG16 classifier weights onto fc6/fc7 convolutions.

    ``classifier.0`` (Linear 25088 → 4096) becomes ``fc6`` (4096 × 512 × 7 × 7) and
    ``classifier.3`` (Linear 4096 → 4096) becomes ``fc7`` (4096 × 4096 × 1 × 1); the
    1000-way ``classifier.6`` is dropped (FCN replaces it with ``score_fr``).

    Args:
        state_dict: a torchvision ``vgg16`` state dict (``features.*`` and ``classifier.*``).
        fc6_kernel: fc6's kernel (VGG16's classifier reads a 7×7 map).

    Returns:
        A state dict for :class:`fcnkit.models.backbones.VGG16Backbone`: ``features.*``
        unchanged plus ``fc6.*`` and ``fc7.*``.
    """
    out = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    pairs = (("classifier.0", "fc6", fc6_kernel), ("classifier.3", "fc7", (1, 1)))
    for source, target, kernel in pairs:
        if f"{source}.weight" in state_dict:
            out[f"{target}.weight"] = linear_to_conv_weight(state_dict[f"{source}.weight"], kernel)
            out[f"{target}.bias"] = state_dict[f"{source}.bias"]
    return out
