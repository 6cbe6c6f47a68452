"""Confidence intervals for rates measured on a few images (plain Python + numpy, no scipy).

A rate measured on a test set is an estimate: "0 of 45 defects missed" still allows a true
miss rate of 6.4 % at 95 % confidence. These functions put numbers on that.

- ``clopper_pearson``: the exact binomial interval (never narrower than the truth; what a
  quality engineer can defend). Computed from the regularized incomplete beta function
  (continued fraction, Numerical Recipes' ``betacf``), inverted by bisection.
- ``wilson``: the Wilson score interval (closer to nominal coverage on average, never
  outside [0, 1]; used where a slightly narrower interval is fine).
- ``upper_bound_one_sided``: "the true rate is at most ..." with this confidence: the number
  to compare with a specification such as "miss rate <= 1 %".
- ``images_needed``: how many images, with at most ``allowed_misses`` errors among them, are
  needed before that upper bound can fall below a target ("to show <= 1 % with 95 %
  confidence you need >= 299 defect images with 0 missed").
- ``balanced_accuracy_interval``: balanced accuracy is a mean of recalls, not a binomial
  proportion; its interval averages the classes' exact bounds taken at a Bonferroni-adjusted
  level, which covers the true mean with at least the stated confidence and always contains
  the estimate (a posterior-mean interval can exclude a 100 % estimate on few images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SIDES = ("two", "upper", "lower")


@dataclass(frozen=True)
class Interval:
    """A rate ``k / n`` with a confidence interval [low, high]."""

    k: int
    n: int
    low: float
    high: float
    confidence: float = 0.95
    method: str = "clopper-pearson"  # | "wilson" | "bonferroni" (balanced accuracy)
    sided: str = "two"  # "two" | "upper" (low = 0) | "lower" (high = 1)
    estimate_override: float | None = None  # for rates that are not k / n (balanced acc.)

    @property
    def estimate(self) -> float:
        if self.estimate_override is not None:
            return self.estimate_override
        return self.k / self.n if self.n else float("nan")

    def percent(self, digits: int = 1) -> str:
        """"4.4 % (95 % CI 0.5-15.1 %)" - the form used in tables and reports."""
        if not self.n:
            return "n/a (no images)"
        conf = f"{self.confidence * 100:g} %"
        if self.sided == "upper":
            bound = f"{conf} upper bound {self.high * 100:.{digits}f} %"
        elif self.sided == "lower":
            bound = f"{conf} lower bound {self.low * 100:.{digits}f} %"
        else:
            bound = f"{conf} CI {self.low * 100:.{digits}f}-{self.high * 100:.{digits}f} %"
        return f"{self.estimate * 100:.{digits}f} % ({bound})"

    def range_text(self, digits: int = 1) -> str:
        """"0.5-15.1" (percent, no unit): for table columns."""
        if not self.n:
            return "-"
        return f"{self.low * 100:.{digits}f}-{self.high * 100:.{digits}f}"


# ------------------------------------------------------------------ special functions
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0, 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); else use symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q (the Beta(a, b) quantile), by bisection to ~1e-15."""
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return 0.5 * (lo + hi)


def normal_ppf(q: float) -> float:
    """The standard normal quantile (bisection on erfc; exact to ~1e-12)."""
    if not 0.0 < q < 1.0:
        raise ValueError("quantile must be strictly between 0 and 1")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (via the incomplete beta function)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return betainc(k, n - k + 1, p)


# ------------------------------------------------------------------ intervals
def _check(k: int, n: int, confidence: float, sided: str) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1 (e.g. 0.95)")
    if sided not in SIDES:
        raise ValueError(f"sided must be one of {', '.join(SIDES)}")


def clopper_pearson(k: int, n: int, confidence: float = 0.95, sided: str = "two") -> Interval:
    """The exact (Clopper-Pearson) interval for ``k`` successes in ``n`` trials.

    ``sided="two"`` splits the error evenly (each tail (1 - confidence) / 2); "upper" gives
    [0, upper bound] and "lower" [lower bound, 1] with the whole error on one side.
    With n = 0 the interval is [0, 1].
    """
    k, n = int(k), int(n)
    _check(k, n, confidence, sided)
    alpha = 1.0 - confidence
    tail = alpha / 2.0 if sided == "two" else alpha
    if n == 0:
        return Interval(k, n, 0.0, 1.0, confidence, "clopper-pearson", sided)
    low = 0.0 if k == 0 or sided == "upper" else beta_ppf(tail, k, n - k + 1)
    high = 1.0 if k == n or sided == "lower" else beta_ppf(1.0 - tail, k + 1, n - k)
    return Interval(k, n, low, high, confidence, "clopper-pearson", sided)


def wilson(k: int, n: int, confidence: float = 0.95, sided: str = "two") -> Interval:
    """The Wilson score interval for ``k`` successes in ``n`` trials."""
    k, n = int(k), int(n)
    _check(k, n, confidence, sided)
    if n == 0:
        return Interval(k, n, 0.0, 1.0, confidence, "wilson", sided)
    alpha = 1.0 - confidence
    z = normal_ppf(1.0 - (alpha / 2.0 if sided == "two" else alpha))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if sided == "upper" else max(0.0, centre - half)
    high = 1.0 if sided == "lower" else min(1.0, centre + half)
    if k == 0:
        low = 0.0
    if k == n:
        high = 1.0
    return Interval(k, n, low, high, confidence, "wilson", sided)


def upper_bound_one_sided(k: int, n: int, confidence: float = 0.95) -> float:
    """With this confidence the true rate is at most this (exact; 1.0 when n = 0)."""
    return clopper_pearson(k, n, confidence, sided="upper").high


def images_needed(target_rate: float, confidence: float = 0.95, allowed_misses: int = 0
                  ) -> int:
    """The fewest images n such that ``allowed_misses`` errors among n give a one-sided exact
    upper bound <= ``target_rate`` (0 errors, 1 %, 95 %: 299 images)."""
    if not 0.0 < target_rate < 1.0:
        raise ValueError("the target rate must be between 0 and 1 (e.g. 0.01)")
    m = int(allowed_misses)
    if m < 0:
        raise ValueError("allowed misses cannot be negative")
    alpha = 1.0 - confidence
    if m == 0:  # closed form: 1 - alpha ** (1 / n) <= target
        n = math.ceil(math.log(alpha) / math.log1p(-target_rate))
        while n > 1 and upper_bound_one_sided(0, n - 1, confidence) <= target_rate:
            n -= 1
        while upper_bound_one_sided(0, n, confidence) > target_rate:
            n += 1
        return n
    # the bound falls as n grows (m fixed): find the first n that meets it by doubling +
    # bisection
    lo, hi = m + 1, m + 1
    while upper_bound_one_sided(m, hi, confidence) > target_rate:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if upper_bound_one_sided(m, mid, confidence) <= target_rate:
            hi = mid
        else:
            lo = mid + 1
    return hi


def images_needed_sentence(target_rate: float, confidence: float = 0.95,
                           allowed_misses: int = 0, what: str = "defect images",
                           verb: str = "missed") -> str:
    """"to show <= 1 % with 95 % confidence you need >= 299 defect images with 0 missed"."""
    n = images_needed(target_rate, confidence, allowed_misses)
    return (f"to show <= {_pct(target_rate)} with {confidence * 100:g} % confidence you need "
            f">= {n} {what} with {allowed_misses} {verb}")


def _pct(rate: float) -> str:
    return f"{rate * 100:.3g} %"


def balanced_accuracy_interval(
    correct: list[int] | tuple[int, ...], support: list[int] | tuple[int, ...],
    confidence: float = 0.95,
) -> Interval:
    """Balanced accuracy (mean recall over classes with images) with a conservative interval:
    the mean of the classes' exact bounds, each at confidence 1 - (1 - confidence) / K
    (Bonferroni), so all K recalls - and hence their mean - lie inside with at least
    ``confidence``. ``k``/``n`` of the result are the summed counts."""
    pairs = [(int(c), int(s)) for c, s in zip(correct, support, strict=False) if s > 0]
    if not pairs:
        return Interval(0, 0, 0.0, 1.0, confidence, "bonferroni")
    each = 1.0 - (1.0 - confidence) / len(pairs)
    bounds = [clopper_pearson(c, s, each) for c, s in pairs]
    estimate = float(np.mean([c / s for c, s in pairs]))
    return Interval(sum(c for c, _ in pairs), sum(s for _, s in pairs),
                    float(np.mean([b.low for b in bounds])),
                    float(np.mean([b.high for b in bounds])), confidence, "bonferroni", "two",
                    estimate)


def mcnemar_worse_p(newly_wrong: int, newly_right: int) -> float:
    """Exact one-sided McNemar test: the probability of at least ``newly_wrong`` of the
    ``newly_wrong + newly_right`` images on which two models disagree going against the new
    model if both were equally good. Small (< 0.05): the new model is really worse."""
    n = newly_wrong + newly_right
    return binom_sf(newly_wrong, n, 0.5) if n else 1.0
