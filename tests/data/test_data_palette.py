"""VOC palette, colourised masks, overlays and palette PNG files."""

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit.data.palette import colorize, overlay, save_mask_png, voc_palette


def test_voc_palette_matches_published_colours():
    palette = voc_palette()
    assert len(palette) == 256
    # Colours of the VOC devkit colour map (VOClabelcolormap.m).
    assert palette[0] == (0, 0, 0)
    assert palette[1] == (128, 0, 0)  # aeroplane
    assert palette[2] == (0, 128, 0)  # bicycle
    assert palette[15] == (192, 128, 128)  # person
    assert palette[20] == (0, 64, 128)  # tvmonitor
    assert palette[255] == (224, 224, 192)  # void
    assert len(set(palette)) == 256
    assert voc_palette(21) == palette[:21]
    with pytest.raises(ValueError):
        voc_palette(0)


def test_save_mask_png_round_trip(tmp_path):
    mask = np.array([[0, 1, 2], [255, 20, 0]], dtype=np.uint8)
    path = tmp_path / "sub" / "m.png"
    save_mask_png(path, torch.from_numpy(mask).long(), voc_palette(21))
    with Image.open(path) as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), mask)
        rgb = np.asarray(image.convert("RGB"))
    assert tuple(rgb[0, 1]) == (128, 0, 0)
    assert tuple(rgb[1, 0]) == (224, 224, 192)
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]  # no temp files left


def test_colorize_custom_palette_and_bad_values():
    image = colorize(np.array([[0, 1]]), [(1, 2, 3), (4, 5, 6)])
    assert np.asarray(image.convert("RGB")).tolist() == [[[1, 2, 3], [4, 5, 6]]]
    with pytest.raises(ValueError, match="0..255"):
        colorize(np.array([[0, 300]]))
    with pytest.raises(ValueError, match="2-D"):
        colorize(np.zeros((2, 2, 2), dtype=np.uint8))


def test_overlay_blends_classes_only():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1, 255], [1, 0, 1]])
    out = np.asarray(overlay(image, mask, [(0, 0, 0), (200, 0, 0)], alpha=0.5))
    assert out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [100, 100, 100]  # background left alone
    assert out[0, 2].tolist() == [100, 100, 100]  # void left alone
    assert out[0, 1].tolist() == [150, 50, 50]
    all_classes = np.asarray(overlay(image, mask, [(0, 0, 0), (200, 0, 0)], background=None))
    assert all_classes[0, 0].tolist() == [50, 50, 50]
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, np.zeros((3, 3), dtype=np.uint8))


def test_blend_into_strip_by_strip_equals_the_per_pixel_formula(monkeypatch):
    from fcnkit.data import palette as palette_module

    monkeypatch.setattr(palette_module, "BLEND_ROWS", 3)  # 10 rows: strips of 3, 3, 3, 1
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (10, 7, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (10, 7)).astype(np.uint8)
    mask[0, :3] = 255
    colours = [(0, 0, 0), (200, 10, 0), (5, 250, 60), (90, 90, 255)]
    got = image.copy()
    palette_module.blend_into(got, mask, colours, alpha=0.3)
    for y in range(10):
        for x in range(7):
            label = int(mask[y, x])
            if label in (0, 255):
                want = image[y, x].tolist()
            else:
                # float32 arithmetic, rounded half to even, as documented for overlay
                want = [int(np.clip(np.rint(np.float32(0.7) * np.float32(p)
                                            + np.float32(0.3) * np.float32(c)), 0, 255))
                        for p, c in zip(image[y, x], colours[label])]
            assert got[y, x].tolist() == want, (y, x)
    assert np.array_equal(np.asarray(overlay(image, mask, colours, alpha=0.3)), got)
