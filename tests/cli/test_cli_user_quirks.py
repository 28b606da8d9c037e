"""Output paths users get wrong: a file where a directory is needed is one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcnkit.cli import main


def _one_line_error(capsys, fragment):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert fragment in err, err


@pytest.mark.parametrize("sub", ["", "run"])
def test_train_out_under_a_file_is_one_line(tiny_run, tmp_path, capsys, sub):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    out = blocker / sub if sub else blocker
    code = main(["train", "--data", f"synth:{tiny_run['data']}", "--out", str(out),
                 "--epochs", "1", "--workers", "0", "--no-progress"])
    assert code == 2
    _one_line_error(capsys, f"{blocker} is a file")
    assert blocker.read_text() == "keep me"


def test_export_output_under_a_file_is_one_line(tiny_run, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    code = main(["export", str(tiny_run["ckpt"]), "-o", str(blocker / "model.onnx")])
    assert code == 2
    _one_line_error(capsys, f"{blocker} is a file")
    assert blocker.read_text() == "keep me"


def test_export_output_with_a_trailing_slash_is_not_written_as_a_file(tiny_run, tmp_path,
                                                                      capsys):
    target = tmp_path / "exports"
    code = main(["export", str(tiny_run["ckpt"]), "-o", f"{target}/"])
    assert code == 2
    _one_line_error(capsys, "model.onnx")
    assert not target.exists()


def test_data_info_on_binary_0_255_masks_is_one_line(tmp_path, capsys):
    for kind in ("images", "masks"):
        (tmp_path / "d" / kind / "train").mkdir(parents=True)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255  # the object, as many tools save binary masks
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "d/images/train/a.png")
    Image.fromarray(mask).save(tmp_path / "d/masks/train/a.png")
    assert main(["data", "info", str(tmp_path / "d")]) == 2
    _one_line_error(capsys, "mask // 255")


def test_data_synth_out_under_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    code = main(["data", "synth", "--out", str(blocker / "synth"), "--train", "1", "--val", "1"])
    assert code == 2
    _one_line_error(capsys, f"{blocker} is a file")
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("option", ["--out", "--cache"])
def test_demo_directory_under_a_file_is_one_line(tmp_path, capsys, option):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    code = main(["demo", "--quick", option, str(blocker / "sub")])
    assert code == 2
    _one_line_error(capsys, f"{blocker} is a file")
    assert blocker.read_text() == "keep me"
