"""Rank labeled images by how likely their label is wrong (confident learning).

Input: out-of-sample class probabilities for every labeled image (each predicted by a model
that never trained on it, from k-fold cross-training) and the given labels. Following
Northcutt et al., "Confident Learning" (2021):
- each class j gets a threshold t_j = the mean probability of class j over images labeled j
  (how confident the model typically is on that class);
- an image is *flagged* when some other class k reaches its own threshold (p_k >= t_k) and
  beats the given label: the model confidently sees k there;
- images are ranked by the normalized margin p[given] - max_{k != given} p[k]: the lower,
  the more likely the label is wrong. Flagged images come first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelIssue:
    index: int  # row in the input arrays
    given: int
    suggested: int  # the class the model believes in
    score: float  # normalized margin in [-1, 1]; lower = more suspicious
    self_confidence: float  # p[given]
    flagged: bool


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    thresholds = np.ones(k)
    for j in range(k):
        mask = labels == j
        if mask.any():
            thresholds[j] = probs[mask, j].mean()
    return thresholds


def rank_label_issues(probs: np.ndarray, labels: np.ndarray) -> list[LabelIssue]:
    """Every image, most suspicious first."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probs.shape
    if n == 0:
        return []
    thresholds = per_class_thresholds(probs, labels)
    rows = np.arange(n)
    self_conf = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.argmax(axis=1)
    margin = self_conf - others[rows, best_other]
    confident_other = (probs >= thresholds[None, :]) & (np.arange(k)[None, :] != labels[:, None])
    masked = np.where(confident_other, probs, -np.inf)
    flagged = confident_other.any(axis=1) & (masked.max(axis=1) > self_conf)
    suggested = np.where(flagged, masked.argmax(axis=1), best_other)
    order = np.lexsort((margin, ~flagged))  # flagged first, then by margin ascending
    return [
        LabelIssue(int(i), int(labels[i]), int(suggested[i]), float(margin[i]),
                   float(self_conf[i]), bool(flagged[i]))
        for i in order
    ]


def precision_at(issues: list[LabelIssue], truly_wrong: set[int], n: int | None = None) -> float:
    """Fraction of the top ``n`` (default: as many as are truly wrong) that are truly wrong."""
    n = len(truly_wrong) if n is None else n
    if n == 0:
        return 1.0
    return sum(1 for issue in issues[:n] if issue.index in truly_wrong) / n
