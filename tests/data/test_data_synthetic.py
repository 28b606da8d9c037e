"""The synthetic dataset: layout, determinism, content, void band, readability."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fcnkit
from fcnkit.atomic import INCOMPLETE_MARKER, is_incomplete
from fcnkit.cli import main
from fcnkit.data import open_dataset
from fcnkit.data.cache import ensure_dataset
from fcnkit.data.synthetic import (
    SYNTHETIC_CLASSES,
    generate_synthetic_dataset,
    render_synthetic_sample,
    void_band,
)
from fcnkit.errors import InputError

SIZE = (70, 90)


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_synthetic_dataset(out, train=6, val=3, seed=3, size=SIZE, workers=1)
    return out


def test_layout_and_class_list(synth):
    assert len(SYNTHETIC_CLASSES) >= 9 and SYNTHETIC_CLASSES[0] == "background"
    sets = synth / "ImageSets" / "Segmentation"
    train = (sets / "train.txt").read_text().split()
    val = (sets / "val.txt").read_text().split()
    assert len(train) == 6 and len(val) == 3 and not set(train) & set(val)
    for sample_id in train + val:
        with Image.open(synth / "JPEGImages" / f"{sample_id}.jpg") as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (SIZE[1], SIZE[0])
        with Image.open(synth / "SegmentationClass" / f"{sample_id}.png") as mask:
            assert mask.mode == "P" and mask.size == (SIZE[1], SIZE[0])
            values = set(np.unique(np.asarray(mask)).tolist())
            assert values <= set(range(len(SYNTHETIC_CLASSES))) | {255}
    names = [line.split()[0] for line in (synth / "classes.txt").read_text().splitlines()]
    assert names == SYNTHETIC_CLASSES
    manifest = json.loads((synth / "synthetic.json").read_text())
    assert manifest["seed"] == 3 and manifest["size"] == list(SIZE)


def test_same_bytes_for_any_worker_count_and_seed_matters(synth, tmp_path):
    again = generate_synthetic_dataset(tmp_path / "b", train=6, val=3, seed=3, size=SIZE,
                                       workers=2)
    assert _tree(again) == _tree(synth)
    other = generate_synthetic_dataset(tmp_path / "c", train=6, val=3, seed=4, size=SIZE,
                                       workers=1)
    a, b = _tree(other), _tree(synth)
    assert a["JPEGImages/train_00000.jpg"] != b["JPEGImages/train_00000.jpg"]


def test_val_set_does_not_depend_on_train_count(synth, tmp_path):
    fewer = generate_synthetic_dataset(tmp_path / "f", train=2, val=3, seed=3, size=SIZE,
                                       workers=1)
    for k in range(3):
        name = f"SegmentationClass/val_{k:05d}.png"
        assert (fewer / name).read_bytes() == (synth / name).read_bytes()


def test_content_over_many_samples_has_every_class_and_small_objects():
    seen = np.zeros(len(SYNTHETIC_CLASSES), dtype=np.int64)
    for index in range(30):
        image, mask, quality = render_synthetic_sample(0, "train", index, (150, 210))
        assert image.dtype == np.uint8 and image.shape == (150, 210, 3)
        assert 72 <= quality <= 95
        seen += np.bincount(mask[mask != 255], minlength=len(SYNTHETIC_CLASSES))
        # Images are not flat: background has texture/noise.
        assert image[mask == 0].std() > 3
    assert (seen > 0).all()
    fractions = seen / seen.sum()
    assert fractions[0] < 0.9  # objects cover a real share of the pixels
    assert fractions[SYNTHETIC_CLASSES.index("bar")] < fractions[1:].mean()  # thin = minority


def test_classes_differ_in_texture_not_one_flat_colour():
    image, mask, _ = render_synthetic_sample(0, "train", 5, (150, 210))
    for label in np.unique(mask):
        if label in (0, 255) or (mask == label).sum() < 60:
            continue
        assert image[mask == label].std(axis=0).max() > 8, SYNTHETIC_CLASSES[label]


def test_void_band_matches_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(9, 11)).astype(np.uint8)
    labels[3:7, 2:9] = 1
    expected = labels.copy()
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and labels[ny, nx] != labels[y, x]:
                    expected[y, x] = 255
    np.testing.assert_array_equal(void_band(labels), expected)


def test_synthetic_masks_have_void_on_boundaries_only():
    _, mask, _ = render_synthetic_sample(1, "val", 0, (96, 120))
    assert (mask == 255).any()
    # No two different class labels touch: a void pixel always separates them.
    for a, b in ((mask[1:, :], mask[:-1, :]), (mask[:, 1:], mask[:, :-1])):
        touching = (a != b) & (a != 255) & (b != 255)
        assert not touching.any()


def test_readable_by_voc_reader(synth):
    dataset = open_dataset(f"voc:{synth}", "val")
    assert dataset.classes == SYNTHETIC_CLASSES and len(dataset) == 3
    image, mask = dataset[0]
    assert tuple(image.shape) == (3, *SIZE) and tuple(mask.shape) == SIZE


def test_bad_arguments_and_cli(tmp_path, capsys):
    with pytest.raises(InputError, match="size must be"):
        generate_synthetic_dataset(tmp_path / "x", size=(16, 200))
    with pytest.raises(InputError, match="train/val image counts"):
        generate_synthetic_dataset(tmp_path / "x", train=0, val=0)
    assert main(["data", "synth", "--out", str(tmp_path / "cli"), "--train", "2", "--val",
                 "1", "--size", "40,50", "--workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"] == 2 and summary["size"] == [40, 50]
    assert (tmp_path / "cli" / "JPEGImages" / "val_00000.jpg").is_file()
    (tmp_path / "file").write_text("x")
    assert main(["data", "synth", "--out", str(tmp_path / "file"), "--train", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a directory" in err


def test_synth_spec_reads_the_generated_tree(synth, tmp_path):
    dataset = open_dataset(f"synth:{synth}", "train")
    assert len(dataset) == 6 and dataset.layout == "voc"
    with pytest.raises(InputError, match="not a synthetic dataset"):
        open_dataset(f"synth:{tmp_path}", "train")


def test_data_without_action_prints_help(capsys):
    assert main(["data"]) == 2
    out = capsys.readouterr().out
    assert "synth" in out and "info" in out


def test_ensure_dataset_generates_once_and_regenerates_a_stale_cache(tmp_path, monkeypatch):
    from fcnkit.data import cache_dir, ensure_dataset

    spec = {"train": 2, "val": 1, "seed": 3, "size": (32, 40)}
    root, generated = ensure_dataset(spec, tmp_path)
    assert generated and root.parent == tmp_path and (root / "synthetic.json").is_file()
    assert ensure_dataset(spec, tmp_path) == (root, False)
    (root / "synthetic.json").write_text("{torn")  # an interrupted run
    assert ensure_dataset(spec, tmp_path) == (root, True)
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env" and cache_dir(tmp_path) == tmp_path


# ------------------------------------------------------------- interrupted generation


def _synth_command(out, seed, train=400):
    return [sys.executable, "-m", "fcnkit", "data", "synth", "--out", str(out), "--train",
            str(train), "--val", "2", "--size", "64", "--seed", str(seed), "--workers", "1"]


def _jpegs_written_since(images_dir, start_ns):
    """JPEGs under their final names in ``images_dir`` modified since ``start_ns``. The
    writer's hidden temporaries (``.fcnkit-tmp.*``) are skipped: one can be renamed
    between the listing and its ``stat``."""
    written = 0
    for entry in os.scandir(images_dir):
        if entry.name.startswith(".") or not entry.name.endswith(".jpg"):
            continue
        try:
            written += entry.stat().st_mtime_ns >= start_ns
        except FileNotFoundError:  # replaced in between
            continue
    return written


def _interrupt_after_images(cmd, signum, images_dir, count=4, **popen):
    """Start ``cmd``; send ``signum`` once it has written ``count`` JPEGs into ``images_dir``
    (new files, or existing ones rewritten: modified after the start)."""
    env = {**os.environ, "PYTHONPATH": str(Path(fcnkit.__file__).parents[1])}
    start = time.time_ns()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **popen)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if images_dir.is_dir() and _jpegs_written_since(images_dir, start) >= count:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the command ended before it was interrupted"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.slow  # a child per signal: seconds
@pytest.mark.parametrize(("signum", "code", "line"), [
    (signal.SIGTERM, 143, "fcnkit: terminated"),
    (signal.SIGINT, 130, "fcnkit: interrupted"),
])
def test_interrupted_synth_is_marked_refused_and_regenerated(tmp_path, signum, code, line):
    out = tmp_path / "d"
    generate_synthetic_dataset(out, train=6, val=2, seed=1, size=(64, 64), workers=1)
    old = (out / "JPEGImages" / "train_00001.jpg").read_bytes()
    returncode, stdout, err = _interrupt_after_images(_synth_command(out, seed=2), signum,
                                                      out / "JPEGImages")
    assert returncode == code, err
    assert err.strip() == line and stdout == ""
    assert is_incomplete(out) and not (out / "synthetic.json").exists()
    # the samples are a mix of both seeds: the reader must not accept it
    assert (out / "JPEGImages" / "train_00001.jpg").read_bytes() != old
    for spec in (f"synth:{out}", f"voc:{out}", str(out)):
        with pytest.raises(InputError, match="is incomplete"):
            open_dataset(spec, "train")
    assert main(["data", "info", f"voc:{out}"]) == 2
    # the rerun regenerates everything and clears the mark
    generate_synthetic_dataset(out, train=6, val=2, seed=2, size=(64, 64), workers=1)
    assert not is_incomplete(out) and len(open_dataset(f"synth:{out}", "train")) == 6


@pytest.mark.slow  # a child process: seconds
def test_sigint_ends_synth_with_130_even_when_the_shell_ignored_it(tmp_path):
    # A background job of a non-interactive shell starts with SIGINT ignored.
    out = tmp_path / "d"
    returncode, _, err = _interrupt_after_images(
        _synth_command(out, seed=0), signal.SIGINT, out / "JPEGImages",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert returncode == 130 and "interrupted" in err
    assert is_incomplete(out)


@pytest.mark.slow  # a child and its workers: seconds
def test_sigterm_with_worker_processes_gives_one_line(tmp_path):
    out = tmp_path / "d"
    cmd = _synth_command(out, seed=0)
    cmd[-1] = "2"
    returncode, _, err = _interrupt_after_images(cmd, signal.SIGTERM, out / "JPEGImages")
    assert returncode == 143 and err.strip() == "fcnkit: terminated", err
    assert is_incomplete(out)


def test_ensure_dataset_regenerates_a_directory_marked_incomplete(tmp_path):
    spec = {"train": 2, "val": 1, "seed": 4, "size": (32, 32)}
    root, generated = ensure_dataset(spec, tmp_path)
    assert generated and not is_incomplete(root)
    assert ensure_dataset(spec, tmp_path) == (root, False)
    (root / INCOMPLETE_MARKER).write_text("interrupted\n")  # manifest still there
    assert ensure_dataset(spec, tmp_path) == (root, True)
    assert not is_incomplete(root)
