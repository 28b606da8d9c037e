"""The CLI contract, for every subcommand and every numeric option: whatever the value, no
traceback, no hang, exit 0 or a one-line error with exit 2, and never exit 0 with NaN
weights (harness: tests/cli/conftest.py).

Each option is tried with the hostile values of its kind: not-a-number, infinities, zero,
negatives, huge and overflowing numbers, non-numbers, empty strings and (for sizes) huge
H,W pairs. A value the argument parser refuses is checked in-process (``main(argv)`` returns
2 with one line naming the option); the others run for real on tiny inputs, in a child: one
such case per light subcommand in the fast tier, all of them in the slow tier.
"""

from __future__ import annotations

import pytest
from cli_contract import (
    contract_violation,
    in_process_violation,
    parser_refuses,
    run_case,
    run_case_fresh,
)

NUMBERS = ["nan", "inf", "-inf", "0", "-1", "-0.5", "1e6", "1e18", str(2**64), "abc", "",
           "1,2,3"]
INTEGERS = ["0", "-1", "1000000", str(10**18), str(2**64), "1.5", "nan", "abc", ""]
SIZES = ["0", "-1", "0,5", "5,-3", "1000000", "30000,30000", "100000,100000", str(2**64),
         "1e6", "abc", "", "1,2,3"]
#: demo runs a whole training when given a valid value: only values it must refuse.
REFUSED_INTEGERS = ["-1", str(2**64), "1.5", "nan", "abc", ""]

# subcommand -> (base argv with {data}/{ckpt}/{images}/{out} placeholders, {option: values})
COMMANDS: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "gridding": (["gridding", "1,2,5"], {
        "RATES": ["0", "-1", "1000000", "1,1000000", str(2**64), "1.5", "abc", "",
                  ",".join(["1000"] * 2000)],
        "--kernel": INTEGERS,
        "--suggest": ["0,5", "5,0", "-1,5", "1000000,67", "6,100000000", str(2**64) + ",5",
                      "6", "6,67,1", "abc"],
    }),
    "animate": (["animate", "--size", "5", "--kernel", "3", "-o", "{out}/a.gif"], {
        "--size": SIZES, "--kernel": SIZES, "--stride": SIZES, "--padding": SIZES,
        "--dilation": SIZES, "--frame-ms": INTEGERS,
    }),
    "animate --transposed": (["animate", "--size", "3", "--kernel", "3", "--stride", "2",
                              "--transposed", "-o", "{out}/t.gif"], {
        "--size": SIZES, "--stride": SIZES, "--output-padding": SIZES,
    }),
    "conv": (["conv", "--size", "32", "--kernel", "3", "--json"], {
        "--size": SIZES, "--kernel": SIZES, "--stride": SIZES, "--padding": SIZES,
        "--dilation": SIZES,
    }),
    "conv --transposed": (["conv", "--size", "8", "--kernel", "4", "--stride", "2",
                           "--transposed"], {"--output-padding": SIZES, "--stride": SIZES}),
    "models": (["models", "--only", "fcn32s", "--no-rf", "--size", "64"], {
        "--size": SIZES, "--num-classes": INTEGERS,
    }),
    "rf": (["rf", "fcn32s", "--size", "64"], {"--size": SIZES, "--num-classes": INTEGERS}),
    "data synth": (["data", "synth", "--out", "{out}/synth", "--train", "2", "--val", "1",
                    "--size", "32,32", "--workers", "0"], {
        "--train": INTEGERS, "--val": INTEGERS, "--seed": INTEGERS, "--size": SIZES,
        "--workers": INTEGERS,
    }),
    "data synth --task limbs": (["data", "synth", "--task", "limbs", "--out", "{out}/limbs",
                                 "--train", "1", "--val", "1", "--size", "48,64",
                                 "--workers", "0"], {"--seed": INTEGERS, "--size": SIZES}),
    "data synth --task regions": (["data", "synth", "--task", "regions", "--out",
                                   "{out}/regions", "--train", "1", "--val", "1", "--size",
                                   "48,64", "--workers", "0"], {"--seed": INTEGERS,
                                                                "--size": SIZES}),
    "train": (["train", "--data", "synth:{data}", "--model", "fcn32s", "--epochs", "1",
               "--batch-size", "2", "--crop", "32,32", "--workers", "0",
               "--max-steps-per-epoch", "1", "--no-progress", "--out", "{out}/run"], {
        "--epochs": INTEGERS, "--batch-size": INTEGERS, "--lr": NUMBERS,
        "--momentum": NUMBERS, "--weight-decay": NUMBERS, "--lr-power": NUMBERS,
        "--crop": SIZES, "--scale-range": ["0,1", "-1,2", "2,1", "1,inf", "nan,1", "1e-30,1",
                                           "1,1e30", "0.5", "abc", ""],
        "--seed": INTEGERS, "--workers": ["-1", str(2**64), "1.5", "abc"],
        "--log-every": INTEGERS, "--max-steps-per-epoch": INTEGERS,
        "--threads": ["0", "-1", "1000000", str(2**64), "abc"],
        "--width": ["0", "-0.5", "1.5", "nan", "inf", "1e-300", "abc", ""],
        "--class-weights": ["0,0,0,0,0,0,0,0,0", "nan,1,1,1,1,1,1,1,1",
                            "inf,1,1,1,1,1,1,1,1", "-1,1,1,1,1,1,1,1,1", "1,2", "abc", "",
                            "1e30,1e30,1e30,1e30,1e30,1e30,1e30,1e30,1e30"],
        "--nproc": ["0", "-1", str(2**64), "abc"],
    }),
    "eval": (["eval", "--checkpoint", "{ckpt}", "--data", "synth:{data}", "--json"], {
        "--window": SIZES, "--overlap": NUMBERS, "--batch-size": INTEGERS,
        "--workers": ["-1", str(2**64), "1.5", "abc"], "--max-pixels": INTEGERS,
    }),
    "predict": (["predict", "--checkpoint", "{ckpt}", "{images}", "--out", "{out}/pred",
                 "--json"], {
        "--window": SIZES, "--overlap": NUMBERS, "--max-pixels": INTEGERS,
    }),
    "export": (["export", "{ckpt}", "-o", "{out}/model.onnx", "--json"], {
        "--opset": INTEGERS, "--size": SIZES, "--calibration-images": INTEGERS,
    }),
    "eval --boundary-width": (["eval", "--checkpoint", "{ckpt}", "--data", "synth:{data}",
                               "--json"], {"--boundary-width": INTEGERS,
                                           "--threads": INTEGERS}),
    "demo": (["demo", "--quick", "--out", "{out}/demo", "--cache", "{out}/cache"], {
        "--seed": REFUSED_INTEGERS, "--workers": REFUSED_INTEGERS,
        "--threads": REFUSED_INTEGERS + ["0"],
    }),
}

#: Commands that run torch or real work when the parser accepts their arguments (demo
#: generates its dataset before its own checks refuse a seed): slow tier, fresh interpreter.
HEAVY = {"train", "eval", "predict", "models", "rf", "export", "demo"}

#: Stand-ins for the contract world's paths while collecting: the parser checks the shape of
#: a path, never whether it exists (each refused case re-checks with the real paths).
_COLLECT_WORLD = {"data": "/contract/data", "ckpt": "/contract/run/last.pt",
                  "images": "/contract/images"}


def _cases():
    """(command, option, value, refused); refused cases run in-process in the fast tier,
    accepted ones in a child (a fresh interpreter for HEAVY commands). Of the accepted cases
    only the first of each light command stays in the fast tier (one child each: its
    contract stays covered there); the others, and every accepted HEAVY case, are slow."""
    for command, (_, options) in COMMANDS.items():
        representative = command.split()[0] not in HEAVY
        for option, values in options.items():
            for value in values:
                argv = build_argv(command, option, value, _COLLECT_WORLD, "/contract/out")
                refused = parser_refuses(argv)
                marks = [] if refused or representative else [pytest.mark.slow]
                if not refused:
                    representative = False
                yield pytest.param(command, option, value, refused, marks=marks,
                                   id=f"{command}{' ' if option else ''}{option}={value[:24]}")


def build_argv(command: str, option: str, value: str, world: dict, out) -> list[str]:
    base, _ = COMMANDS[command]
    fill = {"data": world["data"], "ckpt": world["ckpt"], "images": world["images"], "out": out}
    argv = [part.format(**fill) for part in base]
    if option == "RATES":
        argv[1] = value
    else:
        argv += [f"{option}={value}"]  # "=": a value starting with '-' is not an option
    return argv


CASES = list(_cases())


def test_most_cases_are_refused_by_the_parser():
    """The split is real: both kinds exist, and each HEAVY command has cases that run."""
    refused = [p for p in CASES if p.values[3]]
    assert 300 < len(refused) < len(CASES)
    ran = {p.values[0] for p in CASES if not p.values[3]}
    assert {"train", "eval", "predict", "gridding", "conv", "animate", "data synth"} <= ran


@pytest.mark.parametrize(("command", "option", "value", "refused"), CASES)
def test_cli_contract(command, option, value, refused, request):
    if refused:
        # Refused while parsing: checked in this process, no world needed (no work starts;
        # parser_refuses proves it again right here).
        argv = build_argv(command, option, value, _COLLECT_WORLD, "/contract/out")
        assert parser_refuses(argv), f"the parser accepts fcnkit {' '.join(argv)} after all"
        violation = in_process_violation(argv, option)
        assert violation is None, violation
        return
    tmp_path = request.getfixturevalue("tmp_path")
    # Only commands that read the data, checkpoint or images build the shared tiny run.
    uses_world = any(key in part for part in COMMANDS[command][0]
                     for key in ("{data}", "{ckpt}", "{images}"))
    world = request.getfixturevalue("tiny_run") if uses_world else _COLLECT_WORLD
    argv = build_argv(command, option, value, world, tmp_path)
    # Real training/inference on a loaded 2-core machine can take minutes; the bound is
    # still a bound (a hang or a runaway loop is killed).
    heavy = command.split()[0] in HEAVY
    # Heavy commands run torch: a fresh interpreter each (see cli_contract.run_case_fresh).
    result = (run_case_fresh if heavy else run_case)(
        argv, timeout=300 if heavy else 60, env={"FCNKIT_CACHE": str(tmp_path / "cache")})
    violation = contract_violation(result, run_dirs=[tmp_path])
    assert violation is None, violation + "\n" + result.stderr[-2000:]
