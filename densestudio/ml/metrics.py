"""Classification metrics from labels and predictions (numpy; no sklearn needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts; rows = true class, columns = predicted class."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return cm


@dataclass(frozen=True)
class Scores:
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]


def scores(cm: np.ndarray) -> Scores:
    """Accuracy, balanced accuracy (mean recall over classes present) and macro-F1.

    Macro averages run over classes that occur in the true labels or the predictions.
    """
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    total = cm.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = (support > 0) | (predicted > 0)
    return Scores(
        accuracy=float(tp.sum() / total) if total else 0.0,
        balanced_accuracy=float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in support),
    )
