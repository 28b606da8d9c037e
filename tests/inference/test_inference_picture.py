"""Tiles read from a decoded picture (PictureTiles) give bit for bit the labels of the
same image held as an array, on the tiled and the whole-image paths, and the file path
of predict (which now reads pictures) agrees with predict_image on the array."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fcnkit.inference.picture import PictureTiles
from fcnkit.inference.predict import predict_image, predict_paths


def context_model(num_classes: int = 5, seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, num_classes, 3, padding=1)).eval()


def random_picture(height: int, width: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size,window", [((37, 53), 16), ((64, 200), (24, 40)),
                                         ((20, 21), None), ((9, 70), 32)])
def test_picture_tiles_match_the_array(size, window):
    picture = random_picture(*size)
    array = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)
    model = context_model()
    expected = predict_image(model, array, num_classes=5, window=window, overlap=0.33)
    got = predict_image(model, PictureTiles(picture), num_classes=5, window=window,
                        overlap=0.33)
    assert got.dtype == expected.dtype == torch.uint8
    assert torch.equal(got, expected)


def test_tiles_are_clipped_windows_of_the_picture():
    picture = random_picture(30, 50, seed=1)
    source = PictureTiles(picture)
    assert tuple(source.shape) == (1, 3, 30, 50)
    array = np.asarray(picture)
    tile = source.tile(20, 40, 16, 16)  # clipped at the bottom-right corner
    assert tuple(tile.shape) == (1, 3, 10, 10)
    assert torch.equal(tile[0].permute(1, 2, 0), torch.from_numpy(array[20:30, 40:50].copy()))
    with pytest.raises(ValueError, match="RGB"):
        PictureTiles(picture.convert("L"))


def test_predict_files_tiled_by_the_pixel_budget_match_predict_image(tmp_path):
    picture = random_picture(48, 90, seed=2)
    picture.save(tmp_path / "a.png")
    model = context_model()
    array = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)
    expected = predict_image(model, array, num_classes=5, max_pixels=1000, tile=32)
    predict_paths(model, [tmp_path / "a.png"], tmp_path / "out", palette=None, overlay=True,
                  max_pixels=1000, tile=32, num_classes=5)
    written = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert np.array_equal(written, expected.numpy())
    assert (tmp_path / "out" / "a_overlay.jpg").is_file()


def test_label_fractions_counted_in_chunks_equal_one_bincount(monkeypatch):
    import fcnkit.inference.predict as predict_module

    monkeypatch.setattr(predict_module, "_COUNT_CHUNK", 7)  # many partial chunks
    labels = torch.randint(0, 5, (13, 11), dtype=torch.uint8)
    labels[0, 0] = 9  # beyond the classes: counted under its index
    got = predict_module.label_fractions(labels, list("abcdefghij"), num_classes=5, top=10)
    counts = torch.bincount(labels.flatten().long())
    expected = {"abcdefghij"[i]: round(int(c) / labels.numel(), 4)
                for i, c in enumerate(counts) if c}
    assert got == expected
