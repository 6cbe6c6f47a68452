"""Miss / false-reject rates with exact intervals, and thresholds picked by the upper bound."""

from __future__ import annotations

import numpy as np
import pytest

from densestudio.core.stats import clopper_pearson, upper_bound_one_sided
from densestudio.ml import operating_point as op


def scores(n_bad: int, n_good: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """P(good) of defects spread over [0, 0.7], of good parts over [0.3, 1]: they overlap."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0.0, 0.7, n_bad), rng.uniform(0.3, 1.0, n_good)])
    return p, np.concatenate([np.zeros(n_bad, bool), np.ones(n_good, bool)])


def test_rates_with_intervals_count_and_bound() -> None:
    p = np.array([0.1, 0.2, 0.6, 0.9, 0.4, 0.8, 0.95])
    good = np.array([False, False, False, False, True, True, True])
    r = op.rates_with_intervals(p, good, 0.5)
    assert (r.misses, r.n_defective, r.false_rejects, r.n_good) == (2, 4, 1, 3)
    assert r.miss == clopper_pearson(2, 4) and r.false_reject == clopper_pearson(1, 3)
    assert r.miss_upper == upper_bound_one_sided(2, 4)
    banded = op.rates_with_intervals(p, good, op.OperatingPoint("ok", 0.5, 0.55, 0.85))
    assert banded.unsure == 2 and banded.n_defective == 3 and banded.misses == 1


def test_threshold_by_upper_bound_allows_only_what_the_bound_allows() -> None:
    p, good = scores(300, 400)
    choice = op.threshold_for_max_miss(p, good, 0.03)
    assert choice.threshold is not None and choice.rates is not None
    # the bound allows m misses among 300 defects, not m + 1
    m = choice.allowed_misses
    assert upper_bound_one_sided(m, 300) <= 0.03 < upper_bound_one_sided(m + 1, 300)
    assert choice.rates.misses <= m and choice.rates.miss_upper <= 0.03
    assert choice.rates.miss.estimate < 0.03  # the point estimate is well below the target
    # no threshold that meets the bound rejects fewer good parts (brute force over every
    # threshold where a count changes)
    bound = {k: upper_bound_one_sided(k, 300) for k in range(40)}
    for t in np.unique(np.concatenate([p, np.nextafter(p, 2.0)])):
        misses = int(((p >= t) & ~good).sum())
        if misses < 40 and bound[misses] <= 0.03:
            assert int(((p < t) & good).sum()) >= choice.rates.false_rejects
    # a point-estimate pick would accept more misses than the bound allows
    loose = op.rates_with_intervals(p, good, float(np.sort(p[~good])[::-1][7]))
    assert loose.miss.estimate < 0.03 < loose.miss_upper


def test_threshold_by_upper_bound_with_zero_misses_and_ties() -> None:
    p = np.array([0.2] * 44 + [0.41] + [0.4, 0.41, 0.5, 0.9])
    good = np.array([False] * 45 + [True] * 4)
    choice = op.threshold_for_max_miss(p, good, 0.07)  # 0 of 45 -> at most 6.4 % <= 7 %
    assert choice.allowed_misses == 0 and choice.threshold == pytest.approx(0.4101)
    assert choice.rates.misses == 0 and choice.rates.false_rejects == 2
    assert "6.44 %" in choice.message


def test_no_threshold_can_show_the_target_with_too_few_defects() -> None:
    p, good = scores(45, 100)
    choice = op.threshold_for_max_miss(p, good, 0.01)
    assert choice.threshold is None and choice.rates is None
    assert choice.images_needed == 299
    assert "45 defect images" in choice.message and "6.4 %" in choice.message
    assert ">= 299 defect images with 0 missed" in choice.message and "254 more" in choice.message
    none = op.threshold_for_max_miss(p[good], good[good], 0.05)
    assert none.threshold is None and "0 defect images" in none.message
