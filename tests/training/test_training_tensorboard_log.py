"""TensorBoard logging, read back with TensorBoard's own event reader."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

from fcnkit.training.tensorboard import TensorBoardLogger  # noqa: E402


def test_records_and_predictions_round_trip(tmp_path):
    records = [
        {"kind": "step", "epoch": 1, "step": 2, "loss": 2.5, "lr": 0.01, "img_per_s": 30.0},
        {"kind": "step", "epoch": 1, "step": 4, "loss": 1.5, "lr": 0.005, "img_per_s": 32.0},
        {"kind": "epoch", "epoch": 1, "step": 4, "train_loss": 2.0, "miou": 0.25,
         "pixel_acc": 0.7, "mean_acc": 0.4, "fwiou": 0.5, "time_s": 3.0},
        {"kind": "other", "step": 5, "loss": 9.0},
    ]
    rng = np.random.default_rng(0)
    samples = [(rng.random((3, 8, 10)), rng.integers(0, 3, (8, 10)), rng.integers(0, 3, (8, 10)))
               for _ in range(2)]
    with TensorBoardLogger(tmp_path / "tb") as logger:
        for record in records:
            logger.log_record(record)
        logger.log_predictions(samples, step=4)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(2, 2.5), (4, 1.5)]
    assert [e.value for e in events.Scalars("val/miou")] == [0.25]
    assert events.Scalars("train/lr")[1].value == pytest.approx(0.005)
    assert set(events.Tags()["scalars"]) == {
        "train/loss", "train/lr", "train/images_per_s", "train/epoch_loss", "val/miou",
        "val/pixel_acc", "val/mean_acc", "val/fwiou", "time/epoch_s"}
    (image,) = events.Images("val/predictions")
    # Two rows of four 8x10 panels.
    assert (image.step, image.height, image.width) == (4, 2 * 8, 4 * 10)


@pytest.mark.slow
def test_train_with_tensorboard_writes_events(tmp_path, synthetic_data):
    """``fcnkit train --tensorboard``: the run's scalars and per-epoch prediction images."""
    from fcnkit.cli import main

    data = synthetic_data(train=4, val=2, seed=3, size=(40, 56))
    run = tmp_path / "run"
    assert main(["train", "--data", f"synth:{data}", "--epochs", "2", "--batch-size", "2",
                 "--crop", "32,32", "--out", str(run), "--workers", "0", "--threads", "1",
                 "--no-progress", "--log-every", "1", "--tensorboard"]) == 0
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("val/miou")] == [2, 4]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    images = events.Images("val/predictions")
    assert [(i.step, i.height, i.width) for i in images] == [(2, 2 * 40, 4 * 56),
                                                             (4, 2 * 40, 4 * 56)]
