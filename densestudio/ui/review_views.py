"""The Review tab's views: a confusion-matrix cell, the misclassified, the top losses, the
unlabeled predictions, what one run gets right and the other wrong; the frame-check filter
over them. A mixin of ``ReviewPanel``.
"""

from __future__ import annotations

from densestudio.core.formatting import html_text
from densestudio.ui.jobs import frame_check_job
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.review_parts import SUBSETS, VIEWS, Shown, prediction_warnings
from densestudio.ui.runs_panel import run_title
from densestudio.ui.workers import Worker


class ReviewViews(ReviewBase):
    """Which images the gallery of ``ReviewPanel`` shows."""

    def show_cell(self, true_index: int, pred_index: int) -> list[int]:
        """The images of one confusion-matrix cell, most confident first."""
        if self.run is None or self.report is None:
            return []
        names = self.run.class_names
        cell = [p for p in self.preds.values()  # (read in a job: no query here)
                if p.true_index == true_index and p.pred_index == pred_index]
        ids = [p.image_id for p in sorted(cell, key=lambda p: (-p.confidence, p.image_id))]
        self.matrix.set_active((true_index, pred_index))
        what = "correct" if true_index == pred_index else "mistaken"
        self._uncheck_views()
        self._show_ids(ids, Shown(
            "cell",
            f"<b>{len(ids)}</b> {what}: true <b>{names[true_index]}</b>, predicted "
            f"<b>{names[pred_index]}</b> · most confident first",
            (true_index, pred_index)))
        return ids

    def show_view(self, kind: str) -> list[int]:
        if self.run is None:
            return []
        assert self.project is not None  # it has the run
        self.matrix.set_active(None)
        button = self.view_buttons.get(kind)
        if button is not None:
            button.setChecked(True)
        subset = dict(SUBSETS)[self.subset].lower()
        warnings: list[str] = []
        if kind == "misclassified":
            wrong = [p for p in self.preds.values()
                     if p.true_index is not None and p.pred_index != p.true_index]
            wrong.sort(key=lambda p: (-p.confidence, p.image_id))
            ids = [p.image_id for p in wrong]
            title = (f"<b>{len(ids)}</b> misclassified {subset} images · most confident "
                     "mistakes first")
        elif kind == "top_losses":
            lossy = sorted((p for p in self.preds.values() if p.loss is not None),
                           key=lambda p: (-(p.loss or 0.0), p.image_id))
            ids = [p.image_id for p in lossy[:200]]
            title = (f"<b>{len(ids)}</b> {subset} images with the highest loss · likely label "
                     "errors or hard cases")
        elif kind == "unlabeled":
            labels = self.current_labels  # read in jobs: still unlabeled, still there
            preds = [p for p in self.unlabeled_preds.values()
                     if p.image_id in labels and labels[p.image_id] is None]
            preds.sort(key=lambda p: (p.confidence, p.image_id))
            ids = [p.image_id for p in preds]
            title = (f"<b>{len(ids)}</b> unlabeled images with predictions · least confident "
                     "first" if self.unlabeled_preds else
                     "No predictions for unlabeled images yet: press <i>Predict unlabeled</i>.")
            warnings = prediction_warnings(preds, self.run.class_names)
        elif kind in ("a_only", "b_only"):
            ids = self.compare_ids(kind)
            if self.other is None:
                title = "Choose a run to compare with."
            else:
                a, b = (self.run, self.other) if kind == "a_only" else (self.other, self.run)
                title = (f"<b>{len(ids)}</b> {subset} images that {run_title(a)} gets right "
                         f"and {run_title(b)} gets wrong")
        else:
            raise ValueError(kind)
        ids, title = self._filter_by_reason(ids, title)
        self._show_ids(ids, Shown(kind, title))
        self.warning.setText("<br>".join(f"⚠ {html_text(w)}" for w in warnings))
        self.warning.setVisible(bool(warnings))
        return ids

    def _filter_by_reason(self, ids: list[int], title: str) -> tuple[list[int], str]:
        """``ids`` kept by the frame-check filter, and the title saying so."""
        want = self.reason_combo.currentData()
        if not want:
            return ids, title
        reasons = self.frame_reasons
        if want == "*":
            kept = [i for i in ids if i in reasons]
        elif want == "-":
            kept = [i for i in ids if i not in reasons]
        else:
            kept = [i for i in ids if reasons.get(i) == want]
        return kept, (f"{title} · <b>{len(kept)}</b> of them shown "
                      f"({html_text(self.reason_combo.currentText())})")

    def _on_reason_filter(self, _index: int) -> None:
        if self.shown is None or self.shown.kind not in dict(VIEWS):
            return
        if (self.reason_combo.currentData() and self.shown.kind != "unlabeled"
                and self.check_frames() is not None):
            return  # shown again when the subset's frames are checked
        self.show_view(self.shown.kind)

    def check_frames(self) -> Worker | None:
        """Run the frame checks on this subset's images once (in the background), so the
        filter can pick the unfit frames among them; None when done before or busy."""
        if (self.run is None or self.project is None or self._busy()
                or self.frames_checked):
            return None
        run_id, kind = self.run.id, self.shown.kind if self.shown else "misclassified"
        subset = self.subset
        worker = Worker(frame_check_job, self.project, run_id, subset, parent=self)
        worker.on_result(lambda reasons: self._on_frames_checked(run_id, subset, kind, reasons))
        self._run_worker(worker, "Checking the frames (too dark, out of focus, …)…")
        return worker

    def _on_frames_checked(self, run_id: int, subset: str, kind: str,
                           reasons: dict[int, str]) -> None:
        if self.run is None or self.run.id != run_id or self.subset != subset:
            return
        self.frame_reasons, self.frames_checked = reasons, True
        self.show_view(kind)

    def _uncheck_views(self) -> None:
        self.view_group.setExclusive(False)
        for b in self.view_buttons.values():
            b.setChecked(False)
        self.view_group.setExclusive(True)

    def _show_ids(self, ids: list[int], shown: Shown) -> None:
        self.shown = shown
        self.warning.hide()
        if self.model.heat_run is not None and self.model.heatmaps is not None:
            self.model.heatmaps.drop_pending()  # tiles no longer shown
        self.title.setText(shown.title)
        self.overlay = self._overlay_for(ids)
        if shown.kind != "none":
            self.gallery.empty_text = "No images here."
        self.model.set_ids(ids, self.overlay)
        if ids:
            self.gallery.go_to_row(0)
        self._update_buttons()
        self.shownChanged.emit(shown)
