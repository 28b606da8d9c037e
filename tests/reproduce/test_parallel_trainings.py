"""Trainings run at once (``fcnkit reproduce --jobs``): the job count and threads each
training gets, and that a parallel run gives the numbers of the same trainings run one
after another."""

from __future__ import annotations

import pytest

from fcnkit.cli import main
from fcnkit.errors import InputError
from fcnkit.reproduce import Budget, ReproduceConfig, runner


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr(runner, "usable_cpus", lambda: 4)


def test_auto_jobs_is_one_per_cpu_divided_by_threads_and_capped_by_the_trainings(four_cpus):
    assert runner.auto_jobs(ReproduceConfig(jobs=None), 10) == 4
    assert runner.auto_jobs(ReproduceConfig(jobs=None, threads=2), 10) == 2
    assert runner.auto_jobs(ReproduceConfig(jobs=None, threads=8), 10) == 1
    assert runner.auto_jobs(ReproduceConfig(jobs=None), 3) == 3
    assert runner.auto_jobs(ReproduceConfig(jobs=3), 10) == 3
    assert runner.auto_jobs(ReproduceConfig(), 10) == 1  # the library default: one at once


def test_auto_jobs_stop_at_the_memory_cap(monkeypatch):
    monkeypatch.setattr(runner, "usable_cpus", lambda: 64)
    assert runner.auto_jobs(ReproduceConfig(jobs=None), 100) == runner.AUTO_JOBS_MAX
    assert runner.auto_jobs(ReproduceConfig(jobs=16), 100) == 16  # asked for: granted


def test_threads_are_shared_out_among_the_jobs_unless_given(four_cpus):
    assert runner.threads_per_job(ReproduceConfig(), 1) is None  # torch's default
    assert runner.threads_per_job(ReproduceConfig(), 2) == 2
    assert runner.threads_per_job(ReproduceConfig(), 4) == 1
    assert runner.threads_per_job(ReproduceConfig(), 3) == 1
    assert runner.threads_per_job(ReproduceConfig(threads=3), 2) == 3


def test_a_bad_job_count_is_one_line(capsys):
    assert main(["reproduce", "skips", "--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--jobs" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match="--jobs"):
        runner.auto_jobs(ReproduceConfig(jobs=-1), 4)


TINY = Budget(train=4, val=2, size=(40, 48), epochs=1, crop=(32, 32), batch_size=2,
              **runner.RECIPE)


@pytest.mark.slow
def test_parallel_trainings_give_the_numbers_of_the_same_trainings_one_by_one(tmp_path,
                                                                             capsys):
    planned = [("fcn8s", 0), ("fcn16s", 1)]

    def run(jobs, out):
        config = ReproduceConfig(out=str(out), budget=TINY, threads=1, jobs=jobs)
        data = runner.dataset_for(config, TINY, "limbs")
        return runner.train_variants(
            config, TINY, data,
            [(out / "runs" / f"{m}-{s}", {"model": m, "seed": s}) for m, s in planned])

    one_by_one = run(1, tmp_path / "serial")
    at_once = run(2, tmp_path / "parallel")
    assert [r["seed"] for r in at_once] == [0, 1]  # in the order asked, not of finishing
    # each job's own lines in its run directory; one line per finished training here
    err = capsys.readouterr().err
    assert err.count("fcnkit reproduce: [") == 2 and "fcn8s-0: val mIoU" in err
    for name in ("fcn8s-0", "fcn16s-1"):
        assert "epoch 1/1" in (tmp_path / "parallel" / "runs" / name / "train.log").read_text()
    strip = ("time_s",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in at_once] == \
        [{k: v for k, v in r.items() if k not in strip} for r in one_by_one]


def test_seeds_help_names_each_claims_full_design(capsys):
    from fcnkit.reproduce import gridding, padding, skips, upsampling

    assert main(["reproduce", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, module in (("skips", skips), ("upsampling", upsampling),
                         ("gridding", gridding), ("padding", padding)):
        assert f"{name} {module.FULL_SEEDS}" in text
