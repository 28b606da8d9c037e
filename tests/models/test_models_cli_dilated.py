"""``fcnkit models`` output, and the dilated FCN's HDC schedule (holes checked by torch)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnkit.cli import main
from fcnkit.models import build_model
from fcnkit.models.backbones import hdc_rates


def test_models_json_row_matches_the_model(capsys):
    assert main(["models", "--only", "fcn_resnet18_d2l", "--size", "32,48", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"] == [32, 48]
    (row,) = report["models"]
    model = build_model("fcn_resnet18_d2l")
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["output_stride"] == 32
    # ResNet-18 has a 435-px receptive field; the x32 deconvolution widens it.
    assert row["receptive_field"] > 435
    # The dense 21x21x64x64 transposed conv alone: 2 * 21*21*64*64 * (1x2 input pixels).
    assert row["gflops"] * 1e9 > 2 * 21 * 21 * 64 * 64 * 2


def test_models_table_and_bad_name(capsys):
    assert main(["models", "--only", "fcn_resnet18_d2l", "--size", "32", "--no-rf"]) == 0
    out = capsys.readouterr().out
    assert "fcn_resnet18_d2l" in out and "GFLOPs" in out
    assert main(["models", "--only", "fcn99s"]) == 2
    err = capsys.readouterr().err
    assert "fcn99s" in err and len(err.strip().splitlines()) == 1


def _holes_1d(rates: list[int]) -> int:
    # Brute force: push a delta through stacked 3-tap dilated convolutions of ones (torch)
    # and count the input offsets inside the footprint that never reach the output.
    size = 1 + 2 * sum(rates)
    x = torch.zeros(1, 1, 3 * size)
    x[0, 0, size + size // 2] = 1.0
    for r in rates:
        x = F.conv1d(x, torch.ones(1, 1, 3), padding=r, dilation=r)
    support = x[0, 0].nonzero().flatten()
    first, last = int(support.min()), int(support.max())
    return int((x[0, 0, first : last + 1] == 0).sum())


@pytest.mark.parametrize("backbone, stride", [("resnet18", 8), ("resnet50", 16)])
def test_hdc_schedule_has_no_holes_where_the_plain_one_grids(backbone, stride):
    rates = hdc_rates(backbone, stride)
    per_conv = [r for r in rates for _ in range(2 if backbone == "resnet18" else 1)]
    assert _holes_1d(per_conv) == 0
    plain = [2] * len(rates) if stride == 16 else [2] * (len(rates) // 2) + [4] * (
        len(rates) // 2)
    assert _holes_1d(plain) > 0
    # The schedule reaches at least the plain dilated network's receptive field.
    assert sum(rates) >= sum(plain)


def test_dilated_model_sets_rates_on_its_convolutions():
    model = build_model("fcn_dilated", backbone="resnet18", output_stride=8,
                        dilations=[1, 2, 5, 9])
    convs = [m for layer in (model.backbone.layer3, model.backbone.layer4)
             for block in layer for m in (block.conv1, block.conv2)]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 2, 5, 5, 9, 9]
    assert all(c.stride == (1, 1) for c in convs)
    assert all(isinstance(m, nn.Conv2d) and m.stride == (1, 1)
               for layer in (model.backbone.layer3, model.backbone.layer4)
               for m in layer[0].downsample.modules() if isinstance(m, nn.Conv2d))
    assert model.output_stride == 8
    same = build_model("fcn_dilated", backbone="resnet18", dilations="1,2,5,9")
    assert same.dilations == [1, 2, 5, 9]
    with pytest.raises(ValueError, match="hdc"):
        build_model("fcn_dilated", dilations="wide")
    with torch.no_grad():
        feats = model.backbone.eval()(torch.randn(1, 3, 64, 80))
    assert feats["layer4"].shape[-2:] == (8, 10)
