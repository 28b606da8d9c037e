"""What every claim shares: its config, the dataset, training one variant per seed,
scoring it (mIoU and boundary metrics), the verdict of its clauses
(:func:`judge`, by the rules of :mod:`fcnkit.reproduce.stats`), the host it ran on, and the
output files (``results.json`` through the strict JSON writer, ``results.md``).

A training claim compares variants (models or options) trained on the same data, with the
same budget and the same seeds, through the library's own loop
(:func:`fcnkit.training.loop.train`), then scores each run's last checkpoint on the whole
val split with :class:`fcnkit.metrics.ConfusionMatrix` and
:class:`fcnkit.metrics.BoundaryMetrics`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fcnkit.atomic import write_json_atomic, write_text_atomic
from fcnkit.constants import IGNORE_INDEX
from fcnkit.errors import InputError
from fcnkit.reproduce import stats
from fcnkit.runtime.precision import cpu_has_native_bf16
from fcnkit.training.config import AUTO_RESUME, TrainConfig


@dataclass(frozen=True)
class Budget:
    """A training budget: dataset size (generated shapes task), epochs, crop, batch, and
    the recipe every variant of a claim shares (optimizer, learning rate, backbone width)."""

    train: int
    val: int
    size: tuple[int, int]
    epochs: int
    crop: tuple[int, int]
    batch_size: int = 8
    lr: float = 0.02
    max_steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    weight_decay: float = 1e-4
    #: fraction of the backbone's channel counts (None: the standard network)
    width: float | None = None
    #: pinned, not "auto": auto picks bf16 autocast on CPUs with native bf16 (AMX), so the
    #: same command would train in another precision on another machine; the recipe was
    #: chosen, and the recorded claims were trained, in float32.
    precision: str = "fp32"


#: Seeds of a full run: with 5 paired seeds t(0.95, 4) = 2.13, so a clause decides when
#: the deltas' sd is below about 1.05 × its threshold (t·sd/√n < threshold); at 3 seeds
#: (t = 2.92) it needed sd < 0.59 × threshold.
FULL_SEEDS = 5
#: Seeds of a --quick run: the fewest that give a bound (a smoke run).
QUICK_SEEDS = 2


@dataclass(frozen=True)
class ReproduceConfig:
    """Settings of one ``fcnkit reproduce CLAIM`` run.

    Attributes:
        quick: the short protocol (fewer seeds and epochs): a smoke run, which on the
            shapes task decides no clause (docs/reproductions.md).
        seeds: number of seeds (None: :data:`QUICK_SEEDS` quick; full: the claim's own
            design, at least :data:`FULL_SEEDS`, e.g. ``skips.FULL_SEEDS`` = 18).
        data: dataset spec (None: the claim's synthetic task, generated under
            ``out/data``; a ``voc:ROOT`` runs the same protocol on real data).
        task: the synthetic task generated when ``data`` is None (None: the claim's own,
            e.g. ``limbs`` for skips; ``objects``, ``shapes``, ``limbs``, ``regions``).
        out: output directory (results.json, results.md, figures, run directories).
        threads: torch threads of each training (None: the default, which with
            ``jobs`` > 1 is the usable CPUs shared out among the jobs).
        jobs: trainings run at once, each in its own process (:func:`train_variants`);
            None: one per usable CPU (:func:`auto_jobs`). Small networks use two cores
            badly: on host C two 1-thread trainings side by side finish in 36.5 s where
            one 2-thread training takes 33.3 s, 1.8x the throughput
            (docs/reproductions.md, "Parallel trainings").
        budget: override of the claim's budget (tests use a tiny one).
    """

    quick: bool = False
    seeds: int | None = None
    data: str | None = None
    out: str = "runs/reproduce"
    threads: int | None = None
    budget: Budget | None = None
    task: str | None = None
    jobs: int | None = 1
    boundary_width: int = 3
    extra: Mapping[str, Any] = field(default_factory=dict)

    def seed_list(self) -> list[int]:
        n = self.seeds if self.seeds is not None else (QUICK_SEEDS if self.quick
                                                        else FULL_SEEDS)
        if n < 1:
            raise InputError(f"--seeds {n} must be at least 1")
        return list(range(n))


# The recipe every training claim shares. It was chosen before any claim was run, by
# pilots of FCN-8s alone on other data (dataset seed 7) and another training seed (100):
# the standard-width ResNet-18 with SGD stayed at the background share in the demo's
# budget (mIoU 0.11), a quarter-width copy trains 4.6x faster per image, and AdamW at
# 3e-3 was the faster of the two learning rates tried (mIoU 0.38 after 20 epochs against
# 0.20 at 1e-3). docs/reproductions.md, "How the budget was chosen", has the numbers.
RECIPE: dict[str, Any] = {"optimizer": "adamw", "lr": 0.003, "weight_decay": 1e-4,
                          "width": 0.25}
# The limbs-task budgets of skips and upsampling on 2 CPU cores. A full run trains 4
# variants x 5 seeds inside 20 minutes, so one run may take about 50 s with its scoring.
# The budget pilot (benchmarks/pilot_budgets.py, dataset seed 7, training seed 100,
# docs/reproductions.md "How the budgets were chosen") measured FCN-8s at about 7 s per
# epoch of 800 images with validation; with 6 epochs it meets the criterion declared in
# skips.py (0.75 val mIoU within 90 s) at epoch 4 (29 s) and ends at 0.827 (41.5 s).
QUICK = Budget(train=400, val=100, size=(96, 128), epochs=4, crop=(96, 96), **RECIPE)
FULL = Budget(train=800, val=200, size=(96, 128), epochs=6, crop=(96, 96), **RECIPE)


def budget_for(config: ReproduceConfig, quick: Budget = QUICK, full: Budget = FULL) -> Budget:
    """The config's budget override, else ``quick`` or ``full`` (a claim's own budgets)."""
    if config.budget is not None:
        return config.budget
    return quick if config.quick else full


def dataset_for(config: ReproduceConfig, budget: Budget, task: str = "shapes") -> str:
    """``config.data``, else the synthetic ``config.task`` (default ``task``, the claim's
    own) for ``budget``, generated once under out/data with dataset seed 0."""
    if config.data:
        return config.data
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from fcnkit.data.cache import ensure_dataset
    from fcnkit.data.synthetic import TASKS

    task = config.task or task
    if task not in TASKS:
        raise InputError(f"--task {task}: choose one of {', '.join(TASKS)}")
    spec = {"train": budget.train, "val": budget.val, "seed": 0, "size": budget.size,
            "task": task}
    root, _ = ensure_dataset(spec, Path(config.out) / "data")
    return f"synth:{root}"


#: TrainConfig fields that do not change what a run computes (where it is written, how
#: it reports); a finished or interrupted run directory is reused when the rest agree.
_BOOKKEEPING = ("out", "resume", "threads", "progress", "log_every", "tensorboard")


def train_variant(config: ReproduceConfig, budget: Budget, data: str, run_dir: Path,
                  **variant: Any) -> dict[str, Any]:
    """Train one variant with one seed; return its epoch records and final scores.

    ``variant``: the keyword arguments of :func:`variant_config` (``model``, ``seed``,
    ``backbone``, ``upsample``, ``model_options``, ``stop_after``).

    The run continues from ``run_dir/last.pt`` when there is one (``resume="auto"``): an
    interrupted claim, run again with the same ``--out``, keeps its finished trainings and
    resumes the one that was cut off, bit for bit as if uninterrupted. A run directory
    trained with other settings is refused rather than mixed in.
    """
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from fcnkit.training.loop import train
    from fcnkit.training.runlog import read_run_log

    train_config = variant_config(config, budget, data, run_dir, **variant)
    last = run_dir / "last.pt"
    if _finished_epochs(run_dir, train_config) < train_config.last_epoch:
        last = Path(train(train_config)["last"])
    records = [r for r in read_run_log(run_dir / "metrics.jsonl") if r.get("kind") == "epoch"]
    epochs = [{"epoch": int(r["epoch"]), "miou": _float(r.get("miou"))} for r in records]
    scores = score_checkpoint(last, data, config.boundary_width)
    # Training time of all epochs, also those of an earlier, interrupted invocation.
    time_s = sum(float(r.get("time_s", 0.0)) for r in records)
    return {"seed": train_config.seed, "epochs": epochs, "time_s": round(time_s, 1),
            **scores}


def claim_seeds(config: ReproduceConfig, full_seeds: int) -> list[int]:
    """A claim's seeds: ``--seeds``, else :data:`QUICK_SEEDS` quick, else ``full_seeds``
    (the claim's own full design)."""
    if config.seeds is None and not config.quick:
        return list(range(full_seeds))
    return config.seed_list()


def seed_plan(seeds: Sequence[int], variants: Sequence[str],
              capped: Mapping[str, int]) -> list[tuple[int, str]]:
    """``(seed, variant)`` in training order, seed by seed (an interrupted run has whole
    seeds): every variant on ``seeds``, except a variant in ``capped`` on its first
    ``capped[variant]`` seeds (a variant whose clauses decide with fewer)."""
    return [(seed, variant) for i, seed in enumerate(seeds) for variant in variants
            if i < capped.get(variant, len(seeds))]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: The most jobs ``--jobs`` picks by itself: each is a process with its own torch, data
#: and model, about 0.85 GB resident during a skips or upsampling training (measured on
#: host C), so one per CPU of a large machine would fill its memory first.
AUTO_JOBS_MAX = 8


def auto_jobs(config: ReproduceConfig, trainings: int) -> int:
    """``config.jobs``, or (None) one job per usable CPU / ``config.threads``, at most
    :data:`AUTO_JOBS_MAX`; never more than ``trainings``."""
    jobs = config.jobs or min(AUTO_JOBS_MAX,
                              max(1, usable_cpus() // max(1, config.threads or 1)))
    if jobs < 1:
        raise InputError(f"--jobs {jobs} must be at least 1")
    return max(1, min(jobs, trainings))


def threads_per_job(config: ReproduceConfig, jobs: int) -> int | None:
    """``config.threads``, or with several jobs the usable CPUs shared out among them
    (None with one job: torch's default)."""
    if config.threads is not None or jobs == 1:
        return config.threads
    return max(1, usable_cpus() // jobs)


def train_variants(config: ReproduceConfig, budget: Budget, data: str,
                   trainings: Sequence[tuple[Path, Mapping[str, Any]]],
                   ) -> list[dict[str, Any]]:
    """:func:`train_variant` for each ``(run_dir, variant)``, in order, with up to
    :func:`auto_jobs` trainings at once, each in a spawned process with
    :func:`threads_per_job` threads.

    A training's numbers depend on its thread count (another summation order), never on
    which job ran it or when: each run is seeded on its own and writes its own directory,
    so the results are those of the same trainings run one after another with that many
    threads. A failed training stops the rest and raises its error.
    """
    jobs = auto_jobs(config, len(trainings))
    each = replace(config, threads=threads_per_job(config, jobs), jobs=1)
    if jobs == 1:
        return [train_variant(each, budget, data, run_dir, **variant)
                for run_dir, variant in trainings]
    # spawn, not fork: a forked child would inherit torch's thread pools and locks
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_train_logged, each, budget, data, run_dir, **variant): run_dir
                   for run_dir, variant in trainings}
        try:
            # Each training's own lines go to its RUN_DIR/train.log (interleaved on one
            # terminal they would not say whose they are); here one line as each ends.
            for done, future in enumerate(as_completed(futures), 1):
                result = future.result()
                print(f"fcnkit reproduce: [{done}/{len(futures)}] {futures[future].name}: "
                      f"val mIoU {result['miou']:.4f} ({result['time_s']:.0f} s of "
                      f"training; log in {futures[future] / 'train.log'})",
                      file=sys.stderr, flush=True)
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _train_logged(config: ReproduceConfig, budget: Budget, data: str, run_dir: Path,
                  **variant: Any) -> dict[str, Any]:
    """:func:`train_variant` with its output appended to ``run_dir/train.log`` (a job of
    :func:`train_variants`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a", encoding="utf-8") as log, \
            contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
        return train_variant(config, budget, data, run_dir, **variant)


def variant_config(
    config: ReproduceConfig,
    budget: Budget,
    data: str,
    run_dir: Path,
    *,
    model: str,
    seed: int,
    backbone: str | None = "resnet18",
    upsample: str | None = None,
    model_options: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
) -> Any:
    """The :class:`~fcnkit.training.config.TrainConfig` :func:`train_variant` trains
    (``stop_after``: only the first epochs of the budget's schedule)."""
    return TrainConfig(
        data=data, model=model, backbone=backbone, upsample=upsample,
        epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr, crop=budget.crop,
        optimizer=budget.optimizer, weight_decay=budget.weight_decay, width=budget.width,
        precision=budget.precision,
        scale_range=(0.75, 1.25), out=str(run_dir), seed=seed, workers=0, device="cpu",
        progress=False, log_every=50, max_steps_per_epoch=budget.max_steps_per_epoch,
        threads=config.threads, model_options=dict(model_options or {}),
        stop_after=stop_after, resume=AUTO_RESUME,
    )


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finished_epochs(run_dir: Path, wanted: Any) -> int:
    """Epochs ``run_dir/last.pt`` has completed (0 without one); InputError if the run
    there was trained with settings other than ``wanted``'s."""
    file = run_dir / "last.pt"
    if not file.is_file():
        return 0
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from fcnkit.runtime.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(file)
    try:
        stored = asdict(TrainConfig.from_dict(checkpoint.get("config") or {}))
    except (InputError, TypeError):
        stored = {}
    mine = asdict(wanted)
    differ = sorted(k for k in mine if k not in _BOOKKEEPING and stored.get(k) != mine[k])
    if differ:
        raise InputError(
            f"{run_dir} holds a run with other settings ({', '.join(differ)}); pass another "
            "--out, or delete that directory to retrain it")
    return int(checkpoint.get("epoch", 0))


def val_loader(data: str) -> Any:
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from torch.utils.data import DataLoader

    from fcnkit.data import open_dataset
    from fcnkit.data.transforms import eval_transform, pad_collate

    dataset = open_dataset(data, "val", transform=eval_transform())
    return DataLoader(dataset, batch_size=1, collate_fn=pad_collate)


def score_checkpoint(checkpoint: str | Path, data: str, width: int) -> dict[str, float]:
    """mIoU, pixel accuracy, trimap mIoU and Boundary IoU of a checkpoint on data's val
    (:func:`fcnkit.inference.evaluate.evaluate_checkpoint`, whole images, batch 1), and
    thin-part IoU (:func:`thin_part_iou`; NaN for data without part masks)."""
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from fcnkit.inference.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, data, split="val", boundary_width=width)
    edges = result["boundary"]
    return {"miou": result["miou"], "pixel_acc": result["pixel_acc"],
            "trimap_miou": edges["trimap_miou"], "boundary_iou": edges["boundary_iou"],
            "thin_part_iou": thin_part_iou(checkpoint, data)}


def part_mask_root(data: str) -> Path | None:
    """The directory of a ``synth:ROOT`` dataset that writes part masks, else None."""
    kind, _, root = data.partition(":")
    if kind != "synth" or not (Path(root) / "SegmentationPart").is_dir():
        return None
    return Path(root)


def thin_part_iou(checkpoint: str | Path, data: str) -> float:
    """:class:`fcnkit.metrics.ThinPartIoU` of a checkpoint on data's val split (whole-image
    labels), or NaN when the dataset has no part masks (only the limbs task writes them)."""
    root = part_mask_root(data)
    if root is None:
        return math.nan
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    import numpy as np
    import torch

    from fcnkit.data import open_dataset
    from fcnkit.data.synthetic import read_part_mask
    from fcnkit.data.transforms import eval_transform
    from fcnkit.inference.labels import whole_image_labels
    from fcnkit.metrics import ThinPartIoU
    from fcnkit.runtime.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(str(checkpoint))
    dataset = open_dataset(data, "val", transform=eval_transform())
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    if len(ids) != len(dataset):
        raise InputError(f"{root}: val.txt lists {len(ids)} images, the dataset reads "
                         f"{len(dataset)}; regenerate it")
    metric = ThinPartIoU(len(dataset.classes))
    with torch.no_grad():
        for index, sample_id in enumerate(ids):
            image, mask = dataset[index]
            part = read_part_mask(root, sample_id)
            target = np.asarray(mask)
            # the part mask must describe this very mask (same order as val.txt)
            if part.shape != target.shape or bool(((part > 0) != (target > 0))[
                    target != IGNORE_INDEX].any()):
                raise InputError(f"{root}: SegmentationPart/{sample_id}.png does not match "
                                 "its label mask; regenerate the dataset")
            labels = whole_image_labels(model, torch.as_tensor(image)[None])[0]
            metric.update(labels, target, part)
    return metric.compute()["thin_part_iou"]


def mean_std(values: Sequence[float | None]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value) of finite values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": std, "n": len(finite)}


def summarise(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    return {key: mean_std([r[key] for r in runs]) for key in keys}


def fmt(stat: Mapping[str, float], digits: int = 3) -> str:
    """``mean ± std`` for a table cell; ``n/a`` for a metric not scored (NaN, or null once
    written as strict JSON)."""
    if stat["mean"] is None or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def describe(config: ReproduceConfig, budget: Budget | None) -> dict[str, Any]:
    out: dict[str, Any] = {"quick": config.quick, "seeds": config.seed_list(),
                           "data": config.data, "boundary_width": config.boundary_width}
    if budget is not None:
        out["budget"] = asdict(budget)
    return out


def write_outputs(out: Path, results: dict[str, Any], table: str) -> None:
    """``out/results.json`` (strict JSON: an undefined number is ``null``) and
    ``out/results.md`` (title, verdict, clause table, variant table, figures)."""
    out.mkdir(parents=True, exist_ok=True)
    results["files"] = {"json": str(out / "results.json"), "table": str(out / "results.md"),
                        **results.get("files", {})}
    # Strict JSON: an undefined score (mean of no finite value, an mIoU without labelled
    # pixels) is written as null, never as NaN, which JSON readers reject.
    write_json_atomic(out / "results.json", results)
    figures = "".join(f"\n![{name}]({Path(path).name})\n"
                      for name, path in results.get("figures", {}).items())
    clauses = comparisons_table(results["comparisons"]) + "\n" \
        if results.get("comparisons") else ""
    text = (f"# fcnkit reproduce {results['claim']}\n\n{results['claim_text']}\n\n"
            f"**Verdict: {results['verdict']}** — {results['verdict_reason']}\n\n"
            f"{clauses}{table}{figures}")
    write_text_atomic(out / "results.md", text)


def _signed(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:+.3f}"


def _power_cell(c: Mapping[str, Any]) -> str:
    """``h = … < threshold: decisive`` (or ``≥ …: not decisive``); from the record's
    ``power``, else from its bounds (records written before the field existed)."""
    threshold = c.get("delta_min") if c["kind"] == "superiority" else c.get("margin")
    p = c.get("power") or stats.power(c, threshold)
    if p["half_width"] is None:
        return "–"
    sign = "<" if p["decisive"] else "≥"
    return f"{stats.half_width_text(p['half_width'], p['threshold'])} {sign} {p['threshold']:.4g}"


def comparisons_table(comparisons: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: clause, kind, threshold, n, Δ mean, one-sided 95 % interval, the power
    (half-width t·sd/√n against the threshold: ``<`` when the run could decide either
    way), verdict."""
    rows = []
    for c in comparisons:
        threshold = (f"Δ ≥ {c['delta_min']:.4g}" if c["kind"] == "superiority"
                     else f"±{c['margin']:.4g}" if c["kind"] == "equivalence"
                     else f"> −{c['margin']:.4g}")
        rows.append([c["clause"], c["kind"], threshold, c["n"], _signed(c["mean"]),
                     f"[{_signed(c['lower'])}, {_signed(c['upper'])}]", _power_cell(c),
                     c["verdict"]])
    return markdown_table(["clause", "kind", "threshold", "n", "Δ mean",
                           "one-sided 95 % bounds", "half-width vs threshold", "verdict"],
                          rows)


#: /proc/cpuinfo flags that set which oneDNN kernels run (and so the per-seed numbers),
#: with the names the docs use.
ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16",
             "amx_tile": "AMX"}


def cpu_isa(cpuinfo: str | None = None) -> list[str]:
    """The :data:`ISA_FLAGS` this CPU has (``/proc/cpuinfo``; empty where it cannot be
    read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [name for flag, name in ISA_FLAGS.items() if flag in flags]


def host_info(threads: int | None, precision: str, jobs: int = 1) -> dict[str, Any]:
    """What machine produced a result: per-seed numbers differ by host (oneDNN picks other
    kernels for another instruction set), as much as by seed. ``threads`` are those of each
    training, ``jobs`` the trainings run at once."""
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform's name is what there is
    return {"cpu": cpu, "isa": cpu_isa(), "native_bf16": cpu_has_native_bf16(),
            "threads": threads if threads is not None else torch.get_num_threads(),
            "torch": torch.__version__, "precision": precision, "jobs": jobs}


def run_record(variant: str, result: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """A ``results.json`` run: ``{"variant", "seed", "metrics": {key: value}}`` plus the
    run's epoch curve and training time."""
    return {"variant": variant, "seed": int(result["seed"]),
            "metrics": {k: result[k] for k in keys},
            "epochs": result.get("epochs", []), "time_s": result.get("time_s")}


def by_variant(runs: Sequence[Mapping[str, Any]], variants: Sequence[str],
               keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """variant -> {key: mean ± std over its seeds} (the tables' cells)."""
    return {v: summarise([r["metrics"] for r in runs if r["variant"] == v], keys)
            for v in variants}


def mean_time(runs: Sequence[Mapping[str, Any]], variant: str) -> int:
    """Mean training seconds per seed of ``variant`` (a table cell)."""
    times = [float(r.get("time_s") or 0.0) for r in runs if r["variant"] == variant]
    return round(sum(times) / len(times)) if times else 0


def judge(claim: str, claim_text: str, config: ReproduceConfig, budget: Budget | None,
          data: str, runs: list[dict[str, Any]], clauses: Sequence[Any],
          gate_margin: float, skipped: Sequence[Mapping[str, str]] = (),
          ) -> dict[str, Any]:
    """The ``results.json`` of a training claim: host, chance, runs, one comparison per
    clause (:class:`fcnkit.reproduce.stats.Clause`) and the overall verdict.

    The near-chance gate is the best constant prediction's mIoU on ``data``'s val split
    plus ``gate_margin``; when the best variant's mean mIoU is below it, every comparison
    is "inconclusive (near chance)".
    """
    floor = stats.chance(stats.constant_miou(data), gate_margin)
    best, best_miou = stats.best_variant_miou(runs)
    floor["best_variant"], floor["best_miou"] = best, best_miou
    below = not (math.isfinite(best_miou) and best_miou >= floor["gate"])
    comparisons = [clause.compare(runs, near_chance=below) for clause in clauses]
    verdict, reason = stats.overall_verdict(comparisons, skipped)
    trainings = max(1, len(runs))
    jobs = auto_jobs(config, trainings)
    return {"claim": claim, "claim_text": claim_text,
            "host": host_info(threads_per_job(config, jobs),
                              budget.precision if budget else "fp32", jobs),
            "chance": floor, "config": describe(config, budget), "data": data,
            "runs": runs, "comparisons": comparisons, "skipped": list(skipped),
            "verdict": verdict, "verdict_reason": reason}


def load_run_model(run_dir: str | Path) -> Any:
    """The model of a run directory's last checkpoint (eval mode)."""
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from fcnkit.runtime.checkpoint import model_from_checkpoint

    return model_from_checkpoint(str(Path(run_dir) / "last.pt"))


def class_names(data: str) -> list[str]:
    # local: import cost (torch, ~3 s: `fcnkit --help` loads this module)
    from fcnkit.data import open_dataset

    return list(open_dataset(data, "train").classes)
