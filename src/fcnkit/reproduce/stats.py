"""The statistics every training claim's verdict comes from: paired deltas, one-sided
Student-t bounds, three kinds of comparison, the near-chance gate and the overall verdict.

A training claim is a list of *clauses*; each clause compares variant ``a`` with variant
``b`` on one metric, over the seeds both ran. Every variant of a seed shares the seed's
data order and initial weights, so the comparison is paired:

* ``deltas[i] = metric(a, seed_i) - metric(b, seed_i)`` for the seeds both ran (a finite
  value in both), in ascending seed order; ``n = len(deltas)``.
* ``mean`` and the sample standard deviation ``sd`` of the deltas; the one-sided 95 %
  bounds ``lower = mean - t(0.95, n-1)·sd/√n`` and ``upper = mean + t(0.95, n-1)·sd/√n``
  (Student's t with n − 1 degrees of freedom).

The kinds (each threshold is declared in the claim's module before it runs):

* ``superiority`` (a beats b by at least ``delta_min``): reproduced iff mean ≥ delta_min
  and lower > 0; not reproduced iff upper < delta_min; else inconclusive.
* ``non_inferiority`` (a is not worse than b by more than ``margin``): reproduced iff
  lower > −margin; not reproduced iff upper < −margin; else inconclusive.
* ``equivalence`` (two one-sided tests, ``margin``): reproduced iff −margin < lower and
  upper < margin; not reproduced iff lower > margin or upper < −margin; else inconclusive.

Fewer than 2 paired seeds: inconclusive (no spread, no bound). The **near-chance gate**:
each claim measures the best constant prediction's mIoU on its own val split
(:func:`constant_miou`) and adds a declared margin; if the best variant's mean mIoU is
below that gate, every comparison is ``"inconclusive (near chance)"`` (its numbers are
still reported). The **overall verdict** (:func:`overall_verdict`) is a conjunction of the
clauses: never more than its weakest clause, and an untested (skipped) clause keeps it
from saying "reproduced".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fcnkit.errors import InputError

__all__ = [
    "CONFIDENCE",
    "Clause",
    "INCONCLUSIVE",
    "KINDS",
    "NEAR_CHANCE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "best_variant_miou",
    "chance",
    "compare",
    "constant_miou",
    "decide",
    "half_width_text",
    "one_sided_bounds",
    "overall_verdict",
    "paired_deltas",
    "power",
    "seeds_needed",
]

#: One-sided confidence of the bounds (a one-sided 95 % bound is the 90 % two-sided
#: interval's end: each bound is wrong in at most 5 % of runs).
CONFIDENCE = 0.95
KINDS = ("superiority", "non_inferiority", "equivalence")
REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NEAR_CHANCE = "inconclusive (near chance)"
#: Verdicts from the weakest to the strongest, for the overall verdict.
_STRENGTH = {NOT_REPRODUCED: 0, NEAR_CHANCE: 1, INCONCLUSIVE: 1, REPRODUCED: 2}


def paired_deltas(runs: Iterable[Mapping[str, Any]], a: str, b: str,
                  metric: str) -> tuple[list[int], list[float]]:
    """Seeds both variants ran with a finite ``metric``, ascending, and a − b per seed.

    ``runs``: ``{"variant", "seed", "metrics": {metric: value}}`` records (the
    ``results.json`` ``runs`` list).
    """
    values: dict[str, dict[int, float]] = {a: {}, b: {}}
    for run in runs:
        if run["variant"] in values:
            value = (run.get("metrics") or {}).get(metric)
            if value is not None and math.isfinite(float(value)):
                values[run["variant"]][int(run["seed"])] = float(value)
    seeds = sorted(set(values[a]) & set(values[b]))
    return seeds, [values[a][s] - values[b][s] for s in seeds]


def one_sided_bounds(deltas: Sequence[float],
                     confidence: float = CONFIDENCE) -> dict[str, float | int | None]:
    """``{"n", "mean", "sd", "lower", "upper"}`` of ``deltas``: mean ∓ t(conf, n−1)·sd/√n.

    With one delta the mean is returned and sd, lower, upper are None; with none, all are.
    """
    # local: import cost (scipy.stats and torch: `fcnkit --help` loads this module)
    from scipy.stats import t

    n = len(deltas)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "lower": None, "upper": None}
    mean = statistics.fmean(deltas)
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "lower": None, "upper": None}
    sd = statistics.stdev(deltas)
    half = float(t.ppf(confidence, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lower": mean - half, "upper": mean + half}


def decide(kind: str, bounds: Mapping[str, Any], *, delta_min: float | None = None,
           margin: float | None = None) -> tuple[str, str]:
    """``(verdict, reason)`` of one comparison by the rules of its ``kind`` (module doc)."""
    if kind not in KINDS:
        raise InputError(f"comparison kind {kind!r}: choose one of {', '.join(KINDS)}")
    threshold = delta_min if kind == "superiority" else margin
    if threshold is None or threshold < 0:
        name = "delta_min" if kind == "superiority" else "margin"
        raise InputError(f"a {kind} comparison needs {name} >= 0, got {threshold!r}")
    n, mean, lower, upper = bounds["n"], bounds["mean"], bounds["lower"], bounds["upper"]
    if n < 2:
        return INCONCLUSIVE, f"{n} paired seed(s): a bound needs at least 2"
    interval = f"mean {mean:+.4f}, one-sided 95 % bounds [{lower:+.4f}, {upper:+.4f}]"
    if kind == "superiority":
        if mean >= threshold and lower > 0:
            return REPRODUCED, f"{interval}: mean >= delta_min {threshold} and lower > 0"
        if upper < threshold:
            return NOT_REPRODUCED, f"{interval}: upper < delta_min {threshold}"
        return INCONCLUSIVE, f"{interval}: neither lower > 0 with mean >= {threshold} " \
                             f"nor upper < {threshold}"
    if kind == "non_inferiority":
        if lower > -threshold:
            return REPRODUCED, f"{interval}: lower > -margin {-threshold}"
        if upper < -threshold:
            return NOT_REPRODUCED, f"{interval}: upper < -margin {-threshold}"
        return INCONCLUSIVE, f"{interval}: the interval contains -margin {-threshold}"
    if -threshold < lower and upper < threshold:
        return REPRODUCED, f"{interval}: both bounds inside ±margin {threshold}"
    if lower > threshold or upper < -threshold:
        return NOT_REPRODUCED, f"{interval}: the interval lies outside ±margin {threshold}"
    return INCONCLUSIVE, f"{interval}: the interval crosses ±margin {threshold}"


def compare(runs: Iterable[Mapping[str, Any]], *, clause: str, kind: str, a: str, b: str,
            metric: str, delta_min: float | None = None, margin: float | None = None,
            near_chance: bool = False, **extra: Any) -> dict[str, Any]:
    """One ``results.json`` comparison: the paired deltas of ``a − b`` on ``metric``, their
    bounds and the verdict (``"inconclusive (near chance)"`` when ``near_chance``).
    ``extra`` fields (e.g. ``source``) are copied into the record."""
    seeds, deltas = paired_deltas(list(runs), a, b, metric)
    bounds = one_sided_bounds(deltas)
    verdict, reason = decide(kind, bounds, delta_min=delta_min, margin=margin)
    if near_chance:
        verdict, reason = NEAR_CHANCE, "the best variant is below the near-chance gate; " \
                                       + reason
    threshold = {"delta_min": delta_min} if kind == "superiority" else {"margin": margin}
    return {"clause": clause, "kind": kind, "a": a, "b": b, "metric": metric, **threshold,
            "seeds": seeds, "deltas": deltas, "n": bounds["n"], "mean": bounds["mean"],
            "sd": bounds["sd"], "lower": bounds["lower"], "upper": bounds["upper"],
            "verdict": verdict, "reason": reason,
            "power": power(bounds, delta_min if kind == "superiority" else margin),
            **extra}


def power(bounds: Mapping[str, Any], threshold: float | None) -> dict[str, Any]:
    """Whether a run could decide a clause either way: the one-sided interval's half-width
    ``t(0.95, n−1)·sd/√n`` against the clause's ``delta_min`` or ``margin``.

    ``decisive`` is True iff half-width < threshold. Then the run can decide either way:
    for superiority a mean of 0 gives "not reproduced" (upper < delta_min) and a mean of at
    least delta_min gives "reproduced" (lower > 0); for non-inferiority a mean of 0 gives
    "reproduced" and a mean of −2·margin "not reproduced"; for equivalence a mean of 0
    gives "reproduced". A wider interval leaves the answer to the
    noise. Fewer than 2 deltas: half-width None, not decisive.
    """
    lower, upper = bounds.get("lower"), bounds.get("upper")
    if lower is None or upper is None or threshold is None:
        return {"half_width": None, "threshold": threshold, "decisive": False}
    half = (float(upper) - float(lower)) / 2
    return {"half_width": half, "threshold": threshold, "decisive": half < threshold}


def seeds_needed(sd: float | None, threshold: float | None, *, confidence: float = CONFIDENCE,
                 limit: int = 1000) -> int | None:
    """The fewest paired seeds n ≥ 2 whose one-sided half-width t(confidence, n−1)·sd/√n
    falls below ``threshold``, if the deltas keep the spread ``sd`` a run measured: the
    plan for a design with the power to decide (issue 20 asks for it before a rerun, so
    seeds are not added one at a time after looking). None without an sd or threshold, or
    beyond ``limit``."""
    if sd is None or threshold is None or threshold <= 0:
        return None
    from scipy.stats import t  # local: import cost (see one_sided_bounds)

    for n in range(2, limit + 1):
        if float(t.ppf(confidence, n - 1)) * sd / math.sqrt(n) < threshold:
            return n
    return None


@dataclass(frozen=True)
class Clause:
    """One clause of a claim, declared in the claim's module before it runs.

    ``source`` says who makes the statement (a paper's section, the reference
    implementation's FAQ, or "fcnkit's own question" when no source does).
    """

    clause: str
    kind: str
    a: str
    b: str
    metric: str
    delta_min: float | None = None
    margin: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        decide(self.kind, {"n": 0, "mean": None, "lower": None, "upper": None},
               delta_min=self.delta_min, margin=self.margin)  # validates kind, threshold

    def compare(self, runs: Iterable[Mapping[str, Any]], *,
                near_chance: bool = False) -> dict[str, Any]:
        """This clause's comparison over ``runs`` (:func:`compare`)."""
        return compare(runs, clause=self.clause, kind=self.kind, a=self.a, b=self.b,
                       metric=self.metric, delta_min=self.delta_min, margin=self.margin,
                       near_chance=near_chance, source=self.source)


def constant_miou(data: str, split: str = "val") -> dict[str, Any]:
    """The best constant prediction's mIoU on ``data``'s ``split``.

    Every class is tried as the prediction for every pixel of every image and scored with
    :class:`fcnkit.metrics.ConfusionMatrix` (void pixels left out, mIoU over the classes
    present); returns ``{"constant_miou", "class", "class_name"}`` of the best.
    """
    # local: import cost (scipy.stats and torch: `fcnkit --help` loads this module)
    import torch

    from fcnkit.data import open_dataset
    from fcnkit.metrics import ConfusionMatrix

    dataset = open_dataset(data, split)
    names = list(dataset.classes)
    matrices = [ConfusionMatrix(len(names)) for _ in names]
    for index in range(len(dataset)):
        _, mask = dataset[index]
        target = torch.as_tensor(mask).long()
        for label, matrix in enumerate(matrices):
            matrix.update(torch.full_like(target, label), target)
    scores = [matrix.compute()["miou"] for matrix in matrices]
    finite = [(s, c) for c, s in enumerate(scores) if math.isfinite(s)]
    if not finite:
        raise InputError(f"{data}: the {split} split has no labelled pixel; a near-chance "
                         "gate needs one")
    best, label = max(finite)
    return {"constant_miou": best, "class": label, "class_name": names[label]}


def chance(constant: Mapping[str, Any] | float, gate_margin: float) -> dict[str, Any]:
    """The ``results.json`` ``chance`` record: the constant prediction's mIoU and the gate
    (constant + ``gate_margin``)."""
    record = dict(constant) if isinstance(constant, Mapping) else {"constant_miou": constant}
    value = float(record["constant_miou"])
    return {**record, "gate_margin": gate_margin, "gate": value + gate_margin}


def best_variant_miou(runs: Iterable[Mapping[str, Any]]) -> tuple[str | None, float]:
    """The variant with the highest mean mIoU over its seeds, and that mean."""
    per_variant: dict[str, list[float]] = {}
    for run in runs:
        value = (run.get("metrics") or {}).get("miou")
        if value is not None and math.isfinite(float(value)):
            per_variant.setdefault(run["variant"], []).append(float(value))
    if not per_variant:
        return None, math.nan
    best = max(per_variant, key=lambda v: statistics.fmean(per_variant[v]))
    return best, statistics.fmean(per_variant[best])


def overall_verdict(comparisons: Sequence[Mapping[str, Any]],
                    skipped: Sequence[Mapping[str, Any]] = ()) -> tuple[str, str]:
    """``(verdict, listing)`` of a claim: the weakest of its clauses' verdicts (not
    reproduced < inconclusive < reproduced), and every clause with its verdict.

    A clause that was not tested (``skipped``, each ``{"clause", "reason"}``) is not
    evidence either way, so it caps the verdict at "inconclusive": a claim with an
    untested main clause is never "reproduced" (a failed clause still makes it "not
    reproduced"). A claim that has no comparison is inconclusive. The listing starts
    "N of M clauses reproduced" (M counts the skipped ones), then ", K not tested:
    reason / reason" (each distinct reason once), then every clause with its verdict.
    """
    if not comparisons:
        word = INCONCLUSIVE
    else:
        weakest = min(comparisons, key=lambda c: _STRENGTH[c["verdict"]])["verdict"]
        word = INCONCLUSIVE if weakest == NEAR_CHANCE else weakest
    if skipped and word == REPRODUCED:
        word = INCONCLUSIVE
    parts = [f"{c['clause']}: {c['verdict']}" for c in comparisons]
    parts += [f"{s['clause']}: not tested ({s['reason']})" for s in skipped]
    counts = sum(c["verdict"] == REPRODUCED for c in comparisons)
    head = f"{counts} of {len(comparisons) + len(skipped)} clauses reproduced"
    if skipped:
        reasons = dict.fromkeys(str(s["reason"]) for s in skipped)  # once each, in order
        head += f", {len(skipped)} not tested: " + " / ".join(reasons)
    return word, f"{head}; " + "; ".join(parts) if parts else head


def half_width_text(half_width: float, threshold: float) -> str:
    """``half_width`` with 3 decimals, or as many more (up to 6) as it takes to differ from
    ``threshold`` printed alike: 0.0195 against 0.02 must not read "0.020"."""
    digits = 3
    while digits < 6 and f"{half_width:.{digits}f}" == f"{threshold:.{digits}f}":
        digits += 1
    return f"{half_width:.{digits}f}"
