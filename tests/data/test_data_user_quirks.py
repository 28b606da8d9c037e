"""Quirks of datasets users bring: file-name case and Unicode form, macOS metadata files,
binary 0/255 masks, RGB masks whose class colours are gray, palette masks in an editor's
colour order, byte-order marks, EXIF-rotated photos beside unrotated masks, and the
messages for masks and split files named the wrong way."""

import unicodedata

import numpy as np
import pytest
from PIL import Image

from fcnkit.data import open_dataset
from fcnkit.data.palette import save_mask_png, voc_palette
from fcnkit.errors import InputError

H, W = 12, 16


def _image(seed=0, size=(H, W)):
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def _mask(seed=0, classes=3, size=(H, W)):
    mask = np.random.default_rng(seed + 100).integers(0, classes, size=size).astype(np.uint8)
    mask[0, :3] = 255
    return mask


def _folder(root, n=3, image_ext=".png", mask_ext=".png"):
    for kind in ("images", "masks"):
        (root / kind / "train").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.fromarray(_image(k)).save(root / "images" / "train" / f"s{k}{image_ext}",
                                        format="PNG")
        save_mask_png(root / "masks" / "train" / f"s{k}{mask_ext}", _mask(k))
    return root


def test_uppercase_mask_extension_is_found(tmp_path):
    root = _folder(tmp_path / "d", image_ext=".PNG", mask_ext=".PNG")
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.classes == ["class_0", "class_1", "class_2"]
    np.testing.assert_array_equal(dataset[1][1].numpy(), _mask(1))


def test_two_masks_differing_only_in_case_are_refused(tmp_path):
    root = _folder(tmp_path / "d")
    save_mask_png(root / "masks" / "train" / "s0.PNG", _mask(0))
    with pytest.raises(InputError, match=r"two masks named 's0'.*rename"):
        open_dataset(f"folder:{root}", "train")


def test_macos_metadata_files_are_not_samples(tmp_path):
    root = _folder(tmp_path / "d")
    for kind, ext in (("images", ".png"), ("masks", ".png")):
        (root / kind / "train" / f"._s0{ext}").write_bytes(b"\x00\x05\x16\x07\x00\x02Mac OS X")
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.ids == ["s0", "s1", "s2"]
    assert dataset.skipped == 0


def test_binary_masks_with_255_foreground_are_refused(tmp_path):
    # 0 = background, 255 = object: read as one class plus void, which trains nothing.
    root = _folder(tmp_path / "d")
    for k in range(3):
        save_mask_png(root / "masks" / "train" / f"s{k}.png",
                      np.where(_mask(k) > 0, 255, 0).astype(np.uint8))
    with pytest.raises(InputError, match=r"masks.*only label 0.*255.*void.*mask // 255"):
        open_dataset(f"folder:{root}", "train")


def test_rgb_mask_with_white_class_colour_is_not_read_as_void(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "classes.txt").write_text("background 0 0 0\nforeground 255 255 255\n")
    labels = (_mask(0, classes=2) == 1).astype(np.uint8)
    rgb = np.array([(0, 0, 0), (255, 255, 255)], dtype=np.uint8)[labels]
    for k in range(3):
        Image.fromarray(rgb).save(root / "masks" / "train" / f"s{k}.png")
    dataset = open_dataset(f"folder:{root}", "train")
    np.testing.assert_array_equal(dataset[0][1].numpy(), labels)


def _voc(root, ids, image_ext=".jpg"):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k, sample_id in enumerate(ids):
        Image.fromarray(_image(k)).save(root / "JPEGImages" / f"{sample_id}{image_ext}",
                                        format="JPEG")
        save_mask_png(root / "SegmentationClass" / f"{sample_id}.png", _mask(k, classes=21))
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def test_voc_rgb_mask_of_background_and_car_only(tmp_path):
    # car is (128, 128, 128) in the VOC colours: a rendering without void has equal channels.
    root = _voc(tmp_path / "voc", ["a"])
    labels = np.where(_mask(0, classes=2) == 1, 7, 0).astype(np.uint8)
    rgb = np.array(voc_palette(21), dtype=np.uint8)[labels]
    Image.fromarray(rgb).save(root / "SegmentationClass" / "a.png")
    dataset = open_dataset(f"voc:{root}", "train")
    np.testing.assert_array_equal(dataset[0][1].numpy(), labels)


def test_voc_uppercase_image_extension_is_found(tmp_path):
    root = _voc(tmp_path / "voc", ["a", "b"], image_ext=".JPG")
    dataset = open_dataset(f"voc:{root}", "train")
    assert dataset.image_path(0).name == "a.JPG"
    assert tuple(dataset[1][0].shape) == (3, H, W)


def test_size_mismatch_from_exif_rotation_says_so(tmp_path):
    root = _folder(tmp_path / "d")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees
    Image.fromarray(_image(0)).save(root / "images" / "train" / "s0.png", exif=exif.tobytes())
    dataset = open_dataset(f"folder:{root}", "train")
    with pytest.raises(InputError, match=r"s0.png: mask is 16x12 .WxH. but image s0.png is "
                                         r"12x16 after its EXIF orientation .stored 16x12.;"):
        dataset[0]


def test_images_in_subdirectories_are_reported(tmp_path):
    root = _folder(tmp_path / "d", n=0)
    nested = root / "images" / "train" / "cam1"
    nested.mkdir()
    Image.fromarray(_image(0)).save(nested / "a.png")
    with pytest.raises(InputError, match=r"no images .*subdirector.*cam1"):
        open_dataset(f"folder:{root}", "train")


def test_images_in_subdirectories_beside_the_splits_own_are_named_in_a_warning(tmp_path):
    from fcnkit.errors import FcnkitWarning

    root = _folder(tmp_path / "d")
    nested = root / "images" / "train" / "cam2"
    nested.mkdir()
    Image.fromarray(_image(0)).save(nested / "late.png")
    with pytest.warns(FcnkitWarning, match=r"subdirectories \(cam2\) are not read"):
        dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.ids == ["s0", "s1", "s2"]


def test_classes_file_with_byte_order_mark(tmp_path):
    # Windows Notepad's "UTF-8 with BOM": the mark is not part of the first line.
    root = _folder(tmp_path / "d")
    (root / "classes.txt").write_bytes(b"\xef\xbb\xbf# my classes\r\nsky\r\nroad\r\ncar\r\n")
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.classes == ["sky", "road", "car"]


def test_voc_split_file_with_byte_order_mark(tmp_path):
    root = _voc(tmp_path / "voc", ["a", "b"])
    (root / "ImageSets/Segmentation/train.txt").write_bytes(b"\xef\xbb\xbfa\r\nb\r\n")
    assert open_dataset(f"voc:{root}", "train").ids == ["a", "b"]


def test_class_name_with_a_space_says_names_are_one_word(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "classes.txt").write_text("background\ntraffic light\ncar\n")
    with pytest.raises(InputError, match=r"classes.txt:2: .*one word.*traffic_light"):
        open_dataset(f"folder:{root}", "train")


def test_palette_mask_in_another_colour_order_is_refused(tmp_path):
    # An RGB colour mask converted to "indexed" by an image editor: the palette holds the
    # classes.txt colours, but in the editor's order, so the indices are not the classes.
    root = _folder(tmp_path / "d")
    (root / "classes.txt").write_text("bg 0 0 0\na 128 0 0\nb 0 128 0\n")
    labels = _mask(0)
    labels[labels == 255] = 0
    indexed = Image.fromarray(np.array([2, 0, 1], dtype=np.uint8)[labels], "P")
    indexed.putpalette([128, 0, 0, 0, 128, 0, 0, 0, 0])  # index 0 = a, 1 = b, 2 = bg
    indexed.save(root / "masks" / "train" / "s0.png")
    dataset = open_dataset(f"folder:{root}", "train")
    with pytest.raises(InputError, match=r"s0.png: palette index 0 is drawn in \(128, 0, 0\), "
                                         r"the colour of class 1"):
        dataset[0]
    # A palette in class order, or one that is not made of class colours, is read as indices.
    indexed = Image.fromarray(labels, "P")
    indexed.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    indexed.save(root / "masks" / "train" / "s0.png")
    np.testing.assert_array_equal(dataset[0][1].numpy(), labels)
    indexed.putpalette([v for i in range(256) for v in (i, i, i)])  # a gray ramp
    indexed.save(root / "masks" / "train" / "s0.png")
    np.testing.assert_array_equal(dataset[0][1].numpy(), labels)


def test_mask_saved_as_jpeg_is_named_in_the_missing_mask_error(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "masks" / "train" / "s1.png").unlink()
    Image.fromarray(_mask(1)).save(root / "masks" / "train" / "s1.jpg")
    with pytest.raises(InputError, match=r"s1.png: no mask s1.png in .*found s1.jpg.*PNG"):
        open_dataset(f"folder:{root}", "train")


def test_all_masks_unreadable_with_skip_bad_is_not_called_a_single_class(tmp_path):
    root = _folder(tmp_path / "d")
    for k in range(3):
        (root / "masks" / "train" / f"s{k}.png").write_bytes(b"not a png")
    with pytest.warns(Warning), pytest.raises(InputError, match="has no usable samples"):
        open_dataset(f"folder:{root}", "train", skip_bad=True)


def test_voc_split_file_listing_file_names_says_to_drop_the_extension(tmp_path):
    root = _voc(tmp_path / "voc", ["a", "b"])
    (root / "ImageSets/Segmentation/train.txt").write_text("a.jpg\nb.jpg\n")
    with pytest.raises(InputError, match=r"train.txt lists 'a.jpg'.*without the extension \(a\)"):
        open_dataset(f"voc:{root}", "train")


def test_split_without_masks_is_not_listed_as_found(tmp_path):
    root = _folder(tmp_path / "d")
    (root / "images" / "val").mkdir()
    with pytest.raises(InputError, match=r"masks/val: directory not found.*\(splits found: "
                                         r"train\)"):
        open_dataset(f"folder:{root}", "val")


def test_image_and_mask_names_in_different_unicode_forms_pair_up(tmp_path):
    # macOS writes "é" decomposed (e + combining accent), most tools composed: same name.
    root = _folder(tmp_path / "d", n=0)
    decomposed, composed = unicodedata.normalize("NFD", "café"), "caf\u00e9"
    Image.fromarray(_image(0)).save(root / "images" / "train" / f"{decomposed}.png")
    save_mask_png(root / "masks" / "train" / f"{composed}.png", _mask(0))
    dataset = open_dataset(f"folder:{root}", "train")
    assert dataset.ids == [composed]
    np.testing.assert_array_equal(dataset[0][1].numpy(), _mask(0))


def test_masks_named_with_a_suffix_are_named_in_the_error(tmp_path):
    root = _folder(tmp_path / "d")
    for k in range(3):
        path = root / "masks" / "train" / f"s{k}.png"
        path.rename(path.with_name(f"s{k}_mask.png"))
    with pytest.raises(InputError, match=r"no mask s0.png .*found s0_mask.png: name each mask "
                                         r"<image stem>.png"):
        open_dataset(f"folder:{root}", "train")
    # s1 has no mask, s10 has one: s10.png is another image's mask, not a hint for s1.
    other = _folder(tmp_path / "e", n=2)
    Image.fromarray(_image(0)).save(other / "images" / "train" / "s10.png")
    (other / "masks" / "train" / "s1.png").rename(other / "masks" / "train" / "s10.png")
    with pytest.raises(InputError, match=r"no mask s1.png .*; add it or remove") as caught:
        open_dataset(f"folder:{other}", "train")
    assert "found" not in str(caught.value)
