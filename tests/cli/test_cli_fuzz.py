"""Property fuzz of the fast subcommands' numeric options (hypothesis): any value, in any
option, keeps the CLI contract (tests/cli/cli_contract.py): exit 0 or a one-line error with
exit 2, no traceback, no hang, strict JSON. Values the parser refuses are checked in-process
(cli_contract.in_process_violation), the others in a forked child."""

from __future__ import annotations

import pytest
from cli_contract import contract_violation, in_process_violation, parser_refuses, run_case
from hypothesis import given, settings
from hypothesis import strategies as st

NUMBER_TEXT = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.integers(0, 64).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "abc", "1,2", "1,2,3", "0x10", "1e309", "-0", "+5", "١٢"]),
    st.lists(st.integers(-3, 2000), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
)

FAST = {
    "conv": (["conv", "--size", "16", "--kernel", "3", "--json"],
             ["--size", "--kernel", "--stride", "--padding", "--dilation"]),
    "gridding": (["gridding", "1,2,5", "--json"], ["--kernel", "--suggest"]),
    "animate": (["animate", "--size", "4", "--kernel", "3", "-o", "{out}/a.gif", "--json"],
                ["--size", "--kernel", "--stride", "--padding", "--dilation", "--frame-ms"]),
    "data synth": (["data", "synth", "--out", "{out}/s", "--train", "1", "--val", "1",
                    "--size", "32", "--workers", "0", "--json"],
                   ["--train", "--val", "--seed", "--size", "--workers"]),
}


def _fuzz(command, data, tmp_path_factory):
    base, options = FAST[command]
    out = tmp_path_factory.mktemp("fuzz")
    chosen = data.draw(st.lists(st.sampled_from(options), min_size=1, max_size=3, unique=True))
    argv = [part.format(out=out) for part in base]
    for option in chosen:
        argv.append(f"{option}={data.draw(NUMBER_TEXT)}")
    if parser_refuses(argv):  # no work starts: checked in this process
        violation = in_process_violation(argv, tuple(chosen))
        assert violation is None, violation
        return
    result = run_case(argv, timeout=120)  # a bound on a hang, not a speed test (loaded CI)
    violation = contract_violation(result, run_dirs=[out])
    assert violation is None, violation + "\n" + result.stderr[-1500:]


@pytest.mark.slow  # a forked child per accepted example: seconds
@settings(max_examples=30)
@given(data=st.data())
def test_fuzz_conv(data, tmp_path_factory):
    _fuzz("conv", data, tmp_path_factory)


@pytest.mark.slow  # a forked child per accepted example: seconds
@settings(max_examples=30)
@given(data=st.data())
def test_fuzz_gridding(data, tmp_path_factory):
    _fuzz("gridding", data, tmp_path_factory)


@pytest.mark.slow  # the values the parser accepts render real GIFs (seconds of CPU each)
@settings(max_examples=20)
@given(data=st.data())
def test_fuzz_animate(data, tmp_path_factory):
    _fuzz("animate", data, tmp_path_factory)


@pytest.mark.slow  # a forked child per accepted example: seconds
@settings(max_examples=15)
@given(data=st.data())
def test_fuzz_data_synth(data, tmp_path_factory):
    _fuzz("data synth", data, tmp_path_factory)
