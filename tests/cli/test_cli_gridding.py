"""fcnkit gridding: acceptance (1,2,9 grids, 1,2,5 does not), table, plot, suggestions."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fcnkit.cli import main


def _json(argv, capsys):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_acceptance_verdicts(capsys):
    bad = _json(["gridding", "1,2,9", "--json"], capsys)
    assert bad["verdict"] == "gridding" and bad["grids"] and bad["holes"] > 0
    assert bad["M"] == [3, 5, 9] and bad["m_rule_ok"] is False
    good = _json(["gridding", "1,2,5", "--json"], capsys)
    assert good["verdict"] == "no gridding" and good["holes"] == 0 and good["M"] == [1, 2, 5]
    assert good["receptive_field"] == 17


def test_json_coverage_matches_torch(capsys):
    report = _json(["gridding", "2,4", "--kernel", "2", "--json"], capsys)
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    for r in (2, 4):
        x = F.conv2d(x, torch.ones(1, 1, 2, 2, dtype=torch.float64), padding=r, dilation=r)
    np.testing.assert_array_equal(np.array(report["coverage"]), x[0, 0].numpy())
    assert report["common_factor"] == 2 and report["grids"]


def test_table_plot_and_suggestions(tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["gridding", "2,2,2", "--plot", str(png), "--suggest", "3,13"]) == 0
    out = capsys.readouterr().out
    assert "gridding" in out and "120 of 169" in out
    assert "1,2,3" in out.split("suggested rates")[1].splitlines()[2]
    assert png.read_bytes()[:4] == b"\x89PNG"
    first = png.read_bytes()
    assert main(["gridding", "2,2,2", "--plot", str(png)]) == 0
    assert png.read_bytes() == first


@pytest.mark.parametrize(
    "argv, message",
    [
        (["gridding", "0,1"], "rates"),
        (["gridding", "1,2", "--kernel", "0"], "argument --kernel"),
        (["gridding", "1,2", "--suggest", "0,5"], "--suggest 0,5: LAYERS and RF"),
        (["gridding", "1,2", "--suggest", "3"], "--suggest"),
        (["gridding", "1,2", "--plot", "out.xyz"], "cannot write a .xyz picture; name it "
                                                   "with one of the formats"),
        (["rf", "vgg16", "--plot", "out.xyz"], ".png"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_gridding_is_bounded_like_every_picture(capsys):
    """A receptive field above fcnkit.limits.MAX_RECEPTIVE_FIELD is refused in one line
    (its 2-D map would be RF^2 cells) instead of exhausting memory."""
    from fcnkit.limits import MAX_RECEPTIVE_FIELD

    assert main(["gridding", f"1,{MAX_RECEPTIVE_FIELD // 2}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"limit {MAX_RECEPTIVE_FIELD}" in err
