"""Evaluation: per-image predictions stored in the project, and reports built from them.

``evaluate_run`` predicts val/test images of a run's snapshot with its best weights (optionally
with flip test-time augmentation) and stores one Prediction row per image; ``report`` turns
stored predictions into accuracy, balanced accuracy, macro-F1, per-class precision / recall /
F1 / support, the confusion matrix and the top losses. ``predict_images`` predicts any images
(e.g. unlabeled ones) and stores them with subset "unlabeled".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densestudio.core import preprocess, runs
from densestudio.core.errors import DenseStudioError
from densestudio.core.file_changes import check_files, marked_for_review
from densestudio.core.progress import CancelToken, EventCallback, ignore_event
from densestudio.core.stats import Interval, balanced_accuracy_interval, clopper_pearson
from densestudio.core.store import Project
from densestudio.ml import data as D
from densestudio.ml import summary, zoo
from densestudio.ml.checkpoint import check_owner, load_checkpoint, model_from_meta
from densestudio.ml.events import EvaluationProgress
from densestudio.ml.metrics import confusion_matrix, scores
from densestudio.ml.runtime import amp_dtype, predict_probs, resolve_device
from densestudio.ml.snapshot import Snapshot, load_snapshot
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


# ------------------------------------------------------------------ reports
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


# ------------------------------------------------------------------ prediction
def _to_predictions(
    image_ids: Sequence[int], true: Sequence[int | None], probs: torch.Tensor
) -> list[runs.PredictionInfo]:
    out = []
    p = probs.numpy().astype(np.float32)
    pred = p.argmax(1)
    for row, (image_id, t) in enumerate(zip(image_ids, true, strict=False)):
        loss = None if t is None else float(-np.log(max(float(p[row, t]), 1e-12)))
        out.append(
            runs.PredictionInfo(
                int(image_id), "", t, int(pred[row]), float(p[row, pred[row]]), loss, p[row]
            )
        )
    return out


def evaluate_tensors(
    project: Project,
    run_id: int,
    model: torch.nn.Module,
    meta: dict[str, Any],
    snap: Snapshot,
    pixels: D.Pixels,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    *,
    subsets: Sequence[str] = ("val", "test"),
    tta: bool = False,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> dict[str, EvalReport]:
    """Predict the snapshot's images of ``subsets`` with an in-memory model; store; report."""
    views = meta.get("tta_views", 1) if tta else 1
    views = views if views in (1, 2, 4, 8) else 1
    wrapped = zoo.ProbabilityModel(model, views)
    reports = {}
    for subset in subsets:
        idx = snap.indices(subset)
        if not idx:
            continue

        def on_batch(done: int, total: int, subset: str = subset) -> None:
            on_event(EvaluationProgress(run_id, subset, done, total))

        probs = predict_probs(
            wrapped, pixels.take(idx), device, dtype=dtype,
            channels_last=channels_last, cancel=cancel, on_batch=on_batch,
        )  # fmt: skip
        preds = _to_predictions(
            [snap.image_ids[i] for i in idx], [snap.labels[i] for i in idx], probs
        )
        runs.save_predictions(project, run_id, subset, preds)
        reports[subset] = build_report(
            run_id, subset, snap.class_names,
            [runs.PredictionInfo(p.image_id, subset, p.true_index, p.pred_index, p.confidence,
                                 p.loss, p.probs) for p in preds],
        )  # fmt: skip
    return reports


def _check_owner(project: Project, run_id: int, ckpt: dict[str, Any], path: str) -> None:
    info = runs.get_run(project, run_id)
    check_owner(ckpt["meta"], path, run_id, project.project_id, info.class_names,
                load_snapshot(project, run_id).fingerprint, project.location)


def check_run_checkpoint(project: Project, run_id: int) -> None:
    """Refuse a run whose saved model is another run's or project's (copied into its
    folder); a run without one passes (its stored predictions may still be used)."""
    path = runs.get_run(project, run_id).checkpoint_best
    if path and Path(path).is_file():
        _check_owner(project, run_id, load_checkpoint(path), path)


def load_run_model(
    project: Project, run_id: int
) -> tuple[zoo.DenseStudioNet, dict[str, Any], dict[str, Any]]:
    """The run's best model (eval mode, CPU), its metadata and the run's config dict."""
    info = runs.get_run(project, run_id)
    path = info.checkpoint_best
    if not path:
        raise EvaluationError(
            f"Run {run_id} has no saved model (status: {info.shown_status}); train it first."
        )
    if not Path(path).is_file():  # moved or deleted: say where it was looked for
        raise EvaluationError(
            f"Run {run_id}'s model file is missing: looked for {path}. If the project was "
            "moved or renamed, move or rename its runs folder with it "
            f"({project.runs_dir.name}).")
    ckpt = load_checkpoint(path)
    _check_owner(project, run_id, ckpt, path)
    model = model_from_meta(ckpt["meta"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt["meta"], info.config


def evaluate_run(
    project: Project,
    run_id: int,
    subsets: Sequence[str] = ("val", "test"),
    tta: bool = False,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    device: str = "auto",
) -> EvalReport:
    """Predict and store ``subsets`` with the run's best weights.

    Returns the report of the last subset that has images (by default: test, else val);
    ``report(project, run_id, subset)`` gives the others.
    """
    model, meta, config = load_run_model(project, run_id)
    snap = load_snapshot(project, run_id)
    wanted = [i for s in subsets for i in snap.indices(s)]
    if not wanted:
        raise EvaluationError(f"Run {run_id} has no images in {', '.join(subsets)}.")
    ids = [snap.image_ids[i] for i in wanted]
    check_files(project, ids)
    changed = marked_for_review(project, ids)
    if changed:  # their pixels are no longer what the run's labels describe
        raise EvaluationError(
            f"{len(changed)} image(s) of run {run_id}'s {'/'.join(subsets)} set changed since "
            f"they were labeled, e.g. {changed[0]}; their labels are marked for review. "
            "Look at them and label them again, then evaluate.")
    pixels, failures = D.DecodedCache(project.cache_dir).load(
        snap.items, preprocess.from_meta(meta), cancel=cancel
    )
    if failures:
        raise EvaluationError(
            f"{len(failures)} image(s) could not be read, e.g. {failures[0].path}: "
            f"{failures[0].reason}"
        )
    dev = resolve_device(device)
    model.to(dev)
    reports = evaluate_tensors(
        project, run_id, model, meta, snap, pixels, dev,
        amp_dtype(dev, bool(config.get("amp", True))), False,
        subsets=subsets, tta=tta, on_event=on_event, cancel=cancel,
    )  # fmt: skip
    return reports[[s for s in subsets if s in reports][-1]]


def predict_images(
    project: Project,
    run_id: int,
    image_ids: Sequence[int],
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    tta: bool | None = None,
    device: str = "auto",
    store: bool = True,
) -> list[runs.PredictionInfo]:
    """Predict any project images (e.g. unlabeled ones); stored with subset "unlabeled"
    unless ``store`` is False (the release gate predicts labeled images it only compares)."""
    model, meta, config = load_run_model(project, run_id)
    check_files(project, image_ids)  # a replaced file is predicted as it is now
    images = project.images_by_ids(list(image_ids))
    items = [D.CacheItem(i.id, i.path, i.content_hash) for i in images]
    pixels, failures = D.DecodedCache(project.cache_dir).load(
        items, preprocess.from_meta(meta), cancel=cancel
    )
    bad = {f.image_id for f in failures}
    keep = [i for i, it in enumerate(items) if it.image_id not in bad]
    use_tta = bool(config.get("tta", False)) if tta is None else tta
    views = int(meta.get("tta_views", 1)) if use_tta else 1
    wrapped = zoo.ProbabilityModel(model, views)
    dev = resolve_device(device)
    model.to(dev)

    def on_batch(done: int, total: int) -> None:
        on_event(EvaluationProgress(run_id, "unlabeled", done, total))

    probs = predict_probs(
        wrapped, pixels.take(keep), dev,
        dtype=amp_dtype(dev, bool(config.get("amp", True))), cancel=cancel, on_batch=on_batch,
    )  # fmt: skip
    preds = [
        runs.PredictionInfo(p.image_id, "unlabeled", None, p.pred_index, p.confidence, None,
                            p.probs)
        for p in _to_predictions([items[i].image_id for i in keep], [None] * len(keep), probs)
    ]  # fmt: skip
    if store:
        runs.save_predictions(project, run_id, "unlabeled", preds)
        from densestudio.ml.frame_ranges import check_frames

        check_frames(project, run_id, [(items[i].image_id, items[i].path) for i in keep], meta,
                     cancel)
    return preds
