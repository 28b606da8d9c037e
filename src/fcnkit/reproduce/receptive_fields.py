"""Claim ``receptive-fields``: the FCN paper's Table 1 receptive fields, and the growth
of the receptive field along fcnkit's backbones, each checked by gradient support.

Long, Shelhamer & Darrell (2015), Table 1: AlexNet's receptive field is 355 px, VGG16's
404 px and GoogLeNet's 907 px, all at stride 32, counting the first fully connected layer
(fc6) as a convolution, and GoogLeNet's final 7×7 average pool. GoogLeNet is
torchvision's with its two departures from the original undone
(:func:`googlenet_body`); torchvision's as built traces to 571 px, and the results say
exactly why (:data:`TORCHVISION_GOOGLENET`). fcnkit computes the fields by tracing the networks
(:func:`fcnkit.analysis.receptive_field_of`, geometry from :mod:`fcnkit.arith`). The
independent check is empirical: in a copy of the network whose ReLUs (and BatchNorms,
Dropouts) are identities, whose max pools are average pools of the same geometry and whose
convolution weights are positive, every input pixel inside an output unit's receptive
field influences it, so the support of ``∂ output[centre] / ∂ input`` is the field. The
input is tall (taller than the field) and narrow; the support is measured along the height.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

from fcnkit.analysis import model_for_analysis, receptive_field_of
from fcnkit.models import build_model
from fcnkit.reproduce.runner import ReproduceConfig, describe, markdown_table, write_outputs
from fcnkit.viz.receptive import plot_receptive_field_growth

CLAIM = "FCN Table 1: AlexNet's receptive field is 355 px, VGG16's 404 px (with fc6) and " \
        "GoogLeNet's 907 px, all at stride 32."

# (network, published receptive field, published stride) — Long et al. 2015, Table 1.
PUBLISHED = {"AlexNet": (355, 32), "VGG16": (404, 32), "GoogLeNet": (907, 32)}
#: Why torchvision's GoogLeNet traces to another field than Table 1's 907 px.
TORCHVISION_GOOGLENET = (
    "its Inception blocks' '5×5' branch is a 3×3 convolution (pytorch/vision issue #906; "
    "each of the 9 blocks then grows the field by 2 × its stride less: 320 px), and its "
    "pool4 is 2×2 instead of 3×3 (16 px less); with the "
    "5×5 convolutions and the 3×3 pool4 of Szegedy et al. 2015 (Table 1) restored, "
    "fcnkit's trace gives 907 px. Both count the final 7×7 average pool (Table 1 does: "
    "715 px without it)")
FAMILY = ("vgg16", "resnet18", "resnet50", "mobilenet_v3_large")


def _with_fc6(name: str, in_channels: int, kernel: int) -> Any:
    """torchvision's conv body of ``name`` plus fc6 as a ``kernel``×``kernel`` convolution
    (the classifier sees a kernel×kernel map: 6 for AlexNet, 7 for VGG16). fc6 has 64
    channels instead of 4096: the geometry, not the width, sets the field, and 4096
    channels would cost a minute of weight initialisation on a CPU. fc6 pads the width
    only (by kernel // 2, which leaves the field unchanged), so that a narrow input, whose
    height the gradient-support check measures, still has an output."""
    # Built on the meta device and given storage afterwards: the classifier's 100 M
    # weights are never initialised, and the body's are set to constants (the geometry
    # needs no values; gradient_support sets its own weights).
    with torch.device("meta"):
        body = model_for_analysis(name).features
    body = body.to_empty(device="cpu")
    with torch.no_grad():
        for parameter in body.parameters():
            parameter.fill_(0.01)
    return nn.Sequential(OrderedDict(features=body,
                                     fc6=nn.Conv2d(in_channels, 64, kernel,
                                                   padding=(0, kernel // 2)))).eval()


#: torchvision's GoogLeNet modules up to inception5b, in order.
_GOOGLENET = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a",
              "inception3b", "maxpool3", "inception4a", "inception4b", "inception4c",
              "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b")


def googlenet_body(*, faithful: bool) -> Any:
    """torchvision's GoogLeNet (``weights=None``) up to inception5b, then the 7×7 average
    pool the classifier sees at a 224×224 input (torchvision's adaptive pool, as a fixed
    7×7 window so the trace can read its geometry).

    ``faithful=True`` undoes torchvision's two departures from Szegedy et al. (2015),
    Table 1, and the Caffe bvlc_googlenet that FCN used: each Inception block's "5×5"
    branch has a 3×3 convolution in torchvision (pytorch/vision issue #906) and becomes
    5×5 (padding 2) again, and pool4 is 2×2 in torchvision and becomes 3×3 (stride 2).
    """
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    layers = OrderedDict((name, getattr(net, name)) for name in _GOOGLENET)
    if faithful:
        for module in layers.values():
            if isinstance(module, Inception):
                conv = module.branch3[1].conv
                module.branch3[1].conv = nn.Conv2d(conv.in_channels, conv.out_channels, 5,
                                                   padding=2, bias=False)
        layers["maxpool4"] = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    layers["avgpool"] = nn.AvgPool2d(7, stride=1)
    return nn.Sequential(layers).eval()


def _backbone(name: str, *, meta: bool = False) -> Any:
    """The backbone of fcnkit's FCN on ``name``; ``meta``: built on PyTorch's meta device
    (no weights: tracing the geometry needs none, and VGG16's 4096-channel fc6 would take
    most of the claim's time to initialise)."""
    with torch.device("meta" if meta else "cpu"):
        return build_model("fcn32s", num_classes=2, backbone=name).backbone.eval()


def linearised(model: Any) -> Any:
    """A copy whose every pixel in a receptive field reaches the output with weight > 0."""
    twin = copy.deepcopy(model).eval()
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride,
                                                   child.padding, ceil_mode=child.ceil_mode))
            elif isinstance(child, (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid,
                                    nn.Dropout, nn.BatchNorm2d)):
                setattr(parent, name, nn.Identity())
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    return twin


def gradient_support(model: Any, height: int, width: int, output: str | None = None,
                     ) -> dict[str, Any]:
    """Support along the height of ∂ Σ_c out[0, c, centre row, centre col] / ∂ input."""
    twin = linearised(model)
    x = torch.ones(1, 3, height, width, requires_grad=True)
    out = twin(x)
    if isinstance(out, dict):
        out = out[output] if output else list(out.values())[-1]
    h, w = out.shape[-2:]
    # Every channel at the centre position: a network that concatenates branches
    # (GoogLeNet's Inception) gives each channel the field of its own branch only.
    out[0, :, h // 2, w // 2].sum().backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    first, last = int(rows.min()), int(rows.max())
    return {"size": last - first + 1, "clipped": first == 0 or last == height - 1}


def _traced(records: list[Any], record_name: str) -> tuple[int, int]:
    record = next(r for r in records if r.name == record_name)
    return int(record.size[0]), int(record.stride[0])


def run(config: ReproduceConfig) -> dict[str, Any]:
    out = Path(config.out)
    table1 = []
    # (model, record of the field, gradient-support input H × W: taller than the field,
    # wide enough for the last pooling window)
    for name, (build, record, (height, width)) in {
        "AlexNet": (lambda: _with_fc6("alexnet", 256, 6), "fc6", (480, 64)),
        "VGG16": (lambda: _with_fc6("vgg16", 512, 7), "fc6", (480, 64)),
        "GoogLeNet": (lambda: googlenet_body(faithful=True), "output", (1024, 224)),
    }.items():
        model = build()
        records = receptive_field_of(model, 224)
        size, stride = _traced(records, record)
        empirical = gradient_support(model, height, width)
        published_size, published_stride = PUBLISHED[name]
        table1.append({"network": name, "published_size": published_size,
                       "published_stride": published_stride, "fcnkit_size": size,
                       "fcnkit_stride": stride, "gradient_support": empirical["size"],
                       "clipped": empirical["clipped"],
                       "equal": size == published_size == empirical["size"]
                       and stride == published_stride and not empirical["clipped"]})
        if name == "VGG16":
            vgg_records = records
    # torchvision's GoogLeNet as it is: traced only (the difference is its two layers).
    size, stride = _traced(receptive_field_of(googlenet_body(faithful=False), 224), "output")
    googlenet_torchvision = {"network": "GoogLeNet (torchvision, as built)", "size": size,
                             "stride": stride, "differs_by": TORCHVISION_GOOGLENET}
    family = []
    for name in FAMILY if not config.quick else ("resnet18",):
        # Only ResNet-18's fields are also checked by gradient support, with real weights.
        model = _backbone(name, meta=name != "resnet18")
        records = receptive_field_of(model, 224)
        for feature, declared in model.strides.items():
            size, stride = _traced(records, f"output[{feature}]")
            row = {"backbone": name, "feature": feature, "declared_stride": declared,
                   "size": size, "stride": stride}
            if name == "resnet18":
                empirical = gradient_support(model, 2 * size + 64, 64, feature)
                row["gradient_support"] = empirical["size"]
                row["agrees"] = empirical["size"] == size and not empirical["clipped"]
            family.append(row)
    figure = out / "rf_growth_vgg16.png"
    plot_receptive_field_growth(vgg_records, figure, title="VGG16 + fc6: receptive field")
    checked = [r for r in family if "agrees" in r]
    passed = all(r["equal"] for r in table1) and all(
        r["agrees"] and r["stride"] == r["declared_stride"] for r in checked)
    results = {
        "claim": "receptive-fields", "claim_text": CLAIM, "config": describe(config, None),
        "table1": table1, "googlenet_torchvision": googlenet_torchvision,
        "family": family, "figures": {"growth": str(figure)},
        "verdict": "reproduced" if passed else "not reproduced",
        "verdict_reason": "fcnkit's traced fields equal the published ones and the gradient "
                          f"support ({len(checked)} backbone features also checked)"
                          if passed else "a traced field differs from the paper or from "
                          "the gradient support (see the table)",
    }
    table = markdown_table(
        ["network", "published RF / stride", "fcnkit RF / stride", "gradient support",
         "equal"],
        [[r["network"], f"{r['published_size']} / {r['published_stride']}",
          f"{r['fcnkit_size']} / {r['fcnkit_stride']}", r["gradient_support"],
          "yes" if r["equal"] else "NO"] for r in table1])
    table += (f"\ntorchvision's GoogLeNet as built traces to {size} px at stride {stride}: "
              f"{TORCHVISION_GOOGLENET}\n")
    table += "\n" + markdown_table(
        ["backbone", "feature", "stride (declared / traced)", "RF (traced)",
         "gradient support"],
        [[r["backbone"], r["feature"], f"{r['declared_stride']} / {r['stride']}", r["size"],
          r.get("gradient_support", "—")] for r in family])
    write_outputs(out, results, table)
    results["table"] = table
    return results
