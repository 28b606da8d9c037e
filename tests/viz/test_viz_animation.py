"""Animation geometry reproduces real torch convolutions; GIF/contact sheet files."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.viz.animation import INPUT, animation_geometry, write_conv_animation


def _evaluate(geom, x, w):
    """Compute the layer from the picture: grid values, kernel taps, one sum per frame."""
    grid = np.zeros(geom.cells.shape)
    mask = geom.cells == INPUT
    grid[mask] = x.ravel()[geom.input_index[mask]]
    kernel = w[::-1, ::-1] if geom.transposed else w  # the equivalent conv flips the kernel
    oh, ow = geom.output_shape
    out = np.zeros((oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            taps = geom.taps[oy, ox]
            out[oy, ox] = (grid[taps[:, 0], taps[:, 1]] * kernel.ravel()).sum()
    return out


@given(
    st.tuples(st.integers(1, 6), st.integers(1, 6)), st.integers(1, 3), st.integers(1, 3),
    st.integers(0, 2), st.integers(1, 2), st.booleans(), st.integers(0, 2),
)
def test_geometry_reproduces_torch(size, k, s, p, d, transposed, op):
    x = np.random.default_rng(0).standard_normal(size)
    w = np.random.default_rng(1).standard_normal((k, k))
    xt = torch.tensor(x)[None, None]
    wt = torch.tensor(w)[None, None]
    op = op if transposed else 0
    try:
        geom = animation_geometry(size, k, s, p, d, transposed, op)
    except InputError:
        assume(False)
    if transposed:
        expected = F.conv_transpose2d(xt, wt, stride=s, padding=p, output_padding=op,
                                      dilation=d)
    else:
        expected = F.conv2d(xt, wt, stride=s, padding=p, dilation=d)
    expected = expected[0, 0].numpy()
    assert geom.output_shape == expected.shape
    assert geom.frames == expected.size
    np.testing.assert_allclose(_evaluate(geom, x, w), expected, atol=1e-9)


def test_gif_frames_sheet_and_determinism(tmp_path):
    geom = animation_geometry(4, 3, stride=2, padding=1)
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


def test_rejects_bad_geometry():
    with pytest.raises(InputError):
        animation_geometry(3, 0)
    with pytest.raises(InputError, match="crop"):
        animation_geometry(3, 2, padding=2, transposed=True)
    with pytest.raises(InputError, match="padding"):
        animation_geometry(1, 2, padding=1, transposed=True)  # empty output
