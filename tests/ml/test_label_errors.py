from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from densestudio.ml.label_errors import per_class_thresholds, precision_at, rank_label_issues

if TYPE_CHECKING:
    from densestudio.ml.crossval import LabelAudit


def test_hand_made_case() -> None:
    probs = np.array([
        [0.9, 0.1],   # labeled 0, fine
        [0.8, 0.2],   # labeled 0, fine
        [0.1, 0.9],   # labeled 0, model sure it is 1 -> wrong label
        [0.2, 0.8],   # labeled 1, fine
        [0.3, 0.7],   # labeled 1, fine
        [0.55, 0.45], # labeled 1, borderline
    ])  # fmt: skip
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = per_class_thresholds(probs, labels)
    assert np.allclose(t, [(0.9 + 0.8 + 0.1) / 3, (0.8 + 0.7 + 0.45) / 3])
    issues = rank_label_issues(probs, labels)
    assert issues[0].index == 2 and issues[0].flagged and issues[0].suggested == 1
    assert issues[0].score < 0
    flagged = {i.index for i in issues if i.flagged}
    assert flagged == {2}, "0.55 < t_0 = 0.6: the borderline image is ranked, not flagged"
    assert issues[1].index == 5, "but it is the next most suspicious"
    assert issues[1].suspect and not issues[1].flagged, "listed after the flagged ones"
    assert {i.index for i in issues if i.suspect} == {2, 5}
    assert [i.index for i in issues][-1] == 0, "the most confident correct label is last"


def test_recovers_flipped_labels_in_simulation() -> None:
    rng = np.random.default_rng(0)
    n, k = 1000, 4
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(n, 50, replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, 50)) % k
    issues = rank_label_issues(probs, given)
    assert precision_at(issues, set(flipped.tolist())) >= 0.8


def _probs(rows: list[tuple[int, float]], k: int = 3) -> np.ndarray:
    """One row per image: (class the model favours, its probability); the rest is spread."""
    out = np.zeros((len(rows), k))
    for r, (c, p) in enumerate(rows):
        out[r] = (1 - p) / (k - 1)
        out[r, c] = p
    return out


def _audit(probs: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> LabelAudit:
    from densestudio.ml.crossval import _make_audit

    return _make_audit(1, None, names, list(range(100, 100 + len(labels))), labels, probs,
                       5, {}, frozenset())


def test_a_small_class_the_model_barely_predicts_is_not_erased() -> None:
    # 40 "crazing" and 40 "patches" the model knows well; it calls 9 of the 10 "scratches"
    # crazing (it never learned the class): those are not label errors.
    names = ("crazing", "patches", "scratches")
    labels = np.array([0] * 40 + [1] * 40 + [2] * 10)
    rows = [(0, 0.9)] * 40 + [(1, 0.9)] * 40 + [(2, 0.5)]
    # Two real label errors among the big classes: a patches image labeled crazing, etc.
    rows[0], rows[40] = (1, 0.95), (0, 0.95)

    # At 45-67 % (the issue's case) the per-class threshold of crazing (~0.88) is not
    # reached: not suspects (before, any image the model preferred elsewhere was one).
    timid = _audit(_probs(rows[:80] + [(0, p) for p in np.linspace(0.45, 0.67, 9)]
                          + rows[80:]), labels, names)
    assert {i.index for i in timid.suspects()} == {0, 40}
    assert timid.notes()[0].startswith("The audit model barely predicts 'scratches'")

    # Even when the model is sure (91-96 %), it barely predicts the class (recall 10 %):
    # its images are held back, and the note says why.
    sure = _audit(_probs(rows[:80] + [(0, p) for p in np.linspace(0.91, 0.96, 9)]
                         + rows[80:]), labels, names)
    assert {i.index for i in sure.suspects()} == {0, 40}, "only the real errors"
    assert {i.index for i in sure.issues if i.held_back} == set(range(80, 89))
    checks = {c.index: c for c in sure.checks}
    assert not checks[2].reliable and checks[2].recall == pytest.approx(0.1)
    assert checks[0].reliable and checks[0].listed == 1
    assert sure.notes() == [
        "The audit model barely predicts 'scratches' (recall 10 % of its 10 images); "
        "suggestions for it are unreliable, so none of its images are listed. Label more "
        "images of it, then audit again."]


def test_never_more_than_a_third_of_a_class_is_flagged() -> None:
    from densestudio.ml.label_errors import check_notes, class_checks

    # "spot" (9 images): the model finds 5 (recall 56 %), and confidently calls 4 "ok".
    rows = [(0, 0.9)] * 30 + [(1, 0.8)] * 5 + [(0, p) for p in (0.97, 0.95, 0.93, 0.91)]
    labels = np.array([0] * 30 + [1] * 9)
    probs = _probs(rows, k=2)
    issues = rank_label_issues(probs, labels)
    listed = [i.index for i in issues if i.flagged]
    assert listed == [35, 36, 37], "the 3 most suspicious (9 // 3), most suspicious first"
    assert [i.index for i in issues if i.held_back] == [38]
    assert [i.index for i in issues][:3] == listed
    checks = class_checks(probs, labels, issues)
    assert checks[1].capped and (checks[1].flagged, checks[1].listed) == (4, 3)
    assert check_notes(checks, ("ok", "spot")) == [
        "'spot': 4 of its 9 images look mislabeled; only the 3 most suspicious are listed "
        "(never more than 33% of a class)."]
