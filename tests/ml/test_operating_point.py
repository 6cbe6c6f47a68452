from __future__ import annotations

import numpy as np
import pytest

from densestudio.ml import operating_point as op
from densestudio.ml.operating_point import (
    OperatingPoint,
    best_threshold,
    expected_cost,
    rates_at,
    tradeoff_curve,
)

# Hand-made case: 4 good parts, 4 defective parts.
P_GOOD = np.array([0.95, 0.80, 0.60, 0.30, 0.70, 0.40, 0.20, 0.05])
IS_GOOD = np.array([True, True, True, True, False, False, False, False])


def test_rates_by_hand() -> None:
    curve = tradeoff_curve(P_GOOD, IS_GOOD, steps=11)  # thresholds 0.0, 0.1, ..., 1.0
    t = {round(x, 1): i for i, x in enumerate(curve.thresholds)}
    # t=0.5: good 0.30 rejected -> FRR 1/4; defective 0.70 passes -> miss 1/4
    assert curve.false_reject_rate[t[0.5]] == pytest.approx(0.25)
    assert curve.miss_rate[t[0.5]] == pytest.approx(0.25)
    # t=0.0: everything passes: miss 100 %, FRR 0
    assert (curve.miss_rate[t[0.0]], curve.false_reject_rate[t[0.0]]) == (1.0, 0.0)
    # t=1.0: everything rejected
    assert (curve.miss_rate[t[1.0]], curve.false_reject_rate[t[1.0]]) == (0.0, 1.0)
    # t=0.8: good 0.60, 0.30 rejected -> FRR 2/4; no defective >= 0.8 -> miss 0
    assert curve.false_reject_rate[t[0.8]] == pytest.approx(0.5)
    assert curve.miss_rate[t[0.8]] == 0.0
    # a part exactly at the threshold passes (>=): t=0.6 keeps good 0.60
    assert curve.false_reject_rate[t[0.6]] == pytest.approx(0.25)


def test_costs_move_the_threshold() -> None:
    curve = tradeoff_curve(P_GOOD, IS_GOOD, steps=101)
    lenient = best_threshold(curve, cost_miss=1, cost_false_reject=10)
    strict = best_threshold(curve, cost_miss=10, cost_false_reject=1)
    assert lenient == pytest.approx(0.3), "expensive scrap: pass every good part"
    assert strict == pytest.approx(0.8), "expensive escapes: reject every defective part"
    assert best_threshold(curve, 1, 1) == pytest.approx(0.8), "ties go to the stricter side"
    cost = expected_cost(curve, 10, 1)
    i = int(np.argmin(np.abs(curve.thresholds - strict)))
    assert cost[i] == pytest.approx(2.0), "0 misses, 2 false rejects (0.60 and 0.30)"


def test_unsure_band_and_decisions() -> None:
    point = OperatingPoint("ok", threshold=0.5, unsure_low=0.35, unsure_high=0.65)
    assert [point.decide(p) for p in (0.9, 0.6, 0.5, 0.4, 0.3)] == [
        "OK", "UNSURE", "UNSURE", "UNSURE", "NG"]
    rates = rates_at(P_GOOD, IS_GOOD, point)
    assert rates["unsure_fraction"] == pytest.approx(2 / 8)  # 0.60 and 0.40
    assert rates["miss_rate"] == pytest.approx(1 / 3)  # 0.70 passes among 3 sure defectives
    assert rates["false_reject_rate"] == pytest.approx(1 / 3)  # 0.30 among 3 sure good
    assert OperatingPoint.from_json(point.to_json()) == point


def test_one_sided_data_is_nan_not_crash() -> None:
    curve = tradeoff_curve(np.array([0.9, 0.8]), np.array([True, True]), steps=5)
    assert np.isnan(curve.miss_rate).all() and curve.n_defective == 0


def test_guess_good_class_from_names() -> None:
    guess = op.guess_good_class
    assert guess(["scratch", "OK", "spot"]) == "OK"
    assert guess(["NG", "Good"]) == "Good"
    assert guess(["p0.00_functional", "p0.33_possibly_defective", "p1.00_defective"]) == (
        "p0.00_functional")
    assert guess(["Defect-Free", "dent"]) == "Defect-Free"
    assert guess(["no defect", "defect"]) == "no defect"
    assert guess(["NoDefect", "crack"]) == "NoDefect"
    assert guess(["non_defective", "defective"]) == "non_defective"
    assert guess(["good_parts", "bad_parts"]) == "good_parts"
    assert guess(["PASS", "fail"]) == "PASS"
    ok = "\uff2f\uff2b"  # full-width letters (NFKC folds them to "OK")
    assert guess([ok, "NG"]) == ok
    # Nothing means good, or two classes do: ask (never the first class by default).
    assert guess(["crazing", "patches", "scratches"]) is None
    assert guess(["not_good", "bad"]) is None
    assert guess(["ok", "good"]) is None
    assert guess([]) is None


def test_default_unsure_band_sends_a_small_share_to_a_person() -> None:
    rng = np.random.default_rng(0)
    p_good = rng.random(200)
    low, high = op.default_unsure_band(p_good, 0.6)
    assert low < 0.6 < high
    inside = ((p_good >= low) & (p_good < high)).mean()
    assert 0.05 <= inside <= 0.07, inside  # about 5 %, not most of the parts
    point = op.OperatingPoint("ok", 0.6, low, high)
    is_good = p_good > 0.5
    assert op.rates_at(p_good, is_good, point)["unsure_fraction"] == inside
    assert op.default_unsure_band(np.array([]), 0.5) is None
    # Parts far from the threshold: the band still reaches the nearest one, within [0, 1].
    assert op.default_unsure_band(np.array([0.0, 1.0]), 0.5) == (0.0, 1.0)
