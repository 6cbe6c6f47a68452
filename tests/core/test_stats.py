"""Interval arithmetic against textbook values and against the binomial distribution itself."""

from __future__ import annotations

import math

import pytest

from densestudio.core.stats import (
    balanced_accuracy_interval,
    beta_ppf,
    betainc,
    clopper_pearson,
    images_needed,
    images_needed_sentence,
    mcnemar_worse_p,
    normal_ppf,
    upper_bound_one_sided,
    wilson,
)


def binom_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_zero_of_45_gives_the_issue_figures() -> None:
    two = clopper_pearson(0, 45)
    assert two.low == 0.0
    assert two.high == pytest.approx(0.0787, abs=5e-5)
    assert two.high == pytest.approx(1 - 0.025 ** (1 / 45), abs=1e-12)
    assert upper_bound_one_sided(0, 45) == pytest.approx(0.0644, abs=5e-5)
    assert upper_bound_one_sided(0, 45) == pytest.approx(1 - 0.05 ** (1 / 45), abs=1e-12)


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (5, 20, 0.0866, 0.4910),  # textbook exact interval for 5/20
    (50, 100, 0.3983, 0.6017),
    (1, 10, 0.0025, 0.4450),
    (20, 20, 0.8316, 1.0),  # n of n: lower = (alpha/2) ** (1/n)
    (0, 1, 0.0, 0.975),
])
def test_clopper_pearson_known_values(k: int, n: int, low: float, high: float) -> None:
    ci = clopper_pearson(k, n)
    assert ci.low == pytest.approx(low, abs=1e-4)
    assert ci.high == pytest.approx(high, abs=1e-4)
    assert ci.low <= ci.estimate <= ci.high


@pytest.mark.parametrize(("k", "n"), [(3, 17), (40, 41), (7, 300), (150, 151), (1, 2)])
def test_clopper_pearson_bounds_are_where_the_binomial_tails_are(k: int, n: int) -> None:
    ci = clopper_pearson(k, n, 0.9)
    # P(X >= k | p = low) = 5 % and P(X <= k | p = high) = 5 %
    assert 1 - binom_cdf(k - 1, n, ci.low) == pytest.approx(0.05, abs=1e-9)
    assert binom_cdf(k, n, ci.high) == pytest.approx(0.05, abs=1e-9)
    upper = clopper_pearson(k, n, 0.95, sided="upper")
    assert upper.low == 0.0 and binom_cdf(k, n, upper.high) == pytest.approx(0.05, abs=1e-9)


def test_n_of_n_one_sided_lower_bound_and_empty_sets() -> None:
    assert clopper_pearson(30, 30, sided="lower").low == pytest.approx(0.05 ** (1 / 30))
    empty = clopper_pearson(0, 0)
    assert (empty.low, empty.high) == (0.0, 1.0) and math.isnan(empty.estimate)
    assert upper_bound_one_sided(0, 0) == 1.0
    with pytest.raises(ValueError):
        clopper_pearson(5, 4)


def test_wilson_known_values() -> None:
    ci = wilson(5, 20)
    assert (ci.low, ci.high) == (pytest.approx(0.1119, abs=1e-4), pytest.approx(0.4687, abs=1e-4))
    ci = wilson(50, 100)
    assert (ci.low, ci.high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson(0, 10).low == 0.0 and wilson(10, 10).high == 1.0
    z2 = 1.6448536**2  # 0 of n: the Wilson upper bound is z^2 / (n + z^2)
    assert wilson(0, 45, sided="upper").high == pytest.approx(z2 / (45 + z2), abs=1e-7)


def test_images_needed_to_claim_a_miss_rate() -> None:
    n = images_needed(0.01)
    assert n == 299
    # exactly what the exact one-sided bound gives: 299 is enough, 298 is not
    assert upper_bound_one_sided(0, 299) <= 0.01 < upper_bound_one_sided(0, 298)
    assert images_needed(0.05) == 59
    assert images_needed(0.01, allowed_misses=1) == 473
    m = images_needed(0.02, 0.99, allowed_misses=3)
    assert upper_bound_one_sided(3, m, 0.99) <= 0.02 < upper_bound_one_sided(3, m - 1, 0.99)
    assert images_needed_sentence(0.01) == (
        "to show <= 1 % with 95 % confidence you need >= 299 defect images with 0 missed")


def test_special_functions() -> None:
    assert betainc(2, 3, 0.4) == pytest.approx(0.5248, abs=1e-12)
    assert betainc(1, 7, 0.2) == pytest.approx(1 - 0.8**7, abs=1e-12)
    assert betainc(3.5, 1, 0.6) == pytest.approx(0.6**3.5, abs=1e-12)
    assert beta_ppf(betainc(4, 9, 0.31), 4, 9) == pytest.approx(0.31, abs=1e-12)
    assert normal_ppf(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert normal_ppf(0.05) == pytest.approx(-1.644854, abs=1e-6)


def test_balanced_accuracy_interval_contains_the_estimate_and_covers_all_recalls() -> None:
    perfect = balanced_accuracy_interval([2, 2, 2], [2, 2, 2])
    assert perfect.estimate == 1.0 and perfect.high == 1.0 and perfect.low < 0.5
    ci = balanced_accuracy_interval([90, 45, 8], [100, 50, 10])
    assert ci.estimate == pytest.approx((0.9 + 0.9 + 0.8) / 3)
    assert ci.low < ci.estimate < ci.high
    # wider than any one class's plain 95 % interval of the same width would suggest
    assert ci.high - ci.low > clopper_pearson(143, 160).high - clopper_pearson(143, 160).low
    skip_empty = balanced_accuracy_interval([5, 0], [5, 0])
    assert skip_empty.estimate == 1.0


def test_mcnemar_and_formatting() -> None:
    assert mcnemar_worse_p(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_worse_p(3, 3) > 0.5
    assert mcnemar_worse_p(0, 0) == 1.0
    assert clopper_pearson(0, 45).percent() == "0.0 % (95 % CI 0.0-7.9 %)"
    assert clopper_pearson(0, 45, sided="upper").percent() == "0.0 % (95 % upper bound 6.4 %)"
