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



class _RoundedOnce(torch.nn.ConvTranspose2d):
    """The same transposed convolution, each score rounded once from float64: a float32
    rounding no order of four float32 products reproduces everywhere."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return F.conv_transpose2d(x.double(), self.weight.double(), None, self.stride,
                                  self.padding, groups=self.groups).float()


def _near_tie_scores(seed: int, classes: int, shape: tuple[int, int]) -> torch.Tensor:
    """Noise scores with a block whose class 3 lies 0–2 float32 ulps from class 1 (exact
    ties included): cells the float64 blend cannot decide."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(1, classes, *shape, generator=generator)
    scores[:, 1, 2:6, 3:7] += 3.0  # class 1 leads there...
    steps = torch.randint(0, 3, (4, 4), generator=generator)
    tied = scores[0, 1, 2:6, 3:7].clone()
    for _ in range(2):  # ...and class 3 follows it within 0, 1 or 2 ulps
        tied = torch.where(steps > _, torch.nextafter(tied, torch.tensor(-float("inf"))), tied)
    scores[0, 3, 2:6, 3:7] = tied
    return scores.contiguous(memory_format=torch.channels_last)


@needs_compiler
@pytest.mark.parametrize("seed", range(6))
def test_the_emulated_rounding_labels_near_ties_as_the_model_does(monkeypatch, seed) -> None:
    """Undecided cells (ties within 2 ulps) labelled from the model's rounding emulated in
    C, once calibrated: the same labels as the model's own logits, and no upsampler call
    on patches."""
    monkeypatch.setattr(lowres, "_EMULATIONS", {})
    monkeypatch.setattr(lowres, "_SIGHTINGS", {})
    patched: list[int] = []
    real = lowres._exact_patches
    monkeypatch.setattr(lowres, "_exact_patches", lambda *a: patched.append(1) or real(*a))
    torch.manual_seed(seed)
    model = build_model("fcn8s", num_classes=5, backbone="resnet18").eval()
    scores = _near_tie_scores(seed, 5, (9, 11))
    size = (8 * 7, 8 * 9)
    with torch.no_grad():
        want = _full_labels(model, scores, size)
        for sighting in range(lowres._CALIBRATE_AFTER + 1):
            stats: dict[str, int] = {}
            assert torch.equal(lowres.labels_from_scores(model, scores, size, stats=stats),
                               want)
            assert stats["exact"] > 0
            first = sighting < lowres._CALIBRATE_AFTER  # the exact path, uncalibrated
            assert stats.get("emulated", 0) == (0 if first else stats["exact"])
    assert len(patched) == lowres._CALIBRATE_AFTER
    (emulation,) = (found for _, found in lowres._EMULATIONS.values())
    assert emulation is not None and 0 <= emulation.variant < native.VARIANTS


@needs_compiler
def test_an_upsampler_that_rounds_otherwise_is_not_emulated(monkeypatch) -> None:
    """The calibration finds no variant for an upsampler that rounds another way; its
    undecided cells go to the exact path, and its labels are still its own argmax's."""
    monkeypatch.setattr(lowres, "_CALIBRATE_AFTER", 0)
    monkeypatch.setattr(lowres, "_EMULATIONS", {})
    torch.manual_seed(0)
    model = build_model("fcn8s", num_classes=5, backbone="resnet18").eval()
    plain = model.head.upscore_final
    odd = _RoundedOnce(5, 5, plain.kernel_size, stride=plain.stride, padding=plain.padding,
                       groups=5, bias=False)
    odd.load_state_dict(plain.state_dict())
    model.head.upscore_final = odd
    scores = _near_tie_scores(7, 5, (9, 11))
    size = (8 * 7, 8 * 9)
    with torch.no_grad():
        stats: dict[str, int] = {}
        labels = lowres.labels_from_scores(model, scores, size, stats=stats)
        assert torch.equal(labels, _full_labels(model, scores, size))
    assert stats["exact"] > 0 and "emulated" not in stats
    assert [found for _, found in lowres._EMULATIONS.values()] == [None]


@pytest.fixture
def bf16_convolutions():
    """oneDNN allowed to run float32 convolutions in bf16, for the test only."""
    before = torch.backends.mkldnn.conv.fp32_precision
    torch.backends.mkldnn.conv.fp32_precision = "bf16"
    yield
    torch.backends.mkldnn.conv.fp32_precision = before


def test_reduced_precision_convolutions_take_the_whole_map(request) -> None:
    """With oneDNN allowed to run float32 convolutions in bf16, the margins (float32
    rounding) no longer bound a transposed convolution's scores: no pruning."""
    model, _ = _region_model_and_scores(0)
    deconv = build_model("fcn8s", num_classes=5, backbone="resnet18").eval()
    scores = _near_tie_scores(1, 5, (9, 11))
    size = (8 * 7, 8 * 9)
    with torch.no_grad():
        assert lowres.labels_from_scores(deconv, scores, size) is not None
        request.getfixturevalue("bf16_convolutions")
        assert lowres.labels_from_scores(deconv, scores, size) is None
        x = torch.randn(1, 3, *size)
        assert torch.equal(whole_image_labels(deconv, x), deconv(x).argmax(1))
        # F.interpolate is not a convolution: still pruned
        assert lowres.labels_from_scores(model, _region_model_and_scores(0)[1],
                                         (189, 253)) is not None


@needs_compiler
def test_scores_too_small_for_the_emulation_take_the_exact_path(monkeypatch) -> None:
    """Near-ties among scores of about 1e-20 (below 2⁻⁶⁰, where a CPU that flushes
    subnormals would round otherwise): the emulation refuses those cells, the model's
    upsampler labels them, and the labels are still its argmax's."""
    monkeypatch.setattr(lowres, "_CALIBRATE_AFTER", 0)
    monkeypatch.setattr(lowres, "_EMULATIONS", {})
    torch.manual_seed(2)
    model = build_model("fcn8s", num_classes=5, backbone="resnet18").eval()
    scores = _near_tie_scores(3, 5, (9, 11))
    size = (8 * 7, 8 * 9)
    patched: list[int] = []
    real = lowres._exact_patches
    monkeypatch.setattr(lowres, "_exact_patches", lambda *a: patched.append(1) or real(*a))
    with torch.no_grad():
        for scale, emulated in [(1.0, True), (1e-20, False)]:
            patched.clear()
            small = (scores * scale).contiguous(memory_format=torch.channels_last)
            stats: dict[str, int] = {}
            labels = lowres.labels_from_scores(model, small, size, stats=stats)
            assert torch.equal(labels, _full_labels(model, small, size))
            assert stats["exact"] > 0
            assert (stats.get("emulated", 0) == stats["exact"]) == emulated
            assert bool(patched) == (not emulated)


@needs_compiler
@pytest.mark.slow
def test_the_builds_benchmark_compares_two_sources(tmp_path) -> None:
    """benchmarks/bench_labels_builds.py on two copies of the shipped _labels.c: it checks
    that both label alike, prints the ratio; a source that is not one exits 2 in a line."""
    import subprocess
    import sys
    from importlib import resources
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_labels_builds.py"
    source = resources.files("fcnkit.inference").joinpath("_labels.c").read_bytes()
    (tmp_path / "a.c").write_bytes(source)
    (tmp_path / "b.c").write_bytes(source)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "a.c"),
                           str(tmp_path / "b.c"), "--rounds", "2"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "new / old" in done.stdout
    (tmp_path / "c.c").write_text("int x;\n")
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "c.c"),
                          str(tmp_path / "b.c")], capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode == 2 and "not a _labels.c" in bad.stderr.splitlines()[-1]
