"""ConfusionMatrix against sklearn's confusion matrix and hand-computed FCN-paper scores."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from fcnkit.metrics import ConfusionMatrix


def _reference_scores(pred, target, k, ignore=255):
    """Scores from sklearn's matrix, with per-class loops (independent of metrics.py)."""
    keep = target != ignore
    m = sk_confusion_matrix(target[keep], pred[keep], labels=list(range(k))).astype(float)
    total = m.sum()
    ious, accs, weights = [], [], []
    for i in range(k):
        t_i = m[i, :].sum()
        p_i = m[:, i].sum()
        if t_i + p_i == 0:
            continue  # absent from both: excluded
        ious.append(m[i, i] / (t_i + p_i - m[i, i]))
        weights.append(t_i)
        if t_i > 0:
            accs.append(m[i, i] / t_i)
    return {
        "matrix": m,
        "pixel_acc": np.trace(m) / total,
        "mean_acc": sum(accs) / len(accs),
        "miou": sum(ious) / len(ious),
        "fwiou": sum(w * v for w, v in zip(weights, ious)) / total,
    }


@pytest.mark.filterwarnings("ignore:A single label was found")
@given(
    k=st.integers(1, 7),
    n=st.integers(1, 300),
    ignore_frac=st.floats(0.0, 0.6),
    seed=st.integers(0, 2**31 - 1),
    as_torch=st.booleans(),
)
def test_matches_sklearn_on_random_labels_with_ignore(k, n, ignore_frac, seed, as_torch):
    rng = np.random.default_rng(seed)
    # A subset of classes is used, so some are absent from target and/or prediction.
    used = rng.choice(k, size=rng.integers(1, k + 1), replace=False)
    target = rng.choice(used, size=n)
    pred = np.where(rng.random(n) < 0.6, target, rng.integers(0, k, size=n))
    target[rng.random(n) < ignore_frac] = 255
    if (target == 255).all():
        target[0] = used[0]
    cm = ConfusionMatrix(k)
    half = n // 2
    for a, b in ((pred[:half], target[:half]), (pred[half:], target[half:])):
        if as_torch:
            a, b = torch.from_numpy(a), torch.from_numpy(b)
        cm.update(a, b)
    ref = _reference_scores(pred, target, k)
    np.testing.assert_array_equal(cm.matrix.numpy(), ref["matrix"])
    scores = cm.compute()
    for key in ("pixel_acc", "mean_acc", "miou", "fwiou"):
        assert scores[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-12), key


def test_accumulates_over_dataset_not_average_of_batches():
    cm = ConfusionMatrix(2)
    # batch 1: 1 pixel of class 1, predicted right; batch 2: 99 pixels of class 1, all wrong.
    cm.update(np.array([1]), np.array([1]))
    cm.update(np.zeros(99, dtype=np.int64), np.ones(99, dtype=np.int64))
    scores = cm.compute()
    assert scores["pixel_acc"] == pytest.approx(0.01)
    # class 0: never in target, predicted 99 times → IoU 0; class 1: IoU 1/100.
    assert scores["iou"] == pytest.approx([0.0, 0.01])
    assert scores["miou"] == pytest.approx(0.005)
    assert math.isnan(scores["acc"][0]) and scores["mean_acc"] == pytest.approx(0.01)


def test_absent_class_is_nan_and_excluded_from_means():
    cm = ConfusionMatrix(4)
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 0, 1], [2, 2, 3]])  # the 3 lands on an ignored pixel
    cm.update(pred, target)
    scores = cm.compute()
    assert math.isnan(scores["iou"][3])
    assert scores["iou"][:3] == pytest.approx([1.0, 0.5, 0.5])
    assert scores["miou"] == pytest.approx(2.0 / 3.0)
    assert scores["pixels"] == [2, 2, 1, 0]
    assert scores["fwiou"] == pytest.approx((2 * 1.0 + 2 * 0.5 + 1 * 0.5) / 5)


def test_labels_out_of_range_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="target label 3"):
        cm.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="predicted label 5"):
        cm.update(np.array([0, 5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3), dtype=np.int64), np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        cm.update(np.zeros(3), np.zeros(3, dtype=np.int64))
    assert int(cm.matrix.sum()) == 0  # nothing was half-added


def test_merge_iadd_from_matrix_reset():
    rng = np.random.default_rng(1)
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    whole = ConfusionMatrix(5)
    for cm in (a, b):
        p, t = rng.integers(0, 5, 50), rng.integers(0, 5, 50)
        cm.update(p, t)
        whole.update(p, t)
    merged = a + b
    assert torch.equal(merged.matrix, whole.matrix)
    a += b
    assert torch.equal(a.matrix, whole.matrix)
    assert a.matrix.dtype == torch.int64 and a.matrix.device.type == "cpu"
    copy = ConfusionMatrix.from_matrix(whole.matrix.numpy())
    assert copy.compute()["miou"] == whole.compute()["miou"]
    copy.reset()
    assert int(copy.matrix.sum()) == 0 and int(whole.matrix.sum()) == 100
    assert math.isnan(copy.compute()["miou"])
    with pytest.raises(ValueError, match="merge"):
        a.merge(ConfusionMatrix(4))
    with pytest.raises(ValueError, match="square"):
        ConfusionMatrix.from_matrix(np.zeros((2, 3), dtype=np.int64))


def test_plot_confusion_matrix_writes_a_deterministic_png(tmp_path):
    from PIL import Image

    from fcnkit.viz.confusion import plot_confusion_matrix

    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 1, 2, 2, 0]), np.array([0, 1, 2, 2, 2, 255]))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot_confusion_matrix(cm.matrix, ["bg", "cat", "dog"], a)
    plot_confusion_matrix(cm.matrix.numpy(), ["bg", "cat", "dog"], b)
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as image:
        assert image.format == "PNG" and min(image.size) > 100
    plot_confusion_matrix(cm.matrix, ["bg", "cat", "dog"], b, normalize=False)
    assert a.read_bytes() != b.read_bytes()
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(cm.matrix, ["bg"], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_one_void_label_for_the_whole_package():
    """IGNORE_INDEX is defined once (fcnkit.constants) and is what every default means."""
    import inspect
    import re
    from pathlib import Path

    import fcnkit
    from fcnkit.constants import IGNORE_INDEX
    from fcnkit.data import IGNORE_INDEX as data_ignore_index
    from fcnkit.inference.evaluate import evaluate

    assert IGNORE_INDEX == data_ignore_index == 255  # VOC's void label
    assert ConfusionMatrix(3).ignore_index == IGNORE_INDEX
    assert inspect.signature(evaluate).parameters["ignore_index"].default == IGNORE_INDEX
    # Voids are left out of the matrix by default.
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1, 1]), np.array([0, IGNORE_INDEX, 1]))
    assert cm.matrix.sum() == 2
    # No second definition, no literal default anywhere in the sources.
    root = Path(fcnkit.__file__).parent
    definitions, literal_defaults = [], []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"^IGNORE_INDEX\s*=", text, flags=re.MULTILINE):
            definitions.append(path.relative_to(root).as_posix())
        if re.search(r"ignore_index\s*(:\s*int\s*)?=\s*255", text):
            literal_defaults.append(path.relative_to(root).as_posix())
    assert definitions == ["constants.py"]
    assert literal_defaults == []
