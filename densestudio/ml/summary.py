"""One summary of a run's quality, led by the figures that cannot hide a failing class.

On imbalanced data accuracy reads 93 % while one class is never recognised, so every place
that sums up a run (the Train status line, run lists, the Review header, Compare runs, the
CLI) leads with balanced accuracy and the recall of the worst class, and shows accuracy
after them. Pure Python (no torch, no Qt): the GUI and the CLI share it.

Figures come from the run's ``metrics`` dict (``{subset}_balanced_acc``, ``{subset}_acc``,
``{subset}_macro_f1`` and, for runs trained since they were added, ``{subset}_worst_recall``
and ``{subset}_worst_class``). For older runs the worst class is computed from an evaluation
report when the caller has one at hand (``report``: anything with ``per_class`` items that
have ``name``, ``recall`` and ``support``, e.g. ``ml.eval_report.EvalReport``); otherwise the
summary has balanced accuracy only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from densestudio.core.formatting import percent as pct

SUBSET_ORDER = ("test", "val")  # the held-out test set first: it is what the line will see
SUBSET_NAMES = {"test": "test", "val": "validation"}
FEW_IMAGES = 10  # fewer images of a class than this in a subset: too few to judge it


class Report(Protocol):
    """What a summary reads of an evaluation report (``ml.eval_report.EvalReport``, which
    itself uses this module: a protocol keeps the two apart)."""

    @property
    def subset(self) -> str: ...
    @property
    def balanced_accuracy(self) -> float: ...
    @property
    def accuracy(self) -> float: ...
    @property
    def macro_f1(self) -> float: ...
    @property
    def per_class(self) -> Iterable[Any]: ...


@dataclass(frozen=True)
class RunSummary:
    subset: str | None  # "test" or "val": the set the figures come from (None: no figures)
    balanced_accuracy: float | None
    worst_recall: float | None
    worst_class: str | None
    accuracy: float | None
    macro_f1: float | None

    @property
    def empty(self) -> bool:
        return self.balanced_accuracy is None and self.accuracy is None


def worst_class(per_class: Iterable[Any]) -> tuple[str, float] | None:
    """(name, recall) of the class with the lowest recall among classes that have images
    in the set (ties: the first such class)."""
    worst: tuple[str, float] | None = None
    for c in per_class:
        if c.support > 0 and (worst is None or c.recall < worst[1]):
            worst = (c.name, float(c.recall))
    return worst


def few_image_classes(per_class: Iterable[Any], limit: int = FEW_IMAGES) -> list[tuple[str, int]]:
    """(name, images) of the classes with fewer than ``limit`` images in the set: their
    recall moves by 10 % or more with one image, so it says little."""
    return [(c.name, int(c.support)) for c in per_class if c.support < limit]


def summarize(
    metrics: dict[str, Any], report: Report | None = None, subset: str | None = None
) -> RunSummary:
    """The summary of a run from its ``metrics`` (test set first, else validation), or of
    ``subset`` when given. ``report``: an evaluation report of that subset, used for the
    worst class when the metrics do not have it (and for everything when metrics are empty)."""
    if subset is None:
        subset = next((s for s in SUBSET_ORDER if metrics.get(f"{s}_acc") is not None),
                      getattr(report, "subset", None))
    if subset is None:
        return RunSummary(None, None, None, None, None, None)

    def metric(key: str) -> float | None:
        value = metrics.get(f"{subset}_{key}")
        return None if value is None else float(value)

    balanced, accuracy, f1 = metric("balanced_acc"), metric("acc"), metric("macro_f1")
    worst_recall, worst_name = metric("worst_recall"), metrics.get(f"{subset}_worst_class")
    if report is not None and getattr(report, "subset", subset) == subset:
        if balanced is None:
            balanced, accuracy, f1 = (report.balanced_accuracy, report.accuracy,
                                      report.macro_f1)
        if worst_recall is None:
            found = worst_class(report.per_class)
            if found is not None:
                worst_name, worst_recall = found
    return RunSummary(subset, balanced, worst_recall, worst_name, accuracy, f1)


def short_text(summary: RunSummary) -> str:
    """For a run list entry: "balanced 66.7 % · worst scratches 0.0 %"."""
    if summary.empty:
        return ""
    text = f"balanced {pct(summary.balanced_accuracy)}"
    if summary.worst_recall is not None:
        text += f" · worst {summary.worst_class or '?'} {pct(summary.worst_recall)}"
    return text


GAP_POINTS = 10.0  # balanced accuracy on test and validation this far apart: say so


def side_by_side(metrics: dict[str, Any], first: str = "test",
                 shown: float | None = None) -> str:
    """"test 72.0 % · validation 56.0 % balanced accuracy" (``first`` leads; ``shown``: its
    figure as on screen, e.g. recounted from the stored predictions), and a warning when the
    two differ by GAP_POINTS or more: one figure alone would mislead. "" when the run has
    figures for fewer than both sets."""
    order = (first, *(s for s in SUBSET_ORDER if s != first))
    values = {s: summarize(metrics, subset=s).balanced_accuracy for s in order}
    if shown is not None:
        values[first] = shown
    if any(v is None for v in values.values()):
        return ""
    text = " · ".join(f"{SUBSET_NAMES[s]} {pct(values[s])}" for s in order) + \
        " balanced accuracy"
    gap = abs(float(values["test"]) - float(values["val"])) * 100  # type: ignore[arg-type]
    if gap >= GAP_POINTS:
        text += (f" — {gap:.0f} points apart: the sets are small or unlike each other, so "
                 "neither figure alone tells how the line will fare")
    return text


def long_text(summary: RunSummary) -> str:
    """For a sentence: "test: balanced accuracy 66.7 %, worst class 'scratches' 0.0 %
    recall (accuracy 96.6 %)"."""
    if summary.empty:
        return "no test or validation figures"
    name = SUBSET_NAMES.get(summary.subset or "", summary.subset)
    text = f"{name}: balanced accuracy {pct(summary.balanced_accuracy)}"
    if summary.worst_recall is not None:
        text += f", worst class '{summary.worst_class}' {pct(summary.worst_recall)} recall"
    if summary.accuracy is not None:
        text += f" (accuracy {pct(summary.accuracy)})"
    return text
