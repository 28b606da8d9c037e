"""`fcnkit conv`, run in-process; sizes checked against real torch modules."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fcnkit.cli import main
from fcnkit.errors import InputError, warn


def run_json(capsys, *argv):
    assert main(["conv", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_acceptance_size5_kernel3_stride2_padding1(capsys):
    report = run_json(capsys, "--size", "5", "--kernel", "3", "--stride", "2", "--padding", "1")
    assert report["output_size"] == 3
    assert report["effective_kernel"] == 3
    inverse = report["inverse"]
    assert inverse["layer"] == "conv_transpose"
    assert inverse["output_padding"] == 0 and inverse["output_size"] == 5


def test_inverse_transposed_conv_recovers_the_input_size_in_torch(capsys):
    report = run_json(
        capsys, "--size", "375,500", "--kernel", "3", "--stride", "2", "--padding", "1",
        "--dilation", "2",
    )
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, dilation=2)
    x = torch.zeros(1, 1, 375, 500)
    y = conv(x)
    assert report["output_size"] == list(y.shape[2:])
    assert report["effective_kernel"] == 5
    inv = report["inverse"]
    deconv = nn.ConvTranspose2d(
        1, 1, inv["kernel"], inv["stride"], inv["padding"], inv["output_padding"],
        dilation=inv["dilation"],
    )
    assert list(deconv(y).shape[2:]) == [375, 500] == inv["output_size"]
    assert report["transposed_as_direct"]["zeros_inserted"] == [1, 1]


def test_transposed_layer(capsys):
    report = run_json(
        capsys, "--size", "3", "--kernel", "3", "--stride", "2", "--padding", "1",
        "--transposed", "--output-padding", "1",
    )
    assert report["layer"] == "conv_transpose"
    assert report["output_size"] == 6  # (3-1)*2 - 2 + 2 + 1 + 1
    assert report["inverse"]["output_size"] == 3


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--size", "7", "--kernel", "2", "--pool"], 3),
        (["--size", "7", "--kernel", "2", "--pool", "--ceil-mode"], 4),
        (["--size", "7", "--kernel", "3", "--stride", "2", "--padding", "1", "--pool",
          "--convention", "caffe"], 4),
        (["--size", "375,500", "--kernel", "3", "--stride", "2", "--padding", "same",
          "--convention", "tensorflow"], [188, 250]),
        (["--size", "10", "--kernel", "3", "--stride", "2", "--padding", "valid"], 4),
    ],
)
def test_pool_and_conventions(capsys, argv, expected):
    assert run_json(capsys, *argv)["output_size"] == expected


def test_tensorflow_same_asymmetric_padding_has_no_symmetric_inverse(capsys):
    report = run_json(capsys, "--size", "6", "--kernel", "3", "--stride", "2", "--padding",
                      "same")
    assert report["output_size"] == 3
    assert report["same_padding"] == [[0, 1]]
    assert report["inverse"] is None and "asymmetric" in report["note"]


def test_human_output_is_a_table(capsys):
    assert main(["conv", "--size", "5", "--kernel", "3", "--stride", "2", "--padding", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["quantity", "value"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert any(line.startswith("output size") and line.split()[-1] == "3" for line in lines)
    assert "inverse ConvTranspose2d" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--size", "3", "--kernel", "5"], "does not fit"),
        (["--size", "5", "--kernel", "3", "--stride", "0"], "stride"),
        (["--size", "5", "--kernel", "3", "--padding", "-1"], "padding"),
        (["--size", "5", "--kernel", "3", "--transposed", "--stride", "2",
          "--output-padding", "2"], "output_padding"),
        (["--size", "5", "--kernel", "3", "--output-padding", "1"], "transposed"),
        (["--size", "5", "--kernel", "3", "--convention", "tensorflow"], "same"),
        (["--size", "5", "--kernel", "3", "--padding", "2", "--pool"], "half the kernel"),
        (["--size", "5,a", "--kernel", "3"], "integer"),
        (["--size", "5", "--kernel", "3", "--padding", "full"], "same"),
        (["--kernel", "3"], "--size"),
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, argv, needle):
    assert main(["conv", *argv]) == 2  # argparse's refusals too: main returns, never exits
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert needle in err


def test_caffe_convention_conv_and_deconv(capsys):
    # Caffe's truncating division: a 5-wide kernel on 4 units with stride 2 still gives 1.
    report = run_json(capsys, "--size", "4", "--kernel", "5", "--stride", "2",
                      "--convention", "caffe")
    assert report["output_size"] == 1 and report["inverse"] is None
    report = run_json(capsys, "--size", "6", "--kernel", "3", "--stride", "2", "--padding", "1",
                      "--convention", "caffe")
    assert report["output_size"] == 3
    assert report["inverse"]["output_padding"] == 1 and "output_padding" in report["note"]
    report = run_json(capsys, "--size", "16", "--kernel", "64", "--stride", "32",
                      "--transposed", "--convention", "caffe")
    assert report["output_size"] == 544


# --- the error contract and rank-0 printing (cli/__init__.main), on the fastest command ---


def test_a_programming_error_keeps_its_traceback(monkeypatch):
    import fcnkit.cli.conv as conv

    def bug(**kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(conv, "describe_layer", bug)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["conv", "--size", "5", "--kernel", "3"])


@pytest.mark.parametrize("exc", [InputError("size 0 is bad; pass 5"),
                                 FileNotFoundError(2, "No such file", "x.json")])
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, exc):
    import fcnkit.cli.conv as conv

    def refuse(**kwargs):
        raise exc

    monkeypatch.setattr(conv, "describe_layer", refuse)
    assert main(["conv", "--size", "5", "--kernel", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fcnkit conv: error: ")


def test_reports_and_warnings_are_printed_on_rank_0_only(monkeypatch, capsys):
    import fcnkit.cli.conv as conv

    real = conv.describe_layer

    def warn_then_describe(**kwargs):
        warn("a note for the user")
        return real(**kwargs)

    monkeypatch.setattr(conv, "describe_layer", warn_then_describe)
    argv = ["conv", "--size", "5", "--kernel", "3", "--json"]
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 0
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["output_size"] == 3
    assert err == "fcnkit: warning: a note for the user\n"


def test_the_arithmetic_commands_do_not_import_torch(fresh_check):
    # In a fresh interpreter (tests/fresh_interpreter.py): main(["conv", ...]).
    report, _ = fresh_check("check_cli_conv_without_torch")
    assert report["code"] == 0
    assert report["torch"] is False, "building the parser or running conv imported torch"
