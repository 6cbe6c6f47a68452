"""Evaluation reports built from stored predictions: accuracy, balanced accuracy, macro-F1,
per-class precision / recall / F1 / support with exact intervals, the confusion matrix and the
top losses. NumPy only (no torch): the GUI and the CLI read reports without loading the model
code that ``ml.evaluate`` needs to make the predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from densestudio.core import runs
from densestudio.core.errors import DenseStudioError
from densestudio.core.stats import Interval, balanced_accuracy_interval, clopper_pearson
from densestudio.core.store import Project
from densestudio.ml import summary
from densestudio.ml.metrics import confusion_matrix, scores
from densestudio.runtime.operating_point import OperatingPoint


class EvaluationError(DenseStudioError):
    """A run cannot be evaluated (no checkpoint, no images, ...)."""


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class TopLoss:
    image_id: int
    true_index: int
    pred_index: int
    confidence: float
    loss: float


@dataclass(frozen=True)
class EvalReport:
    run_id: int
    subset: str
    n: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    loss: float | None
    class_names: tuple[str, ...]
    per_class: tuple[ClassMetrics, ...]
    confusion: list[list[int]]  # rows = true class, columns = predicted class
    top_losses: tuple[TopLoss, ...]

    @property
    def worst_class(self) -> ClassMetrics | None:
        """The class with the lowest recall among those present in this subset."""
        worst = summary.worst_class(self.per_class)
        return next(c for c in self.per_class if c.name == worst[0]) if worst else None

    def called_good(self, good_class: str) -> tuple[int, int]:
        """(defects predicted as ``good_class``, defects): the expensive error."""
        if good_class not in self.class_names:
            return 0, 0
        g = self.class_names.index(good_class)
        defects = sum(sum(row) for i, row in enumerate(self.confusion) if i != g)
        missed = sum(row[g] for i, row in enumerate(self.confusion) if i != g)
        return missed, defects

    # ------------------------------------------------------------ intervals (exact, 95 %)
    def accuracy_interval(self, confidence: float = 0.95) -> Interval:
        correct = sum(self.confusion[i][i] for i in range(len(self.confusion)))
        return clopper_pearson(correct, self.n, confidence)

    def balanced_accuracy_interval(self, confidence: float = 0.95) -> Interval:
        """Conservative interval of the mean recall (core.stats.balanced_accuracy_interval)."""
        k = len(self.confusion)
        return balanced_accuracy_interval([self.confusion[i][i] for i in range(k)],
                                          [sum(self.confusion[i]) for i in range(k)], confidence)

    def recall_interval(self, index: int, confidence: float = 0.95) -> Interval:
        """Of the images of class ``index``, how many the model calls that class."""
        return clopper_pearson(self.confusion[index][index], sum(self.confusion[index]),
                               confidence)

    def precision_interval(self, index: int, confidence: float = 0.95) -> Interval:
        """Of the images the model calls class ``index``, how many really are."""
        column = sum(row[index] for row in self.confusion)
        return clopper_pearson(self.confusion[index][index], column, confidence)

    def called_good_interval(self, good_class: str, confidence: float = 0.95) -> Interval:
        """Defects predicted as ``good_class``: the rate with its exact interval."""
        missed, defects = self.called_good(good_class)
        return clopper_pearson(missed, defects, confidence)

    def headline(self, good_class: str | None = None) -> list[str]:
        """What matters first: balanced accuracy, the worst class, defects called good,
        and which classes have too few images to judge (with 95 % intervals)."""
        worst = self.worst_class
        bal = self.balanced_accuracy_interval()
        parts = [f"balanced accuracy {self.balanced_accuracy * 100:.1f} % "
                 f"(95 % CI {bal.range_text()} %)"]
        if worst is not None:
            ci = self.recall_interval(self.class_names.index(worst.name))
            parts.append(f"worst class {worst.name} {worst.recall * 100:.1f} % recall "
                         f"({round(worst.recall * worst.support)} of {worst.support}; "
                         f"95 % CI {ci.range_text()} %)")
        if good_class:
            missed, defects = self.called_good(good_class)
            if defects:
                ci = self.called_good_interval(good_class)
                upper = clopper_pearson(missed, defects, sided="upper").high
                # the most likely class, not the OK/NG operating point (its lines lead)
                parts.append(f"defects predicted {good_class} (argmax): {missed} of {defects} "
                             f"({missed / defects * 100:.1f} %; 95 % CI {ci.range_text()} %, "
                             f"at most {upper * 100:.1f} % one-sided)")
        lines = ["   ".join(parts)]
        acc = self.accuracy_interval()
        lines.append(f"accuracy {self.accuracy * 100:.1f} % (95 % CI {acc.range_text()} %)   "
                     f"macro-F1 {self.macro_f1 * 100:.1f} %"
                     + (f"   loss {self.loss:.4f}" if self.loss is not None else ""))
        few = summary.few_image_classes(self.per_class)
        if few:
            lines.append(
                f"warning: too few {self.subset} images to judge "
                + ", ".join(f"{name} ({n})" for name, n in few)
                + f"; each needs at least {summary.FEW_IMAGES}."
            )
        return lines

    def format(self, top: int = 10, good_class: str | None = None,
               point: OperatingPoint | None = None) -> str:
        """A plain-text report (used by the CLI). With the run's OK/NG ``point`` these are
        the argmax figures that follow its decisions."""
        lines = [f"Run {self.run_id}, {self.subset} set: {self.n} images"]
        if point is not None:  # its OK/NG lines (operating_point.decision_lines) go first
            lines.append("  By the most likely class (argmax):")
            good_class = point.good_class
        lines += [f"  {line}" for line in self.headline(good_class)]
        lines += [
            "",
            f"  {'class':<24} {'precision':>9} {'95 % CI':>11} {'recall':>7} {'95 % CI':>11} "
            f"{'F1':>7} {'support':>8}",
        ]
        for i, c in enumerate(self.per_class):
            p_ci, r_ci = self.precision_interval(i), self.recall_interval(i)
            lines.append(
                f"  {c.name[:24]:<24} {c.precision * 100:>8.1f}% {p_ci.range_text():>11} "
                f"{c.recall * 100:>6.1f}% {r_ci.range_text():>11} "
                f"{c.f1 * 100:>6.1f}% {c.support:>8}"
            )
        lines.append("  (95 % intervals: exact Clopper-Pearson; balanced accuracy: mean of "
                     "the classes' exact bounds, Bonferroni-adjusted)")
        width = max(5, *(len(n[:10]) for n in self.class_names))
        lines += ["", "  confusion matrix (rows = true, columns = predicted)"]
        lines.append(
            "  " + " " * (width + 1) + " ".join(f"{n[:10]:>{width}}" for n in self.class_names)
        )
        for name, row in zip(self.class_names, self.confusion, strict=False):
            lines.append(f"  {name[:10]:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
        if self.top_losses and top:
            lines += ["", "  top losses (image id: true -> predicted, confidence, loss)"]
            for t in self.top_losses[:top]:
                lines.append(
                    f"  {t.image_id:>8}: {self.class_names[t.true_index]} -> "
                    f"{self.class_names[t.pred_index]}  {t.confidence * 100:.1f} %  {t.loss:.3f}"
                )
        return "\n".join(lines)


def summary_metrics(rep: EvalReport) -> dict[str, object]:
    """The figures a run keeps for its subset (run lists, comparisons, export metadata)."""
    worst = rep.worst_class
    s = rep.subset
    return {
        f"{s}_acc": rep.accuracy, f"{s}_balanced_acc": rep.balanced_accuracy,
        f"{s}_macro_f1": rep.macro_f1, f"{s}_loss": rep.loss, f"{s}_n": rep.n,
        f"{s}_worst_recall": worst.recall if worst else None,
        f"{s}_worst_class": worst.name if worst else None,
        f"{s}_recall": {c.name: c.recall for c in rep.per_class},
        f"{s}_support": {c.name: c.support for c in rep.per_class},
    }  # fmt: skip


def build_report(
    run_id: int,
    subset: str,
    class_names: Sequence[str],
    preds: Sequence[runs.PredictionInfo],
    top_k: int = 20,
) -> EvalReport:
    labeled = [p for p in preds if p.true_index is not None]
    k = len(class_names)
    true = np.array([p.true_index for p in labeled], dtype=np.int64)
    pred = np.array([p.pred_index for p in labeled], dtype=np.int64)
    cm = confusion_matrix(true, pred, k)
    sc = scores(cm)
    losses = [p.loss for p in labeled if p.loss is not None]
    worst = sorted(
        (p for p in labeled if p.loss is not None),
        key=lambda p: (-p.loss, p.image_id),  # type: ignore[operator]  # loss: not None here
    )[:top_k]
    return EvalReport(
        run_id=run_id, subset=subset, n=len(labeled), accuracy=sc.accuracy,
        balanced_accuracy=sc.balanced_accuracy, macro_f1=sc.macro_f1,
        loss=float(np.mean(losses)) if losses else None, class_names=tuple(class_names),
        per_class=tuple(
            ClassMetrics(class_names[i], sc.precision[i], sc.recall[i], sc.f1[i], sc.support[i])
            for i in range(k)
        ),
        confusion=cm.tolist(),
        top_losses=tuple(
            TopLoss(p.image_id, p.true_index, p.pred_index, p.confidence, p.loss)  # type: ignore[arg-type]
            for p in worst
        ),
    )  # fmt: skip


def report(project: Project, run_id: int, subset: str = "test", top_k: int = 20) -> EvalReport:
    """A report from the predictions stored for ``subset`` (run ``evaluate_run`` first)."""
    names = runs.run_class_names(project, run_id)
    preds = runs.predictions(project, run_id, subset)
    if not preds:
        raise EvaluationError(
            f"Run {run_id} has no stored predictions for the {subset} set; evaluate it first."
        )
    return build_report(run_id, subset, names, preds, top_k)
