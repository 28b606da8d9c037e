"""evaluate(): confusion matrix equal to sklearn on predictions made independently."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    jaccard_score,
)
from torch import nn

from fcnkit.inference.evaluate import evaluate

K = 4
IGNORE = 255


def context_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Conv2d(3, K, kernel_size=3, padding=1)


def make_samples(sizes, seed: int = 0):
    """Random images and masks with ~10% ignore pixels."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for h, w in sizes:
        image = torch.randn(3, h, w, generator=gen)
        mask = torch.randint(0, K, (h, w), generator=gen)
        mask[torch.rand(h, w, generator=gen) < 0.1] = IGNORE
        samples.append((image, mask))
    return samples


def pad_batch(samples):
    """Stack samples, padding images with 0 and masks with the ignore index."""
    h = max(s[0].shape[1] for s in samples)
    w = max(s[0].shape[2] for s in samples)
    images = torch.zeros(len(samples), 3, h, w)
    masks = torch.full((len(samples), h, w), IGNORE, dtype=torch.int64)
    for i, (img, m) in enumerate(samples):
        images[i, :, : img.shape[1], : img.shape[2]] = img
        masks[i, : m.shape[0], : m.shape[1]] = m
    return images, masks


def oracle_pixels(model, samples):
    """Run the model image by image myself; return (true, pred) over non-ignored pixels."""
    trues, preds = [], []
    with torch.no_grad():
        for image, mask in samples:
            pred = model(image[None])[0].argmax(0)
            keep = mask != IGNORE
            trues.append(mask[keep].numpy())
            preds.append(pred[keep].numpy())
    return np.concatenate(trues), np.concatenate(preds)


def test_matrix_and_metrics_equal_sklearn_with_padded_batches() -> None:
    model = context_model()
    samples = make_samples([(32, 40), (27, 35), (40, 33), (32, 32), (20, 48)])
    loader = [pad_batch(samples[:2]), pad_batch(samples[2:4]), pad_batch(samples[4:])]
    cm = evaluate(model, loader, num_classes=K)

    y_true, y_pred = oracle_pixels(model, samples)
    want = confusion_matrix(y_true, y_pred, labels=list(range(K)))
    np.testing.assert_array_equal(cm.matrix.numpy(), want)

    scores = cm.compute()
    present = sorted(set(y_true) | set(y_pred))
    assert scores["pixel_acc"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert scores["mean_acc"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert scores["miou"] == pytest.approx(
        jaccard_score(y_true, y_pred, labels=present, average="macro")
    )
    assert scores["fwiou"] == pytest.approx(
        jaccard_score(y_true, y_pred, labels=present, average="weighted")
    )


def test_model_mode_is_restored_and_no_grad_is_used() -> None:
    model = context_model().train()
    seen: list[bool] = []
    model.register_forward_hook(lambda m, i, o: seen.append(torch.is_grad_enabled() or m.training))
    evaluate(model, [pad_batch(make_samples([(16, 16)]))], num_classes=K)
    assert seen == [False] and model.training


def test_sliding_window_of_pointwise_model_equals_whole_image() -> None:
    torch.manual_seed(1)
    model = nn.Conv2d(3, K, kernel_size=1)
    loader = [pad_batch(make_samples([(45, 61), (50, 38)], seed=2))]
    whole = evaluate(model, loader, num_classes=K)
    sliding = evaluate(model, loader, num_classes=K, window=(16, 24), overlap=0.5)
    assert int(whole.matrix.sum()) > 0
    # A 1×1 convolution is translation equivariant: tiles change nothing (up to float ties).
    assert (whole.matrix - sliding.matrix).abs().sum() <= 2


def test_dict_batches_and_bad_batches() -> None:
    model = context_model()
    images, masks = pad_batch(make_samples([(16, 20)]))
    a = evaluate(model, [{"image": images, "mask": masks}], num_classes=K)
    b = evaluate(model, [(images, masks)], num_classes=K)
    assert torch.equal(a.matrix, b.matrix)
    with pytest.raises(ValueError, match="batch"):
        evaluate(model, [images], num_classes=K)


def test_label_outside_classes_is_reported() -> None:
    images, masks = pad_batch(make_samples([(16, 16)]))
    masks[0, 0, 0] = K + 3
    with pytest.raises(ValueError, match=str(K + 3)):
        evaluate(context_model(), [(images, masks)], num_classes=K)


def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        samples = make_samples([(24, 30), (20, 20), (31, 17), (28, 28), (18, 26)], seed=5)
        shard = samples[rank::world]  # ShardedEvalSampler's partition: no padding, no repeats
        cm = evaluate(context_model(), [pad_batch([s]) for s in shard], num_classes=K)
        torch.save(cm.matrix, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns worker processes that each import torch
def test_distributed_all_reduce_equals_single_process(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_rank_main, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world)
    samples = make_samples([(24, 30), (20, 20), (31, 17), (28, 28), (18, 26)], seed=5)
    single = evaluate(context_model(), [pad_batch([s]) for s in samples], num_classes=K)
    for rank in range(world):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), single.matrix)
