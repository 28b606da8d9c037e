"""The shapes task: class by shape only, varied sizes, determinism, VOC layout."""

import json

import numpy as np
import pytest

from fcnkit.cli import main
from fcnkit.data import open_dataset
from fcnkit.data.shapes import SHAPES_CLASSES, SIZE_JITTER, render_shapes_sample
from fcnkit.data.synthetic import generate_synthetic_dataset, render_synthetic_sample

SIZE = (60, 80)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    generate_synthetic_dataset(out, train=8, val=3, seed=5, size=SIZE, workers=1, task="shapes")
    return out


def test_layout_readable_by_the_voc_reader(shapes):
    names = [line.split()[0] for line in (shapes / "classes.txt").read_text().splitlines()]
    assert names == SHAPES_CLASSES
    manifest = json.loads((shapes / "synthetic.json").read_text())
    assert manifest["task"] == "shapes" and manifest["classes"] == SHAPES_CLASSES
    train = open_dataset(f"synth:{shapes}", "train")
    assert len(train) == 8 and len(open_dataset(f"synth:{shapes}", "val")) == 3
    image, mask = train[0]
    assert image.shape[1:] == mask.shape
    assert set(np.unique(np.asarray(mask)).tolist()) <= set(range(len(SHAPES_CLASSES))) | {255}


def test_image_sizes_vary_within_a_split(shapes):
    train = open_dataset(f"synth:{shapes}", "train")
    sizes = {tuple(train[i][1].shape) for i in range(len(train))}
    assert len(sizes) > 1
    low, high = SIZE_JITTER
    for h, w in sizes:
        assert low * SIZE[0] - 1 <= h <= high * SIZE[0] + 1
        assert low * SIZE[1] - 1 <= w <= high * SIZE[1] + 1


def test_same_bytes_for_any_worker_count_and_seed_matters(shapes, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "a", train=8, val=3, seed=5, size=SIZE,
                                       workers=2, task="shapes")
    assert _tree(again) == _tree(shapes)
    other = generate_synthetic_dataset(tmp_path / "b", train=8, val=3, seed=6, size=SIZE,
                                       workers=1, task="shapes")
    assert _tree(other)["JPEGImages/train_00000.jpg"] != _tree(shapes)["JPEGImages/train_00000.jpg"]


def test_void_band_separates_every_label_change():
    _, mask, _ = render_shapes_sample(0, "val", 1, SIZE)
    labels = mask.astype(int)
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        differ = (a != b) & (a != 255) & (b != 255)
        assert not differ.any()
    assert (mask == 255).any() and (mask != 255).any()


def _max_class_colour_distance(render, samples: int) -> float:
    """Largest RGB distance between two classes' mean colours over ``samples`` images."""
    sums = np.zeros((9, 3))
    counts = np.zeros(9)
    for i in range(samples):
        image, mask, _ = render(0, "train", i, (48, 64))
        for c in range(1, 9):
            selected = mask == c
            if selected.any():
                sums[c] += image[selected].mean(axis=0) / 255.0
                counts[c] += 1
    means = sums[1:] / np.maximum(counts[1:, None], 1)
    return float(np.linalg.norm(means[:, None] - means[None], axis=-1).max())


def test_class_colour_statistics_are_shared():
    # Oracle: the objects task, whose classes own colour families, must fail the same bound.
    assert _max_class_colour_distance(render_shapes_sample, 40) < 0.3
    assert _max_class_colour_distance(render_synthetic_sample, 40) > 0.5


def test_cli_task_flag(tmp_path, capsys):
    assert main(["data", "synth", "--task", "shapes", "--out", str(tmp_path / "s"),
                 "--train", "2", "--val", "1", "--size", "40,48", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "shapes" and summary["classes"] == SHAPES_CLASSES


def test_dataset_cache_keeps_the_tasks_apart(tmp_path):
    from fcnkit.data.cache import ensure_dataset

    spec = {"train": 2, "val": 1, "seed": 0, "size": (40, 48)}
    shapes_root, generated = ensure_dataset({**spec, "task": "shapes"}, tmp_path)
    assert generated and json.loads((shapes_root / "synthetic.json").read_text())["task"] \
        == "shapes"
    assert ensure_dataset({**spec, "task": "shapes"}, tmp_path) == (shapes_root, False)
    objects_root, generated = ensure_dataset(spec, tmp_path)
    assert generated and objects_root != shapes_root
