"""Labels from low-resolution scores (candidate pruning) equal ``model(x).argmax(1)`` bit for bit.

Oracles: the model's own full-resolution logits and their argmax (PyTorch), compared
exactly, on real models, on constructed near-ties, and on random score maps through
PyTorch's own upsamplers.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch import nn

from fcnkit.arith import upsampling_recipe
from fcnkit.arith.kernels import bilinear_kernel
from fcnkit.inference import lowres, native
from fcnkit.inference.labels import predict_labels, whole_image_labels
from fcnkit.inference.lowres import (
    DENSE_WORK,
    PRUNE_MIN_SCORES,
    convex_upsampler,
    labels_by_pruning,
    labels_from_scores,
)
from fcnkit.models import build_model
from fcnkit.models.heads import Interpolate, make_upsampler


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def labels_stage(request, monkeypatch) -> str:
    """Every test runs through both implementations of the labels stage: the compiled one
    (fcnkit.inference.native, when a C compiler exists) and the torch operations. The
    compiled one calibrates its emulated rounding at the first undecided cell (in use, at
    the second sighting of a geometry), so the cells the blend cannot decide go through
    the emulation here and through the model's upsampler (the exact path) in the torch
    stage."""
    if request.param == "torch":
        monkeypatch.setattr(native, "load", lambda: None)
    elif native.load() is None:
        pytest.skip(f"compiled labels stage unavailable: {native.status()}")
    else:
        monkeypatch.setattr(lowres, "_CALIBRATE_AFTER", 0)
        monkeypatch.setattr(lowres, "_EMULATIONS", {})
        monkeypatch.setattr(lowres, "_SIGHTINGS", {})
    return request.param


# Two cases in the fast tier; the others take seconds each (slow tier).
BILINEAR_MODELS = [
    pytest.param("fcn8s", {"backbone": "resnet18"}, marks=pytest.mark.slow),
    ("fcn8s", {"backbone": "resnet18", "upsample": "interpolate"}),
    pytest.param("fcn16s", {"backbone": "mobilenet_v3_large"}, marks=pytest.mark.slow),
    ("fcn32s", {"backbone": "vgg16", "width": 0.125}),
    pytest.param("fcn_dilated", {"backbone": "resnet18", "output_stride": 8,
                                 "upsample": "interpolate"}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "options"), BILINEAR_MODELS)
def test_pruned_labels_equal_the_argmax_of_the_full_logits(name, options) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, **options).eval()
    assert convex_upsampler(model.final_upsampler)
    x = torch.randn(2, 3, 45, 71)
    stats: dict[str, int] = {}
    with torch.no_grad():
        want = model(x).argmax(1)
        assert torch.equal(labels_by_pruning(model, x, stats=stats), want)
        assert torch.equal(whole_image_labels(model, x), want)
        assert torch.equal(predict_labels(model, x, num_classes=5), want)
    assert 0 < stats["cells"] and 0 <= stats["doubtful"] <= stats["cells"]


def test_the_faithful_caffe_geometry_is_pruned_exactly() -> None:
    torch.manual_seed(1)
    model = build_model("fcn8s", num_classes=4, backbone="vgg16", faithful=True,
                        width=0.125).eval()
    if not hasattr(model, "final_upsampler"):
        pytest.skip("the faithful model has no coarse-score protocol")
    x = torch.randn(1, 3, 37, 50)
    with torch.no_grad():
        want = model(x).argmax(1)
        got = labels_by_pruning(model, x) if convex_upsampler(model.final_upsampler) \
            else whole_image_labels(model, x)
    assert torch.equal(got, want)


def test_a_learned_deconvolution_is_not_pruned() -> None:
    torch.manual_seed(0)
    model = build_model("fcn32s", num_classes=3, backbone="resnet18", upsample="deconv")
    # Initialised bilinear it is still convex (the check reads values, not the mode) ...
    assert convex_upsampler(model.final_upsampler)
    with torch.no_grad():  # ... until training moves its weights
        model.final_upsampler.weight.add_(0.01 * torch.randn_like(model.final_upsampler.weight))
    assert not convex_upsampler(model.final_upsampler)
    with pytest.raises(ValueError):
        labels_by_pruning(model, torch.randn(1, 3, 32, 32))


def test_convexity_check_rejects_what_breaks_the_bound() -> None:
    up = make_upsampler(3, 8, "bilinear")
    assert convex_upsampler(up)
    with torch.no_grad():
        up.weight[1, 0, 3, 3] += 0.01  # class 1's kernel differs from class 0's
    assert not convex_upsampler(up)
    full = make_upsampler(3, 8, "bilinear", caffe_padding=True)
    assert convex_upsampler(full)
    with torch.no_grad():
        full.weight[0, 1, 0, 0] = 0.1  # an off-diagonal tap mixes classes
    assert not convex_upsampler(full)
    negative = make_upsampler(2, 2, "bilinear")
    with torch.no_grad():
        negative.weight.neg_()
    assert not convex_upsampler(negative)
    assert convex_upsampler(Interpolate(4))
    # The answer is remembered per module, but not past a change of its weight, even one
    # written through .data (which leaves the version counter as it was).
    again = make_upsampler(3, 8, "bilinear")
    assert convex_upsampler(again)
    version = again.weight._version
    again.weight.data.neg_()
    assert again.weight._version == version and not convex_upsampler(again)


class ScoreModel(nn.Module):
    """A 'model' whose coarse scores are given: the coarse-score protocol around a fixed
    score map and a real upsampler (crop offset 0)."""

    def __init__(self, scores: torch.Tensor, upsampler: nn.Module) -> None:
        super().__init__()
        self.scores = scores
        self.final_upsampler = upsampler
        self.final_offset = (0, 0)

    def coarse_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_upsampler(self.scores)
        return out[:, :, : x.shape[-2], : x.shape[-1]]


def _upsampler(kind: str, classes: int, factor: int) -> nn.Module:
    if kind == "interpolate":
        return Interpolate(factor)
    recipe = upsampling_recipe(factor)
    layer = nn.ConvTranspose2d(classes, classes, recipe.kernel, stride=recipe.stride,
                               padding=recipe.padding, groups=classes, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(bilinear_kernel(recipe.kernel)).float()
                           .expand_as(layer.weight))
    return layer


@given(
    kind=st.sampled_from(["interpolate", "deconv"]),
    factor=st.sampled_from([2, 4, 8]),
    classes=st.integers(2, 6),
    h=st.integers(1, 9), w=st.integers(1, 9),
    levels=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
# Found by this test: an exact tie the exact path once broke by upsampling a strip in
# another memory layout (and a strip's F.interpolate can round 1 ulp off the whole map's).
@example(kind="interpolate", factor=8, classes=2, h=8, w=9, levels=2, seed=0)
def test_random_and_tied_score_maps(kind, factor, classes, h, w, levels, seed) -> None:
    """Scores drawn from a few levels make exact ties and near-ties common; a random
    perturbation of ±1 ulp-scale makes the rest near ties too."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (1, classes, h, w), generator=gen).float()
    scores += 1e-6 * torch.randn(scores.shape, generator=gen) * (torch.rand(
        scores.shape, generator=gen) < 0.3)
    model = ScoreModel(scores, _upsampler(kind, classes, factor))
    x = torch.zeros(1, 3, h * factor, w * factor)
    with torch.no_grad():
        want = model(x).argmax(1)
        got = labels_by_pruning(model, x)
    assert torch.equal(got, want)


def test_uniform_regions_need_no_per_pixel_work() -> None:
    scores = torch.zeros(1, 3, 12, 12)
    scores[:, 1, :, :6] = 5.0
    scores[:, 2, :, 6:] = 5.0  # two regions meeting at one vertical edge
    model = ScoreModel(scores, _upsampler("interpolate", 3, 8))
    stats: dict[str, int] = {}
    labels = labels_by_pruning(model, torch.zeros(1, 3, 96, 96), stats=stats)
    assert torch.equal(labels, model(torch.zeros(1, 3, 96, 96)).argmax(1))
    # 13 × 13 cells (bands of 8 rows offset by 4, plus the border halves); only the one
    # column of cells straddling the edge is in doubt.
    assert stats["cells"] == 13 * 13
    assert stats["doubtful"] == 13


def _region_scores(classes: int, h: int, w: int, regions: int, sigma: float,
                   seed: int) -> torch.Tensor:
    """Voronoi regions of random classes (score 4 for the region's class, 0 otherwise)
    plus N(0, σ²) noise: the structure of a trained network's coarse scores."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.rand(regions, 2, generator=gen) * torch.tensor([h, w])
    grid = torch.stack(torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5,
                                      indexing="ij"), -1)
    region = torch.cdist(grid.view(-1, 2), centres).argmin(1).view(h, w)
    label = torch.randint(0, classes, (regions,), generator=gen)[region]
    scores = 4.0 * torch.nn.functional.one_hot(label, classes).permute(2, 0, 1).float()[None]
    return scores + sigma * torch.randn(scores.shape, generator=gen)


@given(
    kind=st.sampled_from(["interpolate", "deconv"]),
    factor=st.sampled_from([2, 3, 4, 8]),
    classes=st.integers(2, 9),
    h=st.integers(1, 12), w=st.integers(1, 12),
    regions=st.integers(1, 5),
    sigma=st.sampled_from([0.0, 1e-7, 1e-3, 0.1, 1.0, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_region_maps_with_any_noise(kind, factor, classes, h, w, regions, sigma, seed) -> None:
    """Piecewise-constant maps (exact ties between absent classes, the case the corner
    test was added for) through near-ties to noise: always the argmax of the logits."""
    scores = _region_scores(classes, h, w, regions, sigma, seed)
    model = ScoreModel(scores, _upsampler(kind, classes, factor))
    x = torch.zeros(1, 3, h * factor, w * factor)
    with torch.no_grad():
        want = model(x).argmax(1)
        assert torch.equal(labels_by_pruning(model, x), want)
        assert torch.equal(whole_image_labels(model, x), want)


def test_two_regions_leave_two_candidates_per_boundary_cell() -> None:
    """Where two regions meet, every class's window minimum is the absent level, so the
    floor test alone keeps all classes; the corner test (s_a + s_b > 2 s_c at all four
    corners) leaves the two regions' classes."""
    scores = torch.zeros(1, 6, 8, 8)
    scores[:, 1, :, :4] = 4.0
    scores[:, 4, :, 4:] = 4.0
    scores += 0.01 * torch.randn(scores.shape, generator=torch.Generator().manual_seed(0))
    model = ScoreModel(scores, _upsampler("interpolate", 6, 8))
    stats: dict[str, int] = {}
    x = torch.zeros(1, 3, 64, 64)
    assert torch.equal(labels_by_pruning(model, x, stats=stats), model(x).argmax(1))
    assert stats["doubtful"] == 9  # the column of cells on the edge (8 bands + 1)
    assert stats["pairs"] == 2 * stats["doubtful"]


def test_the_blend_decides_nearly_every_doubtful_cell() -> None:
    """On a random network's noisy scores most cells are in doubt; the candidates' blend
    labels them, and only cells with a pixel within float32 rounding of a tie are left to
    the model's own upsampler."""
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=21, backbone="resnet18", width=0.25).eval()
    x = torch.randn(1, 3, 160, 240)
    stats: dict[str, int] = {}
    with torch.no_grad():
        assert torch.equal(labels_by_pruning(model, x, stats=stats), model(x).argmax(1))
    assert stats["doubtful"] > 100
    assert stats["exact"] <= 0.02 * stats["doubtful"]


def test_noisy_maps_are_declined_and_still_labelled_exactly() -> None:
    scores = torch.randn(1, 21, 20, 30, generator=torch.Generator().manual_seed(3))
    model = ScoreModel(scores, _upsampler("deconv", 21, 8))
    x = torch.zeros(1, 3, 160, 240)
    assert labels_from_scores(model, scores, (160, 240), max_work=DENSE_WORK) is None
    with torch.no_grad():
        assert torch.equal(whole_image_labels(model, x), model(x).argmax(1))


def test_nan_and_infinite_scores_take_the_exact_path() -> None:
    scores = _region_scores(5, 10, 10, 3, 0.1, seed=4)
    scores[0, 2, 4, 4] = float("nan")
    scores[0, 1, 7, 2] = float("inf")
    scores[0, 3, 1, 8] = float("-inf")
    model = ScoreModel(scores, _upsampler("interpolate", 5, 4))
    x = torch.zeros(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(labels_by_pruning(model, x), model(x).argmax(1))


def test_low_precision_scores_are_refused_by_the_pruning() -> None:
    scores = torch.randn(1, 3, 4, 4).bfloat16()
    model = ScoreModel(scores, _upsampler("interpolate", 3, 2))
    with pytest.raises(ValueError, match="float32"):
        labels_from_scores(model, scores, (8, 8))


def test_whole_image_labels_prunes_only_large_calm_maps(monkeypatch, labels_stage) -> None:
    """The default path: pruning for maps whose doubtful work is small (and, with the
    torch labels stage, of ≥ PRUNE_MIN_SCORES class scores); the whole map's tail
    otherwise. Same labels either way."""
    import fcnkit.inference.labels as labels_module

    calls: list[bool] = []
    real = labels_module.labels_from_scores

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(labels_module, "labels_from_scores", spy)
    upsampler = _upsampler("deconv", 21, 8)
    for scores, used in [
        (_region_scores(21, 40, 60, 6, 0.05, seed=1), [True]),  # 3.2 M scores, calm
        (torch.randn(1, 21, 40, 60, generator=torch.Generator().manual_seed(2)), [False]),
        # 0.2 M scores: not tried by torch operations, pruned by the compiled stage
        (_region_scores(21, 10, 15, 3, 0.05, seed=1), [True] if labels_stage == "compiled"
         else []),
    ]:
        calls.clear()
        model = ScoreModel(scores, upsampler)
        x = torch.zeros(1, 3, scores.shape[-2] * 8, scores.shape[-1] * 8)
        assert scores.numel() * 64 >= PRUNE_MIN_SCORES or not used or labels_stage == "compiled"
        with torch.no_grad():
            assert torch.equal(whole_image_labels(model, x), model(x).argmax(1))
        assert calls == used


@pytest.mark.parametrize("upsampler_kind", ["grouped_bilinear", "plain_conv_transpose"])
def test_bf16_scores_under_autocast(monkeypatch, upsampler_kind: str) -> None:
    """Under a CPU bf16 autocast the coarse scores are bf16. A GroupedBilinear upsamples
    them in float32, so they are pruned as float32 and the labels equal the model's own
    argmax bit for bit; a plain ConvTranspose2d upsamples in bf16, and its scores are not
    pruned (the whole map's tail, same labels)."""
    import fcnkit.inference.labels as labels_module

    calls: list[torch.dtype] = []
    real = labels_module.labels_from_scores

    def spy(model, scores, *args, **kwargs):
        calls.append(scores.dtype)
        return real(model, scores, *args, **kwargs)

    monkeypatch.setattr(labels_module, "labels_from_scores", spy)
    scores = _region_scores(21, 40, 60, 6, 0.3, seed=7).bfloat16()
    upsampler = (make_upsampler(21, 8) if upsampler_kind == "grouped_bilinear"
                 else _upsampler("deconv", 21, 8))
    model = ScoreModel(scores, upsampler)
    x = torch.zeros(1, 3, 317, 470)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        got = whole_image_labels(model, x)
    assert torch.equal(got, logits.argmax(1))
    if upsampler_kind == "grouped_bilinear":
        assert logits.dtype == torch.float32 and calls == [torch.float32]
    else:
        assert logits.dtype == torch.bfloat16 and calls == []


def test_bf16_backend_labels_equal_its_logits_argmax() -> None:
    """TorchBackend in bf16 (what --precision auto picks on a CPU where bf16 pays): its
    labels, by pruning, equal the argmax of its own logits."""
    from fcnkit.inference.backends import TorchBackend

    torch.manual_seed(3)
    model = build_model("fcn8s", num_classes=6, backbone="resnet18", width=0.25).eval()
    backend = TorchBackend(model, precision="bf16", channels_last=True)
    x = torch.randn(2, 3, 93, 130)
    with torch.no_grad():
        assert torch.equal(backend.predict_labels(x), backend(x).argmax(1))


def test_a_model_whose_maps_are_declined_pauses_the_pruning(monkeypatch) -> None:
    import fcnkit.inference.labels as labels_module

    tried: list[int] = []
    real = labels_module.labels_from_scores

    def spy(*args, **kwargs):
        tried.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(labels_module, "labels_from_scores", spy)
    scores = torch.randn(1, 21, 40, 60, generator=torch.Generator().manual_seed(5))
    model = ScoreModel(scores, _upsampler("deconv", 21, 8))
    x = torch.zeros(1, 3, 320, 480)
    want = model(x).argmax(1)
    calls = labels_module.PRUNE_DECLINES_BEFORE_PAUSE + labels_module.PRUNE_PAUSE + 1
    with torch.no_grad():
        for _ in range(calls):
            assert torch.equal(whole_image_labels(model, x), want)
    # declined 3 times, paused for 32 maps, then tried again
    assert len(tried) == labels_module.PRUNE_DECLINES_BEFORE_PAUSE + 1


@given(
    factor=st.sampled_from([2, 4, 8, 16]),
    classes=st.sampled_from([2, 5, 21]),
    h=st.integers(2, 20), w=st.integers(2, 24),
    channels_last=st.booleans(),
    corner=st.tuples(st.integers(0, 19), st.integers(1, 20), st.integers(0, 23),
                     st.integers(1, 24)),
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 6),
)
def test_a_grouped_deconvolution_of_a_patch_is_the_whole_maps_bit_for_bit(
        factor, classes, h, w, channels_last, corner, seed, batch) -> None:
    """The assumption the exact path's patches rest on (``_exact_patches``), checked against
    PyTorch's whole-map output: every output pixel fed only by rows and columns of the
    patch has the same float32 value in both, edges included, in either layout, and the
    patch run in a batch with other patches of its shape gives its own output bit for bit."""
    gen = torch.Generator().manual_seed(seed)
    scores = 20 * torch.randn(1, classes, h, w, generator=gen)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    scores = scores.contiguous(memory_format=layout)
    upsampler = _upsampler("deconv", classes, factor)
    r0, r1 = min(corner[0], h - 1), min(h, max(corner[0] + 1, corner[1]))
    c0, c1 = min(corner[2], w - 1), min(w, max(corner[2] + 1, corner[3]))
    stride, padding, kernel = factor, upsampler.padding[0], upsampler.kernel_size[0]
    with torch.no_grad():
        whole = upsampler(scores)
        part = upsampler(scores[:, :, r0:r1, c0:c1].contiguous(memory_format=layout))
        others = 20 * torch.randn(batch - 1, classes, r1 - r0, c1 - c0, generator=gen)
        batched = upsampler(torch.cat([others[: batch // 2], scores[:, :, r0:r1, c0:c1],
                                       others[batch // 2 :]]).contiguous(memory_format=layout))
        assert torch.equal(batched[batch // 2], part[0])

    def inside(size: int, lo: int, hi: int, limit: int) -> list[int]:
        # output o is fed by input i iff 0 <= o + padding - i·stride < kernel
        out = []
        for o in range(size):
            first = max(0, -((kernel - 1 - o - padding) // stride))
            last = min(limit - 1, (o + padding) // stride)
            local = o - stride * lo
            if lo <= first <= last <= hi - 1 and 0 <= local < (part.shape[2] if limit == h
                                                                else part.shape[3]):
                out.append(o)
        return out

    rows, cols = inside(whole.shape[2], r0, r1, h), inside(whole.shape[3], c0, c1, w)
    if rows and cols:
        row_index, col_index = torch.tensor(rows), torch.tensor(cols)
        a = whole[:, :, row_index][:, :, :, col_index]
        b = part[:, :, row_index - stride * r0][:, :, :, col_index - stride * c0]
        assert torch.equal(a, b)


def test_near_ties_of_a_grouped_deconvolution_are_settled_on_patches(monkeypatch,
                                                                     labels_stage) -> None:
    """A pixel whose two best classes lie within float32 rounding of each other is
    computed by the model's own upsampler on a patch around its cell, not on the whole
    map — or, in the compiled stage, by the model's rounding emulated (calibrated against
    the upsampler on a probe) — and still equals ``model(x).argmax(1)``."""
    used: list[bool] = []
    real = lowres._exact_patches

    def spy(*args, **kwargs):
        used.append(real(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(lowres, "_exact_patches", spy)
    scores = torch.zeros(1, 3, 8, 8)
    scores[:, 0] = 3.0  # class 0 everywhere but in a 2×2 block of coarse pixels, where
    scores[:, :, 3:5, 3:5] = 0.0
    scores[:, 1, 3:5, 3:5] = 5.0  # classes 1 and 2 tie exactly (left column)
    scores[:, 2, 3:5, 3:5] = 5.0 + torch.tensor([0.0, 1e-6])  # and nearly (right column)
    emulated = labels_stage == "compiled"
    for kind, patched in [("deconv", not emulated), ("interpolate", False)]:
        used.clear()
        model = ScoreModel(scores, _upsampler(kind, 3, 8))
        x = torch.zeros(1, 3, 48, 48)
        stats: dict[str, int] = {}
        with torch.no_grad():
            assert torch.equal(labels_by_pruning(model, x, stats=stats), model(x).argmax(1))
        assert stats["exact"] > 0 and used == ([patched] if not emulated or kind != "deconv"
                                               else [])
        assert stats.get("emulated", 0) == (stats["exact"] if emulated and kind == "deconv"
                                            else 0)


def test_cells_whose_corners_agree_are_sure_without_the_class_tests() -> None:
    """Stage 1 of the 2×2 pruning: a cell whose four corners share their best class, each
    leading by more than the margin, is that class's; a corner with a rival within the
    margin leaves the cell to the floor and corner tests."""
    from fcnkit.inference.lowres import _grid, _prune_by_corners

    scores = torch.zeros(1, 4, 4, 4)
    scores[:, 2] = 1.0
    scores[:, 3, 0, 0] = 1.0 - 1e-7  # a rival within the margin at one corner
    grid = _grid(32, 32, 0, 0, 4, 4, 16, 8, 4)  # ×8 bilinear, 4×4 coarse scores
    rows = grid.rows
    label, doubtful, survivors, scale = _prune_by_corners(scores, grid, 1e-4)
    assert label.shape == (1, len(rows), len(rows))
    # The cells whose window holds coarse pixel (0, 0): windows 0 and 1 of each axis.
    assert sorted(doubtful.tolist()) == [0, 1, len(rows), len(rows) + 1]
    assert survivors.tolist() == [[False, False, True, True]] * 4
    assert torch.equal(scale, torch.ones(4))
    sure = torch.ones(len(rows) ** 2, dtype=torch.bool)
    sure[doubtful] = False
    assert bool((label.view(-1)[sure] == 2).all())


def test_a_changed_upsampler_weight_is_factored_again() -> None:
    """The kernel's factors are cached per module and weight version: a weight changed in
    place (here to a kernel that no longer factors into rows × columns) is seen, and the
    labels stay ``model(x).argmax(1)``'s."""
    scores = _region_scores(4, 8, 8, 3, 0.5, seed=5)
    upsampler = _upsampler("deconv", 4, 4)
    model = ScoreModel(scores, upsampler)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(labels_by_pruning(model, x), model(x).argmax(1))
        upsampler.weight[:, :, 0, 0] += 0.05  # still convex, no longer separable
        assert torch.equal(labels_by_pruning(model, x), model(x).argmax(1))


def test_more_than_a_thousand_classes_are_labelled_exactly() -> None:
    """The blend names each pixel's one close candidate by a sum of base + class; with
    C > 1024 classes the base grows with C, and labels stay the argmax's."""
    classes = 1100
    scores = torch.zeros(1, classes, 5, 5)
    scores[:, 1050, :, :3] = 4.0
    scores[:, 1099, :, 3:] = 4.0
    scores[:, 7, 2, :] = 3.9
    scores += 0.01 * torch.randn(scores.shape, generator=torch.Generator().manual_seed(6))
    model = ScoreModel(scores, _upsampler("deconv", classes, 4))
    x = torch.zeros(1, 3, 20, 20)
    stats: dict[str, int] = {}
    with torch.no_grad():
        assert torch.equal(labels_by_pruning(model, x, stats=stats), model(x).argmax(1))
    assert stats["doubtful"] > 0 and stats["exact"] == 0  # the blend named every pixel
