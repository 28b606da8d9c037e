"""Segmentation metrics of the FCN paper over a confusion matrix accumulated over a dataset.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015), §5, with ``n_ij`` the number of pixels of true class ``i`` predicted as class
``j``, ``t_i = Σ_j n_ij`` the number of pixels of class ``i`` and ``n_cl`` the number of
classes:

* pixel accuracy      ``Σ_i n_ii / Σ_i t_i``
* mean accuracy       ``(1/n_cl) Σ_i n_ii / t_i``
* mean IU             ``(1/n_cl) Σ_i n_ii / (t_i + Σ_j n_ji − n_ii)``
* frequency weighted  ``(Σ_k t_k)⁻¹ Σ_i t_i n_ii / (t_i + Σ_j n_ji − n_ii)``

The scores are computed once from the matrix summed over every pixel of every image —
never as an average of per-batch or per-image scores. A class absent from both the ground
truth and the predictions has an undefined IU (0/0); it is left out of the means (its
per-class value is NaN) instead of counting as 0. A class predicted but absent from the
ground truth has IU 0 and counts. Mean accuracy averages over classes present in the
ground truth (``t_i > 0``). Pixels labelled ``ignore_index`` (255, "void") are not counted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from fcnkit.constants import IGNORE_INDEX
from fcnkit.errors import warn
from fcnkit.limits import boundary_width_within


def _as_long_tensor(values: Any, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        tensor = values.detach()
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "biu":
            raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got dtype {tensor.dtype}")
    return tensor.to(device="cpu", dtype=torch.int64).reshape(-1)


class ConfusionMatrix:
    """A dense ``num_classes × num_classes`` confusion matrix and the FCN paper's scores.

    ``matrix[i, j]`` counts pixels whose true class is ``i`` (row) and predicted class is
    ``j`` (column). It is an int64 CPU :class:`torch.Tensor`, so that distributed
    training can ``all_reduce`` it (sum) before :meth:`compute`.

    Args:
        num_classes: number of classes ``K``; labels are 0 … K − 1.
        ignore_index: target value that marks pixels to leave out (default ``IGNORE_INDEX``, 255).

    Example::

        cm = ConfusionMatrix(21)
        for logits, target in batches:
            cm.update(logits.argmax(1), target)
        scores = cm.compute()   # {"pixel_acc": …, "mean_acc": …, "miou": …, "fwiou": …,
                                #  "iou": [per class], "acc": [per class]}
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64)

    @classmethod
    def from_matrix(cls, matrix: Any, ignore_index: int = IGNORE_INDEX) -> ConfusionMatrix:
        """A ConfusionMatrix holding a copy of ``matrix`` (square, non-negative integers)."""
        tensor = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, torch.Tensor)
                                 else matrix).detach().to("cpu")
        if tensor.ndim != 2 or tensor.shape[0] != tensor.shape[1] or tensor.shape[0] < 1:
            raise ValueError(f"matrix must be square (K, K), got shape {tuple(tensor.shape)}")
        if tensor.is_floating_point():
            if not torch.equal(tensor, tensor.round()):
                raise ValueError("matrix must hold integer pixel counts")
        if bool((tensor < 0).any()):
            raise ValueError("matrix must hold non-negative pixel counts")
        out = cls(tensor.shape[0], ignore_index=ignore_index)
        out.matrix = tensor.to(torch.int64).clone()
        return out

    def reset(self) -> None:
        """Set every count to zero."""
        self.matrix.zero_()

    def update(self, pred: Any, target: Any) -> None:
        """Add the pixels of one prediction / ground-truth pair (any matching shape).

        Args:
            pred: predicted class indices (torch tensor or numpy array), values 0 … K − 1.
            target: true class indices, same number of elements, values 0 … K − 1 or
                ``ignore_index``.

        Raises:
            ValueError: shapes differ, values are not integers, a prediction is outside
                0 … K − 1, or a target is outside 0 … K − 1 and not ``ignore_index``.
        """
        p_shape = tuple(pred.shape) if hasattr(pred, "shape") else np.shape(pred)
        t_shape = tuple(target.shape) if hasattr(target, "shape") else np.shape(target)
        if tuple(p_shape) != tuple(t_shape):
            raise ValueError(f"pred shape {tuple(p_shape)} does not match target shape "
                             f"{tuple(t_shape)}")
        p = _as_long_tensor(pred, "pred")
        t = _as_long_tensor(target, "target")
        keep = t != self.ignore_index
        p, t = p[keep], t[keep]
        k = self.num_classes
        if t.numel():
            if int(t.min()) < 0 or int(t.max()) >= k:
                bad = int(t[(t < 0) | (t >= k)][0])
                raise ValueError(f"target label {bad} is outside 0..{k - 1} and is not the "
                                 f"ignore index {self.ignore_index}; check num_classes")
            if int(p.min()) < 0 or int(p.max()) >= k:
                bad = int(p[(p < 0) | (p >= k)][0])
                raise ValueError(f"predicted label {bad} is outside 0..{k - 1}; "
                                 "check num_classes")
        # n_ij at flat index i * K + j.
        counts = torch.bincount(t * k + p, minlength=k * k)
        self.matrix += counts.reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add ``other``'s counts into this matrix (same classes); returns ``self``."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a "
                             f"{self.num_classes}-class one")
        self.matrix += other.matrix.to(device=self.matrix.device, dtype=torch.int64)
        return self

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return ConfusionMatrix.from_matrix(self.matrix, self.ignore_index).merge(other)

    def __repr__(self) -> str:
        return (f"ConfusionMatrix(num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, pixels={int(self.matrix.sum())})")

    def compute(self) -> dict[str, Any]:
        """The FCN paper's four scores plus per-class values, as plain Python floats.

        Returns:
            ``{"pixel_acc", "mean_acc", "miou", "fwiou"}`` as floats in [0, 1] (NaN when
            no pixel was counted), ``"iou"`` and ``"acc"``: per-class lists (NaN where
            undefined: IU for a class absent from target and prediction, accuracy for a
            class absent from the target), and ``"pixels"``: counted pixels per class
            (``t_i``).
        """
        n = self.matrix.to(torch.float64).numpy()
        diag = np.diag(n)
        target_total = n.sum(axis=1)  # t_i
        pred_total = n.sum(axis=0)  # Σ_j n_ji
        union = target_total + pred_total - diag
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, diag / union, np.nan)
            acc = np.where(target_total > 0, diag / target_total, np.nan)
        total = target_total.sum()
        if total == 0:
            pixel_acc = mean_acc = miou = fwiou = math.nan
        else:
            pixel_acc = float(diag.sum() / total)
            mean_acc = float(np.nanmean(acc))
            miou = float(np.nanmean(iou))
            # Frequency weighted IU: classes with t_i = 0 have weight 0.
            fwiou = float(np.nansum(target_total * iou) / total)
        return {
            "pixel_acc": pixel_acc,
            "mean_acc": mean_acc,
            "miou": miou,
            "fwiou": fwiou,
            "iou": [float(v) for v in iou],
            "acc": [float(v) for v in acc],
            "pixels": [int(v) for v in target_total],
        }


# ------------------------------------------------------------------------ boundary metrics
# Two ways to score how well a segmentation follows object outlines, both accumulated over
# a dataset as integer counts (like the confusion matrix, so that distributed evaluation
# can all_reduce them):
#
# * Trimap (Kohli, Ladický & Torr, IJCV 2009; used by DeepLab, Chen et al. 2016, Fig. 5, to
#   show boundary refinement): the FCN scores over the pixels within a band of d pixels
#   around the ground-truth label boundaries only.
# * Boundary IoU (Cheng, Girshick, Dollár, Berg & Kirillov, CVPR 2021): per class c,
#   |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)| with G, P the true and predicted masks
#   of c and X_d the pixels of X within distance d of X's contour.
#
# Distances are chessboard (max(|Δy|, |Δx|)) as in the reference implementation of Boundary
# IoU, which erodes with a 3×3 kernel d times (github.com/bowenc0221/boundary-iou-api,
# mask_to_boundary). The paper sets d to 2 % of the image diagonal; here d is an absolute
# pixel width (boundary_width_for() converts the paper's ratio).


def boundary_width_for(height: int, width: int, ratio: float = 0.02) -> int:
    """Cheng et al.'s d: ``round(ratio × image diagonal)``, at least 1 pixel."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def _as_batch(values: Any, name: str) -> torch.Tensor:
    shape = tuple(values.shape) if hasattr(values, "shape") else np.shape(values)
    if len(shape) not in (2, 3):
        raise ValueError(f"{name} must be (H, W) or (N, H, W), got shape {tuple(shape)}")
    tensor = _as_long_tensor(values, name).reshape(shape)
    return tensor[None] if tensor.ndim == 2 else tensor


def _window_max(x: torch.Tensor, d: int) -> torch.Tensor:
    """Max over the (2d+1)² window around each pixel, the window clipped to the image.

    Computed as a row max then a column max (the max over a rectangle is the max over its
    rows' maxima): 2 (2d+1) comparisons per pixel instead of (2d+1)².
    """
    pool = torch.nn.functional.max_pool2d
    rows = pool(x[:, None].float(), (1, 2 * d + 1), stride=1, padding=(0, d))
    return pool(rows, (2 * d + 1, 1), stride=1, padding=(d, 0))[:, 0]


def trimap_band(target: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels within chessboard distance ``width`` of a pixel with another label.

    Args:
        target: (N, H, W) integer labels; a void label counts as one more label, so the
            void outlines of Pascal VOC put their neighbours in the band.
        width: band half-width d ≥ 1 in pixels.

    Returns:
        (N, H, W) bool: the band (on both sides of every label change; the image border is
        not a boundary).
    """
    t = target.to(torch.float32)
    return _window_max(t, width) != -_window_max(-t, width)


def inner_boundary(mask: torch.Tensor, width: int) -> torch.Tensor:
    """``X_d ∩ X`` of Boundary IoU: pixels of ``mask`` within chessboard distance ``width``
    of a pixel outside it, the outside of the image counting as outside the mask (Cheng
    et al. 2021, mask_to_boundary: the mask minus its erosion by a (2d+1)² square)."""
    padded = torch.nn.functional.pad(mask.to(torch.float32), (width,) * 4, value=0.0)
    eroded = -_window_max(-padded, width)[:, width:-width, width:-width]
    return mask.bool() & (eroded < 0.5)


class BoundaryMetrics:
    """Trimap scores and Boundary IoU within ``width`` pixels of the label boundaries.

    Args:
        num_classes: number of classes ``K``; labels are 0 … K − 1.
        width: boundary width d in pixels (≥ 1); :func:`boundary_width_for` gives the
            Boundary IoU paper's 2 % of the image diagonal.
        ignore_index: target value of pixels to leave out (default ``IGNORE_INDEX``, 255).

    Pixels whose target is ``ignore_index`` are never counted. Boundary IoU is computed per
    class from the masks ``target == c`` and ``pred == c`` (void pixels belong to neither)
    and its intersection and union are summed over the dataset before dividing; the mean
    leaves out classes with an empty union, as mIoU does.

    Example::

        bm = BoundaryMetrics(21, width=3)
        for logits, target in batches:
            bm.update(logits.argmax(1), target)
        bm.compute()   # {"width": 3, "trimap_pixel_acc", "trimap_miou", "trimap_iou",
                       #  "boundary_iou", "boundary_iou_per_class"}
    """

    def __init__(self, num_classes: int, width: int = 3, ignore_index: int = IGNORE_INDEX) -> None:
        if int(width) < 1:
            raise ValueError(f"boundary width must be >= 1 pixel, got {width}")
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.ignore_index = int(ignore_index)
        self.trimap = ConfusionMatrix(num_classes, ignore_index=ignore_index)
        self._warned_wide = False
        self.intersection = torch.zeros(self.num_classes, dtype=torch.int64)
        self.union = torch.zeros(self.num_classes, dtype=torch.int64)

    def update(self, pred: Any, target: Any) -> None:
        """Add one (H, W) or a batch (N, H, W) of prediction / ground-truth pairs."""
        p, t = _as_batch(pred, "pred"), _as_batch(target, "target")
        if p.shape != t.shape:
            raise ValueError(f"pred shape {tuple(p.shape)} does not match target shape "
                             f"{tuple(t.shape)}")
        # The same band with a width bounded by the image: the work stays bounded.
        d = boundary_width_within(self.width, t.shape[-2], t.shape[-1])
        if d < self.width and not self._warned_wide:
            self._warned_wide = True
            warn(f"boundary width {self.width} is wider than the {t.shape[-2]}x{t.shape[-1]} "
                 f"images: the band is the whole image (the scores are those of d={d})")
        band = trimap_band(t, d)
        self.trimap.update(p[band], t[band])  # validates the label ranges
        counted = t != self.ignore_index
        for c in range(self.num_classes):
            g = inner_boundary(t == c, d) & counted
            q = inner_boundary(p == c, d) & counted
            self.intersection[c] += int((g & q).sum())
            self.union[c] += int((g | q).sum())

    def merge(self, other: BoundaryMetrics) -> BoundaryMetrics:
        """Add ``other``'s counts (same classes and width); returns ``self``."""
        if (other.num_classes, other.width) != (self.num_classes, self.width):
            raise ValueError("cannot merge boundary metrics of different classes or width")
        self.trimap.merge(other.trimap)
        self.intersection += other.intersection
        self.union += other.union
        return self

    def compute(self) -> dict[str, Any]:
        """Plain floats: trimap pixel accuracy / mIoU / per-class IoU, Boundary IoU (mean
        and per class; NaN where the union is empty)."""
        trimap = self.trimap.compute()
        inter, union = self.intersection.double().numpy(), self.union.double().numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            per_class = np.where(union > 0, inter / union, np.nan)
        defined = per_class[~np.isnan(per_class)]
        return {
            "width": self.width,
            "trimap_pixel_acc": trimap["pixel_acc"],
            "trimap_miou": trimap["miou"],
            "trimap_iou": trimap["iou"],
            "boundary_iou": float(defined.mean()) if defined.size else math.nan,
            "boundary_iou_per_class": [float(v) for v in per_class],
        }


#: Part-mask label of a limb in a limbs-task sample (0 background, 1 body, 2 limb;
#: :func:`fcnkit.data.synthetic.read_part_mask`).
LIMB_PART = 2


class ThinPartIoU:
    """IoU restricted to the thin parts of the objects (the limbs of the limbs task).

    Over the pixels whose part mask is ``part_label`` (limb pixels), summed over a dataset:
    ``n_ij`` = limb pixels of true class ``i`` predicted ``j``, ``t_i = Σ_j n_ij``, and

        thin-part IoU = mean over classes i with t_i > 0 of  n_ii / (t_i + Σ_j n_ji − n_ii)

    i.e. the IU of the FCN paper on limb pixels only, averaged over the classes that own
    limb pixels. A limb pixel predicted as background (or as another class) is a miss of
    its class; a limb pixel of class i predicted as class k is also a false positive of k.
    Classes without limb pixels (background among them) are left out of the mean, even when
    predicted: unlike :class:`ConfusionMatrix`, a class that cannot occur on limb pixels is
    not scored 0 there. What the metric does not see: a prediction that spills beyond the
    limb (over background pixels); Boundary IoU scores that.
    """

    def __init__(self, num_classes: int, part_label: int = LIMB_PART,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.part_label = part_label
        self.matrix = ConfusionMatrix(num_classes, ignore_index)

    def update(self, pred: Any, target: Any, part: Any) -> None:
        """Add one image: ``pred``, ``target`` and its part mask ``part`` (same shape)."""
        target_t = _as_long_tensor(target, "target").reshape(tuple(np.shape(target)))
        part_t = _as_long_tensor(part, "part").reshape(tuple(np.shape(part)))
        if tuple(part_t.shape) != tuple(target_t.shape):
            raise ValueError(f"part mask shape {tuple(part_t.shape)} does not match target "
                             f"shape {tuple(target_t.shape)}")
        restricted = torch.where(part_t == self.part_label, target_t,
                                 torch.full_like(target_t, self.matrix.ignore_index))
        self.matrix.update(pred, restricted)

    def compute(self) -> dict[str, Any]:
        """``{"thin_part_iou", "per_class_iou", "pixels"}``; the score is NaN when no limb
        pixel was seen."""
        m = self.matrix.matrix.double()
        hits = torch.diagonal(m)
        truth = m.sum(1)
        union = truth + m.sum(0) - hits
        present = truth > 0
        per_class = torch.where(present, hits / union.clamp(min=1), torch.nan)
        score = float(per_class[present].mean()) if bool(present.any()) else math.nan
        return {"thin_part_iou": score, "per_class_iou": per_class.tolist(),
                "pixels": int(truth.sum())}
