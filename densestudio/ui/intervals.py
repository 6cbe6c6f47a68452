"""Rates with their 95 % intervals as the GUI shows them: compact text and a tooltip.

Where a decision is made (Review header and per-class table, OK/NG window, release gate) a
rate is shown as "94.1 % (90.2–96.8)": the estimate, then the exact interval in brackets, so
"100 % on 12 images" reads as what it is. The tooltip says what the numbers are.
"""

from __future__ import annotations

from densestudio.core.stats import Interval


def pct_ci(interval: Interval | None, digits: int = 1, unit: bool = True) -> str:
    """"94.1 % (90.2–96.8)" ("94.1 (90.2–96.8)" without the unit, for a column headed
    "... %"); "—" without images."""
    if interval is None or not interval.n:
        return "—"
    return (f"{interval.estimate * 100:.{digits}f}{' %' if unit else ''} "
            f"({interval.low * 100:.{digits}f}–{interval.high * 100:.{digits}f})")


def ci_range(interval: Interval | None, digits: int = 1) -> str:
    """"90.2–96.8 %" (the interval alone)."""
    if interval is None or not interval.n:
        return "—"
    return f"{interval.low * 100:.{digits}f}–{interval.high * 100:.{digits}f} %"


def ci_tip(interval: Interval | None, what: str = "") -> str:
    """What the bracket means, for a tooltip: counts, confidence and method."""
    if interval is None or not interval.n:
        return f"{what}: no images" if what else "no images"
    conf = f"{interval.confidence * 100:g} %"
    if interval.method == "bonferroni":
        how = ("the mean of the classes' exact intervals, each Bonferroni-adjusted, so it "
               "covers the mean recall")
    elif interval.method == "wilson":
        how = "Wilson score interval"
    else:
        how = "exact (Clopper-Pearson) interval"
    counts = "" if interval.method == "bonferroni" else f"{interval.k:,} of {interval.n:,}; "
    head = f"{what}: " if what else ""
    return (f"{head}{counts}with {conf} confidence the true rate lies between "
            f"{interval.low * 100:.1f} % and {interval.high * 100:.1f} % ({how})")
