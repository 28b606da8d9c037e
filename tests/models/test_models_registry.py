"""Every registered model: output shape at odd sizes, backward, state_dict round trip,
option errors, and that building with the default weights never touches the network."""

from __future__ import annotations

import urllib.request

import pytest
import torch
import torchvision

from fcnkit.errors import InputError
from fcnkit.models import build_model, list_models

# One configuration per registry entry and backbone family; small enough for 2 CPU cores.
CONFIGS = [
    ("fcn32s", {"backbone": "mobilenet_v3_large"}),
    ("fcn16s", {"backbone": "resnet18"}),
    ("fcn8s", {}),
    ("fcn8s", {"backbone": "resnet18", "upsample": "deconv"}),
    ("fcn8s", {"backbone": "mobilenet_v3_large", "upsample": "interpolate"}),
    ("fcn8s", {"backbone": "resnet50", "upsample": "interpolate"}),
    ("fcn8s", {"faithful": True}),
    ("fcn_resnet18_d2l", {}),
    ("fcn_dilated", {}),
    ("fcn_dilated", {"output_stride": 16, "dilations": [1, 2], "upsample": "deconv"}),
    ("context_module", {"front": 4, "dilations": "2,2,4,4"}),
]
SIZES = [(1, 1), (7, 13), (33, 47)]
NUM_CLASSES = 3

_cache: dict[int, torch.nn.Module] = {}


def _model(index: int) -> torch.nn.Module:
    if index not in _cache:
        torch.manual_seed(index)
        name, options = CONFIGS[index]
        _cache[index] = build_model(name, num_classes=NUM_CLASSES, **options)
    return _cache[index]


def _id(config) -> str:
    name, options = config
    return name + "".join(f"-{k}={v}" for k, v in options.items())


# VGG16 models (134 M parameters) and ResNet-50 take seconds per forward/backward on a CPU:
# slow.
INDICES = [
    pytest.param(i, id=_id(c), marks=[pytest.mark.slow] if
                 c[1].get("backbone") == "resnet50" or
                 c[1].get("backbone", "vgg16") == "vgg16" and c[0].startswith("fcn") and
                 c[0] not in ("fcn_resnet18_d2l", "fcn_dilated") else [])
    for i, c in enumerate(CONFIGS)
]


def test_every_registered_name_is_covered():
    assert sorted({name for name, _ in CONFIGS}) == sorted(list_models())


@pytest.mark.parametrize("index", INDICES)
def test_output_shape_any_size(index):
    model = _model(index).eval()
    with torch.no_grad():
        for h, w in SIZES:
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, NUM_CLASSES, h, w)
            assert torch.isfinite(out).all()
    assert isinstance(model.output_stride, int)


#: A backward pass costs seconds on 2 CPU cores: the fast tier keeps one configuration per
#: backbone family and head kind; these (like the slow models) run in the slow tier.
_SLOW_BACKWARD = {"fcn32s-backbone=mobilenet_v3_large", "fcn16s-backbone=resnet18", "fcn_dilated"}
BACKWARD_INDICES = [pytest.param(*p.values, id=p.id,
                                 marks=[*p.marks, pytest.mark.slow] if p.id in _SLOW_BACKWARD
                                 else p.marks) for p in INDICES]


@pytest.mark.parametrize("index", BACKWARD_INDICES)
def test_backward_reaches_backbone_and_head(index):
    model = _model(index).train()
    x = torch.randn(2, 3, 32, 40)
    target = torch.randint(0, NUM_CLASSES, (2, 32, 40))
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    first_name, first = trainable[0]
    last_name, last = trainable[-1]
    assert first.grad is not None and first.grad.abs().sum() > 0, first_name
    assert last.grad is not None and last.grad.abs().sum() > 0, last_name
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("index", INDICES)
def test_state_dict_round_trip_through_weights_file(index, tmp_path):
    name, options = CONFIGS[index]
    model = _model(index).eval()
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1234)
    clone = build_model(name, num_classes=NUM_CLASSES, weights=str(path), **options).eval()
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), clone.state_dict().items()):
        assert k1 == k2
        assert torch.equal(v1, v2), k1
    x = torch.randn(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


def test_weights_file_of_another_model_is_a_one_line_input_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(_model(1).state_dict(), path)
    with pytest.raises(InputError, match="does not fit") as info:
        build_model("fcn8s", num_classes=NUM_CLASSES, backbone="mobilenet_v3_large",
                    weights=str(path))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="no such file"):
        build_model("fcn32s", backbone="resnet18", weights=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("fcn9s", {}, "fcn32s, fcn16s, fcn8s"),
        ("fcn8s", {"colour": 1}, "valid options"),
        ("fcn8s", {"backbone": "vgg19"}, "resnet18"),
        ("fcn8s", {"upsample": "nearest"}, "interpolate"),
        ("fcn8s", {"backbone": "resnet18", "faithful": True}, "vgg16"),
        ("fcn8s", {"faithful": True, "upsample": "interpolate"}, "bilinear"),
        ("fcn_resnet18_d2l", {"upsample": "bilinear"}, "fcn32s"),
        ("fcn_dilated", {"output_stride": 32}, "8, 16"),
        ("fcn_dilated", {"dilations": [1, 2, 3]}, "4 dilated residual blocks"),
        ("fcn_dilated", {"backbone": "vgg16"}, "resnet18"),
    ],
)
def test_bad_options_raise_value_error_listing_valid_ones(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, **options)


@pytest.mark.slow  # builds every registered model at full width: seconds
def test_weights_none_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", refuse)
    for name in list_models():
        build_model(name, num_classes=2)
    build_model("fcn8s", num_classes=2, backbone="mobilenet_v3_large")


def test_backbone_weights_name_not_cached_says_how_to_supply_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InputError, match="never downloads") as info:
        build_model("fcn32s", backbone="resnet18", backbone_weights="IMAGENET1K_V1")
    assert "resnet18-" in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(InputError, match="neither a file"):
        build_model("fcn32s", backbone="resnet18", backbone_weights="IMAGENET9K")


def test_backbone_weights_from_cache_and_from_file(monkeypatch, tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / url.rsplit("/", 1)[-1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model("fcn8s", backbone="resnet18", backbone_weights="IMAGENET1K_V1")
    assert torch.equal(model.backbone.layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    d2l = build_model("fcn_resnet18_d2l", backbone_weights=str(cache / url.rsplit("/", 1)[-1]))
    assert torch.equal(d2l[7][1].conv2.weight, reference["layer4.1.conv2.weight"])
    assert torch.equal(d2l[1].running_var, reference["bn1.running_var"])
    dilated = build_model("fcn_dilated", backbone="resnet18",
                          backbone_weights=str(cache / url.rsplit("/", 1)[-1]))
    assert torch.equal(dilated.backbone.conv1.weight, reference["conv1.weight"])
    wrong = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), wrong)
    with pytest.raises(InputError, match="does not fit resnet18"):
        build_model("fcn8s", backbone="resnet18", backbone_weights=str(wrong))
