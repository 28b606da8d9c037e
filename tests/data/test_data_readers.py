"""VOC / SBD / folder readers, read_image, and every bad-input case (fixtures built here)."""

import io
from fractions import Fraction

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from fcnkit.cli import main
from fcnkit.data import detect_layout, open_dataset, read_image
from fcnkit.data.folder import read_classes_file
from fcnkit.data.images import read_mask
from fcnkit.data.palette import save_mask_png, voc_palette
from fcnkit.data.pixels import to_uint8, unit_float
from fcnkit.data.voc import VOC_CLASSES, packaged_split_ids
from fcnkit.errors import FcnkitWarning, InputError

H, W = 12, 16


def _image(seed=0, size=(H, W)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def _mask(seed=0, classes=3, size=(H, W)):
    rng = np.random.default_rng(seed + 100)
    mask = rng.integers(0, classes, size=size).astype(np.uint8)
    mask[0, :3] = 255
    return mask


def make_folder(root, split="train", n=3, classes_txt=None, ext=".png"):
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    for k in range(n):
        # PNG images keep exact pixel values, so reads can be compared exactly.
        Image.fromarray(_image(k)).save(root / "images" / split / f"s{k}{ext}")
        save_mask_png(root / "masks" / split / f"s{k}.png", _mask(k))
    if classes_txt is not None:
        (root / "classes.txt").write_text(classes_txt)
    return root


def make_voc(root, ids=("2007_000001", "2007_000002"), val=("2007_000003",)):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k, sample_id in enumerate((*ids, *val)):
        Image.fromarray(_image(k)).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        save_mask_png(root / "SegmentationClass" / f"{sample_id}.png", _mask(k, classes=21))
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in ids))
    (root / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in val))
    return root


# ----------------------------------------------------------------------------- folder


def test_folder_reader_yields_float_image_and_int64_mask(tmp_path):
    root = make_folder(tmp_path / "d", classes_txt="bg\ncat\ndog\n")
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.classes == ["bg", "cat", "dog"] and dataset.num_classes == 3
    assert dataset.ids == ["s0", "s1", "s2"] and len(dataset) == 3
    assert dataset.ignore_index == 255 and dataset.palette == voc_palette(3)
    assert dataset.image_path(1).name == "s1.png" and dataset.mask_path(1).name == "s1.png"
    image, mask = dataset[1]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, H, W)
    assert mask.dtype == torch.int64 and tuple(mask.shape) == (H, W)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, _image(1), atol=1e-3)
    np.testing.assert_array_equal(mask.numpy(), _mask(1))
    assert detect_layout(root) == "folder"
    assert len(open_dataset(str(root), "train")) == 3


def test_folder_without_classes_txt_infers_class_count(tmp_path):
    root = make_folder(tmp_path / "d")
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.classes == ["class_0", "class_1", "class_2"]


def test_rgb_masks_mapped_through_classes_txt_colours(tmp_path):
    root = make_folder(tmp_path / "d", classes_txt="bg 0 0 0\ncat 10 200 30\ndog 1,2,3\n")
    colours = np.array([(0, 0, 0), (10, 200, 30), (1, 2, 3)], dtype=np.uint8)
    labels = _mask(0)
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[labels == 255] = (224, 224, 192)
    rgb[labels != 255] = colours[labels[labels != 255]]
    Image.fromarray(rgb).save(root / "masks" / "train" / "s0.png")
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.palette[1] == (10, 200, 30)
    np.testing.assert_array_equal(dataset[0][1].numpy(), labels)
    rgb[0, 0] = (9, 9, 9)
    Image.fromarray(rgb).save(root / "masks" / "train" / "s0.png")
    with pytest.raises(InputError, match=r"s0.png: mask colour \(9, 9, 9\)"):
        dataset[0]


def test_rgb_masks_without_colours_are_rejected(tmp_path):
    root = make_folder(tmp_path / "d", classes_txt="bg\ncat\ndog\n")
    Image.fromarray(_image(5)).save(root / "masks" / "train" / "s2.png")
    dataset = open_dataset(f"folder:{root}", "train")
    with pytest.raises(InputError, match="s2.png: mask is an RGB colour image"):
        dataset[2]
    # A gray mask saved as RGB (equal channels) is fine.
    gray = np.repeat(_mask(2)[..., None], 3, axis=2)
    Image.fromarray(gray).save(root / "masks" / "train" / "s2.png")
    np.testing.assert_array_equal(dataset[2][1].numpy(), _mask(2))


def _corrupt(path):
    path.write_bytes(b"this is not an image")


def _truncate(path):
    buffer = io.BytesIO()
    Image.fromarray(_image(9, (64, 64))).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[:400])


def _wrong_size(path):
    Image.fromarray(_image(0, (H + 1, W))).save(path)


@pytest.mark.parametrize(
    ("damage", "target", "message"),
    [
        (_corrupt, "images", "s1.png: cannot read image"),
        (_truncate, "images", "s1.png: cannot read image"),
        (_corrupt, "masks", "s1.png: cannot read mask"),
        (_wrong_size, "images", "s1.png: mask is 16x12 .WxH. but image s1.png is 16x13"),
        (lambda p: save_mask_png(p, _mask(1, classes=7)), "masks", "mask label [3-6] is not"),
    ],
)
def test_bad_samples_raise_one_line_or_are_skipped(tmp_path, damage, target, message):
    root = make_folder(tmp_path / "d", classes_txt="bg\ncat\ndog\n")
    damage(root / target / "train" / "s1.png")
    dataset = open_dataset(f"folder:{root}", "train")
    with pytest.raises(InputError, match=message) as info:
        dataset[1]
    assert "\n" not in str(info.value)
    dataset[0]  # the other samples are fine
    with pytest.warns(FcnkitWarning) as record:
        skipping = open_dataset(f"folder:{root}", "train", skip_bad=True)
    assert skipping.ids == ["s0", "s2"] and skipping.skipped == 1
    warned = [str(w.message) for w in record]
    assert len(warned) == 2 and "skipping s1" in warned[0] and "skipped 1" in warned[1]


def test_image_without_mask(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "masks" / "train" / "s0.png").unlink()
    with pytest.raises(InputError, match="s0.png: no mask s0.png"):
        open_dataset(f"folder:{root}", "train")
    with pytest.warns(FcnkitWarning) as record:
        dataset = open_dataset(f"folder:{root}", "train", skip_bad=True)
    assert dataset.ids == ["s1", "s2"] and dataset.skipped == 1
    assert "skipping s0" in str(record[0].message)


def test_missing_directories_and_bad_specs(tmp_path):
    with pytest.raises(InputError, match="dataset directory not found"):
        open_dataset(f"folder:{tmp_path / 'nope'}", "train")
    root = make_folder(tmp_path / "d")
    with pytest.raises(InputError, match=r"images/val: directory not found.*splits found: train"):
        open_dataset(f"folder:{root}", "val")
    with pytest.raises(InputError, match="not a Pascal VOC tree"):
        open_dataset(str(tmp_path), "train")
    with pytest.raises(InputError, match="missing directory"):
        open_dataset("voc:", "train")
    (root / "images" / "empty").mkdir()
    (root / "masks" / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_dataset(f"folder:{root}", "empty")


def test_classes_file_errors(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# comment\nbg 0 0 0\n\ncat 1 2 3  # trailing\n")
    assert read_classes_file(path) == (["bg", "cat"], [(0, 0, 0), (1, 2, 3)])
    for text, message in (("bg 0 0 0\ncat\n", "every line or on none"),
                          ("bg 0 0 300\n", "expected 'name'"), ("", "no class names"),
                          ("a\na\n", "unique")):
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            read_classes_file(path)


# -------------------------------------------------------------------------- read_image


def test_read_image_modes_and_exif_rotation(tmp_path):
    rgb = _image(3)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    gray = read_image(tmp_path / "gray.png")
    assert tuple(gray.shape) == (3, H, W) and torch.equal(gray[0], gray[2])
    rgba = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png").permute(1, 2, 0).numpy(),
                               rgb / 255.0, atol=1e-6)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    assert tuple(read_image(tmp_path / "pal.png").shape) == (3, H, W)
    # EXIF orientation 6 = "rotate 90° clockwise to display": the (H, W) image reads as (W, H).
    # A smooth, asymmetric picture survives JPEG well enough to compare.
    y, x = np.mgrid[0:H, 0:W]
    smooth = np.stack([x * 15, y * 20, np.full_like(x, 100)], axis=2).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(smooth).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    rotated = read_image(tmp_path / "rot.jpg")
    assert tuple(rotated.shape) == (3, W, H)
    expected = np.rot90(smooth, k=-1) / 255.0
    assert np.abs(rotated.permute(1, 2, 0).numpy() - expected).mean() < 0.03
    wrong_way = np.rot90(smooth, k=1) / 255.0
    assert np.abs(rotated.permute(1, 2, 0).numpy() - wrong_way).mean() > 0.1
    assert rotated.min() >= 0 and rotated.max() <= 1


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.png: image file not found"):
        read_image(tmp_path / "missing.png")
    _truncate(tmp_path / "cut.jpg")
    with pytest.raises(InputError, match="cut.jpg: cannot read image"):
        read_image(tmp_path / "cut.jpg")


def test_decompression_bomb_is_an_input_error(tmp_path, monkeypatch):
    Image.fromarray(_image(0, (60, 60))).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # error above 2x this
    with pytest.raises(InputError, match="big.png: image is too large"):
        read_image(tmp_path / "big.png")


def test_read_mask_sixteen_bit_and_range(tmp_path):
    wide = _mask(0).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m16.png", 3), _mask(0))
    wide[1, 1] = 1000
    Image.fromarray(wide).save(tmp_path / "m16.png")
    with pytest.raises(InputError, match="do not fit 0..255"):
        read_mask(tmp_path / "m16.png")


# -------------------------------------------------------------------------- VOC + SBD


def test_voc_reader_direct_and_nested(tmp_path):
    voc = make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    for root in (voc, tmp_path, tmp_path / "VOCdevkit"):
        dataset = open_dataset(f"voc:{root}", "train")
        assert dataset.classes == VOC_CLASSES and dataset.num_classes == 21
        assert dataset.ids == ["2007_000001", "2007_000002"]
        assert dataset.root == voc and dataset.layout == "voc"
        image, mask = dataset[0]
        assert tuple(image.shape) == (3, H, W)
        np.testing.assert_array_equal(mask.numpy(), _mask(0, classes=21))
    assert detect_layout(tmp_path) == "voc"
    assert open_dataset(str(tmp_path), "val").ids == ["2007_000003"]


def test_voc_bad_inputs(tmp_path):
    voc = make_voc(tmp_path / "VOC2012")
    sets = voc / "ImageSets" / "Segmentation"
    (sets / "empty.txt").write_text("\n")
    with pytest.raises(InputError, match="empty.txt: split file is empty"):
        open_dataset(f"voc:{voc}", "empty")
    with pytest.raises(InputError,
                       match=r"split 'test' not found; available: empty, seg11valid, train, val"):
        open_dataset(f"voc:{voc}", "test")
    (voc / "SegmentationClass" / "2007_000002.png").unlink()
    with pytest.raises(InputError, match="2007_000002.png: no mask for image 2007_000002"):
        open_dataset(f"voc:{voc}", "train")
    with pytest.warns(FcnkitWarning) as record:
        assert open_dataset(f"voc:{voc}", "train", skip_bad=True).ids == ["2007_000001"]
    assert "skipping 2007_000002" in str(record[0].message)
    (sets / "ghost.txt").write_text("2007_999999\n")
    with pytest.raises(InputError, match="image listed in the split file is missing"):
        open_dataset(f"voc:{voc}", "ghost")
    with pytest.raises(InputError, match="no JPEGImages"):
        open_dataset(f"voc:{tmp_path / 'VOC2012' / 'ImageSets'}", "train")


def test_sbd_mat_masks_and_train_aug(tmp_path):
    voc = make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    sbd_only = ["2008_000010", "2008_000011"]
    for k, sample_id in enumerate(sbd_only):
        Image.fromarray(_image(20 + k)).save(voc / "JPEGImages" / f"{sample_id}.jpg")
        segmentation = _mask(20 + k, classes=21)
        segmentation[segmentation == 255] = 0  # SBD has no void
        gtcls = {"Segmentation": segmentation, "Boundaries": np.zeros((H, W), dtype=np.uint8),
                 "CategoriesPresent": np.unique(segmentation).astype(np.uint8)}
        scipy.io.savemat(sbd / "cls" / f"{sample_id}.mat", {"GTcls": gtcls})
    (sbd / "train.txt").write_text("2008_000010\n2007_000003\n")
    (sbd / "val.txt").write_text("2008_000011\n")
    dataset = open_dataset(f"voc:{tmp_path}", "train_aug")
    # (SBD train ∪ SBD val ∪ VOC train) − VOC val
    assert dataset.ids == ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]
    assert dataset.mask_path(2).suffix == ".mat" and dataset.mask_path(0).suffix == ".png"
    expected = _mask(20, classes=21)
    expected[expected == 255] = 0
    np.testing.assert_array_equal(dataset[2][1].numpy(), expected)
    assert open_dataset(f"voc:{voc}", "sbd_val").ids == ["2008_000011"]
    (sbd / "cls" / "2008_000011.mat").write_bytes(b"garbage")
    with pytest.raises(InputError, match="2008_000011.mat: cannot read SBD"):
        dataset[3]


@pytest.mark.slow  # writes 736 images: seconds
def test_seg11valid_ships_with_fcnkit_and_is_held_out_of_training(tmp_path):
    ids = packaged_split_ids("seg11valid")
    # The FCN paper's evaluation split: 736 distinct VOC2011 val ids.
    assert len(ids) == len(set(ids)) == 736
    assert all(len(i) == 11 and 2007 <= int(i[:4]) <= 2011 for i in ids)
    # A VOC root without ImageSets/Segmentation/seg11valid.txt still has the split.
    voc = make_voc(tmp_path / "VOC2012", ids=("2007_000001",), val=("2007_000003",))
    tiny = np.zeros((4, 4, 3), dtype=np.uint8)
    for sample_id in ids:
        Image.fromarray(tiny).save(voc / "JPEGImages" / f"{sample_id}.jpg")
        save_mask_png(voc / "SegmentationClass" / f"{sample_id}.png",
                      np.zeros((4, 4), dtype=np.uint8))
    assert not (voc / "ImageSets" / "Segmentation" / "seg11valid.txt").exists()
    assert open_dataset(f"voc:{voc}", "seg11valid").ids == ids
    # With SBD: its train list minus seg11valid is the paper's training set.
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text(f"2007_000001\n{ids[0]}\n")
    (sbd / "val.txt").write_text(f"{ids[1]}\n")
    assert open_dataset(f"voc:{voc}", "seg11train").ids == ["2007_000001"]
    assert open_dataset(f"voc:{voc}", "train_aug").ids == ["2007_000001"]


# --------------------------------------------------------------------------------- CLI


def test_cli_data_info(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes_txt="bg\ncat\ndog\n")
    assert main(["data", "info", f"folder:{root}", "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    expected = np.bincount(np.concatenate([_mask(k).ravel() for k in range(3)]), minlength=256)
    assert summary["pixels"] == expected[:3].tolist()
    assert summary["void_pixels"] == int(expected[255]) and summary["images"] == 3
    assert main(["data", "info", f"folder:{root}"]) == 0
    assert "cat" in capsys.readouterr().out
    _corrupt(root / "images" / "train" / "s1.png")
    assert main(["data", "info", f"folder:{root}", "--split", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "images/nope: directory not found" in err[0]


def test_bad_sample_message_survives_dataloader_workers(tmp_path):
    from fcnkit.data.transforms import pad_collate

    root = make_folder(tmp_path / "d", classes_txt="bg\ncat\ndog\n")
    _corrupt(root / "images" / "train" / "s1.png")
    dataset = open_dataset(f"folder:{root}", "train")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=1,
                                         collate_fn=pad_collate)
    with pytest.raises(InputError) as info:
        next(iter(loader))
    first_line = str(info.value).splitlines()[0]
    assert "s1.png: cannot read image" in first_line and "Caught" not in first_line


@pytest.mark.slow  # a fresh interpreter
def test_cli_prints_library_warnings_as_one_line_each(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes_txt="bg\ncat\ndog\n")
    _corrupt(root / "images" / "train" / "s1.png")
    for _ in range(2):  # every run shows its warnings (no once-per-process filter)
        assert main(["data", "info", f"folder:{root}", "--skip-bad", "--json"]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[0].startswith("fcnkit: warning: skipping s1: ")
        assert err[1] == "fcnkit: warning: skipped 1 bad sample(s) of split 'train'"


# ------------------------------------------------------------- hostile files


def test_non_utf8_classes_and_split_files_are_one_line(tmp_path, capsys):
    folder = make_folder(tmp_path / "f")
    (folder / "classes.txt").write_bytes("background\nv\xe9lo\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"classes file .*classes.txt is not UTF-8 text"):
        open_dataset(f"folder:{folder}", "train")
    voc = make_voc(tmp_path / "VOC2012")
    (voc / "ImageSets/Segmentation/train.txt").write_bytes(b"2007_000001\n\xff\xfe\n")
    assert main(["data", "info", f"voc:{voc}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.txt is not UTF-8" in err and "byte 12" in err


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1.5])
def test_sbd_segmentation_with_nan_or_fractions_is_refused(tmp_path, bad):
    from fcnkit.data.voc import load_sbd_mask

    segmentation = _mask(3, classes=21).astype(np.float64)
    segmentation[segmentation == 255] = 0
    path = tmp_path / "x.mat"
    scipy.io.savemat(path, {"GTcls": {"Segmentation": segmentation}})
    np.testing.assert_array_equal(load_sbd_mask(path), segmentation.astype(np.uint8))
    segmentation[2, 3] = bad
    scipy.io.savemat(path, {"GTcls": {"Segmentation": segmentation}})
    with pytest.raises(InputError, match="x.mat: GTcls.Segmentation holds NaN, infinite or"):
        load_sbd_mask(path)


@pytest.mark.slow  # a fresh interpreter
def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    import os
    import subprocess
    import sys

    folder = make_folder(tmp_path / "f", n=1)
    image = folder / "images" / "train" / "s0.png"
    image.unlink()
    os.mkfifo(image)  # open() would block until a writer appears
    code = ("from fcnkit.data import read_image\n"
            "from fcnkit.errors import InputError\n"
            f"try:\n    read_image({str(image)!r})\n"
            "except InputError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert "is a FIFO (named pipe), not a regular file" in proc.stdout, proc.stderr


def test_one_uint8_to_float_conversion_for_files_arrays_and_tensors(tmp_path):
    # Oracle: exact fractions v / 255; every path gives the same float32 bits, less than two
    # float32 steps from the exact value (1/255 is rounded, then the product).
    values = np.arange(256, dtype=np.uint8)
    as_array = unit_float(values)
    as_tensor = unit_float(torch.from_numpy(values)).numpy()
    assert as_array.dtype == as_tensor.dtype == np.float32
    assert np.array_equal(as_array.view(np.uint32), as_tensor.view(np.uint32))
    for v, got in zip(range(256), as_array.tolist()):
        step = Fraction(float(np.spacing(np.float32(got))))
        assert abs(Fraction(got) - Fraction(v, 255)) < 2 * step
    picture = np.stack([values.reshape(16, 16)] * 3, axis=-1)
    Image.fromarray(picture).save(tmp_path / "all.png")
    from_file = read_image(tmp_path / "all.png").numpy()
    assert np.array_equal(from_file.view(np.uint32),
                          as_array.reshape(16, 16)[None].repeat(3, 0).view(np.uint32))
    assert np.array_equal(to_uint8(as_array), values)  # and back
