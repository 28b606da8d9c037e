"""FCN geometry: Caffe crop offsets, Caffe parameter counts, the three upsamplers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fcnkit.models import build_model
from fcnkit.models.backbones import VGG16Backbone
from fcnkit.models.fcn import D2LFCN, FCN
from fcnkit.models.heads import make_upsampler

_faithful: dict[str, nn.Module] = {}


def faithful(name: str) -> nn.Module:
    if name not in _faithful:
        _faithful[name] = build_model(name, num_classes=21, faithful=True)
    return _faithful[name]


# Published: shelhamer/fcn.berkeleyvision.org voc-fcn{32,16,8}s (caffe.coord_map crops).
@pytest.mark.parametrize(
    "name, expected",
    [
        ("fcn32s", {"final": 19}),
        ("fcn16s", {"score_pool4": 5, "final": 27}),
        ("fcn8s", {"score_pool4": 5, "score_pool3": 9, "final": 31}),
    ],
)
def test_faithful_crop_offsets_equal_caffe(name, expected):
    model = faithful(name)
    assert model.crop_offsets == expected
    assert all(v == 0 for v in model.misalignment.values())


def _caffe_param_count(name: str, classes: int = 21) -> int:
    # Layer shapes of voc-fcn*s/net.py, summed by brute force: (in, out, kernel, bias).
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
             (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    layers = [(cin, cout, 3, True) for cin, cout in convs]
    layers += [(512, 4096, 7, True), (4096, 4096, 1, True), (4096, classes, 1, True)]
    if name == "fcn32s":
        layers += [(classes, classes, 64, False)]
    if name == "fcn16s":
        layers += [(512, classes, 1, True), (classes, classes, 4, False),
                   (classes, classes, 32, False)]
    if name == "fcn8s":
        layers += [(512, classes, 1, True), (256, classes, 1, True),
                   (classes, classes, 4, False), (classes, classes, 4, False),
                   (classes, classes, 16, False)]
    return sum(cin * cout * k * k + (cout if bias else 0) for cin, cout, k, bias in layers)


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_faithful_parameter_count_equals_caffe(name):
    model = faithful(name)
    assert sum(p.numel() for p in model.parameters()) == _caffe_param_count(name)


def test_faithful_upsamplers_are_frozen_bilinear_deconvolutions_without_bias():
    model = faithful("fcn8s")
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.kernel_size[0], m.stride[0], m.padding[0]) for m in ups] == [
        (4, 2, 0), (4, 2, 0), (16, 8, 0)
    ]
    for m in ups:
        assert m.bias is None and not m.weight.requires_grad and m.groups == 1
        off_diagonal = m.weight.clone()
        off_diagonal[range(21), range(21)] = 0
        assert off_diagonal.abs().sum() == 0
    assert model.backbone.features[0].padding == (100, 100)
    assert all(m.ceil_mode for m in model.modules() if isinstance(m, nn.MaxPool2d))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 5, 3)).shape == (1, 21, 5, 3)


def test_crop_offsets_follow_the_modules_geometry():
    # Moving conv1_1's padding by d moves every score map by d input pixels: the final
    # crop (stride 1) moves by d, nothing is typed in.
    backbone = VGG16Backbone(faithful=True)
    backbone.features[0].padding = (90, 90)
    model = FCN(backbone, 21, 0, caffe_geometry=True)
    assert model.crop_offsets == {"final": 19 - 10}


@pytest.mark.slow  # a full-width VGG16 FCN: seconds
def test_efficient_vgg16_needs_no_crop_and_keeps_maps_small():
    model = build_model("fcn8s", num_classes=21)
    assert model.crop_offsets == {"score_pool4": 0, "score_pool3": 0, "final": 0}
    assert all(v == 0 for v in model.misalignment.values())
    with torch.no_grad():
        fc7 = model.backbone.eval()(torch.randn(1, 3, 64, 96))["fc7"]
    assert fc7.shape[-2:] == (2, 3)  # ceil(64/32), ceil(96/32)


def test_resnet_grid_shift_is_reported():
    model = build_model("fcn32s", backbone="resnet18")
    # ResNet puts layer4 pixel i at input 32 i; the ×32 upsampler assumes 32 i + 15.5.
    assert model.misalignment == {"final": 15.5}
    assert D2LFCN(3).misalignment == {"final": 15.5}


def test_d2l_layers_are_exactly_d2l():
    model = D2LFCN(21)
    t = model.transpose_conv
    assert (t.in_channels, t.out_channels, t.kernel_size, t.stride, t.padding) == (
        21, 21, (64, 64), (32, 32), (16, 16)
    )
    assert t.groups == 1 and t.weight.requires_grad
    assert isinstance(model.final_conv, nn.Conv2d) and model.final_conv.in_channels == 512
    assert list(dict(model.named_children()))[:8] == [str(i) for i in range(8)]
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 64, 96)).shape == (1, 21, 64, 96)


@given(
    factor=st.integers(1, 8),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    mode=st.sampled_from(["bilinear", "deconv"]),
)
def test_bilinear_upsampler_equals_interpolate_in_the_interior(factor, h, w, mode):
    torch.manual_seed(h * 7 + w)
    channels = 3
    x = torch.randn(1, channels, h, w, dtype=torch.float64)
    up = make_upsampler(channels, factor, mode).double()
    ours = up(x)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert ours.shape == ref.shape == (1, channels, factor * h, factor * w)
    # Interior: output pixels o whose source coordinate (o + 0.5)/f - 0.5 lies in
    # [0, size - 1], i.e. both interpolation neighbours exist.
    lo = -(-(factor - 1) // 2)  # ceil((f - 1) / 2)
    hi_h, hi_w = factor * (h - 1) + (factor - 1) // 2, factor * (w - 1) + (factor - 1) // 2
    torch.testing.assert_close(ours[..., lo : hi_h + 1, lo : hi_w + 1],
                               ref[..., lo : hi_h + 1, lo : hi_w + 1])


def test_upsampler_border_differs_from_interpolate():
    # The transposed convolution sees zeros beyond the edge; interpolate clamps.
    x = torch.ones(1, 1, 4, 4)
    ours = make_upsampler(1, 4, "bilinear")(x)
    ref = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.allclose(ref, torch.ones_like(ref))
    assert ours[0, 0, 0, 0] < 1 and torch.allclose(ours[..., 2:14, 2:14], ref[..., 2:14, 2:14])


def test_upsampler_kinds():
    bilinear = make_upsampler(5, 8, "bilinear")
    deconv = make_upsampler(5, 8, "deconv")
    assert bilinear.groups == 5 and not bilinear.weight.requires_grad
    assert deconv.groups == 1 and deconv.weight.requires_grad
    assert bilinear.weight.numel() * 5 == deconv.weight.numel()
    assert sum(p.numel() for p in make_upsampler(5, 8, "interpolate").parameters()) == 0
    with pytest.raises(ValueError, match="interpolate"):
        make_upsampler(5, 8, "nearest")


def test_fcn_bilinear_and_interpolate_agree_inside_the_image():
    torch.manual_seed(0)
    a = build_model("fcn32s", num_classes=4, backbone="resnet18", upsample="bilinear").eval()
    b = build_model("fcn32s", num_classes=4, backbone="resnet18", upsample="interpolate").eval()
    missing, unexpected = b.load_state_dict(a.state_dict(), strict=False)
    assert not missing and unexpected == ["head.upscore_final.weight"]
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    # Score map 3x4 upsampled x32: interior rows/cols 16 .. 32*(n-1)+15.
    torch.testing.assert_close(ya[..., 16:80, 16:112], yb[..., 16:80, 16:112])
    assert not torch.allclose(ya[..., :8, :8], yb[..., :8, :8])


@pytest.mark.parametrize(
    "name, options",
    # full-width VGG16 cases: seconds each, slow
    [pytest.param("fcn8s", {"faithful": True}, marks=pytest.mark.slow),
     pytest.param("fcn16s", {}, marks=pytest.mark.slow), ("fcn8s", {"backbone": "resnet18"}),
     ("fcn_resnet18_d2l", {}), ("fcn_dilated", {}),
     ("fcn_dilated", {"output_stride": 16, "upsample": "interpolate"})],
)
def test_output_pixel_centres_checked_by_an_independent_forward_trace(name, options):
    # fcnkit.analysis traces a real forward pass (crops and slices included), not the
    # module lists the crop computation reads: output pixel 0 must be centred on input
    # pixel 0, or off by exactly the reported misalignment.
    from fcnkit.analysis import receptive_field_of

    model = faithful(name) if options.get("faithful") else build_model(name, num_classes=3,
                                                                         **options)
    record = receptive_field_of(model.eval(), (40, 56))[-1]
    assert not record.whole_input
    shift = model.misalignment["final"]
    assert record.field.center(0) == (-shift, -shift)


def test_dilated_fcn_reports_its_half_stride_shift():
    # The dilated ResNet puts feature pixel i at 8 i, the x8 upsampler at 8 i + 3.5.
    assert build_model("fcn_dilated", num_classes=3).misalignment == {"final": 3.5}
    assert build_model("fcn_dilated", num_classes=3, output_stride=16).misalignment == {
        "final": 7.5}


def test_dilated_fcn_upsample_default_is_the_registry_default():
    import inspect

    from fcnkit.models.fcn import DilatedFCN

    default = inspect.signature(DilatedFCN).parameters["upsample"].default
    model = build_model("fcn_dilated", num_classes=3)
    assert default == "bilinear"
    assert isinstance(model.upsample, nn.ConvTranspose2d) and model.upsample.groups == 3


@pytest.mark.parametrize("backbone", [pytest.param("vgg16", marks=pytest.mark.slow),  # seconds
                                      "resnet18", "mobilenet_v3_large"])
def test_backbone_strides_and_channels_are_what_the_forward_pass_gives(backbone):
    # Declared from the modules by fcnkit.arith; checked against real feature maps: an
    # input of 64*S pixels gives 64 feature pixels at stride S (ceil-mode or "same" padding).
    from fcnkit.models import build_backbone

    net = build_backbone(backbone).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 64, 96))
    for name, tensor in features.items():
        stride = net.strides[name]
        assert tensor.shape[1] == net.channels[name]
        assert tensor.shape[-2:] == (-(-64 // stride), -(-96 // stride))
    assert sorted(net.strides.values()) == [8, 16, 32] and net.deepest in features


def test_backbone_contract_is_declared():
    from fcnkit.models import FCN, Backbone, FCNHead

    class NoPath(Backbone):
        def forward(self, x):
            return {}

    with pytest.raises(TypeError, match="spatial_path"):
        NoPath()
    assert FCN.__module__ == "fcnkit.models.fcn" and FCNHead.__module__ == "fcnkit.models.heads"


def test_grouped_bilinear_runs_in_float32_under_cpu_autocast():
    """Under bf16 autocast the frozen grouped upsampler is the float32 upsampling of its
    (bf16) input, bit for bit; without autocast it is a plain ConvTranspose2d."""
    up = make_upsampler(5, 8)
    x = torch.randn(2, 5, 6, 7).contiguous(memory_format=torch.channels_last)
    plain = F.conv_transpose2d(x, up.weight, stride=8, padding=4, groups=5)
    with torch.no_grad():
        assert torch.equal(up(x), plain)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded_input = x.bfloat16()
            out = up(rounded_input)
    assert out.dtype == torch.float32
    assert torch.equal(out, F.conv_transpose2d(rounded_input.float(), up.weight, stride=8,
                                               padding=4, groups=5))
    assert list(up.state_dict()) == ["weight"]
    # The gradient goes back in the input's dtype, so the bf16 layers below see bf16.
    leaf = torch.randn(1, 5, 3, 3, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        up(leaf).sum().backward()
    assert leaf.grad is not None and leaf.grad.dtype == torch.bfloat16


def test_fcn_logits_are_float32_under_cpu_autocast():
    model = build_model("fcn8s", num_classes=4, backbone="resnet18").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(1, 3, 64, 64)).dtype == torch.float32


@pytest.mark.slow  # inductor compiles the layer: seconds
def test_grouped_bilinear_compiles_under_autocast():
    """torch.compile (train --compile) traces GroupedBilinear's autocast switch: the
    compiled layer also upsamples in float32 under bf16 autocast."""
    up = make_upsampler(3, 4)
    compiled = torch.compile(up)
    x = torch.randn(2, 3, 5, 6, dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eager, traced = up(x), compiled(x)
    assert eager.dtype == traced.dtype == torch.float32
    torch.testing.assert_close(traced, eager, rtol=1e-6, atol=1e-6)
