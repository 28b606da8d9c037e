"""`fcnkit animate` against real torch layers: geometry PyTorch accepts is drawn."""

from __future__ import annotations

import json

import torch
from torch import nn

from fcnkit.cli import main


def test_animate_draws_output_padding_allowed_by_dilation(tmp_path, capsys):
    # nn.ConvTranspose2d accepts output_padding < max(stride, dilation); with stride 1 and
    # dilation 2, output_padding 1 is valid, but `fcnkit animate` refused it ("must be
    # smaller than stride 1 to draw the equivalent direct convolution").
    out = tmp_path / "t.gif"
    argv = ["animate", "--size", "2", "--kernel", "2", "--dilation", "2", "--transposed",
            "--output-padding", "1", "-o", str(out), "--json", "--frame-ms", "10"]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    layer = nn.ConvTranspose2d(1, 1, 2, stride=1, dilation=2, output_padding=1)
    shape = list(layer(torch.zeros(1, 1, 2, 2)).shape[2:])
    assert report["output_shape"] == shape == [5, 5]
    assert report["frames"] == 25 and out.is_file()


def test_animate_output_padding_beyond_stride_and_dilation_is_one_line(tmp_path, capsys):
    argv = ["animate", "--size", "2", "--kernel", "2", "--dilation", "2", "--transposed",
            "--output-padding", "2", "-o", str(tmp_path / "t.gif")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "output_padding" in err[0] and "Traceback" not in err[0]


def test_plot_path_without_suffix_is_written_as_png(tmp_path, capsys):
    # check_figure_path documents "png without a suffix"; `fcnkit gridding 1,2 --plot
    # coverage` ended in matplotlib's ValueError "Format 'x8p4b2ms' is not supported"
    # (save_figure passed the temporary file's random suffix), a traceback and exit code 1.
    out = tmp_path / "coverage"
    assert main(["gridding", "1,2", "--plot", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    upper = tmp_path / "coverage.PDF"  # the suffix's case does not matter either
    assert main(["gridding", "1,2", "--plot", str(upper)]) == 0
    assert upper.read_bytes().startswith(b"%PDF")


def test_gridding_json_path_counts_are_never_negative(capsys):
    # 31 layers of rate 1: receptive field 63, so the JSON carries the coverage map; its
    # int64 path counts wrapped around to negative numbers (exact centre: ~2.9e27 paths).
    rates = ",".join(["1"] * 31)
    assert main(["gridding", rates, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["receptive_field"] == 63 and report["verdict"] == "no gridding"
    assert min(min(row) for row in report["coverage"]) >= 1
    assert report["coverage"][31][31] == 2**63 - 1  # saturated, not wrapped
