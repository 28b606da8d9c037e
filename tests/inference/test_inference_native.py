"""The compiled labels stage (fcnkit.inference.native): used where it applies, the same
labels as ``model(x).argmax(1)`` (every test of test_inference_lowres.py runs through it
too), and a clean fall-back to the torch operations when it cannot be built.

Oracle: the model's own full-resolution logits and their argmax (PyTorch), compared exactly.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from fcnkit.inference import lowres, native
from fcnkit.inference.labels import whole_image_labels
from fcnkit.models import build_model

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """A cache directory of the test's own, and the library looked up again before and
    after the test (it is cached per process)."""
    monkeypatch.setenv(native.NATIVE_CACHE_ENV, str(tmp_path / "native"))
    native._library.cache_clear()
    yield tmp_path / "native"
    native._library.cache_clear()


def _region_model_and_scores(seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """An FCN-8s whose coarse scores are replaced by calm region maps with noise: a few
    classes, each strongest on its own blob, as a trained network's scores are."""
    torch.manual_seed(seed)
    model = build_model("fcn8s", num_classes=6, backbone="resnet18",
                        upsample="interpolate").eval()
    centres = torch.rand(6, 2) * torch.tensor([24.0, 32.0])
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    distance = ((ys - centres[:, :1, None]) ** 2 + (xs - centres[:, 1:, None]) ** 2).sqrt()
    scores = (-distance / 4 + 0.05 * torch.randn(6, 24, 32))[None]
    return model, scores.contiguous(memory_format=torch.channels_last)


def _full_labels(model: torch.nn.Module, scores: torch.Tensor, size) -> torch.Tensor:
    top, left = (int(v) for v in model.final_offset)
    logits = model.final_upsampler(scores)
    return logits[:, :, top : top + size[0], left : left + size[1]].argmax(1)


@needs_compiler
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_compiled_stage_labels_region_maps_exactly(monkeypatch, seed) -> None:
    model, scores = _region_model_and_scores(seed)
    calls = []
    real = native.labels_2x2

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(native, "labels_2x2", spy)
    compiled: dict[str, int] = {}
    with torch.no_grad():
        labels = lowres.labels_from_scores(model, scores, (189, 253), stats=compiled)
        assert labels is not None and calls == [1]
        assert torch.equal(labels, _full_labels(model, scores, (189, 253)))
        # The torch operations make the same decisions on maps like these.
        monkeypatch.setattr(native, "load", lambda: None)
        eager: dict[str, int] = {}
        assert torch.equal(lowres.labels_from_scores(model, scores, (189, 253), stats=eager),
                           labels)
    assert calls == [1]
    assert compiled == eager and 0 < compiled["doubtful"] < compiled["cells"]


@needs_compiler
def test_the_compiled_stage_labels_a_batch_and_declines_noise() -> None:
    torch.manual_seed(3)
    model = build_model("fcn8s", num_classes=5, backbone="resnet18").eval()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        scores = model.coarse_scores(x)
        want = model(x).argmax(1)
        assert torch.equal(lowres.labels_from_scores(model, scores, x.shape[-2:]), want)
        noise = torch.randn_like(scores)
        assert lowres.labels_from_scores(model, noise, x.shape[-2:], max_work=0.0) is None
        assert torch.equal(whole_image_labels(model, x), want)


@needs_compiler
def test_a_build_lands_whole_in_the_cache(fresh_library) -> None:
    assert native.load() is not None, native.status()
    assert native.status().startswith("compiled")
    built = list(fresh_library.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary left behind
    native._library.cache_clear()
    assert native.load() is not None  # the cached library, loaded again
    assert list(fresh_library.iterdir()) == built


@pytest.mark.parametrize(("env", "value", "reason"), [
    ("FCNKIT_NATIVE", "0", "off"),
    ("CC", "no-such-compiler-fcnkit", "no C compiler"),
    ("CC", "false", "build failed"),
])
def test_without_the_compiled_stage_the_torch_one_labels_exactly(
        monkeypatch, fresh_library, env, value, reason) -> None:
    monkeypatch.setenv(env, value)
    assert native.load() is None
    assert native.status().startswith(reason) and "torch operations" in native.status()
    model, scores = _region_model_and_scores(4)
    with torch.no_grad():
        labels = lowres.labels_from_scores(model, scores, (189, 253))
        assert labels is not None
        assert torch.equal(labels, _full_labels(model, scores, (189, 253)))


@needs_compiler
def test_the_compiled_stage_takes_channels_first_scores_too() -> None:
    model, scores = _region_model_and_scores(5)
    scores = scores.contiguous()  # NCHW, as a model run without channels_last makes them
    with torch.no_grad():
        want = F.interpolate(scores, scale_factor=8, mode="bilinear",
                             align_corners=False)
        top, left = (int(v) for v in model.final_offset)
        want = want[:, :, top : top + 189, left : left + 253].argmax(1)
        assert torch.equal(lowres.labels_from_scores(model, scores, (189, 253)), want)


@needs_compiler
def test_more_undecided_cells_than_named_take_the_whole_map(monkeypatch) -> None:
    """Past ``UNDECIDED_ROOM`` undecided cells the C function only counts them; the exact
    path then reruns the model's upsampler on every row, and the labels stay exact."""
    scores = torch.zeros(1, 3, 8, 8)
    scores[:, 0] = 3.0
    scores[:, :, 3:5, 3:5] = 0.0
    scores[:, 1, 3:5, 3:5] = 5.0  # classes 1 and 2 tie exactly: undecided cells
    scores[:, 2, 3:5, 3:5] = 5.0
    model = build_model("fcn8s", num_classes=3, backbone="resnet18").eval()
    size = (48, 48)
    with torch.no_grad():
        want = _full_labels(model, scores, size)
        patched: list[int] = []
        real = lowres._exact_patches
        monkeypatch.setattr(lowres, "_exact_patches",
                            lambda *a: patched.append(1) or real(*a))
        for room, named in [(native.UNDECIDED_ROOM, True), (0, False)]:
            monkeypatch.setattr(native, "UNDECIDED_ROOM", room)
            patched.clear()
            stats: dict[str, int] = {}
            assert torch.equal(lowres.labels_from_scores(model, scores, size, stats=stats),
                               want)
            assert stats["exact"] > 0 and bool(patched) == named

