"""Rank labeled images by how likely their label is wrong (confident learning).

Input: out-of-sample class probabilities for every labeled image (each predicted by a model
that never trained on it, from k-fold cross-training) and the given labels. Following
Northcutt et al., "Confident Learning" (2021):
- each class j gets a threshold t_j = the mean probability of class j over images labeled j
  (how confident the model typically is on that class);
- an image is *flagged* when some other class k reaches its own threshold (p_k >= t_k) and
  beats the given label: the model confidently sees k there;
- images are ranked by the normalized margin p[given] - max_{k != given} p[k]: the lower,
  the more likely the label is wrong. Flagged images come first;
- *suspects* (what the user is shown) are the flagged images and, after them, those the model
  prefers another class for without reaching that class's threshold (negative margin): on
  NEU with 5 % flipped labels the second group holds a quarter of the flips.

Two guards keep the suggestions from erasing a small class (a 10-image class whose images the
out-of-sample models mostly call something else is a class they did not learn, not a class of
wrong labels):
- a class whose out-of-sample recall is below ``MIN_RECALL`` gets no suspects at all (its
  ``ClassCheck`` says the suggestions for it are unreliable);
- at most ``MAX_SHARE`` of a class's images are suspects (the most suspicious ones).
Images held back by these guards are not flagged and keep their place in the ranking among
the unflagged ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHARE = 1 / 3  # never flag more than this share of a class's images
MIN_RECALL = 0.5  # a class the audit model finds less often than this: no flags for it


@dataclass(frozen=True)
class LabelIssue:
    index: int  # row in the input arrays
    given: int
    suggested: int  # the class the model believes in
    score: float  # normalized margin in [-1, 1]; lower = more suspicious
    self_confidence: float  # p[given]
    flagged: bool  # confident learning flags it (after the guards)
    held_back: bool = False  # it would be a suspect, but a guard does not list it
    suspect: bool = False  # listed as a suspected label error (flagged or negative margin)


@dataclass(frozen=True)
class ClassCheck:
    """How far the audit can be trusted for the images labeled with one class."""

    index: int
    images: int  # labeled with this class
    recall: float  # share of them the out-of-sample model predicts as this class
    flagged: int  # would be suspects: flagged by confident learning or negative margin
    listed: int  # of those, suspects after the guards
    reliable: bool  # recall >= MIN_RECALL

    @property
    def capped(self) -> bool:
        return self.reliable and self.listed < self.flagged


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    thresholds = np.ones(k)
    for j in range(k):
        mask = labels == j
        if mask.any():
            thresholds[j] = probs[mask, j].mean()
    return thresholds


def class_recalls(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Out-of-sample recall per class (NaN for a class without images)."""
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    out = np.full(k, np.nan)
    for j in range(k):
        mask = labels == j
        if mask.any():
            out[j] = float(np.mean(pred[mask] == j))
    return out


def _guard(candidates: np.ndarray, rank: np.ndarray, labels: np.ndarray, recalls: np.ndarray,
           max_share: float, min_recall: float) -> np.ndarray:
    """Which would-be suspects the guards hold back (see the module docstring); ``rank``:
    each image's place in the ranking (the cap keeps the first ones)."""
    held = np.zeros_like(candidates)
    for j in np.unique(labels):
        rows = np.flatnonzero(candidates & (labels == j))
        if not len(rows):
            continue
        if not recalls[j] >= min_recall:
            held[rows] = True
            continue
        cap = int(np.floor(max_share * int((labels == j).sum())))
        held[rows[np.argsort(rank[rows], kind="stable")][cap:]] = True
    return held


def rank_label_issues(probs: np.ndarray, labels: np.ndarray, max_share: float = MAX_SHARE,
                      min_recall: float = MIN_RECALL) -> list[LabelIssue]:
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
    confident = confident_other.any(axis=1) & (masked.max(axis=1) > self_conf)
    suggested = np.where(confident, masked.argmax(axis=1), best_other)
    candidates = confident | (margin < 0)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((margin, ~confident))] = np.arange(n)
    held = _guard(candidates, rank, labels, class_recalls(probs, labels), max_share,
                  min_recall)
    flagged = confident & ~held
    order = np.lexsort((margin, ~flagged))  # flagged first, then by margin ascending
    return [
        LabelIssue(int(i), int(labels[i]), int(suggested[i]), float(margin[i]),
                   float(self_conf[i]), bool(flagged[i]), bool(held[i]),
                   bool(candidates[i] and not held[i]))
        for i in order
    ]


def class_checks(probs: np.ndarray, labels: np.ndarray, issues: list[LabelIssue],
                 min_recall: float = MIN_RECALL) -> list[ClassCheck]:
    """One ``ClassCheck`` per class that has images (in class order)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return []
    recalls = class_recalls(probs, labels)
    flagged = np.bincount([i.given for i in issues if i.suspect or i.held_back],
                          minlength=probs.shape[1])
    listed = np.bincount([i.given for i in issues if i.suspect], minlength=probs.shape[1])
    sizes = np.bincount(labels, minlength=probs.shape[1])
    return [
        ClassCheck(j, int(sizes[j]), float(recalls[j]), int(flagged[j]), int(listed[j]),
                   bool(recalls[j] >= min_recall))
        for j in range(probs.shape[1]) if sizes[j]
    ]


def check_notes(checks: list[ClassCheck], class_names: tuple[str, ...] | list[str],
                max_share: float = MAX_SHARE) -> list[str]:
    """What a user must know before following the suggestions (plain text)."""
    notes = []
    for c in checks:
        name = class_names[c.index]
        if not c.reliable:
            notes.append(
                f"The audit model barely predicts '{name}' (recall {c.recall * 100:.0f} % of "
                f"its {c.images} images); suggestions for it are unreliable, so none of its "
                "images are listed. Label more images of it, then audit again.")
        elif c.capped:
            notes.append(
                f"'{name}': {c.flagged} of its {c.images} images look mislabeled; only the "
                f"{c.listed} most suspicious are listed (never more than "
                f"{max_share:.0%} of a class).")
    return notes


def precision_at(issues: list[LabelIssue], truly_wrong: set[int], n: int | None = None) -> float:
    """Fraction of the top ``n`` (default: as many as are truly wrong) that are truly wrong."""
    n = len(truly_wrong) if n is None else n
    if n == 0:
        return 1.0
    return sum(1 for issue in issues[:n] if issue.index in truly_wrong) / n
