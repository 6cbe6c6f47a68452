"""The OK/NG decision rule of an operating point: pure Python, shared by the app, the
exported model's runtime and every model file's metadata.

A part passes (OK) when P(good class) >= threshold, else it is rejected (NG); an optional
"unsure" band [unsure_low, unsure_high) sends borderline parts to a person (UNSURE).
Choosing the threshold from a run's predictions lives in ``densestudio.ml.operating_point``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

RULE = ("OK if P(good_class) >= threshold, else NG; UNSURE (sent to a person) "
        "if unsure_low <= P(good_class) < unsure_high")


class OperatingPointError(ValueError):
    """An operating point that cannot be used (unknown class, threshold out of range)."""


@dataclass(frozen=True)
class OperatingPoint:
    """What is stored with a run, used by predict and written into exported models."""

    good_class: str
    threshold: float
    unsure_low: float | None = None  # P(good) in [unsure_low, unsure_high) -> "unsure"
    unsure_high: float | None = None
    cost_miss: float = 1.0
    cost_false_reject: float = 1.0

    def decide(self, p_good: float) -> str:
        """"OK", "NG" or "UNSURE" for one part."""
        if (self.unsure_low is not None and self.unsure_high is not None
                and self.unsure_low <= p_good < self.unsure_high):
            return "UNSURE"
        return "OK" if p_good >= self.threshold else "NG"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> OperatingPoint:
        return cls(**json.loads(text))


def _is_unit(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0.0 <= value <= 1.0)


def validate(point: OperatingPoint, class_names: tuple[str, ...] | list[str]) -> OperatingPoint:
    if point.good_class not in class_names:
        raise OperatingPointError(
            f"'{point.good_class}' is not a class of this model ({', '.join(class_names)}).")
    if not _is_unit(point.threshold):
        raise OperatingPointError("The threshold must be between 0 and 1.")
    if (point.unsure_low is None) != (point.unsure_high is None):
        raise OperatingPointError("The unsure band needs both a lower and an upper end.")
    if point.unsure_low is not None and point.unsure_high is not None and not (
            _is_unit(point.unsure_low) and _is_unit(point.unsure_high)
            and point.unsure_low < point.unsure_high):
        raise OperatingPointError("The unsure band must satisfy 0 <= low < high <= 1.")
    if point.cost_miss < 0 or point.cost_false_reject < 0:
        raise OperatingPointError("Costs cannot be negative.")
    return point


def from_dict(data: dict[str, Any] | None) -> OperatingPoint | None:
    """An ``OperatingPoint`` from its JSON dict (as stored or in model metadata)."""
    if not data:
        return None
    known = {"good_class", "threshold", "unsure_low", "unsure_high", "cost_miss",
             "cost_false_reject"}
    return OperatingPoint(**{k: v for k, v in data.items() if k in known})
