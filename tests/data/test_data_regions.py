"""The regions task: labels against brute-force Voronoi cells, per-pixel colour near
chance while window means tell the class, determinism, layout and the CLI."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from fcnkit.cli import main
from fcnkit.data import open_dataset
from fcnkit.data.regions import REGIONS_CLASSES
from fcnkit.data.synthetic import generate_synthetic_dataset, read_geometry

SIZE = (64, 80)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    out = tmp_path_factory.mktemp("regions")
    generate_synthetic_dataset(out, train=10, val=4, seed=2, size=SIZE, workers=1,
                               task="regions")
    return out


def test_labels_are_the_nearest_site_by_brute_force(regions):
    for split, count in (("train", 10), ("val", 4)):
        for i in range(count):
            sample_id = f"{split}_{i:05d}"
            geometry = read_geometry(regions, sample_id)
            sites, classes = geometry["sites"], geometry["classes"]
            assert len(sites) == len(classes) >= 3
            with Image.open(regions / "SegmentationClass" / f"{sample_id}.png") as png:
                mask = np.asarray(png)
            compared = 0
            for py in range(SIZE[0]):
                for px in range(SIZE[1]):
                    d = sorted((math.hypot(py - sy, px - sx), k)
                               for k, (sy, sx) in enumerate(sites))
                    if d[1][0] - d[0][0] < 1e-6:  # equidistant: either cell is right
                        continue
                    assert mask[py, px] == classes[d[0][1]], (sample_id, py, px)
                    compared += 1
            assert compared > 0.99 * SIZE[0] * SIZE[1]


def _chroma(rgb):
    """RGB minus its grey level (R + G + B) / 3: the image's brightness varies, not the cue."""
    return rgb - rgb.mean(axis=-1, keepdims=True)


def _pixels(dataset):
    """Per image: every pixel's chroma (N, 3) and label (N,)."""
    out = []
    for i in range(len(dataset)):
        image, mask = dataset[i]
        out.append((_chroma(np.asarray(image).reshape(3, -1).T.astype(np.float64)),
                    np.asarray(mask).reshape(-1)))
    return out


def _nearest_mean_accuracy(train, val, window_means):
    """Nearest-class-mean classifier (means from train pixels) scored on val features."""
    x = np.concatenate([p for p, _ in train])
    y = np.concatenate([m for _, m in train])
    means = np.stack([x[y == k].mean(axis=0) for k in range(len(REGIONS_CLASSES))])
    right = total = 0
    for features, labels in window_means(val):
        guess = np.argmin(((features[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
        right += int((guess == labels).sum())
        total += labels.size
    return right / total


def _boxes(dataset, side):
    """Mean chroma of side × side boxes lying inside one cell, with their label."""
    out = []
    for i in range(len(dataset)):
        image, mask = dataset[i]
        image, mask = np.asarray(image, dtype=np.float64), np.asarray(mask)
        feats, labels = [], []
        for y0 in range(0, mask.shape[0] - side + 1, 4):
            for x0 in range(0, mask.shape[1] - side + 1, 4):
                box = mask[y0:y0 + side, x0:x0 + side]
                if (box == box[0, 0]).all():
                    feats.append(image[:, y0:y0 + side, x0:x0 + side].mean(axis=(1, 2)))
                    labels.append(box[0, 0])
        out.append((_chroma(np.array(feats)), np.array(labels)))
    return out


def test_single_pixel_colour_is_near_chance_but_window_means_tell_the_class(regions):
    train = open_dataset(f"synth:{regions}", "train")
    val = open_dataset(f"synth:{regions}", "val")
    chance = 1 / len(REGIONS_CLASSES)
    single = _nearest_mean_accuracy(_pixels(train), val, _pixels)
    assert single < chance + 0.12
    # Oracle that the cue is there: the same classifier on 15 × 15 box means.
    boxes = _nearest_mean_accuracy(_pixels(train), val, lambda ds: _boxes(ds, 15))
    assert boxes > 0.8


def test_no_void_every_class_and_layout(regions):
    names = [line.split()[0] for line in (regions / "classes.txt").read_text().splitlines()]
    assert names == REGIONS_CLASSES
    manifest = json.loads((regions / "synthetic.json").read_text())
    assert manifest["task"] == "regions" and "parts" not in manifest
    assert not (regions / "SegmentationPart").exists()
    seen = set()
    for image, mask in open_dataset(f"synth:{regions}", "train"):
        assert tuple(image.shape) == (3, *SIZE)
        seen |= set(np.unique(np.asarray(mask)).tolist())
    assert seen == set(range(len(REGIONS_CLASSES)))


def test_same_bytes_for_any_worker_count_and_seed_matters(regions, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "a", train=10, val=4, seed=2, size=SIZE,
                                       workers=2, task="regions")
    assert _tree(again) == _tree(regions)
    other = generate_synthetic_dataset(tmp_path / "b", train=1, val=0, seed=3, size=SIZE,
                                       workers=1, task="regions")
    assert _tree(other)["JPEGImages/train_00000.jpg"] != \
        _tree(regions)["JPEGImages/train_00000.jpg"]


def test_cli_task_regions(tmp_path, capsys):
    assert main(["data", "synth", "--task", "regions", "--out", str(tmp_path / "r"),
                 "--train", "1", "--val", "1", "--size", "40,48", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "regions" and summary["classes"] == REGIONS_CLASSES
