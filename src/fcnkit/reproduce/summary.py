"""Every claim on one page: ``fcnkit reproduce all`` and the generated tables of
docs/reproductions.md.

* :func:`run_all` runs every claim (each into ``OUT/CLAIM``) and writes ``OUT/summary.md``
  (one markdown table: claim, clause, kind, Δ mean, interval, verdict), ``OUT/summary.html``
  (the same table, self-contained, in the style of ``fcnkit report``) and
  ``OUT/summary.json``.
* :func:`render_result` renders one recorded ``results.json`` (docs/results/*.json) as
  markdown: its host, the near-chance gate, the clause table, the per-variant table and the
  per-seed values. :func:`render_page` rewrites the generated blocks of a page from those
  files, so docs/reproductions.md's tables are generated, never typed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fcnkit.atomic import write_text_atomic
from fcnkit.errors import InputError
from fcnkit.jsonio import dumps_strict
from fcnkit.reproduce import CLAIMS, run_claim
from fcnkit.reproduce.runner import (
    ReproduceConfig,
    comparisons_table,
    fmt,
    markdown_table,
    summarise,
)
from fcnkit.reproduce.stats import half_width_text, seeds_needed
from fcnkit.viz.page import PAGE_STYLE, escape

__all__ = ["render_page", "render_result", "run_all", "summary_html", "summary_markdown",
           "summary_rows"]

#: Column names of the metrics in the rendered tables.
METRIC_LABELS = {"miou": "mIoU", "trimap_miou": "trimap mIoU", "boundary_iou": "Boundary IoU",
                 "pixel_acc": "pixel acc", "high_freq": "high-freq energy",
                 "auc": "area under the val curve", "thin_part_iou": "thin-part IoU",
                 "interior_miou": "interior mIoU", "checkerboard": "checkerboard",
                 "hdc_advantage": "HDC advantage", "forward_s": "forward s",
                 "log_forward_s": "log forward s"}
SUMMARY_HEADERS = ("claim", "clause", "kind", "n", "Δ mean", "one-sided 95 % bounds",
                   "verdict")


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):+.3f}"


def summary_rows(results: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """One row per clause of every claim; an exact claim (no comparisons) is one row of
    kind "exact" whose verdict is the claim's, and a training claim's exact clauses
    (``results["exact"]``: computed numbers against a reference, no statistics) are rows
    of kind "exact" too."""
    rows: list[list[Any]] = []
    for result in results:
        comparisons = result.get("comparisons")
        if not comparisons:
            rows.append([result["claim"], result.get("claim_text", ""), "exact", "–", "–",
                         "–", result["verdict"]])
            continue
        for c in comparisons:
            rows.append([result["claim"], c["clause"], c["kind"], c["n"], _num(c["mean"]),
                         f"[{_num(c['lower'])}, {_num(c['upper'])}]", c["verdict"]])
        for e in result.get("exact", []):
            rows.append([result["claim"], e["clause"], "exact", "–", "–", "–", e["verdict"]])
        for s in result.get("skipped", []):
            rows.append([result["claim"], s["clause"], "not tested", "–", "–", "–",
                         f"not tested: {s['reason']}"])
    return rows


def summary_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """The summary table, then each claim's overall verdict."""
    verdicts = "".join(f"* `{r['claim']}`: **{r['verdict']}** — {r.get('verdict_reason', '')}\n"
                       for r in results)
    return ("# fcnkit reproduce all\n\n" + markdown_table(SUMMARY_HEADERS,
                                                          summary_rows(results))
            + "\n" + verdicts)


def summary_html(results: Sequence[Mapping[str, Any]]) -> str:
    """The summary as one self-contained HTML page (the report page's style)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in SUMMARY_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in summary_rows(results))
    verdicts = "".join(f"<li><code>{escape(r['claim'])}</code>: <b>{escape(r['verdict'])}</b> — "
                       f"{escape(r.get('verdict_reason', ''))}</li>" for r in results)
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>fcnkit reproduce all</title><style>{PAGE_STYLE}</style></head><body>",
        "<header><h1>fcnkit reproduce all</h1><p>Every claim's clauses: paired deltas over "
        "seeds, one-sided 95 % Student-t bounds, verdicts by the rules of "
        "<code>fcnkit.reproduce.stats</code>. Self-contained, opens offline.</p></header>",
        f'<main><section id="clauses"><h2>Clauses</h2><table><tr>{head}</tr>{body}</table>'
        f'</section><section id="verdicts"><h2>Claims</h2><ul>{verdicts}</ul></section>',
        "</main></body></html>\n",
    ])


def run_all(config: ReproduceConfig) -> dict[str, Any]:
    """Run every claim of :data:`fcnkit.reproduce.CLAIMS` into ``config.out/CLAIM`` and
    write ``summary.md``, ``summary.html`` and ``summary.json`` into ``config.out``."""
    out = Path(config.out)
    results = []
    for name in CLAIMS:
        result = run_claim(name, dataclasses.replace(config, out=str(out / name)))
        results.append({k: v for k, v in result.items() if k != "table"})
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": str(out / "summary.md"), "html": str(out / "summary.html"),
             "json": str(out / "summary.json")}
    rows = [dict(zip(SUMMARY_HEADERS, row)) for row in summary_rows(results)]
    summary = {"claims": [{"claim": r["claim"], "verdict": r["verdict"],
                           "verdict_reason": r.get("verdict_reason", ""),
                           "results": r.get("files", {}).get("json")} for r in results],
               "clauses": rows, "files": files}
    write_text_atomic(out / "summary.md", summary_markdown(results))
    write_text_atomic(out / "summary.html", summary_html(results))
    write_text_atomic(out / "summary.json", dumps_strict(summary, indent=2) + "\n")
    summary["table"] = summary_markdown(results)
    return summary


#: Up to this many seeds the per-seed table has a column per seed; beyond, a table per
#: metric with a row per seed.
WIDE_SEEDS = 8


def _per_seed_table(result: Mapping[str, Any]) -> str:
    runs = result.get("runs", [])
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    seeds = sorted({int(r["seed"]) for r in runs})
    metrics = list(dict.fromkeys(k for r in runs for k in r.get("metrics", {})))
    values = {(r["variant"], int(r["seed"])): r.get("metrics", {}) for r in runs}

    def cell(variant: str, seed: int, metric: str) -> str:
        value = values.get((variant, seed), {}).get(metric)
        return "–" if value is None else f"{value:.3f}"

    if len(seeds) > WIDE_SEEDS:
        # one table per metric, a row per seed: a column per seed would not fit a page
        return "\n".join(
            f"{METRIC_LABELS.get(metric, metric)}:\n\n" + markdown_table(
                ["seed", *variants],
                [[seed, *(cell(v, seed, metric) for v in variants)] for seed in seeds])
            for metric in metrics)
    rows = [[METRIC_LABELS.get(metric, metric), variant]
            + [cell(variant, seed, metric) for seed in seeds]
            for metric in metrics for variant in variants]
    return markdown_table(["metric", "variant"] + [f"seed {s}" for s in seeds], rows)


def power_line(comparisons: Sequence[Mapping[str, Any]]) -> str:
    """Which clauses the run had the power to decide either way (half-width < threshold);
    empty without comparisons."""
    powered = [c for c in comparisons if c.get("power")]
    if not powered:
        return ""
    weak = [c for c in powered if not c["power"]["decisive"]]
    line = (f"Power: {len(powered) - len(weak)} of {len(powered)} clauses decisive "
            "(one-sided half-width below the threshold)")
    if weak:
        line += "; not decisive: " + "; ".join(
            f"{c['clause']} (half-width "
            f"{half_width_text(c['power']['half_width'], c['power']['threshold'])} against "
            f"{c['power']['threshold']:g}{_seeds_note(c)})" for c in weak)
    return line + ".\n\n"


def _seeds_note(comparison: Mapping[str, Any]) -> str:
    """``; about N seeds at this spread`` (:func:`fcnkit.reproduce.stats.seeds_needed`)."""
    if comparison.get("sd") is None:
        return ""
    needed = seeds_needed(comparison["sd"], comparison["power"]["threshold"])
    if needed is None:
        return "; more than 1000 seeds at this spread"
    return f"; {needed} seeds would reach it at this spread"


def render_result(result: Mapping[str, Any]) -> str:
    """One recorded ``results.json`` as markdown (the generated block of its claim)."""
    host = result.get("host", {})
    chance = result.get("chance", {})
    recorded = result.get("recorded", {})
    label = f"{host['label']}, " if host.get("label") else ""
    isa = f" ({', '.join(host['isa'])})" if host.get("isa") else ""
    torch_version = f", torch {host['torch']}" if host.get("torch") else ""
    lines = [f"Host: {label}{host.get('cpu', '?')}{isa}{torch_version}, precision "
             f"{host.get('precision', '?')}, threads "
             f"{host.get('threads') if host.get('threads') is not None else 'default'}"
             + (f" per training, {host['jobs']} trainings at once"
                if (host.get("jobs") or 1) > 1 else "") + "."]
    if recorded.get("wall_s") is not None:
        minutes, seconds = divmod(int(round(float(recorded["wall_s"]))), 60)
        lines.append(f"Wall time {minutes} min {seconds} s.")
    if recorded.get("note"):
        lines.append(recorded["note"].rstrip(".") + ".")
    if chance:
        lines.append(f"Near-chance gate: best constant prediction {chance['constant_miou']:.3f}"
                     f" mIoU + {chance['gate_margin']:.2f} = {chance['gate']:.3f}; best "
                     f"variant {chance.get('best_variant')} at "
                     f"{float(chance.get('best_miou', math.nan)):.3f}.")
    text = " ".join(lines) + "\n\n"
    text += comparisons_table(result.get("comparisons", []))
    for e in result.get("exact", []):
        text += f"\n* {e['clause']} (exact, {e.get('source', '')}): {e['verdict']}."
    for s in result.get("skipped", []):
        text += f"\n* {s['clause']}: not tested ({s['reason']})."
    head = str(result.get("verdict_reason", "")).split(";")[0]
    text += f"\n\nVerdict: **{result['verdict']}** ({head}).\n\n"
    text += power_line(result.get("comparisons", []))
    variants = list(dict.fromkeys(r["variant"] for r in result.get("runs", [])))
    recorded_summary = result.get("summary")
    if recorded_summary:
        keys = list(dict.fromkeys(k for v in recorded_summary.values() for k in v))
        summary = recorded_summary
    else:
        keys = list(dict.fromkeys(k for r in result["runs"] for k in r["metrics"]))
        summary = {v: summarise([r["metrics"] for r in result["runs"]
                                 if r["variant"] == v], keys) for v in variants}
    text += markdown_table(["variant", *(METRIC_LABELS.get(k, k) for k in keys)],
                           [[v, *(fmt(summary[v][k], 4 if k == "high_freq" else 3)
                                  if k in summary[v] else "–" for k in keys)]
                            for v in summary])
    text += "\nPer seed:\n\n" + _per_seed_table(result)
    return text


BLOCK = re.compile(r"(<!-- generated from docs/results/(?P<file>[\w.-]+\.json) by "
                   r"`fcnkit reproduce table` -->\n)(?P<body>.*?)(<!-- end generated -->)",
                   re.S)


def render_page(page: str, results_dir: str | Path) -> str:
    """``page`` with every generated block re-rendered from ``results_dir``'s file.

    A block is ``<!-- generated from docs/results/NAME.json by `fcnkit reproduce table`
    -->`` … ``<!-- end generated -->``. InputError if a block names a missing file or a
    results file has no block.
    """
    directory = Path(results_dir)
    files = {p.name for p in directory.glob("*.json")}
    named = {m.group("file") for m in BLOCK.finditer(page)}
    if missing := sorted(named - files):
        raise InputError(f"{directory}: no {', '.join(missing)} for the page's generated "
                         "blocks")
    if unplaced := sorted(files - named):
        raise InputError(f"{directory}/{unplaced[0]} has no generated block in the page; add "
                         f"'<!-- generated from docs/results/{unplaced[0]} by `fcnkit "
                         "reproduce table` -->' and '<!-- end generated -->'")

    def body(match: re.Match[str]) -> str:
        result = json.loads((directory / match.group("file")).read_text())
        return match.group(1) + render_result(result) + match.group(4)

    return BLOCK.sub(body, page)
