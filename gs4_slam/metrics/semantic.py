"""2-D semantic segmentation metrics from a confusion matrix with an ignore label.

Conventions: rows of the matrix are ground-truth classes, columns predicted
classes. Pixels whose ground truth is the ignore label do not count; a
prediction outside ``0..C-1`` (e.g. "unknown") at a labelled pixel counts as a
miss for the true class and as a false positive for no class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gs4_slam.frame import IGNORE_LABEL


@dataclass
class ConfusionMatrix:
    """Accumulates pixel counts over any number of frames.

    Attributes:
        counts: int64 [C, C], counts[g, p] = pixels of true class g predicted p.
        unpredicted: int64 [C], pixels of true class g predicted outside 0..C-1.
        ignore_label: ground-truth value excluded from every count.
    """

    counts: np.ndarray
    unpredicted: np.ndarray
    ignore_label: int = IGNORE_LABEL

    @staticmethod
    def empty(num_classes: int, ignore_label: int = IGNORE_LABEL) -> ConfusionMatrix:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        return ConfusionMatrix(
            np.zeros((num_classes, num_classes), dtype=np.int64),
            np.zeros(num_classes, dtype=np.int64),
            ignore_label,
        )

    @staticmethod
    def from_labels(
        pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int = IGNORE_LABEL
    ) -> ConfusionMatrix:
        matrix = ConfusionMatrix.empty(num_classes, ignore_label)
        matrix.update(pred, gt)
        return matrix

    @property
    def num_classes(self) -> int:
        return int(self.counts.shape[0])

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one prediction/ground-truth pair of integer label images of equal shape."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"label shapes differ: prediction {list(pred.shape)} vs ground truth {list(gt.shape)}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(gt.dtype, np.integer)):
            raise ValueError(f"labels must be integer arrays, got {pred.dtype} and {gt.dtype}")
        c = self.num_classes
        gt_flat = gt.reshape(-1).astype(np.int64)
        pred_flat = pred.reshape(-1).astype(np.int64)
        labelled = gt_flat != self.ignore_label
        out_of_range = labelled & ((gt_flat < 0) | (gt_flat >= c))
        if out_of_range.any():
            bad = int(gt_flat[out_of_range][0])
            raise ValueError(f"ground-truth label {bad} is outside 0..{c - 1} and is not the ignore label")
        gt_flat, pred_flat = gt_flat[labelled], pred_flat[labelled]
        predicted = (pred_flat >= 0) & (pred_flat < c)
        pairs = gt_flat[predicted] * c + pred_flat[predicted]
        self.counts += np.bincount(pairs, minlength=c * c).reshape(c, c)
        self.unpredicted += np.bincount(gt_flat[~predicted], minlength=c)

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if other.counts.shape != self.counts.shape:
            raise ValueError("confusion matrices of different class counts")
        return ConfusionMatrix(self.counts + other.counts, self.unpredicted + other.unpredicted, self.ignore_label)

    def scores(self) -> SemanticScores:
        true_pos = np.diag(self.counts).astype(np.float64)
        gt_total = self.counts.sum(axis=1) + self.unpredicted
        pred_total = self.counts.sum(axis=0)
        union = gt_total + pred_total - true_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, true_pos / union, np.nan)
            accuracy = np.where(gt_total > 0, true_pos / gt_total, np.nan)
        total = int(gt_total.sum())
        return SemanticScores(
            iou=iou,
            class_accuracy=accuracy,
            miou=_nanmean(iou),
            mean_accuracy=_nanmean(accuracy),
            overall_accuracy=float(true_pos.sum() / total) if total else float("nan"),
            num_pixels=total,
            gt_pixels=gt_total,
        )


@dataclass(frozen=True)
class SemanticScores:
    """Scores of a confusion matrix.

    Classes absent from both ground truth and prediction have NaN IoU and are left
    out of the mIoU; classes without ground-truth pixels are left out of the mean
    accuracy.

    Attributes:
        iou: float64 [C] per-class intersection over union.
        class_accuracy: float64 [C] per-class recall.
        miou, mean_accuracy, overall_accuracy: in [0, 1].
        num_pixels: labelled pixels counted.
        gt_pixels: int64 [C] labelled pixels per class.
    """

    iou: np.ndarray
    class_accuracy: np.ndarray
    miou: float
    mean_accuracy: float
    overall_accuracy: float
    num_pixels: int
    gt_pixels: np.ndarray

    def table(self, class_names: Sequence[str] | None = None) -> str:
        """Plain-text per-class table followed by the summary numbers."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.iou.size)]
        if len(names) != self.iou.size:
            raise ValueError(f"{len(names)} class names for {self.iou.size} classes")
        width = max(12, *(len(n) for n in names))
        lines = [f"{'class':<{width}}  {'IoU %':>7}  {'acc %':>7}  {'pixels':>10}"]
        for name, iou, acc, count in zip(names, self.iou, self.class_accuracy, self.gt_pixels):
            lines.append(f"{name:<{width}}  {_pct(iou):>7}  {_pct(acc):>7}  {int(count):>10d}")
        lines.append(f"{'mIoU':<{width}}  {_pct(self.miou):>7}")
        lines.append(f"{'mean acc':<{width}}  {'':>7}  {_pct(self.mean_accuracy):>7}")
        lines.append(f"{'overall acc':<{width}}  {'':>7}  {_pct(self.overall_accuracy):>7}  {self.num_pixels:>10d}")
        return "\n".join(lines)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _pct(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{100.0 * value:.2f}"
