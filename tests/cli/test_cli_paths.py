"""The path-collision matrix of the CLI contract: an output that is an input, another
output or a run's state is refused before anything is written (exit 2, one line, the file
untouched), and ``--force`` is the documented override."""

from __future__ import annotations

import pytest
from cli_contract import (
    PATH_COLLISIONS,
    collision_violation,
    contract_violation,
    run_case,
    snapshot,
)


@pytest.mark.parametrize("name", list(PATH_COLLISIONS))
def test_path_collision_is_refused(name, tmp_path):
    argv, kept = PATH_COLLISIONS[name](tmp_path)
    before = snapshot(kept)
    result = run_case(argv, timeout=120, env={"FCNKIT_CACHE": str(tmp_path / "cache")})
    violation = collision_violation(result, before)
    assert violation is None, violation + "\n" + result.stderr[-2000:]
    assert "--force" in result.stderr or "twice" in result.stderr


def test_data_synth_force_writes_into_the_directory(tmp_path):
    argv, _ = PATH_COLLISIONS["data synth --out an existing VOC dataset"](tmp_path)
    result = run_case([*argv, "--force"], timeout=120)
    assert contract_violation(result) is None and result.code == 0, result.stderr
    voc = tmp_path / "VOC2012"
    assert (voc / "synthetic.json").is_file()
    # its own earlier output: a rerun needs no --force
    again = run_case(argv, timeout=120)
    assert again.code == 0, again.stderr


def test_export_force_gets_past_the_collision(tmp_path):
    # With --force the refusal is gone; the dummy checkpoint is then refused for what it is.
    argv, _ = PATH_COLLISIONS["export safetensors -o RUN/best.pt"](tmp_path)
    result = run_case([*argv, "--force"], timeout=120)
    assert result.code == 2 and "run's state" not in result.stderr
    assert "cannot be read" in result.stderr or "not a fcnkit" in result.stderr, result.stderr


def test_export_option_twice_or_reserved_is_one_line(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    for options, fragment in ((["--option", "faithful=true", "--option", "faithful=false"],
                               "given twice"),
                              (["--option", f"weights={tmp_path / 'other.bin'}"], "weights=")):
        result = run_case(["export", str(weights), "--model", "fcn8s", "-o",
                           str(tmp_path / "out.safetensors"), *options], timeout=120)
        assert contract_violation(result) is None and result.code == 2, result.stderr
        assert fragment in result.stderr
