"""The Review tab's background jobs: predicting the unlabeled images, evaluating a run, their
progress and cancel; one at a time, through the app's ``JobRunner``. A mixin of
``ReviewPanel``.
"""

from __future__ import annotations

from densestudio.ml.events import PreparingData
from densestudio.ml.frame_ranges import FramesChecked
from densestudio.ui.context import JobOwner
from densestudio.ui.jobs import UnlabeledPredicted, evaluate_job, predict_unlabeled_job
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.review_parts import prediction_warnings
from densestudio.ui.workers import Worker


class ReviewJobs(JobOwner, ReviewBase):
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

    def _on_done(self, worker: Worker) -> None:
        if self.worker is None:  # (the runner lets go of a job before its ``done``)
            self.progress.hide()
            self._update_buttons()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def predict_unlabeled(self) -> Worker | None:
        """Predict the unlabeled images the run has not seen (which ones: read in the job)."""
        if self.run is None or self.project is None or self._busy():
            return None
        run_id = self.run.id
        worker = Worker(predict_unlabeled_job, self.project, run_id, parent=self)
        worker.on_result(lambda done: self._on_predicted(run_id, done))
        self._run_worker(worker, "Predicting the unlabeled images…")
        return worker

    def _on_predicted(self, run_id: int, done: UnlabeledPredicted) -> None:
        if self.run is None or self.run.id != run_id:
            return
        preds = done.preds
        if not preds:
            self.host.status("There are no unlabeled images to predict.", 5000)
            self.predictionsReady.emit(0)
            return
        self.unlabeled_preds.update({p.image_id: p for p in preds})
        self.current_labels.update((p.image_id, None) for p in preds)  # unlabeled when read
        self.frame_reasons = dict(done.frame_reasons)
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
