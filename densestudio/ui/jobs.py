"""Background jobs of the Train / Review / Export panels, run by ``Worker`` in a worker thread.

Each job is a plain function ``job(..., on_event, cancel)`` that calls core/ml and returns
frozen values (ids, dataclasses, paths), never ORM objects. This module has no widgets and
runs no torch code itself; it only adapts the ml functions to what the GUI needs:

- Training reports a ``BatchProgress`` per optimizer step (hundreds per second on a GPU). The
  plots want every step's loss, but the GUI wants few signals, so ``StepBatcher`` collects the
  steps in the worker thread and hands them on as one ``TrainingSteps`` event about ten times
  a second (and before any other event, so the order is kept).
- Torch runs with all cores but one (``ml.threads``), so the GUI thread always has a core,
  and the training thread runs at a lower CPU priority (nice +5) than the GUI thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from densestudio.core.progress import CancelToken, EventCallback

if TYPE_CHECKING:  # torch-importing modules load in the worker, when a job starts
    from densestudio.core.runs import PredictionInfo, RunInfo
    from densestudio.core.signoff import ApprovalInfo, VerificationReport
    from densestudio.core.store import Project
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.eval_report import EvalReport
    from densestudio.ml.events import BatchProgress
    from densestudio.ml.explain import Explanation
    from densestudio.ml.gate import GateResult
    from densestudio.ml.report import ReportOptions, ReportWritten
    from densestudio.runtime.operating_point import OperatingPoint

FLUSH_S = 0.1
TRAIN_NICE = 5  # the training thread yields the CPU to the GUI on a busy machine


@dataclass(frozen=True)
class TrainingSteps:
    """Optimizer steps since the previous batch of steps (the newest ``BatchProgress`` last)."""

    run_id: int
    x: tuple[float, ...]  # position in epochs: epoch - 1 + step / steps
    loss: tuple[float, ...]
    last: BatchProgress  # the newest (epoch, step, images/s, ETA)


class StepBatcher:
    """Wraps ``on_event``: ``BatchProgress`` events are collected and sent ~10 times a second."""

    def __init__(self, on_event: EventCallback, flush_s: float = FLUSH_S) -> None:
        self._on_event = on_event
        self._flush_s = flush_s
        self._x: list[float] = []
        self._loss: list[float] = []
        self._last: BatchProgress | None = None
        self._sent = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, event: object) -> None:
        from densestudio.ml.events import BatchProgress

        if isinstance(event, BatchProgress):
            with self._lock:
                self._x.append(event.epoch - 1 + event.step / max(event.steps, 1))
                self._loss.append(float(event.loss))
                self._last = event
                due = time.monotonic() - self._sent >= self._flush_s
            if due:
                self.flush()
            return
        self.flush()
        self._on_event(event)

    def flush(self) -> None:
        with self._lock:
            if self._last is None:
                return
            steps = TrainingSteps(self._last.run_id, tuple(self._x), tuple(self._loss),
                                  self._last)
            self._x, self._loss, self._last = [], [], None
            self._sent = time.monotonic()
        self._on_event(steps)


# ------------------------------------------------------------------ jobs
@contextlib.contextmanager
def background_training(threads: int | None, nice: int) -> Iterator[None]:
    """Settings for long training work in a worker thread of the app: torch's lazy imports
    done, the objects alive now out of the garbage collector's full passes (no 200 ms GIL
    holds mid-run), this thread at a lower CPU priority, all cores but one for torch."""
    from densestudio.ml.threads import (
        freeze_long_lived_objects,
        limited_threads,
        lower_thread_priority,
        wait_for_warm_up,
    )  # fmt: skip

    wait_for_warm_up()
    freeze_long_lived_objects()
    if nice:
        lower_thread_priority(nice)
    with limited_threads(threads):
        yield


def train_job(
    project: Project,
    config: TrainConfig | None,  # None when resuming
    resume_run_id: int | None = None,
    threads: int | None = None,
    nice: int = TRAIN_NICE,
    *,
    on_event: EventCallback,
    cancel: CancelToken,
) -> int:
    """Train a new run (or resume one); returns the run id. Cancelling ends it cleanly."""
    from densestudio.ml.train import fit

    batcher = StepBatcher(on_event)
    with background_training(threads, nice):
        try:
            return fit(project, config, batcher, cancel, resume_run_id=resume_run_id)
        finally:
            batcher.flush()


@dataclass(frozen=True)
class TrainSpeed:
    """This computer's training speed of ``arch`` on ``device``: images/s at 128 x 128 px."""

    arch: str
    device: str
    images_per_s: float


def train_speed_job(arch: str, device: str, *, on_event: EventCallback,
                    cancel: CancelToken) -> TrainSpeed:
    """Time a few optimizer steps of ``arch`` (a few seconds, once per session), with the
    threads and priority a training run of the app gets."""
    from densestudio.ml.budget import measure_train_speed

    with background_training(None, TRAIN_NICE):
        return TrainSpeed(arch, device, measure_train_speed(arch, device))


def online_probe_job(probe: Callable[[], object], *, on_event: EventCallback,
                     cancel: CancelToken) -> bool:
    """Whether the ImageNet weights' server answers (``probe``: a plain function, no Qt)."""
    return bool(probe())


def evaluate_job(
    project: Project, run_id: int, subsets: Sequence[str] = ("val", "test"), *,
    on_event: EventCallback, cancel: CancelToken,
) -> int:
    """Predict and store the run's val/test images (for runs without stored predictions)."""
    from densestudio.ml.evaluate import evaluate_run
    from densestudio.ml.threads import limited_threads

    with limited_threads():
        evaluate_run(project, run_id, subsets, on_event=on_event, cancel=cancel)
    return run_id


@dataclass(frozen=True)
class ReviewRuns:
    """The runs the Review tab lists (a model or stored predictions), newest first, with
    what choosing one needs: its count of stored test predictions, the approvals."""

    runs: tuple[RunInfo, ...]
    test_counts: dict[int, int]  # run id -> stored test predictions
    approvals: tuple[ApprovalInfo, ...]  # oldest first
    latest_approval: ApprovalInfo | None


def review_runs_job(project: Project, *, on_event: EventCallback,
                    cancel: CancelToken) -> ReviewRuns:
    """The Review tab's run list with a count per run (read in a worker)."""
    from densestudio.core import runs, signoff

    listed = [r for r in runs.list_runs(project)
              if r.checkpoint_best or runs.prediction_count(project, r.id)]
    return ReviewRuns(tuple(listed),
                      {r.id: runs.prediction_count(project, r.id, "test") for r in listed},
                      tuple(signoff.approvals(project)), signoff.latest_approval(project))


@dataclass(frozen=True)
class RunPredictions:
    """A run's stored predictions of one subset and their report (None: no predictions),
    read in a worker: tens of thousands of rows are no work for the GUI thread. The fields
    marked (with unlabeled) are read for the run shown, not for the one compared with."""

    run_id: int
    subset: str
    preds: tuple[PredictionInfo, ...]
    report: EvalReport | None
    unlabeled: tuple[PredictionInfo, ...]  # of the "unlabeled" subset, when asked for
    frame_reasons: dict[int, str]  # (with unlabeled) images that failed the frame checks
    current_labels: dict[int, int | None]  # (with unlabeled) labels of all predicted images now
    point: OperatingPoint | None = None  # (with unlabeled) the run's saved OK/NG point
    picked: dict | None = None  # (with unlabeled) Train's record of picking it
    leak: str = ""  # (with unlabeled) near-identical images across splits, as of now
    frames_checked: bool = False  # (with unlabeled) the subset's frames were checked
    run: RunInfo | None = None  # the run as it is now (its metrics may have changed)


def review_predictions_job(
    project: Project, subset: str, wanted: Sequence[tuple[int, tuple[str, ...], bool]], *,
    on_event: EventCallback, cancel: CancelToken,
) -> list[RunPredictions]:
    """For each (run id, class names, with unlabeled) in ``wanted``: its predictions."""
    from densestudio.core.runs import get_run, predictions
    from densestudio.core.splits import leak_warning
    from densestudio.core.store import split_leaks
    from densestudio.ml import operating_point as op
    from densestudio.ml.eval_report import build_report
    from densestudio.ml.frame_ranges import checked_subsets, frame_reasons

    out = []
    for run_id, class_names, with_unlabeled in wanted:
        cancel.raise_if_cancelled()
        preds = predictions(project, run_id, subset)
        report = build_report(run_id, subset, class_names, preds) if preds else None
        if not with_unlabeled:
            out.append(RunPredictions(run_id, subset, tuple(preds), report, (), {}, {},
                                      run=get_run(project, run_id)))
            continue
        unlabeled = predictions(project, run_id, "unlabeled")
        leaks, model_in_test = split_leaks(project)
        out.append(RunPredictions(
            run_id, subset, tuple(preds), report, tuple(unlabeled),
            frame_reasons(project, run_id), image_labels(project, [
                p.image_id for p in (*preds, *unlabeled)]),
            op.load_operating_point(project, run_id), op.picked_record(project, run_id),
            leak_warning(leaks, model_in_test if subset == "test" else 0),
            subset in checked_subsets(project, run_id), get_run(project, run_id)))
    return out


def image_labels(project: Project, image_ids: Sequence[int]) -> dict[int, int | None]:
    """The labels of these images now (class id, None: unlabeled); images gone are left out."""
    return {i.id: i.label_id for i in project.images_by_ids(list(image_ids))}


def labels_job(project: Project, image_ids: Sequence[int], *, on_event: EventCallback,
               cancel: CancelToken) -> dict[int, int | None]:
    """``image_labels`` in a worker (the Review tab after labels changed)."""
    return image_labels(project, image_ids)


@dataclass(frozen=True)
class UnlabeledPredicted:
    preds: tuple[PredictionInfo, ...]  # empty: no unlabeled image to predict
    frame_reasons: dict[int, str]  # every image of the run that failed its frame checks


def predict_unlabeled_job(
    project: Project, run_id: int, *, on_event: EventCallback, cancel: CancelToken,
) -> UnlabeledPredicted:
    """Predict the unlabeled images (present on disk) with the run's model, stored as
    "unlabeled"; images the run trained or was evaluated on keep their own predictions."""
    from densestudio.core.runs import run_images
    from densestudio.core.store import ImageFilter

    in_run = {r.image_id for r in run_images(project, run_id)}
    ids = [i for i in project.image_ids(ImageFilter(unlabeled=True, missing=False))
           if i not in in_run]
    if not ids:
        return UnlabeledPredicted((), {})
    from densestudio.ml.evaluate import predict_images
    from densestudio.ml.frame_ranges import frame_reasons
    from densestudio.ml.threads import limited_threads

    with limited_threads():
        preds = predict_images(project, run_id, ids, on_event=on_event, cancel=cancel)
    return UnlabeledPredicted(tuple(preds), frame_reasons(project, run_id))


def frame_check_job(
    project: Project, run_id: int, subset: str, *, on_event: EventCallback,
    cancel: CancelToken,
) -> dict[int, str]:
    """Run the run's frame checks on its val or test images (for the Review filter); returns
    every image of the run that failed them (``frame_reasons``)."""
    from densestudio.ml.frame_ranges import check_subset, frame_reasons

    check_subset(project, run_id, subset, cancel, on_event)
    return frame_reasons(project, run_id)


@dataclass(frozen=True)
class ExportResult:
    path: str
    size_bytes: int
    metadata: dict  # read back from the written file; "parity" holds the check's figures


def export_job(
    project: Project, run_id: int, out_path: str, fmt: str | None = None, *,
    on_event: EventCallback, cancel: CancelToken,
) -> ExportResult:
    """Write the model file (checked against the app), then read its metadata back."""
    from densestudio.ml.export import export_model, load_exported
    from densestudio.ml.threads import limited_threads

    with limited_threads():
        path = export_model(project, run_id, out_path, fmt, on_event=on_event, cancel=cancel)
        cancel.raise_if_cancelled()
        loaded = load_exported(path)
    from densestudio.ml.report import record_export

    # The same record as `densestudio export`: the validation report lists it.
    record_export(project, run_id, path, [path], parity=loaded.metadata.get("parity"),
                  via="the app (File › Export Model…)")
    return ExportResult(str(path), path.stat().st_size, loaded.metadata)


@dataclass(frozen=True)
class CheckRow:
    path: str
    expected: str | None
    predicted: str | None
    confidence: float
    error: str | None = None
    decision: str | None = None  # "OK" / "NG" / "UNSURE" when the file has an OK/NG rule
    unfamiliar: bool = False  # the file's frame checks or unknown-input check flagged it
    reason: str | None = None  # why: "too dark", "out of focus", "unlike the training images"

    @property
    def agrees(self) -> bool | None:
        if self.error or self.expected is None:
            return None
        return self.expected == self.predicted


def check_export_job(
    model_path: str, samples: Sequence[tuple[str, str | None]], *,
    on_event: EventCallback, cancel: CancelToken,
) -> list[CheckRow]:
    """Reload the written file (as a user would, without the project) and predict samples."""
    from densestudio.ml.export import load_exported
    from densestudio.ml.threads import limited_threads

    with limited_threads():
        model = load_exported(model_path)
        cancel.raise_if_cancelled()
        results = model.predict([p for p, _ in samples])
    return [
        CheckRow(path, expected, r.class_name, r.confidence, r.error, r.decision, r.unfamiliar,
                 r.reason)
        for (path, expected), r in zip(samples, results, strict=True)
    ]


# ------------------------------------------------------------------ heatmaps
@dataclass(frozen=True)
class HeatmapReady:
    """One explanation made by ``explain_job`` (``class_index`` as requested: None =
    predicted)."""

    run_id: int
    image_id: int
    class_index: int | None
    explanation: Explanation  # numpy arrays; no ORM objects


@dataclass(frozen=True)
class HeatmapFailed:
    run_id: int
    image_id: int
    class_index: int | None
    message: str


def explain_job(
    project: Project, run_id: int, requests: Sequence[tuple[int, int | None]], *,
    on_event: EventCallback, cancel: CancelToken,
) -> int:
    """Heatmaps for (image id, class index or None) pairs with the run's model; each one is
    reported as a ``HeatmapReady`` (or ``HeatmapFailed``) event as soon as it is done."""
    from densestudio.ml.explain import ExplainError, load_explainer
    from densestudio.ml.threads import limited_threads

    done = 0
    with limited_threads():
        explainer = load_explainer(project, run_id)
        for image_id, class_index in requests:
            cancel.raise_if_cancelled()
            try:
                e = explainer.explain(image_id, class_index)
            except ExplainError as exc:
                on_event(HeatmapFailed(run_id, image_id, class_index, str(exc)))
                continue
            on_event(HeatmapReady(run_id, image_id, class_index, e))
            done += 1
    return done


# ------------------------------------------------------------------ sign-off
def gate_job(
    project: Project, candidate: int, against: int | None = None,
    max_newly_wrong: int | None = None, *, on_event: EventCallback, cancel: CancelToken,
) -> GateResult:
    """The release gate (it may predict must-pass images a run has no stored prediction
    for, with all cores but one)."""
    from densestudio.ml.gate import compare_runs_for_gate
    from densestudio.ml.threads import limited_threads

    with limited_threads():
        return compare_runs_for_gate(project, candidate, against,
                                     max_newly_wrong=max_newly_wrong, on_event=on_event,
                                     cancel=cancel)


def report_job(
    project: Project, out_path: str, run_id: int, options: ReportOptions | None = None, *,
    on_event: EventCallback, cancel: CancelToken,
) -> ReportWritten:
    """Write the validation report (heatmaps and the gate may run the model)."""
    from densestudio.ml.report import ReportOptions, write_report
    from densestudio.ml.threads import limited_threads

    with limited_threads():
        return write_report(project, out_path, run_id, options or ReportOptions(),
                            on_event=on_event, cancel=cancel)


def verify_job(project: Project, *, on_event: EventCallback,
               cancel: CancelToken) -> VerificationReport:
    """Recompute the label history's and the approvals' hash chains (reads every row)."""
    from densestudio.core.signoff import verify_project

    return verify_project(project)
