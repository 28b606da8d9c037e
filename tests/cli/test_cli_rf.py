"""fcnkit rf: acceptance (VGG-16 pool5 = 212), table, JSON, plot, one-line errors."""

import json

import pytest

from fcnkit.cli import main


def test_vgg16_json_gives_literature_pool5(capsys):
    assert main(["rf", "vgg16", "--size", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"] == [212, 212]  # Araujo et al. 2019, VGG 16
    assert report["stride"] == [32, 32] and report["padding"] == [90, 90]
    assert report["layers"][-1]["name"] == "output"
    assert report["layers"][-2]["name"] == "features.30"
    assert report["whole_input"] is False


@pytest.mark.slow  # renders a plot: seconds
def test_table_and_plot(tmp_path, capsys):
    png = tmp_path / "rf.png"
    assert main(["rf", "resnet18", "--size", "64,96", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["layer", "kind", "output", "CxHxW"]
    assert any(line.startswith("layer4.1.add") and " 435 " in line for line in lines)
    first = png.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["rf", "resnet18", "--size", "64,96", "--plot", str(png)]) == 0
    assert png.read_bytes() == first  # deterministic


def test_global_pooling_flagged_in_table(capsys):
    assert main(["rf", "mobilenet_v3_small", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "whole (64)" in out and "global pooling" in out


@pytest.mark.parametrize(
    "argv, message",
    [(["rf", "nosuchnet"], "unknown model"), (["rf", "vgg16", "--size", "0"], "--size"),
     (["rf", "vgg16", "--size", "100001"], "--size")],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2  # argparse's refusals too: main returns, never exits
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.slow  # seconds
def test_classifier_without_features_is_cut_at_its_global_pooling(capsys):
    # GoogLeNet: no `features`; the whole model runs (its forward has control flow) and
    # the report ends at the tensor entering the final global average pool.
    assert main(["rf", "googlenet", "--size", "96", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [layer["name"] for layer in report["layers"]]
    assert names[-2] == "inception5b.cat" and "fc" not in names and "avgpool" not in names
    assert report["stride"] == [32, 32] and report["whole_input"] is False
    assert report["layers"][-1]["shape"] == [1, 1024, 3, 3]


@pytest.mark.slow  # seconds
def test_model_that_cannot_run_at_that_size(capsys):
    assert main(["rf", "vit_b_16", "--size", "96"]) == 2
    assert "try another input size" in capsys.readouterr().err
