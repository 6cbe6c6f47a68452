from __future__ import annotations

import numpy as np

from densestudio.ml.label_errors import per_class_thresholds, precision_at, rank_label_issues


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
