"""``fcnkit reproduce``: the exact claims pass; every training claim runs end to end on a
tiny budget and writes its table, JSON and figures; every results.json (the claims', and
the recorded ones in docs/results) has deltas, bounds and verdicts that follow from its runs,
recomputed here independently; docs/reproductions.md is what the generator renders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnkit.cli import main
from fcnkit.reproduce import (
    CLAIMS,
    Budget,
    ReproduceConfig,
    gridding,
    padding,
    run_claim,
    runner,
    upsampling,
)
from fcnkit.reproduce.upsampling import area_under_curve

ROOT = Path(__file__).resolve().parents[2]
#: t(0.95, df) from a printed table of Student's t (df 63, which printed tables skip:
#: scipy.stats.t.ppf, which gives every other entry here to 6 decimals).
T95 = {1: 6.313752, 2: 2.919986, 3: 2.353363, 4: 2.131847, 5: 2.015048, 9: 1.833113,
       17: 1.739607, 24: 1.710882, 63: 1.669402}

TINY = Budget(train=4, val=2, size=(40, 48), epochs=2, crop=(32, 32), batch_size=2,
              **runner.RECIPE)
#: Smoke-sized settings of the claims that measure more than training (padding's latency).
TINY_EXTRA = {"latency_sizes": [(32, 32), (32, 48), (40, 48)], "latency_width": 0.125}


def test_training_claims_share_one_recipe_and_pick_quick_or_full():
    budgets = {"skips": (runner.QUICK, runner.FULL),
               "upsampling": (upsampling.UPSAMPLING_QUICK, upsampling.UPSAMPLING_FULL)}
    for quick, full in budgets.values():
        for budget in (quick, full):
            assert {k: getattr(budget, k) for k in runner.RECIPE} == runner.RECIPE
        assert (quick.train, quick.epochs) < (full.train, full.epochs)
        assert runner.budget_for(ReproduceConfig(quick=True), quick, full) is quick
        assert runner.budget_for(ReproduceConfig(), quick, full) is full
    # The BatchNorm VGG16 shares the recipe; the context module has no backbone width.
    for budget in (padding.QUICK, padding.FULL):
        assert {k: getattr(budget, k) for k in runner.RECIPE} == runner.RECIPE
    for budget in (gridding.GRID_QUICK, gridding.GRID_FULL):
        assert budget.width is None
        assert (budget.optimizer, budget.lr) == (runner.RECIPE["optimizer"],
                                                 runner.RECIPE["lr"])
    assert runner.budget_for(ReproduceConfig(budget=TINY)) is TINY


def test_matrix_claim_reproduces_exactly(tmp_path, capsys):
    assert main(["reproduce", "matrix", "--quick", "--out", str(tmp_path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["verdict"] == "reproduced"
    assert all(r["conv_equal"] and r["transposed_equal"] for r in results["random"])
    # 2 worked examples and the seed's 4 (fcnkit = PyTorch) are "yes"
    assert (tmp_path / "results.md").read_text().count("| yes |") == 6
    assert results["seed_errors"] == ["000 conv_transpose2d stride 2"]
    wrong = next(r for r in results["seed_printouts"] if not r["seed_right"])
    # By hand: with stride 2 and a 2×2 kernel K the blocks do not overlap; input value v
    # at (i, j) writes v·K into rows 2i…2i+1, columns 2j…2j+1.
    assert wrong["fcnkit"] == [[5, 6, 10, 12], [7, 8, 14, 16], [15, 18, 20, 24],
                               [21, 24, 28, 32]]
    assert wrong["printed"][0] == [5, 10, 6, 12]


@pytest.mark.slow
def test_receptive_fields_claim_matches_table_1(tmp_path):
    results = run_claim("receptive-fields", ReproduceConfig(quick=True, out=str(tmp_path)))
    assert {r["network"]: r["fcnkit_size"] for r in results["table1"]} == {
        "AlexNet": 355, "VGG16": 404, "GoogLeNet": 907}
    assert all(r["gradient_support"] == r["fcnkit_size"] for r in results["table1"])
    # torchvision's GoogLeNet: 320 px less from 3×3 "5×5" branches (2 × stride per block:
    # 2 blocks at stride 8, 5 at 16, 2 at 32) and 16 px less from its 2×2 pool4.
    assert results["googlenet_torchvision"]["size"] == 907 - (2 * 16 + 5 * 32 + 2 * 64) - 16
    assert results["verdict"] == "reproduced"
    assert (tmp_path / "rf_growth_vgg16.png").stat().st_size > 0


def test_area_under_the_curve_is_the_mean_val_miou_over_epochs():
    curve = [{"epoch": 1, "miou": 0.2}, {"epoch": 2, "miou": 0.55}, {"epoch": 3, "miou": 0.6}]
    assert area_under_curve(curve) == pytest.approx((0.2 + 0.55 + 0.6) / 3)
    # a variant that ends lower but rose earlier is not "faster" on an absolute scale
    early_low = [{"epoch": e, "miou": m} for e, m in ((1, 0.18), (2, 0.2), (3, 0.2))]
    assert area_under_curve(early_low) < area_under_curve(curve)


def _expected_verdict(kind: str, threshold: float, n: int, mean: float, lower: float,
                      upper: float) -> str:
    """The issue's rules, written out once more here as the oracle."""
    if n < 2:
        return "inconclusive"
    if kind == "superiority":
        if mean >= threshold and lower > 0:
            return "reproduced"
        return "not reproduced" if upper < threshold else "inconclusive"
    if kind == "non_inferiority":
        if lower > -threshold:
            return "reproduced"
        return "not reproduced" if upper < -threshold else "inconclusive"
    if -threshold < lower and upper < threshold:
        return "reproduced"
    return "not reproduced" if lower > threshold or upper < -threshold else "inconclusive"


def check_results(results: dict, runs_by_metric=None) -> None:
    """Every comparison's deltas, bounds and verdict follow from the runs, exactly."""
    for key in ("claim", "host", "chance", "runs", "comparisons", "verdict"):
        assert key in results, key
    assert set(results["host"]) >= {"cpu", "native_bf16", "threads", "torch", "precision"}
    assert set(results["chance"]) >= {"constant_miou", "gate"}
    gated = results["chance"].get("best_miou") is not None and \
        results["chance"]["best_miou"] < results["chance"]["gate"]
    for run in results["runs"]:
        assert set(run) >= {"variant", "seed", "metrics"}
    for c in results["comparisons"]:
        runs = results.get("latency", {}).get("runs", []) \
            if c["metric"] == "log_forward_s" else results["runs"]
        table = {(r["variant"], r["seed"]): r["metrics"].get(c["metric"]) for r in runs}
        seeds = sorted(s for (v, s), x in table.items() if v == c["a"] and x is not None
                       and (c["b"], s) in table and table[(c["b"], s)] is not None)
        deltas = [table[(c["a"], s)] - table[(c["b"], s)] for s in seeds]
        assert c["deltas"] == pytest.approx(deltas, abs=1e-12) and c["n"] == len(deltas)
        threshold = c["delta_min"] if c["kind"] == "superiority" else c["margin"]
        if len(deltas) >= 2:
            mean = float(np.mean(deltas))
            half = T95[len(deltas) - 1] * float(np.std(deltas, ddof=1)) / math.sqrt(len(deltas))
            assert c["mean"] == pytest.approx(mean, abs=1e-12)
            assert c["lower"] == pytest.approx(mean - half, abs=1e-6)
            assert c["upper"] == pytest.approx(mean + half, abs=1e-6)
            expected = _expected_verdict(c["kind"], threshold, len(deltas), mean, mean - half,
                                         mean + half)
        else:
            expected = "inconclusive"
        if gated and c["metric"] != "log_forward_s":
            expected = "inconclusive (near chance)"
        assert c["verdict"] == expected, c["clause"]
    strength = {"not reproduced": 0, "inconclusive": 1, "inconclusive (near chance)": 1,
                "reproduced": 2}
    for e in results.get("exact", []):  # computed against a reference: no statistics
        assert e["kind"] == "exact" and e["verdict"] in ("reproduced", "not reproduced")
    clauses = [*results["comparisons"], *results.get("exact", [])]
    weakest = min((c["verdict"] for c in clauses), key=strength.get, default="inconclusive")
    expected = weakest.replace(" (near chance)", "")
    if results.get("skipped") and expected == "reproduced":
        expected = "inconclusive"  # an untested clause: never "reproduced"
    assert results["verdict"] == expected


def _folder_dataset(root: Path, masks: list[np.ndarray]) -> str:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i, mask in enumerate(masks):
            Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(
                root / "images" / split / f"{i}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / split / f"{i}.png")
    (root / "classes.txt").write_text("bg\nthing\n")
    return f"folder:{root}"


def test_judge_writes_the_issue_shape_and_gates_near_chance(tmp_path):
    from fcnkit.reproduce.stats import Clause

    mask = np.zeros((4, 4), np.uint8)
    mask[:, :1] = 1  # 12 bg, 4 thing: background everywhere scores (12/16) / 2 = 0.375
    data = _folder_dataset(tmp_path / "data", [mask])
    clauses = [Clause("x beats y", "superiority", "x", "y", "miou", delta_min=0.02),
               Clause("x = y", "equivalence", "x", "y", "miou", margin=0.02)]

    def runs(x: list[float], y: list[float]) -> list[dict]:
        return [{"variant": v, "seed": s, "metrics": {"miou": m}}
                for v, values in (("x", x), ("y", y)) for s, m in enumerate(values)]

    config = ReproduceConfig(out=str(tmp_path), threads=1)
    trained = runner.judge("demo", "x beats y", config, TINY, data,
                           runs([0.70, 0.74, 0.71], [0.60, 0.66, 0.62]), clauses, 0.10)
    assert trained["chance"]["constant_miou"] == pytest.approx(0.375)
    assert trained["chance"]["gate"] == pytest.approx(0.475)
    assert [c["verdict"] for c in trained["comparisons"]] == ["reproduced", "not reproduced"]
    assert trained["verdict"] == "not reproduced"  # one clause failed: never "reproduced"
    check_results(trained)
    # best variant (x, mean 0.45) below the gate 0.475: every comparison near chance
    near = runner.judge("demo", "x beats y", config, TINY, data,
                        runs([0.44, 0.46, 0.45], [0.40, 0.41, 0.40]), clauses, 0.10)
    assert {c["verdict"] for c in near["comparisons"]} == {"inconclusive (near chance)"}
    assert near["verdict"] == "inconclusive"
    check_results(near)
    runner.write_outputs(tmp_path / "out", near, "")
    text = (tmp_path / "out" / "results.json").read_text()
    assert "NaN" not in text and json.loads(text)["comparisons"][0]["n"] == 3


def test_every_training_claim_declares_its_thresholds_before_running():
    from fcnkit.reproduce import skips
    from fcnkit.reproduce.stats import Clause

    for module in (skips, upsampling, gridding, padding):
        assert module.CLAUSES and all(isinstance(c, Clause) for c in module.CLAUSES)
        assert 0 < module.GATE_MARGIN < 0.5
        # derived runs (gridding's per-seed HDC advantage) are variants of their own
        variants = set(module.VARIANTS) | set(getattr(module, "DERIVED", ()))
        for clause in module.CLAUSES:
            assert {clause.a, clause.b} <= variants and clause.source
    kinds = {c.kind for c in skips.CLAUSES}
    assert kinds == {"superiority", "non_inferiority"}
    assert upsampling.CLAUSES[0].kind == padding.CLAUSES[0].kind == "equivalence"
    assert "FAQ" in upsampling.CLAUSES[0].source
    assert all("own question" in c.source for c in upsampling.CLAUSES[1:])


RECORDED = sorted((ROOT / "docs" / "results").glob("*.json"))
# docs/results/earlier/: the earlier designs' runs (shapes task, 3 seeds, hosts A and B,
# CLAIM-host-X.json) and full runs of today's designs that a later run replaced
# (CLAIM-N-seeds.json: the same checks as a recorded full run).
EARLIER = sorted((ROOT / "docs" / "results" / "earlier").glob("*-host-*.json"))
SUPERSEDED = sorted((ROOT / "docs" / "results" / "earlier").glob("*-seeds.json"))


def test_every_earlier_results_file_is_checked():
    folder = sorted((ROOT / "docs" / "results" / "earlier").glob("*.json"))
    assert folder == sorted(EARLIER + SUPERSEDED)


@pytest.mark.parametrize("path", RECORDED + SUPERSEDED, ids=lambda p: p.name)
def test_recorded_full_runs_follow_from_their_runs(path):
    results = json.loads(path.read_text())
    check_results(results)
    assert path.stem == results["claim"] or path.stem.startswith(results["claim"] + "-")
    if path in SUPERSEDED:  # CLAIM-N-seeds.json
        assert len(results["config"]["seeds"]) == int(path.stem.split("-")[-2])
    assert results["config"]["quick"] is False and len(results["config"]["seeds"]) >= 5
    assert all(c["n"] >= 5 for c in results["comparisons"])
    assert results["host"]["isa"] and results["recorded"]["wall_s"] > 0


@pytest.mark.parametrize("path", EARLIER, ids=lambda p: p.name)
def test_earlier_designs_results_follow_from_their_runs(path):
    results = json.loads(path.read_text())
    check_results(results)
    assert results["host"]["label"] in ("host A", "host B")
    assert results["recorded"]["seeds"] == 3 and "acceptance" in results["recorded"]["note"]


def test_docs_reproductions_page_is_what_the_generator_renders():
    from fcnkit.reproduce.summary import render_page

    page = (ROOT / "docs" / "reproductions.md").read_text()
    assert render_page(page, ROOT / "docs" / "results") == page, (
        "docs/reproductions.md is stale: run 'fcnkit reproduce table docs/results --page "
        "docs/reproductions.md'")


def test_render_page_refuses_a_results_file_without_a_block(tmp_path):
    from fcnkit.errors import InputError
    from fcnkit.reproduce.summary import render_page

    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="x.json has no generated block"):
        render_page("# page\n", tmp_path)


def test_summary_table_and_page_list_every_clause(tmp_path):
    from fcnkit.reproduce.summary import summary_html, summary_markdown

    results = [json.loads(p.read_text()) for p in RECORDED]
    results.append({"claim": "matrix", "claim_text": "C and Cᵀ", "verdict": "reproduced",
                    "verdict_reason": "exact"})
    markdown = summary_markdown(results)
    page = summary_html(results)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "http" not in page
    for result in results:
        for c in result.get("comparisons", []):
            assert c["clause"] in markdown and c["verdict"] in markdown
    assert "| matrix | C and Cᵀ | exact |" in markdown


def test_cli_reproduce_table(tmp_path, capsys):
    assert main(["reproduce", "table", str(ROOT / "docs" / "results")]) == 0
    out = capsys.readouterr().out
    assert "## skips.json" in out and "one-sided 95 % bounds" in out
    assert main(["reproduce", "table", str(ROOT / "docs" / "results" / "earlier")]) == 0
    assert "skips-host-b.json" in capsys.readouterr().out
    assert main(["reproduce", "table", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("claim", ["skips", "upsampling", "gridding", "padding"])
def test_training_claims_smoke(claim, tmp_path):
    config = ReproduceConfig(seeds=2, out=str(tmp_path), budget=TINY, threads=1,
                             extra=TINY_EXTRA)
    results = run_claim(claim, config)
    assert results["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["claim"] == claim and stored["summary"]
    check_results(stored)
    assert (tmp_path / "results.md").read_text().startswith(f"# fcnkit reproduce {claim}")
    for figure in results.get("figures", {}).values():
        assert (tmp_path / figure.split("/")[-1]).stat().st_size > 0


@pytest.mark.slow
def test_reproduce_all_quick_writes_one_summary(tmp_path, capsys, monkeypatch):
    import dataclasses

    from fcnkit.cli import reproduce as reproduce_command
    from fcnkit.reproduce import summary

    real = summary.run_all

    def tiny_run_all(config):  # the quick protocol with a smoke budget, 2 seeds
        return real(dataclasses.replace(config, budget=TINY, seeds=2, threads=1,
                                        extra=TINY_EXTRA))

    # where the command looks it up
    monkeypatch.setattr(reproduce_command, "run_all", tiny_run_all)
    assert main(["reproduce", "all", "--quick", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["claim"] for c in report["claims"]] == list(CLAIMS)
    markdown = (tmp_path / "summary.md").read_text()
    assert "| claim | clause | kind | n | Δ mean | one-sided 95 % bounds | verdict |" in markdown
    assert (tmp_path / "summary.html").read_text().startswith("<!DOCTYPE html>")
    for name in CLAIMS:
        assert (tmp_path / name / "results.json").is_file()


@pytest.mark.slow
def test_an_interrupted_claim_keeps_finished_runs_and_resumes_the_cut_one(tmp_path):
    import dataclasses

    import torch

    from fcnkit.errors import InputError
    from fcnkit.reproduce.runner import dataset_for, train_variant, variant_config
    from fcnkit.training.loop import train

    config = ReproduceConfig(seeds=1, out=str(tmp_path), budget=TINY, threads=1)
    data = dataset_for(config, TINY)
    whole = train_variant(config, TINY, data, tmp_path / "whole", model="fcn8s", seed=0)
    assert [e["epoch"] for e in whole["epochs"]] == [1, 2]

    # A finished run is reused: nothing is retrained, the result is the same.
    stamp = (tmp_path / "whole" / "last.pt").stat().st_mtime_ns
    again = train_variant(config, TINY, data, tmp_path / "whole", model="fcn8s", seed=0)
    assert (tmp_path / "whole" / "last.pt").stat().st_mtime_ns == stamp
    assert again == whole

    # A run cut off after epoch 1 resumes to the uninterrupted weights, bit for bit.
    class Cut(Exception):
        pass

    def stop(record):
        raise Cut

    cut_config = variant_config(config, TINY, data, tmp_path / "cut", model="fcn8s", seed=0)
    with pytest.raises(Cut):
        train(cut_config, on_epoch=stop)
    resumed = train_variant(config, TINY, data, tmp_path / "cut", model="fcn8s", seed=0)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    assert resumed["miou"] == whole["miou"]
    states = [torch.load(tmp_path / d / "last.pt", weights_only=False)["model_state"]
              for d in ("whole", "cut")]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])

    # A run directory trained with other settings is refused, not mixed in.
    other = dataclasses.replace(TINY, lr=TINY.lr / 2)
    with pytest.raises(InputError, match="other settings.*lr"):
        train_variant(config, other, data, tmp_path / "whole", model="fcn8s", seed=0)


def test_results_json_is_strict_json_with_undefined_scores_as_null(tmp_path):
    # A variant without one finite score: its mean and std are NaN in memory.
    summary = {"fcn32s": runner.summarise([{"miou": float("nan")}], ["miou"])}
    assert np.isnan(summary["fcn32s"]["miou"]["mean"])
    results = {"claim": "skips", "claim_text": "t", "verdict": "inconclusive",
               "verdict_reason": "r", "summary": summary, "best": float("inf"),
               "shape": (2, 3)}
    runner.write_outputs(tmp_path, results, "| a |\n")

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON (RFC 8259, section 6)")

    stored = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert stored["summary"]["fcn32s"]["miou"] == {"mean": None, "std": None, "n": 0}
    assert stored["best"] is None and stored["shape"] == [2, 3]


def test_upsampling_design_trains_the_init_pair_early_on_fresh_seeds():
    from fcnkit.reproduce import upsampling

    plan = upsampling.seeds_by_variant(ReproduceConfig())
    assert upsampling.FULL_SEEDS == 64 and upsampling.REFERENCE_SEEDS == 5
    # the pilot (the second full run) trained seeds 0..24: the deciding run never does
    for variant in upsampling.INIT_PAIR:
        assert [s for s, v in plan if v == variant] == list(range(25, 89))
        assert upsampling.VARIANTS[variant][2] == upsampling.EARLY_EPOCHS == 1
    for variant in ("bilinear-frozen", "deconv-bilinear-init", "deconv-random-init",
                    "interpolate"):
        assert [s for s, v in plan if v == variant] == [0, 1, 2, 3, 4]
        assert upsampling.VARIANTS[variant][2] is None
    # every clause pairs variants that share their seeds
    for clause in upsampling.CLAUSES:
        assert {s for s, v in plan if v == clause.a} == {s for s, v in plan if v == clause.b}
    quick = upsampling.seeds_by_variant(ReproduceConfig(quick=True))
    assert len(quick) == 2 * len(upsampling.VARIANTS)
    assert {s for s, v in quick if v in upsampling.INIT_PAIR} == {25, 26}
