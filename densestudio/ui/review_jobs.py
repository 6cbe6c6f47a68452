"""The Review tab's background jobs: predicting the unlabeled images, evaluating a run, their
progress and cancel; one at a time, through the app's ``JobRunner``. A mixin of
``ReviewPanel``.
"""

from __future__ import annotations

from densestudio.core import runs as core_runs
from densestudio.core.store import ImageFilter
from densestudio.ml.events import PreparingData
from densestudio.ml.frame_ranges import FramesChecked, frame_reasons
from densestudio.ui.jobs import evaluate_job, predict_job
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.review_parts import prediction_warnings
from densestudio.ui.workers import Worker


class ReviewJobs(ReviewBase):
    """Jobs of ``ReviewPanel``."""

    def _busy(self) -> bool:
        return self.worker is not None

    def _run_worker(self, worker: Worker, text: str) -> None:
        worker.event.connect(self._on_event)
        worker.done.connect(lambda: self._on_done(worker))
        self.progress.start(text)
        self.host.jobs.start(worker, self)  # a failure: "Cannot do that"
        self._update_buttons()

    def _on_event(self, event: object) -> None:
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        if done is not None and total:
            verb = ("Preparing" if isinstance(event, PreparingData) else
                    "Checking frames" if isinstance(event, FramesChecked) else "Predicting")
            self.progress.count(done, total, f"{verb} {done:,} / {total:,}")

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.host.jobs.job_of(self)

    def _on_done(self, worker: Worker) -> None:
        if self.worker is None:  # (the runner lets go of a job before its ``done``)
            self.progress.hide()
            self._update_buttons()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def predict_unlabeled(self) -> Worker | None:
        if self.run is None or self.project is None or self._busy():
            return None
        unlabeled = self.project.image_ids(ImageFilter(unlabeled=True, missing=False))
        # Images the run trained or was evaluated on keep their own predictions.
        in_run = {r.image_id for r in core_runs.run_images(self.project, self.run.id)}
        ids = [i for i in unlabeled if i not in in_run]
        if not ids:
            self.host.status("There are no unlabeled images to predict.", 5000)
            self.predictionsReady.emit(0)
            return None
        run_id = self.run.id
        worker = Worker(predict_job, self.project, run_id, ids, parent=self)
        worker.finished.connect(lambda preds: self._on_predicted(run_id, preds))
        self._run_worker(worker, f"Predicting {len(ids):,} unlabeled images…")
        return worker

    def _on_predicted(self, run_id: int, preds: list) -> None:
        if self.run is None or self.run.id != run_id:
            return
        self.unlabeled_preds.update({p.image_id: p for p in preds})
        if self.project is not None:
            self.frame_reasons = frame_reasons(self.project, run_id)
        self.show_view("unlabeled")
        warnings = prediction_warnings(list(preds), self.run.class_names)
        if warnings:
            self.host.status(warnings[0], 10000)
        self.predictionsReady.emit(len(preds))

    def evaluate(self) -> Worker | None:
        if self.run is None or self._busy():
            return None
        run_id = self.run.id
        subsets = ("val", "test")
        worker = Worker(evaluate_job, self.project, run_id, subsets, parent=self)
        worker.finished.connect(lambda _r: self._on_evaluated(run_id))
        self._run_worker(worker, "Evaluating…")
        return worker

    def _on_evaluated(self, run_id: int) -> None:
        self.refresh_runs(select=run_id)
        self.evaluated.emit(run_id)

    def _export(self) -> None:
        if self.run is not None:
            self.exportRequested.emit(self.run.id)
