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

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from densestudio.core.stats import (
    Interval,
    clopper_pearson,
    images_needed,
    images_needed_sentence,
    upper_bound_one_sided,
)
from densestudio.runtime.operating_point import (  # noqa: F401 - the rule lives in runtime
    OperatingPoint,
    OperatingPointError,
    from_dict,
    validate,
)

if TYPE_CHECKING:  # core.runs and the store load when a run's point is read or saved
    from densestudio.core.store import Project


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
    cost: np.ndarray = misses * cost_miss + rejects * cost_false_reject
    return cost


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


CHOICE_KEY = "operating_point_choice"  # how Train picked the point (target, the message)


def save_operating_point(
    project: Project, run_id: int, point: OperatingPoint | None,
    choice: dict[str, object] | None = None,
) -> None:
    """Store (or, with None, remove) the run's operating point. ``choice`` records how Train
    picked it (target, whether validation shows it, the message); a point saved by hand
    drops the old record, which no longer describes it."""
    from dataclasses import asdict

    from densestudio.core import runs

    if point is not None:
        validate(point, runs.run_class_names(project, run_id))
    runs.update_run_extra(project, run_id, **{EXTRA_KEY: asdict(point) if point else None,
                                              CHOICE_KEY: choice})


def load_operating_point(project: Project, run_id: int) -> OperatingPoint | None:
    from densestudio.core import runs

    return from_dict(runs.get_run(project, run_id).extra.get(EXTRA_KEY))


def stored_predictions(
    project: Project, run_id: int, subset: str
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N x classes) and true class indices of the run's stored
    predictions on ``subset`` ("val" or "test") for images that had a label."""
    from densestudio.core import runs

    preds = [p for p in runs.predictions(project, run_id, subset) if p.true_index is not None]
    k = len(runs.run_class_names(project, run_id))
    probs = np.stack([p.probs for p in preds]).astype(np.float64) if preds else np.zeros((0, k))
    return probs, np.array([p.true_index for p in preds], dtype=np.int64)


# Names (after ``_normal_name``) that mean a good part, and words that may stand beside a good
# word without changing its meaning ("good_parts", "ok_images").
GOOD_WORDS = frozenset({
    "ok", "okay", "good", "pass", "passed", "free", "defect_free", "defectfree", "no_defect",
    "no_defects", "nodefect", "nodefects", "non_defective", "nondefective", "not_defective",
    "functional", "normal", "clean", "accept", "accepted", "flawless", "intact",
})  # fmt: skip
NEUTRAL_WORDS = frozenset({"part", "parts", "image", "images", "sample", "samples", "class",
                           "cell", "cells", "unit", "units", "product", "products", "surface"})
_PREFIX = re.compile(r"^(?:[a-z]?\d+(?:[.,]\d+)?|[a-z])_+(?=[a-z])")  # "p0.00_", "01_", "a_"


def _normal_name(name: str) -> str:
    """Case-, width- and separator-insensitive form: "Defect-Free" -> "defect_free"."""
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = re.sub(r"[\s\-]+", "_", text)
    return _PREFIX.sub("", text)


def _means_good(name: str) -> bool:
    text = _normal_name(name)
    if text in GOOD_WORDS:
        return True
    words = [w for w in text.split("_") if w]
    return (any(w in GOOD_WORDS for w in words)
            and all(w in GOOD_WORDS or w in NEUTRAL_WORDS for w in words))


def guess_good_class(class_names: tuple[str, ...] | list[str]) -> str | None:
    """The one class whose name means a good part ("ok", "Good", "pass", "defect-free",
    "no_defect", "p0.00_functional", "good_parts", ...), or None when no class (or more
    than one) does: then the user is asked, never given the first class silently."""
    found = [name for name in class_names if _means_good(name)]
    return found[0] if len(found) == 1 else None


def suggest_good_class(class_names: tuple[str, ...] | list[str]) -> str | None:
    """Older name of ``guess_good_class``."""
    return guess_good_class(class_names)


UNSURE_SHARE = 0.05  # the default unsure band sends about this share of parts to a person


def default_unsure_band(p_good: np.ndarray, threshold: float,
                        share: float = UNSURE_SHARE) -> tuple[float, float] | None:
    """An unsure band around ``threshold`` chosen from the data: the narrowest band, centred
    on the threshold, that holds about ``share`` (5 %) of these parts (validation images).

    Why this rule: the band's cost is a person's time, so its size is set by how many parts
    it sends to them, a share the line can plan for (a fixed band such as 0.3-0.7 sent 62 %
    of one project's parts to a person). The parts nearest the threshold are the ones the
    model is least sure about and where its mistakes cluster; a confident mistake (a defect
    at P(good) = 0.99) is not caught by any band short of sending everything to a person.
    None when there are no parts. Ends are rounded outwards to 3 decimals."""
    p = np.asarray(p_good, dtype=np.float64)
    if p.size == 0:
        return None
    k = max(1, math.ceil(share * p.size))
    radius = float(np.sort(np.abs(p - threshold))[k - 1])
    low = max(0.0, math.floor((threshold - radius) * 1000) / 1000)
    # decide() treats the upper end as open: reach just past the k-th nearest part.
    high = min(1.0, math.ceil((threshold + radius) * 1000) / 1000 + 0.001)
    if high <= low:
        high = min(1.0, low + 0.001)
    return round(low, 3), round(high, 3)


def good_scores(probs: np.ndarray, true_index: np.ndarray, good_index: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """P(good) per image and whether the image really is good, from stored predictions
    (``probs``: N x classes; ``true_index``: N labels)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(true_index), -1)
    return probs[:, good_index], np.asarray(true_index) == good_index


# ------------------------------------------------------------------ uncertainty
# A miss rate measured on a few dozen defect images is an estimate; these functions give it
# an exact (Clopper-Pearson) interval and pick thresholds by its one-sided upper bound.
@dataclass(frozen=True)
class RatesWithIntervals:
    """Miss and false-reject counts and rates at one operating point, with intervals.

    Parts in the unsure band go to a person and are left out of both rates (as in
    ``rates_at``)."""

    threshold: float
    n_defective: int  # defective parts decided OK or NG
    n_good: int
    misses: int
    false_rejects: int
    unsure: int
    miss: Interval  # two-sided exact interval
    false_reject: Interval
    miss_upper: float  # one-sided exact upper bound on the miss rate
    confidence: float

    def describe(self) -> str:
        return (f"miss {self.misses} of {self.n_defective} = {self.miss.percent()}, "
                f"at most {self.miss_upper * 100:.1f} % ({self.confidence * 100:g} % "
                f"one-sided); false reject {self.false_rejects} of {self.n_good} = "
                f"{self.false_reject.percent()}")


def rates_with_intervals(
    p_good: np.ndarray, is_good: np.ndarray, point: OperatingPoint | float,
    confidence: float = 0.95,
) -> RatesWithIntervals:
    """Counts, rates and exact intervals at ``point`` (an OperatingPoint or a threshold)."""
    if not isinstance(point, OperatingPoint):
        point = OperatingPoint("", float(point))
    p_good = np.asarray(p_good, dtype=np.float64)
    is_good = np.asarray(is_good, dtype=bool)
    if (point.unsure_low is not None and point.unsure_high is not None):
        unsure = (p_good >= point.unsure_low) & (p_good < point.unsure_high)
    else:
        unsure = np.zeros(len(p_good), dtype=bool)
    ok = (p_good >= point.threshold) & ~unsure
    ng = ~ok & ~unsure
    n_bad, n_good = int((~is_good & ~unsure).sum()), int((is_good & ~unsure).sum())
    misses, rejects = int((ok & ~is_good).sum()), int((ng & is_good).sum())
    return RatesWithIntervals(
        threshold=point.threshold, n_defective=n_bad, n_good=n_good, misses=misses,
        false_rejects=rejects, unsure=int(unsure.sum()),
        miss=clopper_pearson(misses, n_bad, confidence),
        false_reject=clopper_pearson(rejects, n_good, confidence),
        miss_upper=upper_bound_one_sided(misses, n_bad, confidence), confidence=confidence,
    )  # fmt: skip


@dataclass(frozen=True)
class MissTargetChoice:
    """The threshold with the fewest false rejects whose miss-rate upper bound meets a target."""

    target: float  # the largest acceptable miss rate, e.g. 0.01
    confidence: float
    threshold: float | None  # None: no threshold can show the target with these images
    rates: RatesWithIntervals | None
    allowed_misses: int  # misses the bound tolerates with this many defect images (-1: none)
    images_needed: int  # defect images needed to show the target with 0 missed
    message: str


def _round_up_above(value: float, digits: int = 4) -> float:
    """The smallest number with ``digits`` decimals that is strictly above ``value``."""
    scale = 10**digits
    above: float = (np.floor(value * scale + 1e-9) + 1) / scale
    return min(1.0, above)


def threshold_for_max_miss(
    p_good: np.ndarray, is_good: np.ndarray, max_miss_rate: float, confidence: float = 0.95,
) -> MissTargetChoice:
    """Pick the threshold by the *upper bound* of the miss rate, not its point estimate.

    The one-sided exact upper bound grows with the number of misses, so the bound allows at
    most m misses among the n defect images (largest m with bound(m, n) <= target). The
    threshold is the lowest one (fewest good parts rejected) that lets at most m defects
    pass: just above the (m+1)-th highest P(good) of a defect, on a 1e-4 grid.
    """
    p_good = np.asarray(p_good, dtype=np.float64)
    is_good = np.asarray(is_good, dtype=bool)
    needed = images_needed(max_miss_rate, confidence)
    claim = images_needed_sentence(max_miss_rate, confidence)
    defects = np.sort(p_good[~is_good])[::-1]
    n = len(defects)
    allowed = -1
    while allowed + 1 < n and upper_bound_one_sided(allowed + 1, n, confidence) <= max_miss_rate:
        allowed += 1
    if allowed < 0:
        bound = upper_bound_one_sided(0, n, confidence)
        return MissTargetChoice(
            max_miss_rate, confidence, None, None, -1, needed,
            f"No threshold can show a miss rate <= {max_miss_rate * 100:.3g} % with "
            f"{n} defect image{'s' if n != 1 else ''}: even 0 missed leaves an upper bound of "
            f"{bound * 100:.1f} %; {claim} ({needed - n} more).")
    for m in range(allowed, -1, -1):  # P(good) = 1.0 defects pass any threshold <= 1
        threshold = _round_up_above(defects[m])
        rates = rates_with_intervals(p_good, is_good, threshold, confidence)
        if rates.miss_upper <= max_miss_rate:
            break
    else:
        return MissTargetChoice(
            max_miss_rate, confidence, None, None, -1, needed,
            f"No threshold can show a miss rate <= {max_miss_rate * 100:.3g} %: the model "
            f"gives {int((defects >= 1.0).sum())} defect image(s) P(good) = 1.")
    return MissTargetChoice(
        max_miss_rate, confidence, threshold, rates, m, needed,
        f"Threshold {threshold:.4f}: {rates.misses} of {n} defect images missed, so the miss "
        f"rate is at most {rates.miss_upper * 100:.2f} % ({confidence * 100:g} % confidence, "
        f"target {max_miss_rate * 100:.3g} %); it rejects {rates.false_rejects} of "
        f"{rates.n_good} good parts ({rates.false_reject.percent()}).")


# ------------------------------------------------------------------ the project's good class
# Project data, in the ``meta`` table: a class id (set by the user), "none" (the user said no
# class means good) or absent / "" (found from the names by ``guess_good_class``). An id, not
# a name, so renaming the class keeps it.
GOOD_CLASS_META = "good_class"
DEFAULT_MAX_MISS_RATE = 0.02  # Train's target: at most 2 % of defects passed as good


@dataclass(frozen=True)
class GoodClass:
    """The project's good class and where it comes from."""

    name: str | None
    source: str  # "set" (by the user) | "name" (found from the names) | "none" (cleared)

    def describe(self) -> str:
        if self.name is None:
            return ("no good class (cleared)" if self.source == "none"
                    else "no good class (no class name says so)")
        return f"'{self.name}'" + (" (from its name)" if self.source == "name" else "")


def project_good_class(project: Project) -> GoodClass:
    stored = project.get_meta(GOOD_CLASS_META) or ""
    classes = project.classes()
    if stored == "none":
        return GoodClass(None, "none")
    if stored.isdigit():
        for c in classes:
            if c.id == int(stored):
                return GoodClass(c.name, "set")
    return GoodClass(guess_good_class([c.name for c in classes]), "name")


def set_project_good_class(project: Project, name: str | None, *, auto: bool = False
                           ) -> GoodClass:
    """Set the good class by name, clear it (None: no class is good) or, with ``auto``,
    go back to finding it from the class names."""
    if auto:
        value = ""
    elif name is None:
        value = "none"
    else:
        found = [c for c in project.classes() if c.name == name]
        if not found:
            from densestudio.core.errors import DenseStudioError

            names = ", ".join(c.name for c in project.classes())
            raise DenseStudioError(f"'{name}' is not a class of this project ({names}).")
        value = str(found[0].id)
    project.set_meta(GOOD_CLASS_META, value)
    return project_good_class(project)


# ------------------------------------------------------------------ Train's decision
@dataclass(frozen=True)
class PickedPoint:
    """The operating point Train picks on validation, and what validation can show of it."""

    point: OperatingPoint | None  # None: validation has no defect (or no good) images
    target: float
    shown: bool  # the 95 % upper bound of the miss rate on validation meets the target
    n_defects: int
    images_needed: int  # defect images needed to show the target with none passed
    message: str

    def as_record(self) -> dict[str, object]:
        return {"target": self.target, "shown": self.shown, "n_defects": self.n_defects,
                "images_needed": self.images_needed, "message": self.message}


def pick_operating_point(
    p_good: np.ndarray, is_good: np.ndarray, good_class: str,
    max_miss_rate: float = DEFAULT_MAX_MISS_RATE, confidence: float = 0.95,
) -> PickedPoint:
    """The threshold with the fewest good parts rejected whose miss rate meets the target
    (``threshold_for_max_miss``: by the exact one-sided upper bound), and an UNSURE band
    holding about 5 % of the parts (``default_unsure_band``).

    When validation has too few defect images for the bound to get under the target, the
    threshold meets the target on the point estimate instead (at most floor(target x n) of
    the n validation defects pass) and the message says so and how many defect images are
    needed: the run still decides, and nobody reads a bound that is not there."""
    p_good = np.asarray(p_good, dtype=np.float64)
    is_good = np.asarray(is_good, dtype=bool)
    n = int((~is_good).sum())
    target = f"{max_miss_rate * 100:.3g} %"
    choice = threshold_for_max_miss(p_good, is_good, max_miss_rate, confidence)
    if n == 0 or not is_good.any():
        missing = "defect" if n == 0 else "good"
        return PickedPoint(None, max_miss_rate, False, n, choice.images_needed,
                           f"No OK/NG decision: validation has no {missing} images.")
    if choice.threshold is not None:
        threshold, shown, message = choice.threshold, True, choice.message
    else:
        defects = np.sort(p_good[~is_good])[::-1]
        allowed = math.floor(max_miss_rate * n + 1e-9)
        threshold = _round_up_above(defects[allowed]) if allowed < n else 0.0
        passed = int((defects >= threshold).sum())
        bound = upper_bound_one_sided(passed, n, confidence)
        shown = False
        message = (
            f"Too few defect images in validation to show at most {target} defects passed "
            f"as good: {passed} of {n} pass at threshold {threshold:.4f}, which shows only "
            f"'at most {bound * 100:.1f} %' ({confidence * 100:g} % one-sided); "
            f"{choice.images_needed} validation defect images with none passed are needed "
            f"({max(0, choice.images_needed - n)} more). The threshold meets the target on "
            f"these {n} images only.")
    band = default_unsure_band(p_good, threshold)
    point = OperatingPoint(good_class, float(threshold), *(band or (None, None)))
    return PickedPoint(point, max_miss_rate, shown, n, choice.images_needed, message)


def choose_for_run(project: Project, run_id: int, good_class: str,
                   max_miss_rate: float = DEFAULT_MAX_MISS_RATE) -> PickedPoint | None:
    """Pick the run's operating point on its stored validation predictions and save it
    (as the operating-point command saves one). None when the run lacks the class."""
    from densestudio.core import runs

    names = runs.run_class_names(project, run_id)
    if good_class not in names:
        return None
    probs, true = stored_predictions(project, run_id, "val")
    p_good, is_good = good_scores(probs, true, names.index(good_class))
    picked = pick_operating_point(p_good, is_good, good_class, max_miss_rate)
    save_operating_point(project, run_id, picked.point, picked.as_record())
    return picked


def picked_record(project: Project, run_id: int) -> dict[str, Any] | None:
    """How Train picked the run's point (``PickedPoint.as_record``), None when set by hand."""
    from densestudio.core import runs

    record = runs.get_run(project, run_id).extra.get(CHOICE_KEY)
    return record if isinstance(record, dict) else None


# ------------------------------------------------------------------ what the point decides
@dataclass(frozen=True)
class DecisionCounts:
    """What an operating point decides on labeled images, over all of them: defects decided
    OK (passed as good), good parts decided NG (rejected) and parts decided UNSURE (sent to
    a person). Unlike ``rates_with_intervals`` the UNSURE parts stay in the denominators."""

    subset: str
    good_class: str
    n: int
    defects: int
    passed: int  # defects decided OK
    good: int
    rejected: int  # good parts decided NG
    unsure: int
    confidence: float = 0.95

    @property
    def passed_upper(self) -> float:
        return upper_bound_one_sided(self.passed, self.defects, self.confidence)

    def lines(self) -> list[str]:
        """The three figures that lead every summary."""
        def pct(k: int, n: int) -> str:
            return f"{k / n * 100:.1f} %" if n else "n/a"

        conf = f"{self.confidence * 100:g} %"
        rejected = clopper_pearson(self.rejected, self.good, self.confidence)
        passed = (f"defects passed as good: {self.passed} of {self.defects} "
                  f"({pct(self.passed, self.defects)}, at most {self.passed_upper * 100:.1f} % "
                  f"at {conf})" if self.defects else "defects passed as good: no defect images")
        return [passed,
                f"good parts rejected: {self.rejected} of {self.good} "
                f"({pct(self.rejected, self.good)}"
                + (f", {conf} CI {rejected.range_text()} %)" if self.good else ")"),
                f"sent to a person: {self.unsure} of {self.n} ({pct(self.unsure, self.n)})"]


def decision_counts(p_good: np.ndarray, is_good: np.ndarray, point: OperatingPoint,
                    subset: str = "", confidence: float = 0.95) -> DecisionCounts:
    decisions = np.array([point.decide(float(p)) for p in np.asarray(p_good, np.float64)])
    is_good = np.asarray(is_good, dtype=bool)
    return DecisionCounts(
        subset, point.good_class, len(decisions), int((~is_good).sum()),
        int(((decisions == "OK") & ~is_good).sum()), int(is_good.sum()),
        int(((decisions == "NG") & is_good).sum()), int((decisions == "UNSURE").sum()),
        confidence)


def run_decision(project: Project, run_id: int, subset: str = "test"
                 ) -> DecisionCounts | None:
    """The run's saved operating point applied to its stored ``subset`` predictions (None
    without a point or labeled predictions)."""
    from densestudio.core import runs

    point = load_operating_point(project, run_id)
    names = runs.run_class_names(project, run_id)
    if point is None or point.good_class not in names:
        return None
    probs, true = stored_predictions(project, run_id, subset)
    if len(true) == 0:
        return None
    p_good, is_good = good_scores(probs, true, names.index(point.good_class))
    return decision_counts(p_good, is_good, point, subset)


def decision_lines(project: Project, run_id: int, subset: str = "test") -> list[str]:
    """The lines every summary leads with: the run's OK/NG decisions on ``subset``, then
    the note when validation could not show the target. Empty without a point."""
    counts = run_decision(project, run_id, subset)
    record = picked_record(project, run_id)
    lines: list[str] = []
    if counts is not None:
        point = load_operating_point(project, run_id)
        assert point is not None
        lines.append(f"OK/NG on {subset} ({counts.n} images; OK when "
                     f"P({point.good_class}) >= {point.threshold:.4g}):")
        lines += [f"  {line}" for line in counts.lines()]
    if record is not None and (not record.get("shown") or counts is None):
        lines.append(str(record.get("message", "")))
    return lines
