"""16-bit and float grayscale images read like their 8-bit versions (scaled by the type's
range, not by the image's own maximum). Oracle: torchvision's own 16-bit PNG decoder with
``to_dtype(..., torch.uint8, scale=True)``."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import decode_image, read_file
from torchvision.transforms.v2 import functional as TF

from fcnkit.data import read_image
from fcnkit.data.images import read_image_array

# torchvision 0.29 deprecates its image decoders (moving to torchcodec); still the oracle here.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _gray8(seed=0, size=(24, 32)):
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)


def test_same_picture_in_8_and_16_bits_reads_the_same(tmp_path):
    gray8 = _gray8()
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    # v16 = v8 * 257 maps 0..255 exactly onto 0..65535 (the usual 8 -> 16 bit widening)
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    a8 = read_image_array(tmp_path / "g8.png")
    a16 = read_image_array(tmp_path / "g16.png")
    np.testing.assert_array_equal(a8, a16)
    torch.testing.assert_close(read_image(tmp_path / "g8.png"), read_image(tmp_path / "g16.png"))


def test_dark_16_bit_image_is_not_stretched_and_matches_torchvision(tmp_path):
    # A dark 16-bit picture (max 4000 of 65535) must stay dark: ~ 4000/257 = 15.6 -> 16.
    dark = np.random.default_rng(1).integers(0, 4001, size=(20, 28)).astype(np.uint16)
    dark[0, 0] = 4000
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    ours = read_image_array(tmp_path / "dark16.png")[..., 0].astype(int)
    assert ours.max() == 16
    tv16 = decode_image(read_file(str(tmp_path / "dark16.png")))
    assert tv16.dtype == torch.uint16
    tv8 = TF.to_dtype(tv16, torch.uint8, scale=True)[0].numpy().astype(int)
    # torchvision scales by a bit shift (v >> 8), fcnkit rounds v * 255 / 65535: within 1
    assert np.abs(ours - tv8).max() <= 1


@pytest.mark.parametrize("mode", ["I", "F"])
def test_32_bit_integer_and_float_tiffs(tmp_path, mode):
    gray8 = _gray8(2)
    if mode == "I":
        wide = Image.fromarray(gray8.astype(np.int32) * 257)  # 16-bit values held in mode I
    else:
        wide = Image.fromarray(gray8.astype(np.float32) / 255.0)  # floats in [0, 1]
    assert wide.mode == mode
    wide.save(tmp_path / "wide.tif")
    np.testing.assert_array_equal(read_image_array(tmp_path / "wide.tif")[..., 0], gray8)


def test_float_image_out_of_range_and_nan_are_clipped(tmp_path):
    values = np.array([[np.nan, -1.0, 0.5, 7.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert read_image_array(tmp_path / "f.tif")[0, :, 0].tolist() == [0, 0, 128, 255]
