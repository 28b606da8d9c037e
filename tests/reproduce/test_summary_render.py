"""The host's instruction sets and the power line of the generated tables."""

from __future__ import annotations

from fcnkit.reproduce.runner import cpu_isa
from fcnkit.reproduce.summary import power_line


def test_cpu_isa_reads_the_flags_line():
    info = ("processor\t: 0\nmodel name\t: Some CPU\n"
            "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16\n")
    # amx_tile absent: no AMX, even with amx_bf16 listed
    assert cpu_isa(info) == ["AVX2", "AVX-512", "AVX512-BF16"]
    assert cpu_isa("flags : avx2 amx_tile\n") == ["AVX2", "AMX"]
    assert cpu_isa("model name : x\n") == []


def test_power_line_names_the_clauses_that_cannot_decide():
    decisive = {"clause": "a beats b", "power": {"half_width": 0.004, "threshold": 0.02,
                                                 "decisive": True}}
    weak = {"clause": "c beats d", "power": {"half_width": 0.021, "threshold": 0.01,
                                             "decisive": False}}
    line = power_line([decisive, weak])
    assert line.startswith("Power: 1 of 2 clauses decisive")
    assert "c beats d (half-width 0.021 against 0.01)" in line and "a beats b" not in line
    assert power_line([]) == ""
    # with the run's spread, the seeds a rerun would need (see test_stats)
    line = power_line([{**weak, "sd": 0.0216}])
    assert "c beats d (half-width 0.021 against 0.01; 15 seeds would reach it" in line


def _result(seeds, jobs):
    runs = [{"variant": v, "seed": s, "metrics": {"miou": 0.5 + s / 100}}
            for s in seeds for v in ("a", "b") if v == "a" or s < 3]
    return {"claim": "x", "host": {"cpu": "Some CPU", "threads": 1, "jobs": jobs,
                                   "precision": "fp32"},
            "runs": runs, "comparisons": [], "verdict": "inconclusive"}


def test_host_line_says_how_many_trainings_ran_at_once():
    from fcnkit.reproduce.summary import render_result

    assert "threads 1 per training, 2 trainings at once." in render_result(_result([0], 2))
    alone = render_result(_result([0], 1))
    assert "threads 1." in alone and "at once" not in alone


def test_per_seed_tables_turn_to_rows_beyond_eight_seeds():
    from fcnkit.reproduce.summary import WIDE_SEEDS, _per_seed_table

    wide = _per_seed_table(_result(range(WIDE_SEEDS), 1))
    assert wide.splitlines()[0] == "| metric | variant | " + " | ".join(
        f"seed {s}" for s in range(WIDE_SEEDS)) + " |"
    tall = _per_seed_table(_result(range(12), 1)).splitlines()
    assert tall[0] == "mIoU:" and tall[2] == "| seed | a | b |"
    # one row per seed; a variant that did not run a seed shows a dash
    assert tall[4] == "| 0 | 0.500 | 0.500 |" and tall[-1] == "| 11 | 0.610 | – |"
