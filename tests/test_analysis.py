"""receptive_field_of vs an empirical measurement: the input support of the gradient of
one output unit (max-pool swapped for avg-pool, positive weights so nothing cancels)."""

from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fcnkit.analysis import receptive_field_of
from fcnkit.errors import InputError


class Residual(nn.Module):
    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def _positive(model):
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def _avg_twin(model):
    """The same network with MaxPool2d replaced by AvgPool2d of identical geometry."""
    for name, child in model.named_children():
        if isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                              ceil_mode=child.ceil_mode))
        else:
            _avg_twin(child)
    return model


def _support_box(model, size, index):
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = model.double()(x)
    y[0, 0, index[0], index[1]].backward()
    nz = x.grad[0, 0].nonzero()
    if nz.numel() == 0:
        return None
    return [(int(nz[:, d].min()), int(nz[:, d].max())) for d in range(2)]


block_st = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 2), st.integers(0, 2),
              st.integers(1, 2)),
    st.tuples(st.just("pool"), st.integers(2, 3), st.integers(1, 2), st.integers(0, 1),
              st.just(1)),
    st.tuples(st.just("res"), st.sampled_from([1, 3, 5]), st.integers(1, 2), st.just(0),
              st.integers(1, 3)),
)


def _build(blocks):
    layers = []
    for kind, k, s, p, d in blocks:
        if kind == "conv":
            layers += [nn.Conv2d(1, 1, k, s, p, dilation=d), nn.ReLU()]
        elif kind == "pool":
            layers.append(nn.MaxPool2d(k, s, min(p, k // 2)))
        else:
            pad = d * (k - 1) // 2
            body = nn.Sequential(nn.Conv2d(1, 1, k, s, pad, dilation=d), nn.ReLU(),
                                 nn.Conv2d(1, 1, 3, 1, 1))
            shortcut = nn.Conv2d(1, 1, 1, s) if s > 1 else None
            layers.append(Residual(body, shortcut))
    return _positive(nn.Sequential(*layers))


@settings(max_examples=30)
@given(st.lists(block_st, min_size=1, max_size=5))
def test_matches_gradient_support_on_random_nets(blocks):
    size = 64
    model = _build(blocks)
    try:
        records = receptive_field_of(model, size)
    except InputError:  # output would be empty
        assume(False)
    out = records[-1]
    assert out.name == "output" and not out.whole_input
    h, w = out.shape[2:]
    index = (h // 2, w // 2)
    box = _support_box(_avg_twin(model), size, index)
    assume(box is not None)
    bounds = out.field.bounds(index)
    for (lo, hi), (first, last) in zip(box, bounds):
        if first >= 0 and last <= size - 1:
            assert (lo, hi) == (first, last)
        else:  # clipped by the image border: still inside the bounds
            assert first <= lo and hi <= last


def test_residual_union_and_records():
    # main branch 5x5 (RF 5), shortcut 1x1: union is the larger; merge recorded as "add"
    model = _positive(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1),
                                    Residual(nn.Conv2d(1, 1, 5, padding=2))))
    records = receptive_field_of(model, 32)
    names = [r.name for r in records]
    assert names == ["0", "1.body", "1.add", "output"]
    assert records[-1].size == (7, 7) and records[-1].padding == (3, 3)
    assert records[1].kind == "Conv2d"


def test_vgg16_features_match_the_literature():
    import torchvision

    # VGG-16's convolutional body (torchvision's own builder, without the classifier)
    body = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    records = receptive_field_of(body, 64)
    assert (records[-1].size, records[-1].stride, records[-1].padding) == (
        (212, 212), (32, 32), (90, 90))


def test_resnet18_body_downsampling_merges():
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    body = nn.Sequential(*list(net.children())[:-2])
    out = receptive_field_of(body, 64)[-1]
    assert out.stride == (32, 32) and out.size == (435, 435) and out.padding == (217, 217)


def test_global_pooling_is_whole_input_and_se_merge_keeps_local_field():
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y * torch.sigmoid(F.adaptive_avg_pool2d(y, 1))

    records = receptive_field_of(SE(), (20, 30))
    out = records[-1]
    assert out.whole_input and out.size == (20, 30) and "global" in out.note
    assert out.field.size == (3, 3)  # the local (convolutional) path
    pooled = receptive_field_of(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)), 16)
    assert pooled[-1].whole_input and pooled[-1].field is None and pooled[-1].stride is None
    assert pooled[-1].as_dict()["size"] == [16, 16]
    flat = receptive_field_of(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten()), 16)
    assert flat[-1].whole_input and "flatten" in flat[-1].note


def test_adaptive_pooling_with_even_bins_is_exact():
    out = receptive_field_of(nn.AdaptiveMaxPool2d((4, 2)), (16, 16), in_channels=1)[-1]
    assert out.size == (4, 8) and out.stride == (4, 8) and not out.whole_input


@pytest.mark.parametrize(
    "mode, align, factor",
    [("nearest", None, 2), ("nearest", None, 3), ("bilinear", False, 2),
     ("bilinear", False, 3), ("bilinear", True, 2), ("nearest-exact", None, 2),
     ("bicubic", False, 2), ("bilinear", False, 0.5), ("nearest", None, 1.5)],
)
def test_interpolate_bounds_contain_gradient_support(mode, align, factor):
    class Up(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=align)

    size = 12
    out = receptive_field_of(Up(), size, in_channels=1)[-1]
    h = out.shape[2]
    for j in range(h):
        x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        Up()(x)[0, 0, j, 0].backward()
        rows = x.grad[0, 0, :, 0].nonzero().flatten().tolist()
        first, last = out.field.bounds((j, 0))[0]
        assert first <= rows[0] and rows[-1] <= last, (j, rows, first, last)


def test_crop_pad_and_transposed_shift_centres():
    class CropPad(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(1, 1, 4, stride=2)

        def forward(self, x):
            y = self.up(x)[:, :, 1:, 3:]
            return F.pad(y, (2, 0, 0, 0))

    records = receptive_field_of(CropPad(), 8, in_channels=1)
    out = records[-1]
    # ConvTranspose k4 s2 p0: centre(j) = (j - 3/2)/2; crop drops 1 / 3 pixels; pad adds 2
    assert out.center((0, 0)) == ((1 - Fraction(3, 2)) / 2, (3 - 2 - Fraction(3, 2)) / 2)
    assert [r.kind for r in records] == ["ConvTranspose2d", "getitem", "pad", "CropPad"]


def test_fcnkit_model_output_support_inside_bounds():
    models = pytest.importorskip("fcnkit.models")
    model = models.build_model("fcn_resnet18_d2l", num_classes=3)
    out = receptive_field_of(model, 32)[-1]
    assert out.shape[2:] == (32, 32) and out.stride == (1, 1) and not out.whole_input
    # d2l's ConvTranspose2d(k=64, s=32, p=16) on a stride-32 map whose pixel 0 is centred
    # on input pixel 0: output pixel j is centred on input j - 15.5 (a half-tile shift).
    assert out.center(0) == (Fraction(-31, 2),) * 2
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.constant_(m.weight, 1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    model = _avg_twin(model).eval()
    x = torch.ones(1, 3, 32, 32, requires_grad=True)
    model(x)[0, 0, 20, 20].backward()
    nz = x.grad[0].abs().sum(0).nonzero()
    for d in range(2):
        first, last = out.field.bounds((20, 20))[d]
        assert first <= int(nz[:, d].min()) and int(nz[:, d].max()) <= last


def test_dict_outputs_and_bad_input():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3)
            self.b = nn.Conv2d(1, 1, 5)

        def forward(self, x):
            return {"out": self.a(x), "aux": self.b(x)}

    records = receptive_field_of(Two(), 16)
    assert [r.name for r in records[-2:]] == ["output[aux]", "output[out]"]
    assert records[-1].size == (3, 3)
    with pytest.raises(InputError, match="input_size"):
        receptive_field_of(Two(), 0)
    with pytest.raises(InputError, match="no output"):
        receptive_field_of(_Const(), 8)
    with pytest.raises(InputError, match="cannot run"):
        receptive_field_of(nn.Conv2d(1, 1, 9), 4)


class _Const(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        return torch.zeros(1, 1, 2, 2)


def test_crop_keeping_the_start_is_not_a_layout_change():
    class Trim(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return self.conv(x)[..., 0:5, :7] + self.conv(x)[:, :, 1:6, 1:8]

    out = receptive_field_of(Trim(), 10)[-1]
    assert not out.whole_input and out.shape[2:] == (5, 7)
    # union of windows centred on j and j + 1: size 4, first pixel at j - 1
    assert out.size == (4, 4) and out.bounds((0, 0)) == ((-1, 2), (-1, 2))
    channel = receptive_field_of(nn.Sequential(nn.Conv2d(1, 2, 3), _Channels()), 10)[-1]
    assert not channel.whole_input and channel.size == (3, 3)


class _Channels(nn.Module):
    def forward(self, x):
        return x[:, :1]


@pytest.mark.slow
def test_faithful_fcn8s_is_aligned_and_local():
    models = pytest.importorskip("fcnkit.models")
    model = models.build_model("fcn8s", num_classes=2, faithful=True)
    records = receptive_field_of(model, 40)
    out = records[-1]
    # Caffe's crops (5, 9, 31) put output pixel j on input pixel j; nothing is global.
    assert out.center(0) == (0, 0) and out.stride == (1, 1)
    assert not any(r.whole_input for r in records)
    assert out.shape[2:] == (40, 40)


def test_channels_last_permutes_are_followed():
    class ChannelsLastBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.norm = nn.LayerNorm(4)
            self.mix = nn.Linear(4, 4)
            self.down = nn.Conv2d(4, 4, 2, stride=2)

        def forward(self, x):
            y = self.conv(x).permute(0, 2, 3, 1)  # N, H, W, C
            y = self.mix(self.norm(y))[:, 1:, 1:, :]  # crop in channels-last layout
            return self.down(y.permute(0, 3, 1, 2).contiguous())

    out = receptive_field_of(ChannelsLastBlock(), 16)[-1]
    assert not out.whole_input and out.size == (4, 4) and out.stride == (2, 2)
    # conv centre j, crop by 1, then a 2x2 stride-2 conv: centre 2j + 1/2 + 1
    assert out.center((0, 0)) == (Fraction(3, 2), Fraction(3, 2))
    flat = receptive_field_of(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(2)), 16)[-1]
    assert flat.whole_input


def test_a_float64_model_is_traced_in_its_own_dtype():
    # Before: the probe input was float32 and a .double() model failed with "cannot run on
    # a (1, 3, 32, 32) input". The field is a property of the geometry, not the dtype.
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 2, 3, dilation=2))
    as_float = receptive_field_of(net, 32)[-1].field
    as_double = receptive_field_of(net.double(), 32)[-1].field
    assert as_double == as_float and as_float.size == (12, 12)  # 3, then +1 x1, then +4 x2
