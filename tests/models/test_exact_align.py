"""The alignment control: fractional shifts (against hand values and grid_sample) and
exact_align on FCN-16s/8s."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcnkit.errors import InputError
from fcnkit.models import build_model
from fcnkit.models.heads import fractional_shift


def test_fractional_shift_hand_values():
    x = torch.tensor([0.0, 2.0, 4.0, 6.0]).reshape(1, 1, 1, 4)
    assert fractional_shift(x, (0, 0.5)).flatten().tolist() == [1.0, 3.0, 5.0, 6.0]
    assert fractional_shift(x, (0, -1.5)).flatten().tolist() == [0.0, 0.0, 1.0, 3.0]
    assert fractional_shift(x, (0, 2)).flatten().tolist() == [4.0, 6.0, 6.0, 6.0]


@pytest.mark.parametrize("shift", [(0.25, -1.75), (1.9375, 1.9375), (-0.5, 3.0)])
def test_fractional_shift_matches_grid_sample(shift):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9)
    h, w = x.shape[-2:]
    # grid_sample with align_corners=True: -1 and 1 are the centres of the end pixels;
    # border padding clamps, as fractional_shift does.
    ys = (torch.arange(h) + shift[0]) / (h - 1) * 2 - 1
    xs = (torch.arange(w) + shift[1]) / (w - 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None].expand(2, h, w, 2)
    want = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    torch.testing.assert_close(fractional_shift(x, shift), want, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # seconds
def test_resnet_control_removes_the_recorded_misalignment():
    plain = build_model("fcn8s", num_classes=3, backbone="resnet18", width=0.25)
    torch.manual_seed(0)
    aligned = build_model("fcn8s", num_classes=3, backbone="resnet18", width=0.25,
                          exact_align=True)
    assert aligned.aligned_shifts == plain.misalignment
    assert any(v != 0 for v in plain.misalignment.values())
    assert all(v == 0 for v in aligned.misalignment.values())
    aligned.eval()
    x = torch.randn(1, 3, 64, 80)
    plain.load_state_dict(aligned.state_dict())
    plain.eval()
    assert aligned(x).shape == (1, 3, 64, 80)
    assert not torch.allclose(aligned(x), plain(x))
    # the control keeps the coarse-score protocol the label inference relies on
    from fcnkit.models.heads import crop_to

    full = crop_to(aligned.final_upsampler(aligned.coarse_scores(x)), aligned.final_offset,
                   x.shape[-2:])
    torch.testing.assert_close(full, aligned(x))


def test_vgg_control_is_the_plain_network():
    # the efficient VGG16 is aligned by integer crops: nothing is left to shift
    torch.manual_seed(0)
    plain = build_model("fcn16s", num_classes=2, backbone="vgg16", width=0.125).eval()
    aligned = build_model("fcn16s", num_classes=2, backbone="vgg16", width=0.125,
                          exact_align=True).eval()
    aligned.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 40, 48)
    torch.testing.assert_close(aligned(x), plain(x))


def test_exact_align_must_be_a_bool():
    with pytest.raises(InputError, match="exact_align"):
        build_model("fcn8s", num_classes=2, backbone="resnet18", exact_align="yes")


@pytest.mark.slow  # two gradient passes at 256², seconds
def test_exact_align_centres_the_gradient_on_the_output_pixel():
    """Independent oracle: on a linearised copy (uniform positive weights, ReLU and
    BatchNorm as identities, max pools as average pools) the input gradient of one output
    pixel is symmetric about each path's receptive-field centre, so its centre of mass is
    where the output pixel looks. Aligned, that is the pixel itself; with ResNet's integer
    crops it is about 13 px up and left (a mix of the paths' 15.5, 8 and 12 px)."""
    from fcnkit.reproduce.receptive_fields import linearised

    def centre(model: torch.nn.Module) -> tuple[float, float]:
        twin = linearised(model)
        x = torch.ones(1, 3, 256, 256, requires_grad=True)
        twin(x)[0, 0, 128, 128].backward()
        g = x.grad.abs().sum((0, 1)).double()
        pos = torch.arange(256, dtype=torch.float64)
        return (float((g.sum(1) * pos).sum() / g.sum()) - 128,
                float((g.sum(0) * pos).sum() / g.sum()) - 128)

    plain = build_model("fcn8s", num_classes=2, backbone="resnet18", width=0.25).eval()
    aligned = build_model("fcn8s", num_classes=2, backbone="resnet18", width=0.25,
                          exact_align=True).eval()
    assert all(abs(c) < 0.5 for c in centre(aligned))
    assert all(c < -10 for c in centre(plain))
