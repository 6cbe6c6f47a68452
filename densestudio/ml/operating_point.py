"""OK/NG operating point: where to put the threshold on P(good) for a defect inspector.

For projects where one class means "good", the model's decision becomes binary: pass the
part (P(good) >= threshold) or reject it. Two errors trade against each other:
- miss rate: defective parts that pass (escapes to the customer),
- false-reject rate: good parts that are rejected (scrap, re-inspection).
An "unsure" band around the threshold sends borderline parts to a human instead.
The decision rule itself (``OperatingPoint``) is in ``densestudio.runtime.operating_point``,
so the exported model's torch-free runtime applies exactly the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densestudio.runtime.operating_point import (  # noqa: F401 - the rule lives in runtime
    OperatingPoint,
    OperatingPointError,
    from_dict,
    validate,
)


@dataclass(frozen=True)
class TradeoffCurve:
    thresholds: np.ndarray  # ascending, in [0, 1]
    miss_rate: np.ndarray  # fraction of defective parts with P(good) >= t
    false_reject_rate: np.ndarray  # fraction of good parts with P(good) < t
    n_good: int
    n_defective: int


def tradeoff_curve(p_good: np.ndarray, is_good: np.ndarray, steps: int = 201) -> TradeoffCurve:
    """Miss and false-reject rates at ``steps`` thresholds from 0 to 1 (inclusive).

    At threshold t a part passes when P(good) >= t. Rates are NaN when a side has no parts.
    """
    p_good = np.asarray(p_good, dtype=np.float64)
    is_good = np.asarray(is_good, dtype=bool)
    thresholds = np.round(np.linspace(0.0, 1.0, steps), 9)  # 0.6 is 0.6, not 0.6000000001
    good, bad = p_good[is_good], p_good[~is_good]
    with np.errstate(invalid="ignore", divide="ignore"):
        # searchsorted counts: parts with p < t (side="left")
        good_sorted, bad_sorted = np.sort(good), np.sort(bad)
        rejected_good = np.searchsorted(good_sorted, thresholds, side="left")
        passed_bad = len(bad) - np.searchsorted(bad_sorted, thresholds, side="left")
        frr = rejected_good / len(good) if len(good) else np.full(steps, np.nan)
        miss = passed_bad / len(bad) if len(bad) else np.full(steps, np.nan)
    return TradeoffCurve(thresholds, np.asarray(miss, float), np.asarray(frr, float),
                         len(good), len(bad))


def expected_cost(curve: TradeoffCurve, cost_miss: float, cost_false_reject: float) -> np.ndarray:
    """Total cost at each threshold: misses * cost_miss + false rejects * cost_false_reject."""
    misses = np.nan_to_num(curve.miss_rate) * curve.n_defective
    rejects = np.nan_to_num(curve.false_reject_rate) * curve.n_good
    return misses * cost_miss + rejects * cost_false_reject


def best_threshold(curve: TradeoffCurve, cost_miss: float = 1.0,
                   cost_false_reject: float = 1.0) -> float:
    """The threshold with the lowest expected cost (ties: the strictest, i.e. highest)."""
    cost = expected_cost(curve, cost_miss, cost_false_reject)
    best = np.flatnonzero(cost == cost.min())
    return float(curve.thresholds[best[-1]])


def rates_at(p_good: np.ndarray, is_good: np.ndarray, point: OperatingPoint) -> dict[str, float]:
    """Miss rate, false-reject rate and unsure fraction of an operating point on labeled data."""
    decisions = np.array([point.decide(float(p)) for p in p_good])
    is_good = np.asarray(is_good, dtype=bool)
    sure = decisions != "UNSURE"
    n_bad, n_good = int((~is_good & sure).sum()), int((is_good & sure).sum())
    return {
        "miss_rate": float(((decisions == "OK") & ~is_good).sum() / n_bad) if n_bad else 0.0,
        "false_reject_rate": float(((decisions == "NG") & is_good).sum() / n_good)
        if n_good else 0.0,
        "unsure_fraction": float((~sure).mean()) if len(decisions) else 0.0,
    }


# ------------------------------------------------------------------ stored with a run
# The point lives in the run's ``extra`` JSON under "operating_point" (the good class is part
# of it), so it travels with the run: predict and export read it from there.
EXTRA_KEY = "operating_point"
GOOD_NAMES = ("ok", "good", "pass", "passed", "normal", "okay", "no_defect", "nodefect",
              "no defect", "defect-free", "defect_free", "clean", "non_defective")


def save_operating_point(
    project, run_id: int, point: OperatingPoint | None  # noqa: ANN001 - core.store.Project
) -> None:
    """Store (or, with None, remove) the run's operating point."""
    from dataclasses import asdict

    from densestudio.core import runs

    if point is not None:
        validate(point, runs.run_class_names(project, run_id))
    runs.update_run_extra(project, run_id, **{EXTRA_KEY: asdict(point) if point else None})


def load_operating_point(project, run_id: int) -> OperatingPoint | None:  # noqa: ANN001
    from densestudio.core import runs

    return from_dict(runs.get_run(project, run_id).extra.get(EXTRA_KEY))


def stored_predictions(
    project, run_id: int, subset: str  # noqa: ANN001 - core.store.Project
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N x classes) and true class indices of the run's stored
    predictions on ``subset`` ("val" or "test") for images that had a label."""
    from densestudio.core import runs

    preds = [p for p in runs.predictions(project, run_id, subset) if p.true_index is not None]
    k = len(runs.run_class_names(project, run_id))
    probs = np.stack([p.probs for p in preds]).astype(np.float64) if preds else np.zeros((0, k))
    return probs, np.array([p.true_index for p in preds], dtype=np.int64)


def suggest_good_class(class_names: tuple[str, ...] | list[str]) -> str | None:
    """A class whose name says "good" ("ok", "good", "pass", ...), or None."""
    for name in class_names:
        if name.strip().lower() in GOOD_NAMES:
            return name
    return None


def good_scores(probs: np.ndarray, true_index: np.ndarray, good_index: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """P(good) per image and whether the image really is good, from stored predictions
    (``probs``: N x classes; ``true_index``: N labels)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(true_index), -1)
    return probs[:, good_index], np.asarray(true_index) == good_index
