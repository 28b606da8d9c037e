"""A training run directory as one self-contained ``report.html`` (opens offline).

:func:`write_report` reads what ``fcnkit train`` leaves in a run directory --
``config.json``, ``metrics.jsonl`` and ``best.pt`` (``last.pt`` when there is no best, the
rule of :func:`fcnkit.runtime.checkpoint.run_checkpoint`) -- and writes one HTML file with
everything inline (CSS, a small script, SVG charts, images as ``data:`` URIs):

* the config;
* training curves (loss and learning rate per logged step, validation scores per epoch) as
  SVG; hovering a point shows its values;
* per-class IoU / accuracy and the confusion matrix of the checkpoint's validation
  (recomputed from the stored confusion counts by :class:`fcnkit.metrics.ConfusionMatrix`);
* a gallery of validation predictions (image | ground truth | prediction | errors),
  predicted with the checkpoint by :func:`fcnkit.inference.predict.predict_image`;
* checkpoint facts (file, size, epoch, step, model, parameters).

With several run directories the curves are overlaid and the metrics set side by side.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fcnkit.atomic import read_text_utf8, write_text_atomic
from fcnkit.data import open_dataset
from fcnkit.data.palette import voc_palette
from fcnkit.errors import InputError, first_line, warn
from fcnkit.inference.predict import predict_samples
from fcnkit.metrics import ConfusionMatrix
from fcnkit.outputs import check_outputs
from fcnkit.runtime.checkpoint import (
    describe_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    run_checkpoint,
)
from fcnkit.schemas import RUN_CONFIG, check_fields
from fcnkit.training.runlog import read_run_log_counted
from fcnkit.viz.page import PAGE_STYLE, escape
from fcnkit.viz.predictions import PANEL_NAMES, pixel_accuracy, prediction_panels

__all__ = ["DEFAULT_GALLERY", "default_report_path", "load_run", "render_report",
           "write_report"]

#: Validation images in the gallery by default.
DEFAULT_GALLERY = 4
#: Series colours (colour-blind safe, Okabe & Ito), one per run.
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_SUMMARY_KEYS = ("pixel_acc", "mean_acc", "miou", "fwiou")


def default_report_path(runs: Sequence[str | os.PathLike[str]]) -> Path:
    """``RUN_DIR/report.html`` for one run, ``./report.html`` for a comparison."""
    return Path(runs[0]) / "report.html" if len(runs) == 1 else Path("report.html")


# ------------------------------------------------------------------------------ reading runs


def read_run_config(file: Path) -> dict[str, Any] | None:
    """A run's ``config.json`` as a dict (None when absent), checked by the
    :data:`fcnkit.schemas.RUN_CONFIG` schema; anything else is one line naming the file."""
    if not file.exists():
        return None
    try:
        config = json.loads(read_text_utf8(file, "run config"))
    except ValueError as exc:
        raise InputError(f"run config {file} is not JSON ({first_line(exc)[:80]}); "
                         "restore it or delete it") from None
    check_fields(config, RUN_CONFIG, file=file, what="run config",
                 fix="restore it or delete it")
    return dict(config)


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What a report shows of one run directory, as plain data (no tensors).

    Returns:
        ``name``, ``path``, ``config`` (dict or None), ``steps`` / ``epochs`` (the
        ``metrics.jsonl`` records by kind), ``checkpoint`` (facts, or None when the run has
        no checkpoint yet) and ``metrics`` (``classes``, ``iou``, ``acc``, ``confusion``
        and the summary scores of the checkpoint's validation, or None).

    Raises:
        InputError: ``run_dir`` is not a directory or holds no ``metrics.jsonl``.
    """
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise InputError(f"{path} is not a directory; pass a run directory written by "
                         "fcnkit train (its --out)")
    log_file = path / "metrics.jsonl"
    if not log_file.is_file():
        raise InputError(f"{path} holds no metrics.jsonl, so it is not a training run; pass "
                         "the --out directory of fcnkit train")
    records, bad = read_run_log_counted(log_file)
    if bad:
        warn(f"{log_file}: {bad} unreadable line(s) skipped (not a metrics record)")
    steps = [record for record in records if record.get("kind") == "step"]
    epochs = [record for record in records if record.get("kind") == "epoch"]
    config = read_run_config(path / "config.json")
    run: dict[str, Any] = {"name": path.resolve().name, "path": str(path), "config": config,
                           "steps": steps, "epochs": epochs, "checkpoint": None,
                           "metrics": None, "checkpoint_path": None}
    has_checkpoint = (path / "best.pt").is_file() or (path / "last.pt").is_file()
    if has_checkpoint:
        file = run_checkpoint(path)
        ckpt = load_checkpoint(file)
        parameters = sum(int(t.numel()) for t in ckpt["model_state"].values()
                         if hasattr(t, "numel"))
        run["checkpoint_path"] = str(file)
        run["checkpoint"] = {
            "file": file.name,
            "size_mb": round(file.stat().st_size / 2**20, 2),
            "model": describe_checkpoint(ckpt),
            "epoch": ckpt.get("epoch"),
            "step": ckpt.get("step"),
            "best_miou": ckpt.get("best_miou"),
            "world_size": ckpt.get("world_size"),
            "format": ckpt.get("format"),
            "parameters": parameters,
        }
        stored = ckpt.get("metrics") or {}
        if stored.get("confusion") is not None:
            scores = ConfusionMatrix.from_matrix(stored["confusion"]).compute()
            classes = list(stored.get("classes") or ckpt.get("classes") or
                           [str(i) for i in range(len(scores["iou"]))])
            run["metrics"] = {"classes": classes, "confusion": stored["confusion"],
                              **{k: scores[k] for k in (*_SUMMARY_KEYS, "iou", "acc", "pixels")}}
        run["palette"] = [list(c) for c in (ckpt.get("palette") or [])]
    return run


def _gallery(run: dict[str, Any], count: int, device: str) -> list[dict[str, str]]:
    """``count`` validation images of ``run`` with ground truth, prediction and errors."""
    if count <= 0 or not run.get("checkpoint_path") or not run.get("config"):
        return []

    config = run["config"]
    try:
        dataset = open_dataset(config["data"], config.get("val_split", "val"))
    except (InputError, OSError, KeyError) as exc:
        warn(f"{run['path']}: no gallery, the validation data cannot be opened "
             f"({first_line(exc)})")
        return []

    ckpt = load_checkpoint(run["checkpoint_path"])
    model = model_from_checkpoint(ckpt, device=device)
    num_classes = int(ckpt["model_config"]["num_classes"])
    palette = run.get("palette") or voc_palette(num_classes)
    items = []
    samples = predict_samples(model, dataset, count, num_classes=num_classes, device=device)
    for index, (image, mask, pred) in enumerate(samples):
        panels = prediction_panels(image, mask, pred, palette)
        item = {name: _png_uri(panels[name]) for name in PANEL_NAMES}
        item["caption"] = f"val #{index}: pixel accuracy {pixel_accuracy(mask, pred):.1%}"
        items.append(item)
    return items


def _png_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------ SVG charts


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (1, 2, 5 x 10^n steps)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    # A step below the float spacing at these values (steps 1e15 apart by one spacing)
    # would never advance: keep it at least two spacings.
    step = max(step, 2 * math.ulp(max(abs(low), abs(high))))
    start = math.floor(low / step) * step
    # Ticks by index, never by accumulation, and at most a few more than asked for: with
    # step >= raw, (high - start) / step <= count - 1 + 1.
    n = min(count + 2, math.floor((high - start) / step + 1e-9) + 1)
    # Rounding hides float noise (0.30000000000000004) but must keep the step's digits.
    digits = max(12, 3 - math.floor(math.log10(step)))
    ticks = [round(start + i * step, digits) for i in range(n)]
    if ticks[-1] < high:
        ticks.append(round(start + n * step, digits))
    return ticks


def _format(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def _line_chart(chart_id: str, title: str, x_label: str,
                series: list[tuple[str, str, list[tuple[float, float]]]]) -> str:
    """An inline SVG line chart; every point carries its values for the hover tooltip."""
    width, height, left, right, top, bottom = 440, 240, 56, 12, 28, 40
    points = [p for _, _, pts in series for p in pts if math.isfinite(p[1])]
    if not points:
        return f'<figure class="chart" id="{chart_id}"><figcaption>{html.escape(title)}: ' \
               "no values logged</figcaption></figure>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_ticks, y_ticks = _nice_ticks(min(xs), max(xs)), _nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / ((y1 - y0) or 1) * (height - top - bottom)

    out = [f'<figure class="chart" id="{chart_id}"><svg viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{left}" y="16" class="title">{html.escape(title)}</text>']
    for t in y_ticks:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
                   f'class="grid"/><text x="{left - 6}" y="{sy(t) + 4:.1f}" class="tick" '
                   f'text-anchor="end">{_format(t)}</text>')
    for t in x_ticks:
        out.append(f'<text x="{sx(t):.1f}" y="{height - bottom + 16}" class="tick" '
                   f'text-anchor="middle">{_format(t)}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" class="tick" '
               f'text-anchor="middle">{html.escape(x_label)}</text>')
    for name, colour, pts in series:
        finite = [(x, y) for x, y in pts if math.isfinite(y)]
        if not finite:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in finite)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.8"/>')
        for x, y in finite:
            label = f"{name}: {x_label} {_format(x)}, {title.split(' (')[0]} {_format(y)}"
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}" '
                       f'class="point" data-label="{html.escape(label)}"/>')
    out.append("</svg></figure>")
    return "".join(out)


# ------------------------------------------------------------------------------ HTML


_SCRIPT = """
(function(){
  var tip=document.getElementById('tooltip');
  document.querySelectorAll('.chart .point').forEach(function(p){
    p.addEventListener('mouseenter',function(e){tip.textContent=p.getAttribute('data-label');
      tip.style.display='block';tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';});
    p.addEventListener('mouseleave',function(){tip.style.display='none';});
  });
  document.body.setAttribute('data-ready','1');
})();
"""


def _score(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.4f}" if isinstance(value, float) else escape(value)


def _curves(runs: list[dict[str, Any]]) -> str:
    def series(kind: str, x_key: str, y_key: str) -> list[tuple[str, str, list]]:
        return [(run["name"], run["colour"],
                 [(float(r[x_key]), float(r[y_key])) for r in run[kind]
                  if r.get(y_key) is not None and r.get(x_key) is not None])
                for run in runs]

    charts = [
        _line_chart("chart-loss", "training loss (per logged step)", "step",
                    series("steps", "step", "loss")),
        _line_chart("chart-miou", "val mIoU (per epoch)", "epoch",
                    series("epochs", "epoch", "miou")),
        _line_chart("chart-acc", "val pixel accuracy (per epoch)", "epoch",
                    series("epochs", "epoch", "pixel_acc")),
        _line_chart("chart-lr", "learning rate", "step", series("steps", "step", "lr")),
        _line_chart("chart-speed", "throughput (images/s)", "step",
                    series("steps", "step", "img_per_s")),
    ]
    legend = "".join(f'<span><i class="swatch" style="background:{run["colour"]}"></i>'
                     f'{escape(run["name"])}</span>' for run in runs)
    return (f'<section id="curves"><h2>Training curves</h2><p class="legend">{legend}</p>'
            f'<div class="charts">{"".join(charts)}</div></section>')


def _summary(runs: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(run['name'])}</th>" for run in runs)
    rows = []
    for key, label in (("miou", "mean IoU"), ("pixel_acc", "pixel accuracy"),
                       ("mean_acc", "mean accuracy"), ("fwiou", "frequency-weighted IoU")):
        cells = "".join(f"<td>{_score((run['metrics'] or {}).get(key))}</td>" for run in runs)
        rows.append(f"<tr><td>{label}</td>{cells}</tr>")
    for key, label in (("epoch", "epochs trained"), ("step", "steps")):
        cells = "".join(f"<td>{_score((run['checkpoint'] or {}).get(key))}</td>" for run in runs)
        rows.append(f"<tr><td>{label} (checkpoint)</td>{cells}</tr>")
    cells = "".join(f"<td>{sum(float(e.get('time_s', 0)) for e in run['epochs']):.1f}</td>"
                    for run in runs)
    rows.append(f"<tr><td>training time (s)</td>{cells}</tr>")
    return (f'<section id="summary"><h2>Metrics (validation of the reported checkpoint)</h2>'
            f'<table><tr><th>metric</th>{head}</tr>{"".join(rows)}</table></section>')


def _per_class(runs: list[dict[str, Any]]) -> str:
    with_metrics = [run for run in runs if run["metrics"]]
    if not with_metrics:
        return ('<section id="per-class"><h2>Per-class IoU / accuracy</h2><p class="note">No '
                "checkpoint with validation metrics yet.</p></section>")
    classes = with_metrics[0]["metrics"]["classes"]
    head = "".join(f"<th>IoU {escape(r['name'])}</th><th>acc {escape(r['name'])}</th>"
                   for r in with_metrics)
    rows = []
    for i, name in enumerate(classes):
        cells = ""
        for run in with_metrics:
            m = run["metrics"]
            iou = m["iou"][i] if i < len(m["iou"]) else None
            acc = m["acc"][i] if i < len(m["acc"]) else None
            cells += f"<td>{_score(iou)}</td><td>{_score(acc)}</td>"
        pixels = with_metrics[0]["metrics"]["pixels"][i]
        rows.append(f"<tr><td>{i} {escape(name)}</td><td>{pixels}</td>{cells}</tr>")
    return (f'<section id="per-class"><h2>Per-class IoU / accuracy</h2><table id="class-table">'
            f'<tr><th>class</th><th>pixels</th>{head}</tr>{"".join(rows)}</table></section>')


def _confusion(run: dict[str, Any]) -> str:
    m = run["metrics"]
    if not m:
        return ""
    matrix = np.asarray(m["confusion"], dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(totals > 0, matrix / totals, 0.0)
    classes = m["classes"]
    head = "".join(f'<th title="{escape(c)}">{i}</th>' for i, c in enumerate(classes))
    rows = []
    for i, name in enumerate(classes):
        cells = []
        for j in range(len(classes)):
            rate = float(rates[i, j])
            shade = int(round(255 - 200 * rate))
            text = "#fff" if rate > 0.55 else "#222"
            cells.append(f'<td style="background:rgb({shade},{shade},255);color:{text}" '
                         f'title="true {escape(name)}, predicted {escape(classes[j])}: '
                         f'{int(matrix[i, j])} px">{rate:.2f}</td>')
        rows.append(f"<tr><th>{i} {escape(name)}</th>{''.join(cells)}</tr>")
    return (f'<h3>{escape(run["name"])}</h3><table class="confusion"><tr><th>true \\ predicted'
            f'</th>{head}</tr>{"".join(rows)}</table>')


def _gallery_html(runs: list[dict[str, Any]]) -> str:
    parts = []
    for run in runs:
        items = run.get("gallery") or []
        if not items:
            continue
        figures = "".join(
            f'<figure><img src="{it["image"]}" alt="image"><img src="{it["truth"]}" '
            f'alt="ground truth"><img src="{it["prediction"]}" alt="prediction"><img '
            f'src="{it["errors"]}" alt="errors"><figcaption>{escape(it["caption"])}</figcaption>'
            "</figure>" for it in items)
        parts.append(f"<h3>{escape(run['name'])}</h3>{figures}")
    body = "".join(parts) or '<p class="note">No gallery (no checkpoint or no validation data).</p>'
    return (f'<section id="gallery" class="gallery"><h2>Validation predictions</h2><p>image | '
            f"ground truth | prediction | errors (red: wrong, black: void)</p>{body}</section>")


def _checkpoints(runs: list[dict[str, Any]]) -> str:
    keys = ("file", "model", "parameters", "epoch", "step", "best_miou", "size_mb",
            "world_size", "format")
    head = "".join(f"<th>{escape(run['name'])}</th>" for run in runs)
    rows = "".join(
        f"<tr><td>{key}</td>"
        + "".join(f"<td>{_score((run['checkpoint'] or {}).get(key))}</td>" for run in runs)
        + "</tr>" for key in keys)
    return (f'<section id="checkpoint"><h2>Checkpoint</h2><table><tr><th></th>{head}</tr>'
            f"{rows}</table></section>")


def _configs(runs: list[dict[str, Any]]) -> str:
    blocks = "".join(f"<h3>{escape(run['name'])} <small>{escape(run['path'])}</small></h3>"
                     f"<pre>{escape(json.dumps(run['config'], indent=2, sort_keys=True))}</pre>"
                     for run in runs)
    return f'<section id="config"><h2>Config</h2>{blocks}</section>'


def render_report(runs: list[dict[str, Any]]) -> str:
    """The report page for runs loaded by :func:`load_run` (``gallery`` items optional)."""
    for i, run in enumerate(runs):
        run["colour"] = RUN_COLOURS[i % len(RUN_COLOURS)]
    title = ("fcnkit report: " + ", ".join(run["name"] for run in runs))
    confusion = "".join(_confusion(run) for run in runs) or \
        '<p class="note">No confusion matrix (no checkpoint yet).</p>'
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(title)}</title><style>{PAGE_STYLE}</style></head>",
        '<body data-ready="0"><div id="tooltip"></div>',
        f"<header><h1>{escape(title)}</h1><p>Written by <code>fcnkit report</code>; "
        "self-contained, opens offline.</p></header><main>",
        _summary(runs), _curves(runs), _per_class(runs),
        f'<section id="confusion"><h2>Confusion matrix (row-normalised; hover for pixel '
        f"counts)</h2>{confusion}</section>",
        _gallery_html(runs), _checkpoints(runs), _configs(runs),
        f"</main><script>{_SCRIPT}</script></body></html>\n",
    ])


def write_report(runs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
                 gallery: int = DEFAULT_GALLERY, device: str = "cpu", force: bool = False
                 ) -> dict[str, Any]:
    """Write the report of one or several run directories to ``output`` (atomically).

    Args:
        runs: run directories written by ``fcnkit train``.
        output: the HTML file to write.
        gallery: validation images per run in the gallery (0: none).
        device: where the gallery's predictions run.
        force: write ``output`` even when it is a file the report reads or a run's state
            (:func:`fcnkit.outputs.check_outputs`).

    Returns:
        ``{"path", "runs", "gallery", "bytes"}``: what was written.

    Raises:
        InputError: a run directory is missing or is not a training run, ``gallery`` < 0,
            or ``output`` is a run's file (without ``force``).
    """
    if gallery < 0:
        raise InputError(f"--gallery must be >= 0, got {gallery}")
    if not runs:
        raise InputError("give at least one run directory")
    read = [Path(run).expanduser() / name for run in runs
            for name in ("metrics.jsonl", "config.json", "best.pt", "last.pt")]
    check_outputs([output], read, force=force)  # before the gallery's work
    loaded = [load_run(run) for run in runs]
    for run in loaded:
        run["gallery"] = _gallery(run, gallery, device)
    page = render_report(loaded)
    path = Path(output)
    if path.is_dir():
        raise InputError(f"-o {path} is a directory; name the HTML file, e.g. {path}/report.html")
    write_text_atomic(path, page)
    return {"path": str(path), "runs": len(loaded),
            "gallery": sum(len(run["gallery"]) for run in loaded), "bytes": len(page.encode())}
