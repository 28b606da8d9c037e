"""Cityscapes and ADE20K readers, on small trees generated here in each layout.

Oracles: the official Cityscapes label table typed in below from cityscapesScripts'
``helpers/labels.py`` (labelId → trainId, written independently of fcnkit's table), the
SceneParsing rule of its devkit README (0 = "other objects", not evaluated; 1..150 the
classes of objectInfo150.txt), pixel counts made with numpy, and an untrained model run by
hand for ``fcnkit eval``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit.cli import main
from fcnkit.data import detect_layout, open_dataset
from fcnkit.data.ade20k import ADE20K_CLASSES
from fcnkit.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    LABEL_TO_TRAIN_ID,
    CityscapesDataset,
)
from fcnkit.errors import InputError

# cityscapesScripts labels.py: the 19 labels with a trainId; every other labelId (0..33) and
# -1 (license plate) is ignored (255).
OFFICIAL_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                      23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
OFFICIAL_IGNORED = [-1, 0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]


def _official(label_id: int) -> int:
    return OFFICIAL_TRAIN_IDS.get(label_id, 255)


def _write_rgb(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _write_labels(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def _make_cityscapes(root, h=10, w=12):
    """2 cities per split, 2 images per city; mask values cycle through all 34 labelIds."""
    written = {}
    seed = 0
    for split in ("train", "val", "test"):
        for city in ("aachen", "bremen"):
            for frame in (19, 20):
                stem = f"{city}_000000_{frame:06d}"
                _write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                           h, w, seed)
                labels = (np.arange(h * w).reshape(h, w) + seed) % 34
                _write_labels(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png",
                              labels)
                written[(split, stem)] = labels
                seed += 1
    return written


@pytest.fixture()
def cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    return root, _make_cityscapes(root)


# Cityscapes ------------------------------------------------------------------------------

def test_label_table_equals_the_official_one_for_all_35_labels():
    assert sorted(LABEL_TO_TRAIN_ID) == list(range(-1, 34))
    for label_id in range(-1, 34):
        assert LABEL_TO_TRAIN_ID[label_id] == _official(label_id), label_id
    assert sorted(k for k, v in LABEL_TO_TRAIN_ID.items() if v == 255) == OFFICIAL_IGNORED
    assert len(CITYSCAPES_CLASSES) == 19 == len(CITYSCAPES_PALETTE)
    # labels.py: road (128, 64, 128) is trainId 0, bicycle (119, 11, 32) trainId 18.
    assert (CITYSCAPES_CLASSES[0], CITYSCAPES_PALETTE[0]) == ("road", (128, 64, 128))
    assert (CITYSCAPES_CLASSES[18], CITYSCAPES_PALETTE[18]) == ("bicycle", (119, 11, 32))
    assert CITYSCAPES_CLASSES[10:13] == ["sky", "person", "rider"]


def test_masks_hold_train_ids_for_every_label_id_and_splits_are_folders(cityscapes):
    root, written = cityscapes
    for split, count in (("train", 4), ("val", 4), ("test", 4)):
        dataset = open_dataset(f"cityscapes:{root}", split)
        assert isinstance(dataset, CityscapesDataset) and len(dataset) == count
        assert dataset.layout == "cityscapes" and dataset.num_classes == 19
        assert dataset.ids == ["aachen_000000_000019", "aachen_000000_000020",
                               "bremen_000000_000019", "bremen_000000_000020"]
        for index, sample_id in enumerate(dataset.ids):
            image, mask = dataset[index]
            labels = written[(split, sample_id)]
            expected = np.vectorize(_official)(labels)
            assert image.shape == (3, 10, 12)
            assert torch.equal(mask, torch.from_numpy(expected.astype(np.int64)))
    # Every one of the 34 labelIds appeared in the train masks.
    seen = np.unique(np.concatenate([v.ravel() for (s, _), v in written.items()
                                     if s == "train"]))
    assert seen.tolist() == list(range(34))
    assert dataset.palette[13] == (0, 0, 142)  # car
    assert detect_layout(root) == "cityscapes"
    assert len(open_dataset(str(root), "val")) == 4  # bare directory: layout detected


@pytest.mark.parametrize("remove, named", [("gtFine", "gtFine"),
                                           ("leftImg8bit", "leftImg8bit"),
                                           ("gtFine/val", "gtFine/val")])
def test_wrong_cityscapes_layout_names_what_is_missing(cityscapes, remove, named):
    import shutil

    root, _ = cityscapes
    shutil.rmtree(root / remove)
    with pytest.raises(InputError) as info:
        open_dataset(f"cityscapes:{root}", "val")
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(root / named))
    assert "directory not found" in message and "_gtFine_labelIds.png" in message


def test_cityscapes_bad_split_missing_mask_and_foreign_mask_values(cityscapes):
    root, _ = cityscapes
    with pytest.raises(InputError, match="split 'training' does not exist; choose one of "
                                         "train, val, test"):
        open_dataset(f"cityscapes:{root}", "training")
    missing = root / "gtFine" / "val" / "bremen" / "bremen_000000_000020_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(InputError, match="bremen_000000_000020_gtFine_labelIds.png") as info:
        open_dataset(f"cityscapes:{root}", "val")
    assert "\n" not in str(info.value)
    with pytest.warns(Warning, match="skipping bremen_000000_000020"):
        kept = open_dataset(f"cityscapes:{root}", "val", skip_bad=True)
    assert len(kept) == 3 and kept.skipped == 1
    # A labelTrainIds image (255 = ignored) is no labelIds image: refused, file named.
    bad = root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png"
    _write_labels(bad, np.full((10, 12), 255))
    dataset = open_dataset(f"cityscapes:{root}", "train")
    with pytest.raises(InputError, match=r"value 255 is not a Cityscapes labelId \(0\.\.33\)"):
        dataset[0]


@pytest.mark.slow  # a training and an evaluation: seconds
def test_fcnkit_eval_runs_on_a_cityscapes_tree(cityscapes, tmp_path, capsys):
    from fcnkit.models import build_model
    from fcnkit.runtime.checkpoint import save_checkpoint

    root, written = cityscapes
    torch.manual_seed(0)
    model = build_model("fcn32s", num_classes=19, backbone="resnet18", width=0.25).eval()
    ckpt = tmp_path / "untrained.pt"
    save_checkpoint(ckpt, {"model_state": model.state_dict(),
                           "model_config": {"name": "fcn32s", "num_classes": 19,
                                            "backbone": "resnet18", "width": 0.25}})
    code = main(["eval", "--checkpoint", str(ckpt), "--data", f"cityscapes:{root}",
                 "--split", "val", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_images"] == 4 and result["classes"] == CITYSCAPES_CLASSES
    # Oracle: the masks decoded with the official table, the model run image by image.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    counts = np.zeros(19, dtype=np.int64)
    correct = 0
    for city in ("aachen", "bremen"):
        for frame in (19, 20):
            stem = f"{city}_000000_{frame:06d}"
            truth = np.vectorize(_official)(written[("val", stem)])
            rgb = np.asarray(Image.open(root / "leftImg8bit" / "val" / city /
                                        f"{stem}_leftImg8bit.png"), dtype=np.float32)
            x = ((torch.from_numpy(rgb).permute(2, 0, 1) / 255.0 - mean) / std)[None]
            with torch.no_grad():
                pred = model(x).argmax(1)[0].numpy()
            valid = truth != 255
            counts += np.bincount(truth[valid], minlength=19)
            correct += int((pred[valid] == truth[valid]).sum())
    assert result["pixels"] == counts.tolist()
    assert result["pixel_acc"] == pytest.approx(correct / counts.sum())


# ADE20K ----------------------------------------------------------------------------------

def _make_ade20k(base, h=12, w=13):
    root = base / "ADEChallengeData2016"
    written = {}
    for folder, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for n in (1, 2, 3):
            stem = f"{prefix}_{n:08d}"
            image = root / "images" / folder / f"{stem}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w, 3), 40 * n, dtype=np.uint8)).save(image)
            labels = (np.arange(h * w).reshape(h, w) + 7 * n) % 151  # 0 .. 150
            _write_labels(root / "annotations" / folder / f"{stem}.png", labels)
            written[(folder, stem)] = labels
    return root, written


def test_ade20k_zero_is_void_and_classes_shift_down_by_one(tmp_path):
    root, written = _make_ade20k(tmp_path)
    assert len(ADE20K_CLASSES) == 150 and len(set(ADE20K_CLASSES)) == 150
    # objectInfo150.txt: Idx 1 wall, 2 building, 3 sky ... 150 flag.
    assert ADE20K_CLASSES[:3] == ["wall", "building", "sky"] and ADE20K_CLASSES[149] == "flag"
    for spec in (f"ade20k:{root}", f"ade20k:{root.parent}", str(tmp_path)):
        for split, folder in (("train", "training"), ("val", "validation")):
            dataset = open_dataset(spec, split)
            assert dataset.layout == "ade20k" and dataset.num_classes == 150
            assert len(dataset) == 3
            for index, sample_id in enumerate(dataset.ids):
                annotation = written[(folder, sample_id)].astype(np.int64)
                _, mask = dataset[index]
                expected = np.where(annotation == 0, 255, annotation - 1)
                assert torch.equal(mask, torch.from_numpy(expected))
    seen = np.unique(np.concatenate([v.ravel() for v in written.values()]))
    assert seen.tolist() == list(range(151))
    assert len(open_dataset(f"ade20k:{root}", "validation")) == 3  # the folder name works too


def test_wrong_ade20k_layout_and_values_are_refused_in_one_line(tmp_path):
    import shutil

    root, _ = _make_ade20k(tmp_path)
    with pytest.raises(InputError, match="split 'test' does not exist; choose train or val"):
        open_dataset(f"ade20k:{root}", "test")
    shutil.rmtree(root / "annotations" / "validation")
    with pytest.raises(InputError) as info:
        open_dataset(f"ade20k:{root}", "val")
    message = str(info.value)
    assert message.startswith(str(root / "annotations" / "validation"))
    assert "directory not found" in message and "\n" not in message
    shutil.rmtree(root / "annotations")
    with pytest.raises(InputError) as info:
        open_dataset(f"ade20k:{tmp_path}", "train")
    assert str(info.value).startswith(str(root / "annotations"))
    # An annotation value above 150 is no SceneParsing label.
    other, _ = _make_ade20k(tmp_path / "other")
    _write_labels(other / "annotations" / "training" / "ADE_train_00000001.png",
                  np.full((12, 13), 151))
    dataset = open_dataset(f"ade20k:{other}", "train")
    with pytest.raises(InputError, match=r"value 151 is not an ADE20K SceneParsing label"):
        dataset[0]
