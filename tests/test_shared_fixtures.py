"""The session's shared fixtures (tests/conftest.py): built once, shared, copied to modify."""

from __future__ import annotations


def test_synthetic_data_is_built_once_per_set_of_arguments(synthetic_data):
    first = synthetic_data(train=2, val=1, seed=7, size=(32, 32))
    assert synthetic_data(train=2, val=1, seed=7, size=(32, 32)) == first
    assert synthetic_data(train=2, val=1, seed=8, size=(32, 32)) != first
    ids = (first / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(ids) == 2 and all((first / "JPEGImages" / f"{i}.jpg").is_file() for i in ids)


def test_private_copy_leaves_the_shared_dataset_intact(synthetic_data, private_copy, tmp_path):
    shared = synthetic_data(train=2, val=1, seed=7, size=(32, 32))
    before = sorted(p.relative_to(shared) for p in shared.rglob("*"))
    mine = private_copy(shared)
    assert mine.parent == tmp_path
    assert sorted(p.relative_to(mine) for p in mine.rglob("*")) == before
    victim = next((mine / "JPEGImages").iterdir())
    victim.unlink()
    assert (shared / "JPEGImages" / victim.name).is_file()
