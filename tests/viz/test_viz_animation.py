"""GIF / contact-sheet files of fcnkit.viz.animation and the ``fcnkit animate`` command (the
geometry drawn is tested in tests/arith/test_arith_taps.py)."""

import pytest
from PIL import Image

from fcnkit.arith.taps import tap_layout
from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.viz.animation import write_conv_animation


def test_gif_frames_sheet_and_determinism(tmp_path):
    geom = tap_layout(4, 3, stride=2, padding=1)
    gif, sheet = tmp_path / "a.gif", tmp_path / "a.png"
    assert write_conv_animation(geom, gif, sheet) == 4
    with Image.open(gif) as im:
        assert im.n_frames == 4
        frame_size = im.size
    with Image.open(sheet) as im:
        assert im.size[0] >= frame_size[0] and im.size[1] >= frame_size[1]  # 2x2 tiles
    first = (gif.read_bytes(), sheet.read_bytes())
    write_conv_animation(geom, gif, sheet)
    assert (gif.read_bytes(), sheet.read_bytes()) == first


def test_cli_transposed_and_errors(tmp_path, capsys):
    out = tmp_path / "t.gif"
    argv = ["animate", "--size", "2", "--kernel", "3", "--stride", "2", "--padding", "1",
            "--transposed", "--output-padding", "1", "-o", str(out), "--png"]
    assert main(argv) == 0
    assert "16 frames (4x4" in capsys.readouterr().out
    assert out.exists() and out.with_suffix(".png").exists()
    with Image.open(out) as im:
        assert im.n_frames == 16
    for bad, message in [
        (["animate", "--size", "2", "--kernel", "3", "-o", str(tmp_path / "x.gif")],
         "does not fit"),
        (["animate", "--size", "3", "--kernel", "3", "--output-padding", "1", "-o",
          str(tmp_path / "x.gif")], "transposed"),
        (["animate", "--size", "3", "--kernel", "1", "-o", str(tmp_path / "x.mp4")], ".gif"),
        (["animate", "--size", "40", "--kernel", "1", "-o", str(tmp_path / "x.gif")], "frames"),
    ]:
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not (tmp_path / "x.gif").exists()


def test_too_many_frames_is_refused_before_drawing(tmp_path):
    with pytest.raises(InputError, match="frames"):
        write_conv_animation(tap_layout(40, 1), tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()
