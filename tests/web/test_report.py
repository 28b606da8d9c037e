"""``fcnkit report``: a run directory -> one self-contained HTML file."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from fcnkit.cli import main
from fcnkit.errors import FcnkitWarning, InputError
from fcnkit.web import report
from fcnkit.web.report import load_run, write_report


def test_report_is_self_contained_and_complete(fake_runs, tmp_path):
    out = tmp_path / "report.html"
    summary = write_report(fake_runs[:1], out, gallery=2)
    page = out.read_text()
    assert summary == {"path": str(out), "runs": 1, "gallery": 2, "bytes": len(page.encode())}
    # Opens offline: nothing is loaded from anywhere but the file itself.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<script src" not in page and "<link" not in page
    for section in ("summary", "curves", "per-class", "confusion", "gallery", "checkpoint",
                    "config"):
        assert f'id="{section}"' in page
    # Curves: one point per logged record, each carrying its values for the hover.
    assert page.count('class="point"') == 3 * 6 + 2 * 3  # loss/lr/speed per step; 2 per epoch
    assert 'data-label="run-a: step 2, training loss 1"' in page
    # Gallery: image | ground truth | prediction | errors, as data URIs.
    assert page.count('src="data:image/png;base64,') == 2 * 4


def test_per_class_values_come_from_the_confusion_matrix(fake_runs):
    run = load_run(fake_runs[0])
    confusion = np.array(run["metrics"]["confusion"], dtype=float)
    diag = np.diag(confusion)
    # IoU_i = n_ii / (t_i + sum_j n_ji - n_ii) (Long et al. 2015, section 5)
    iou = diag / (confusion.sum(1) + confusion.sum(0) - diag)
    np.testing.assert_allclose(run["metrics"]["iou"], iou)
    np.testing.assert_allclose(run["metrics"]["acc"], diag / confusion.sum(1))
    assert run["checkpoint"]["file"] == "best.pt" and run["checkpoint"]["parameters"] > 0


def test_comparison_overlays_runs(fake_runs, tmp_path):
    out = tmp_path / "compare.html"
    write_report(fake_runs, out, gallery=0)
    page = out.read_text()
    chart = page[page.index('id="chart-loss"'):page.index('id="chart-miou"')]
    assert chart.count("<polyline") == 2
    assert "<th>run-a</th><th>run-b</th>" in page
    assert "IoU run-a" in page and "IoU run-b" in page
    assert "No gallery" in page


def test_not_a_run_directory(tmp_path):
    with pytest.raises(InputError, match="no metrics.jsonl"):
        write_report([tmp_path], tmp_path / "r.html")
    with pytest.raises(InputError, match="not a directory"):
        write_report([tmp_path / "missing"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_gallery_warning_survives_an_error_without_a_message(fake_runs, tmp_path,
                                                             monkeypatch):
    def fail(*args, **kwargs):
        raise OSError()  # str(OSError()) == "": no first line to cut

    import fcnkit.data

    monkeypatch.setattr(fcnkit.data, "open_dataset", fail)
    monkeypatch.setattr(report, "open_dataset", fail, raising=False)
    with pytest.warns(FcnkitWarning, match=r"no gallery.*\(OSError\)"):
        summary = write_report(fake_runs[:1], tmp_path / "r.html", gallery=1)
    assert summary["gallery"] == 0


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no metrics.jsonl" in err


@pytest.mark.slow  # seconds
def test_cli_writes_the_report(fake_runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", *map(str, fake_runs), "-o", str(out), "--gallery", "1",
                 "--json"]) == 0
    assert '"gallery": 2' in capsys.readouterr().out and out.is_file()


@pytest.mark.slow
def test_train_then_report_end_to_end(tmp_path, synthetic_data):
    """A real (tiny) fcnkit train run directory, reported by the CLI."""
    data = synthetic_data(train=4, val=2, seed=3, size=(40, 56))
    run = tmp_path / "run"
    train = subprocess.run([sys.executable, "-m", "fcnkit", "train", "--data", f"synth:{data}",
                            "--epochs", "2", "--batch-size", "2", "--crop", "32,32",
                            "--out", str(run), "--workers", "0", "--threads", "1",
                            "--no-progress", "--log-every", "1"],
                           capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    report = subprocess.run([sys.executable, "-m", "fcnkit", "report", str(run)],
                            capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    page = (run / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 * 4
    assert page.count('class="point"') > 4


@pytest.mark.slow  # seconds
def test_steps_one_float_spacing_apart_end_in_a_report(fake_runs, tmp_path):
    import json
    import math
    import shutil

    run = tmp_path / "run"
    shutil.copytree(fake_runs[0], run)
    far, next_one = 1e15, math.nextafter(1e15, math.inf)
    records = [{"kind": "step", "epoch": 1, "step": far, "loss": 1.0, "lr": 0.1},
               {"kind": "step", "epoch": 1, "step": next_one, "loss": 0.5, "lr": 0.1},
               {"kind": "epoch", "epoch": 1, "step": next_one, "train_loss": 0.7,
                "miou": 0.2, "pixel_acc": 0.5}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    # In a subprocess: before, the tick loop never advanced and grew until memory ran out.
    proc = subprocess.run([sys.executable, "-m", "fcnkit", "report", str(run), "--gallery",
                           "0", "-o", str(tmp_path / "r.html")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "<svg" in (tmp_path / "r.html").read_text()


def test_nice_ticks_are_few_and_cover_the_range():
    import math

    from fcnkit.web.report import _nice_ticks

    for low, high in [(0, 10), (0.1, 0.95), (3, 3), (1e15, math.nextafter(1e15, math.inf)),
                      (-7.5, 1e12), (1e-300, 2e-300)]:
        ticks = _nice_ticks(low, high)
        assert len(ticks) <= 7 and ticks == sorted(set(ticks))
        assert ticks[0] <= low and ticks[-1] >= high


def test_cli_refuses_a_nonsense_device_in_one_line(fake_runs, capsys):
    # argparse refuses it while parsing; main returns its 2 (never raises SystemExit)
    assert main(["report", str(fake_runs[0]), "--device", "nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nonsense' is not a device" in err


@pytest.mark.parametrize("text,fragment", [("[1, 2]", "a list where a JSON object"),
                                           ("{not json", "is not JSON"),
                                           ('{"model": 5}', "field model=5")])
def test_a_config_json_that_is_not_an_object_is_one_line(fake_runs, tmp_path, text, fragment):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(fake_runs[0], run)
    (run / "config.json").write_text(text)
    with pytest.raises(InputError, match=fragment) as info:
        load_run(run)
    assert str(run / "config.json") in str(info.value) and "\n" not in str(info.value)


def test_bad_metrics_lines_are_skipped_with_a_count(fake_runs, tmp_path):
    import shutil

    from fcnkit.errors import FcnkitWarning

    run = tmp_path / "run"
    shutil.copytree(fake_runs[0], run)
    good = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(good + b'[1]\n"x"\n\xff\xfe\n{"step": "3"}\n')
    with pytest.warns(FcnkitWarning, match="4 unreadable line"):
        loaded = load_run(run)
    assert len(loaded["steps"]) + len(loaded["epochs"]) == good.count(b"\n")
