"""The release gate: a candidate run against the approved one, image by image.

The gate set is the test split (lock it so nothing moves in or out) plus every must-pass
("golden") image wherever it is. Both runs are judged on the images' current labels; an image
a run has no stored prediction for (a must-pass image from the training split, an image added
to the test split later) is predicted with that run's model, without storing it.

The candidate fails when
- it gets a must-pass image wrong, or
- it is significantly worse than the approved run: more images newly wrong than newly
  right, with an exact one-sided McNemar p-value below ``alpha`` (5 %), or
- more images are newly wrong than ``max_newly_wrong`` allows (when given).
Metric changes are reported with 95 % intervals on the test images (must-pass images outside
the test split are chosen by people, so they are kept out of the rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from densestudio.core import queries, runs, signoff
from densestudio.core.errors import DenseStudioError
from densestudio.core.progress import CancelToken, EventCallback, ignore_event
from densestudio.core.stats import (
    Interval,
    balanced_accuracy_interval,
    clopper_pearson,
    mcnemar_worse_p,
)
from densestudio.core.store import Project, split_settings

ALPHA = 0.05
TOP_SHIFTS = 10


class GateError(DenseStudioError):
    """The gate cannot be run (unknown run, nothing to compare on, no model to predict)."""


@dataclass(frozen=True)
class GateImage:
    """One gate image with both runs' verdicts (``against_*`` None without a reference)."""

    image_id: int
    path: str
    true_class: str
    split: str | None
    golden: bool
    candidate_pred: str
    candidate_p_true: float  # the candidate's probability of the true class
    against_pred: str | None = None
    against_p_true: float | None = None
    candidate_confidence: float | None = None  # the candidate's probability of its prediction

    @property
    def candidate_right(self) -> bool:
        return self.candidate_pred == self.true_class

    @property
    def against_right(self) -> bool | None:
        return None if self.against_pred is None else self.against_pred == self.true_class

    @property
    def shift(self) -> float | None:
        """Change of P(true class) from the approved run to the candidate."""
        if self.against_p_true is None:
            return None
        return self.candidate_p_true - self.against_p_true


@dataclass(frozen=True)
class MetricChange:
    name: str
    candidate: Interval
    against: Interval | None

    @property
    def delta(self) -> float | None:
        return None if self.against is None else self.candidate.estimate - self.against.estimate


@dataclass(frozen=True)
class GateResult:
    candidate: int
    against: int | None
    against_approved: bool
    images: tuple[GateImage, ...]
    newly_wrong: tuple[GateImage, ...]
    newly_right: tuple[GateImage, ...]
    # images both runs get right whose P(true class) fell the most (biggest drop first)
    confidence_drops: tuple[GateImage, ...]
    metrics: tuple[MetricChange, ...]
    golden_failures: tuple[GateImage, ...]
    mcnemar_p: float
    passed: bool
    reasons: tuple[str, ...]  # why it failed (empty when it passed)
    warnings: tuple[str, ...] = field(default=())

    @property
    def n_test(self) -> int:
        return sum(1 for i in self.images if i.split == "test")

    @property
    def n_golden(self) -> int:
        return sum(1 for i in self.images if i.golden)

    @property
    def outcome(self) -> str:
        """"pass", "fail", or "nothing" (no approved run: nothing compared, never a PASS)."""
        if not self.passed:
            return "fail"
        return "pass" if self.against is not None else "nothing"

    @property
    def verdict(self) -> str:
        """One line: PASS/FAIL, what against, and the main reason."""
        ref = (f"approved run {self.against}" if self.against_approved and self.against
               else f"run {self.against}" if self.against else "no approved run")
        head = f"{'PASS' if self.passed else 'FAIL'}: run {self.candidate} vs {ref}"
        if not self.passed:
            return f"{head}: {'; '.join(self.reasons)}"
        if self.against is None:  # no PASS: nothing was compared
            golden = (f"all {self.n_golden} must-pass images right; " if self.n_golden
                      else "")
            return (f"NOTHING TO COMPARE AGAINST: run {self.candidate}, no approved run yet: "
                    f"{golden}approve a run to gate the next ones against it")
        parts = [f"{len(self.newly_wrong)} newly wrong", f"{len(self.newly_right)} newly right"]
        if self.n_golden:
            parts.append(f"all {self.n_golden} must-pass images right")
        return f"{head}: " + ", ".join(parts)

    def format(self, top: int = 10) -> str:
        """Plain text for the command line."""
        lines = [
            f"Release gate: candidate run {self.candidate} against "
            + (f"{'approved ' if self.against_approved else ''}run {self.against}"
               if self.against else "nothing (no approved run yet)"),
            f"  {len(self.images)} images: {self.n_test} in the test split, {self.n_golden} "
            "must-pass",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += ["", f"  {'metric (test split)':<28} {'candidate':>30} {'approved':>30} "
                      f"{'change':>8}"]
        for m in self.metrics:
            ref = m.against.percent() if m.against else "-"
            delta = f"{m.delta * 100:+.1f}" if m.delta is not None else ""
            lines.append(f"  {m.name[:28]:<28} {m.candidate.percent():>30} {ref:>30} {delta:>8}")
        if self.against is not None:
            lines += ["", f"  newly wrong: {len(self.newly_wrong)}   newly right: "
                          f"{len(self.newly_right)}   (McNemar one-sided p = "
                          f"{self.mcnemar_p:.3g})"]
            for title, items in (("newly wrong", self.newly_wrong),
                                 ("newly right", self.newly_right),
                                 ("largest confidence drops", self.confidence_drops)):
                if items:
                    lines.append(f"  {title}:")
                    lines += [f"    {_line(i)}" for i in items[:top]]
        if self.golden_failures:
            lines.append(f"  must-pass images wrong ({len(self.golden_failures)}):")
            lines += [f"    {_line(i)}" for i in self.golden_failures[:top]]
        lines += ["", self.verdict]
        return "\n".join(lines)


def _line(i: GateImage) -> str:
    ref = (f"; approved run said {i.against_pred} ({i.against_p_true * 100:.0f} %)"
           if i.against_pred is not None and i.against_p_true is not None else "")
    return (f"{i.image_id:>7} {i.path}: is {i.true_class}, candidate says {i.candidate_pred} "
            f"(P(true) {i.candidate_p_true * 100:.0f} %){ref}")


@dataclass(frozen=True)
class _Verdict:
    pred: str
    p_true: float
    confidence: float  # probability of the predicted class


# ------------------------------------------------------------------ the gate
def gate_images(project: Project) -> tuple[list[tuple[int, str, str, str | None, bool]],
                                            list[str]]:
    """(image id, path, current class, split, golden) of the gate set, and warnings."""
    golden = signoff.golden_ids(project)
    names = queries.class_names_by_id(project)
    rows = queries.test_or_listed_images(project, golden)
    out, warnings = [], []
    unlabeled_golden = missing = 0
    for image_id, path, label_id, split, is_missing in rows:
        if is_missing:
            missing += 1
            continue
        if label_id is None:
            unlabeled_golden += image_id in golden
            continue
        out.append((image_id, path, names[label_id], split, image_id in golden))
    if unlabeled_golden:
        warnings.append(f"{unlabeled_golden} must-pass image(s) have no label and are skipped")
    if missing:
        warnings.append(f"{missing} gate image file(s) are missing and are skipped")
    return out, warnings


def _verdicts(
    project: Project, run_id: int, image_ids: list[int], true_class: dict[int, str],
    on_event: EventCallback, cancel: CancelToken | None,
) -> tuple[dict[int, _Verdict], list[str]]:
    """Each image's prediction by the run: stored, else predicted now (not stored)."""
    from densestudio.ml.eval_report import EvaluationError
    from densestudio.ml.evaluate import predict_images

    info = runs.get_run(project, run_id)
    names = list(info.class_names)
    wanted = set(image_ids)
    stored = {p.image_id: p for p in runs.predictions(project, run_id)
              if p.image_id in wanted and p.subset != "oos"}
    todo = [i for i in image_ids if i not in stored]
    warnings: list[str] = []
    if todo:
        try:
            fresh = predict_images(project, run_id, todo, on_event=on_event, cancel=cancel,
                                   store=False)
        except EvaluationError as exc:
            raise GateError(f"{len(todo)} gate image(s) have no stored prediction of run "
                            f"{run_id} and it cannot predict them: {exc}") from exc
        stored.update({p.image_id: p for p in fresh})
        unread = len([i for i in todo if i not in stored])
        if unread:
            warnings.append(f"run {run_id} could not read {unread} gate image(s); skipped")
    out = {}
    for image_id, p in stored.items():
        truth = true_class[image_id]
        p_true = float(p.probs[names.index(truth)]) if truth in names else 0.0
        out[image_id] = _Verdict(names[p.pred_index], p_true, float(p.confidence))
    return out, warnings


def _trained_on(project: Project, run_id: int, image_ids: list[int]) -> int:
    return len(queries.trained_image_ids(project, run_id).intersection(image_ids))


def _metrics(images: list[GateImage], side: str) -> tuple[Interval, Interval,
                                                          dict[str, Interval]]:
    """Accuracy, balanced accuracy and recall per class of one side on test images."""
    test = [i for i in images if i.split == "test"]
    right = [(i.true_class, i.candidate_right if side == "candidate" else bool(i.against_right))
             for i in test]
    classes = sorted({c for c, _ in right})
    per = {c: clopper_pearson(sum(r for cc, r in right if cc == c),
                              sum(1 for cc, _ in right if cc == c)) for c in classes}
    acc = clopper_pearson(sum(r for _, r in right), len(right))
    bal = balanced_accuracy_interval([per[c].k for c in classes], [per[c].n for c in classes])
    return acc, bal, per


def compare_runs_for_gate(
    project: Project,
    candidate: int,
    against: int | None = None,
    *,
    alpha: float = ALPHA,
    max_newly_wrong: int | None = None,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> GateResult:
    """Compare ``candidate`` with ``against`` (default: the latest approved run other than
    the candidate) on the gate set; see the module docstring for the pass rules."""
    cand = runs.get_run(project, candidate)
    if cand.kind != runs.TRAIN_KIND:
        raise GateError(f"Run {candidate} is not a training run.")
    approved = False
    if against is None:
        latest = signoff.latest_approval(project, exclude_run=candidate)
        against = latest.run_id if latest else None
        approved = latest is not None
    else:
        runs.get_run(project, against)
        approved = signoff.is_approved(project, against)
    if against == candidate:
        raise GateError("The candidate and the run to compare against are the same run.")
    from densestudio.ml.evaluate import check_run_checkpoint

    for run_id in (candidate, against):  # never a model file copied in from elsewhere
        if run_id is not None:
            check_run_checkpoint(project, run_id)
    rows, warnings = gate_images(project)
    if not rows:
        raise GateError("Nothing to gate on: the test split is empty and no image is marked "
                        "must-pass.")
    ids = [r[0] for r in rows]
    truth = {r[0]: r[2] for r in rows}
    mine, w = _verdicts(project, candidate, ids, truth, on_event, cancel)
    warnings += w
    theirs: dict[int, _Verdict] = {}
    if against is not None:
        theirs, w = _verdicts(project, against, ids, truth, on_event, cancel)
        warnings += w
    if not split_settings(project).test_locked:
        warnings.append("the test split is not locked: images can move in or out of it when "
                        "splits change (lock it in the Splits panel or with `split --lock on`)")
    for run_id in (candidate, against):
        if run_id is None:
            continue
        n = _trained_on(project, run_id, [i for i in ids if i in mine])
        if n:
            warnings.append(f"{n} gate image(s) were in run {run_id}'s training data: its "
                            "results on them are optimistic")

    images = []
    for image_id, path, true_class, split, golden in rows:
        v = mine.get(image_id)
        if v is None or (against is not None and image_id not in theirs):
            continue
        t = theirs.get(image_id)
        images.append(GateImage(image_id, path, true_class, split, golden, v.pred, v.p_true,
                                t.pred if t else None, t.p_true if t else None,
                                v.confidence))
    newly_wrong = tuple(i for i in images if i.against_right and not i.candidate_right)
    newly_right = tuple(i for i in images if i.against_right is False and i.candidate_right)
    drops = sorted((i for i in images if i.shift is not None and i.shift < 0
                    and i.candidate_right and i.against_right),
                   key=lambda i: (i.shift, i.image_id))[:TOP_SHIFTS]
    golden_failures = tuple(i for i in images if i.golden and not i.candidate_right)

    metrics: list[MetricChange] = []
    if any(i.split == "test" for i in images):
        c_acc, c_bal, c_per = _metrics(images, "candidate")
        a_acc = a_bal = None
        a_per: dict[str, Interval] = {}
        if against is not None:
            a_acc, a_bal, a_per = _metrics(images, "against")
        metrics += [MetricChange("accuracy", c_acc, a_acc),
                    MetricChange("balanced accuracy", c_bal, a_bal)]
        metrics += [MetricChange(f"recall {c}", c_per[c], a_per.get(c)) for c in c_per]

    p = mcnemar_worse_p(len(newly_wrong), len(newly_right))
    reasons = []
    if golden_failures:
        reasons.append(f"{len(golden_failures)} must-pass image(s) wrong")
    if against is not None and len(newly_wrong) > len(newly_right) and p < alpha:
        reasons.append(f"significantly worse than run {against}: {len(newly_wrong)} newly "
                       f"wrong vs {len(newly_right)} newly right (McNemar p = {p:.3g})")
    if max_newly_wrong is not None and len(newly_wrong) > max_newly_wrong:
        reasons.append(f"{len(newly_wrong)} newly wrong images (at most {max_newly_wrong} "
                       "allowed)")
    return GateResult(
        candidate=candidate, against=against, against_approved=approved,
        images=tuple(images), newly_wrong=newly_wrong, newly_right=newly_right,
        confidence_drops=tuple(drops), metrics=tuple(metrics),
        golden_failures=golden_failures, mcnemar_p=float(p), passed=not reasons,
        reasons=tuple(reasons), warnings=tuple(warnings),
    )  # fmt: skip


def gate_summary(result: GateResult) -> dict[str, Any]:
    """The gate result as plain JSON values (kept with an approval, shown in the report)."""
    return {
        "candidate": result.candidate, "against": result.against, "passed": result.passed,
        "verdict": result.verdict, "newly_wrong": len(result.newly_wrong),
        "newly_right": len(result.newly_right), "golden_failures": len(result.golden_failures),
        "mcnemar_p": result.mcnemar_p, "n_images": len(result.images),
    }  # fmt: skip


__all__ = ["GateError", "GateImage", "GateResult", "MetricChange", "compare_runs_for_gate",
           "gate_images", "gate_summary"]
