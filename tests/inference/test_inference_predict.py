"""predict_paths: files written, labels equal a direct model run, odd images, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from fcnkit.errors import InputError
from fcnkit.inference.predict import collect_images, plan_outputs, predict_paths

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PALETTE = [(0, 0, 0), (200, 30, 30), (30, 200, 30)]


def pointwise_model(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, num_classes, kernel_size=1).eval()


def write_rgb(path: Path, h: int, w: int, seed: int = 0, **save_kwargs) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return array


def expected_labels(model: nn.Module, rgb_uint8: np.ndarray) -> np.ndarray:
    """Oracle: torchvision's ImageNet normalisation, one whole-image pass, argmax."""
    x = torch.from_numpy(np.array(rgb_uint8, copy=True)).permute(2, 0, 1).float() / 255.0
    x = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        return model(x[None])[0].argmax(0).numpy()


def read_png_indices(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "P"
        return np.asarray(im)


# --- input collection and output naming ------------------------------------------------


def test_collect_images_expands_directories(tmp_path: Path) -> None:
    d = tmp_path / "imgs"
    for name in ["b.JPG", "a.png", ".hidden.png", "notes.txt", "c.jpeg"]:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(b"x")
    (d / "sub").mkdir()
    (d / "sub" / "deep.png").write_bytes(b"x")
    single = tmp_path / "odd.dat"
    single.write_bytes(b"x")
    found = collect_images([d, single, d / "a.png"])
    assert [p.name for p in found] == ["a.png", "b.JPG", "c.jpeg", "odd.dat"]


def test_collect_images_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match="empty.*holds no images"):
        collect_images([empty])
    with pytest.raises(InputError, match="missing.png does not exist"):
        collect_images([tmp_path / "missing.png"])
    with pytest.raises(InputError, match="no input images"):
        collect_images([])


def test_plan_outputs_disambiguates_stems(tmp_path: Path) -> None:
    images = [Path("a/x.jpg"), Path("b/x.png"), Path("c/x-2.png"), Path("d/y.png")]
    plans = plan_outputs(images, tmp_path, overlay=True)
    assert [p.mask.name for p in plans] == ["x.png", "x-3.png", "x-2.png", "y.png"]
    assert [p.overlay.name for p in plans] == [
        "x_overlay.jpg", "x-3_overlay.jpg", "x-2_overlay.jpg", "y_overlay.jpg"
    ]
    assert all(p.overlay is None for p in plan_outputs(images, tmp_path, overlay=False))


@given(st.lists(st.sampled_from(["x", "x-2", "x-3", "y", "y-2"]), min_size=1, max_size=12))
def test_plan_outputs_are_unique_and_first_keeps_its_stem(stems: list[str]) -> None:
    images = [Path(f"dir{i}") / f"{s}.png" for i, s in enumerate(stems)]
    names = [p.mask.stem for p in plan_outputs(images, Path("out"))]
    assert len(set(names)) == len(names)
    for stem in set(stems):
        assert names[stems.index(stem)] == stem


# --- predictions ----------------------------------------------------------------------


def test_predict_paths_writes_masks_equal_to_direct_model_run(tmp_path: Path) -> None:
    model = pointwise_model()
    a = write_rgb(tmp_path / "in" / "a.png", 37, 53, seed=1)
    b = write_rgb(tmp_path / "in" / "b.png", 64, 48, seed=2)
    written = predict_paths(model, [tmp_path / "in"], tmp_path / "out", palette=PALETTE)
    out = tmp_path / "out"
    assert written == [out / "a.png", out / "a_overlay.jpg", out / "b.png", out / "b_overlay.jpg"]
    for name, rgb in (("a", a), ("b", b)):
        got = read_png_indices(out / f"{name}.png")
        want = expected_labels(model, rgb)
        assert got.shape == rgb.shape[:2]
        assert len(np.unique(want)) > 1  # a real segmentation, not a constant
        np.testing.assert_array_equal(got, want)
        with Image.open(out / f"{name}.png") as im:
            assert im.getpalette()[:9] == [v for c in PALETTE for v in c]
        with Image.open(out / f"{name}_overlay.jpg") as im:
            assert im.format == "JPEG" and im.size == (rgb.shape[1], rgb.shape[0])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)


def test_large_images_are_tiled_and_pointwise_result_is_unchanged(tmp_path: Path) -> None:
    model = pointwise_model()
    rgb = write_rgb(tmp_path / "big.png", 70, 90, seed=3)
    shapes: list[tuple[int, int]] = []
    model.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[-2:])))
    predict_paths(model, [tmp_path / "big.png"], tmp_path / "out", palette=PALETTE,
                  overlay=False, max_pixels=40 * 40, tile=32, num_classes=3)
    assert shapes and max(h * w for h, w in shapes) <= 32 * 32  # memory bounded by the tile
    np.testing.assert_array_equal(read_png_indices(tmp_path / "out" / "big.png"),
                                  expected_labels(model, rgb))


def test_grayscale_rgba_and_exif_rotated_inputs(tmp_path: Path) -> None:
    model = pointwise_model()
    gray = np.random.default_rng(4).integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = np.random.default_rng(5).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    raw = np.random.default_rng(6).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(raw).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    predict_paths(model, [tmp_path], tmp_path / "out", palette=PALETTE, overlay=True)
    out = tmp_path / "out"
    np.testing.assert_array_equal(
        read_png_indices(out / "gray.png"), expected_labels(model, np.stack([gray] * 3, -1))
    )
    np.testing.assert_array_equal(
        read_png_indices(out / "rgba.png"), expected_labels(model, rgba[..., :3])
    )
    # The displayed (EXIF-corrected) image is 40 high and 30 wide.
    with Image.open(tmp_path / "rot.jpg") as im:
        upright = np.asarray(im.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
    assert upright.shape[:2] == (40, 30)
    np.testing.assert_array_equal(
        read_png_indices(out / "rot.png"), expected_labels(model, upright)
    )
    with Image.open(out / "rot_overlay.jpg") as im:
        assert im.size == (30, 40)


def test_duplicate_stems_from_two_directories(tmp_path: Path) -> None:
    model = pointwise_model()
    first = write_rgb(tmp_path / "a" / "x.png", 20, 24, seed=7)
    second = write_rgb(tmp_path / "b" / "x.jpg", 26, 22, seed=8, quality=100)
    predict_paths(model, [tmp_path / "a", tmp_path / "b"], tmp_path / "out", palette=PALETTE,
                  overlay=False)
    assert read_png_indices(tmp_path / "out" / "x.png").shape == first.shape[:2]
    assert read_png_indices(tmp_path / "out" / "x-2.png").shape == second.shape[:2]


def write_corrupt(path: Path) -> None:
    good = tmp = path.with_suffix(".tmp.png")
    write_rgb(tmp, 20, 20)
    data = good.read_bytes()
    tmp.unlink()
    path.write_bytes(data[: len(data) // 3])  # truncated PNG


def test_corrupt_image_raises_without_skip_bad_and_is_skipped_with_it(tmp_path: Path) -> None:
    model = pointwise_model()
    write_rgb(tmp_path / "in" / "a.png", 20, 20)
    write_corrupt(tmp_path / "in" / "b.png")
    write_rgb(tmp_path / "in" / "c.png", 20, 20)
    with pytest.raises(InputError, match="b.png"):
        predict_paths(model, [tmp_path / "in"], tmp_path / "out1", palette=PALETTE)
    assert not (tmp_path / "out1" / "b.png").exists()
    assert not [p for p in (tmp_path / "out1").iterdir() if ".tmp" in p.name]

    bad: list[Path] = []
    written = predict_paths(model, [tmp_path / "in"], tmp_path / "out2", palette=PALETTE,
                            overlay=False, skip_bad=True, on_bad=lambda p, e: bad.append(p))
    assert [p.name for p in bad] == ["b.png"]
    assert [p.name for p in written] == ["a.png", "c.png"]

    with pytest.raises(InputError, match="none of the 1 input images"):
        predict_paths(model, [tmp_path / "in" / "b.png"], tmp_path / "out3", palette=PALETTE,
                      skip_bad=True)


def test_output_directory_that_is_a_file(tmp_path: Path) -> None:
    write_rgb(tmp_path / "a.png", 20, 20)
    target = tmp_path / "out"
    target.write_text("I am a file")
    with pytest.raises(InputError, match="is a file"):
        predict_paths(pointwise_model(), [tmp_path / "a.png"], target, palette=PALETTE)
    with pytest.raises(InputError, match="is a file"):
        predict_paths(pointwise_model(), [tmp_path / "a.png"], target / "sub", palette=PALETTE)
    assert target.read_text() == "I am a file"


def test_predict_prints_no_pytorch_warning_about_read_only_images(fresh_check) -> None:
    # PyTorch warns once per process, so the check runs in a fresh interpreter
    # (tests/fresh_interpreter.py: predict_paths of a 1x1 conv on a.png, with overlay).
    report, stderr = fresh_check("check_predict_warnings")
    assert "not writable" not in stderr
    assert "a.png" in report["written"]
