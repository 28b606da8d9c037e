"""Claim ``receptive-fields``: the FCN paper's Table 1 receptive fields, and the growth
of the receptive field along fcnkit's backbones, each checked by gradient support.

Long, Shelhamer & Darrell (2015), Table 1: AlexNet's receptive field is 355 px and VGG16's
404 px, both at stride 32, counting the first fully connected layer (fc6) as a
convolution. fcnkit computes the fields by tracing the networks
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

from fcnkit.reproduce.runner import ReproduceConfig, describe, markdown_table, write_outputs

CLAIM = "FCN Table 1: AlexNet's receptive field is 355 px and VGG16's 404 px (with fc6), " \
        "both at stride 32."

# (network, published receptive field, published stride) — Long et al. 2015, Table 1.
PUBLISHED = {"AlexNet": (355, 32), "VGG16": (404, 32)}
FAMILY = ("vgg16", "resnet18", "resnet50", "mobilenet_v3_large")


def _with_fc6(name: str, in_channels: int, kernel: int) -> Any:
    """torchvision's conv body of ``name`` plus fc6 as a ``kernel``×``kernel`` convolution
    (the classifier sees a kernel×kernel map: 6 for AlexNet, 7 for VGG16). fc6 has 64
    channels instead of 4096: the geometry, not the width, sets the field, and 4096
    channels would cost a minute of weight initialisation on a CPU. fc6 pads the width
    only (by kernel // 2, which leaves the field unchanged), so that a narrow input, whose
    height the gradient-support check measures, still has an output."""
    import torch
    from torch import nn

    from fcnkit.analysis import model_for_analysis

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


def _backbone(name: str, *, meta: bool = False) -> Any:
    """The backbone of fcnkit's FCN on ``name``; ``meta``: built on PyTorch's meta device
    (no weights: tracing the geometry needs none, and VGG16's 4096-channel fc6 would take
    most of the claim's time to initialise)."""
    import torch

    from fcnkit.models import build_model

    with torch.device("meta" if meta else "cpu"):
        return build_model("fcn32s", num_classes=2, backbone=name).backbone.eval()


def linearised(model: Any) -> Any:
    """A copy whose every pixel in a receptive field reaches the output with weight > 0."""
    import torch
    from torch import nn

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
    """Support along the height of ∂ out[:, 0, centre row, centre col] / ∂ input."""
    import torch

    twin = linearised(model)
    x = torch.ones(1, 3, height, width, requires_grad=True)
    out = twin(x)
    if isinstance(out, dict):
        out = out[output] if output else list(out.values())[-1]
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    first, last = int(rows.min()), int(rows.max())
    return {"size": last - first + 1, "clipped": first == 0 or last == height - 1}


def _traced(records: list[Any], record_name: str) -> tuple[int, int]:
    record = next(r for r in records if r.name == record_name)
    return int(record.size[0]), int(record.stride[0])


def run(config: ReproduceConfig) -> dict[str, Any]:
    from fcnkit.analysis import receptive_field_of
    from fcnkit.viz.receptive import plot_receptive_field_growth

    out = Path(config.out)
    table1 = []
    for name, (build, record, output) in {  # (model, record of the field, output)
        "AlexNet": (lambda: _with_fc6("alexnet", 256, 6), "fc6", None),
        "VGG16": (lambda: _with_fc6("vgg16", 512, 7), "fc6", None),
    }.items():
        model = build()
        records = receptive_field_of(model, 224)
        size, stride = _traced(records, record)
        empirical = gradient_support(model, 480, 64, output)
        published_size, published_stride = PUBLISHED[name]
        table1.append({"network": name, "published_size": published_size,
                       "published_stride": published_stride, "fcnkit_size": size,
                       "fcnkit_stride": stride, "gradient_support": empirical["size"],
                       "clipped": empirical["clipped"],
                       "equal": size == published_size == empirical["size"]
                       and stride == published_stride and not empirical["clipped"]})
        if name == "VGG16":
            vgg_records = records
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
        "table1": table1, "family": family, "figures": {"growth": str(figure)},
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
    table += "\n" + markdown_table(
        ["backbone", "feature", "stride (declared / traced)", "RF (traced)",
         "gradient support"],
        [[r["backbone"], r["feature"], f"{r['declared_stride']} / {r['stride']}", r["size"],
          r.get("gradient_support", "—")] for r in family])
    write_outputs(out, results, table)
    results["table"] = table
    return results
