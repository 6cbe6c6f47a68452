"""The Review tab's tiles: each tile's overlay (predicted class, confidence, right or wrong,
relabeled since the run, the OK/NG decision and the frame-check reason), accepting
predictions as labels and the tile menu. A mixin of ``ReviewPanel``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint

from densestudio.core import runs as core_runs
from densestudio.core.constants import SOURCE_PREDICTION
from densestudio.ui.gallery_model import TileOverlay
from densestudio.ui.gallery_view import selected_ids
from densestudio.ui.jobs import labels_job
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.review_parts import SUBSETS
from densestudio.ui.signoff_dialogs import add_golden_actions
from densestudio.ui.workers import Worker

if TYPE_CHECKING:
    import numpy as np


class ReviewTiles(ReviewBase):
    """Tile overlays, accepting predictions and the tile menu of ``ReviewPanel``."""

    def _prediction(self, image_id: int) -> core_runs.PredictionInfo | None:
        if self.shown is not None and self.shown.kind == "unlabeled":
            return self.unlabeled_preds.get(image_id) or self.preds.get(image_id)
        return self.preds.get(image_id) or self.unlabeled_preds.get(image_id)

    def _overlay_for(self, ids: list[int]) -> dict[int, TileOverlay]:
        if not ids or self.project is None:
            return {}
        current = self.current_labels  # read in jobs, kept current by _on_labels_read
        decide = self._ok_ng_decider()
        out: dict[int, TileOverlay] = {}
        for image_id in ids:
            p = self._prediction(image_id)
            if p is None:
                continue
            pred_id = self.class_ids[p.pred_index] if p.pred_index < len(self.class_ids) else None
            relabeled = False
            correct = None
            if p.true_index is not None:
                correct = p.pred_index == p.true_index
                true_id = (self.class_ids[p.true_index] if p.true_index < len(self.class_ids)
                           else None)
                now = current.get(image_id)
                relabeled = now != true_id
                if relabeled and now is not None:  # judge against the label it has now
                    correct = pred_id == now
            decision, p_good = decide(p.probs) if decide is not None else ("", "")
            reason = self.frame_reasons.get(image_id, "")
            out[image_id] = TileOverlay(pred_id, p.confidence, correct,
                                        f"{p.confidence * 100:.0f}%", relabeled,
                                        "UNSURE" if reason else decision, reason,
                                        p_good=p_good)
        return out

    def _ok_ng_decider(self) -> Callable[[np.ndarray], tuple[str, str]] | None:
        """OK / NG / UNSURE from a prediction's probabilities, when the run has an
        operating point (so tiles show what the production line would decide)."""
        if self.run is None:
            return None
        point = self.point  # read with the predictions
        if point is None or point.good_class not in self.run.class_names:
            return None
        good = list(self.run.class_names).index(point.good_class)

        def decide(probs: np.ndarray) -> tuple[str, str]:
            """("NG", "P(ok) 29%"): the decision and the P(good) it was made from."""
            if good >= len(probs):
                return "?", ""
            p_good = float(probs[good])
            return point.decide(p_good), f"P({point.good_class}) {p_good * 100:.0f}%"

        return decide

    def _on_labels_changed(self, image_ids: list[int]) -> None:
        """Read the new labels of the predicted images among ``image_ids`` in a job; the
        header's recount and the tiles follow when they arrive (``labelsRead``)."""
        ours = [i for i in image_ids if i in self.preds or i in self.unlabeled_preds]
        if not ours or self.project is None:
            return
        self._labels_seq += 1
        seq = self._labels_seq
        self._labels_asked.update((i, seq) for i in ours)
        worker = Worker(labels_job, self.project, ours, parent=self)
        worker.on_result(lambda labels: self._on_labels_read(seq, labels))
        self.host.jobs.start(worker, error_title="Cannot read the labels")

    def _on_labels_read(self, seq: int, labels: dict[int, int | None]) -> None:
        fresh = [i for i in labels if self._labels_asked.get(i) == seq]  # newest ask wins
        for image_id in fresh:
            del self._labels_asked[image_id]
            self.current_labels[image_id] = labels[image_id]
        if any(i in self.preds for i in fresh) and self.report is not None:
            self.summary.setText(self._header_html(self.report,
                                                   dict(SUBSETS)[self.subset].lower()))
        shown = [i for i in fresh if i in self.overlay]
        if shown:
            self.overlay.update(self._overlay_for(shown))
            self.model.set_overlay(self.overlay)
        self.labelsRead.emit()

    def _on_classes_changed(self) -> None:
        if self.run is not None and self.controller is not None:
            self.class_ids = self._class_map(self.run.class_names)
            if self.model.ids:
                self.overlay = self._overlay_for(self.model.ids)
                self.model.set_overlay(self.overlay)

    def selected_ids(self) -> list[int]:
        return selected_ids(self.gallery, self.model)

    def _acceptable(self, ids: list[int]) -> list[tuple[int, int]]:
        pairs = []
        for image_id in ids:
            p = self.unlabeled_preds.get(image_id)
            if p is None or p.pred_index >= len(self.class_ids):
                continue
            class_id = self.class_ids[p.pred_index]
            if class_id is not None:
                pairs.append((image_id, class_id))
        return pairs

    def accept_selected(self) -> int:
        return self._accept(self._acceptable(self.selected_ids()))

    def _above(self, threshold: float) -> list[int]:
        """Shown unlabeled predictions at or above ``threshold`` (never a frame that failed
        its frame checks: a black frame's confident class is no label)."""
        return [i for i in self.model.ids
                if i in self.unlabeled_preds and self.unlabeled_preds[i].confidence >= threshold
                and i not in self.frame_reasons]

    def accept_above(self, threshold: float) -> int:
        ids = self._above(threshold)
        if not ids:
            shown = [self.unlabeled_preds[i].confidence for i in self.model.ids
                     if i in self.unlabeled_preds]
            best = f" (the most confident is {max(shown) * 100:.0f} %)" if shown else ""
            self.host.status(
                f"No prediction reaches {threshold * 100:.0f} %{best}: nothing was accepted. "
                "Lower the threshold, or select images and accept them one by one.", 8000)
            return 0
        return self._accept(self._acceptable(ids))

    def _update_qualify(self) -> None:
        """"3 of 20 qualify" beside Accept all, so an empty result is no surprise."""
        unlabeled_view = self.shown is not None and self.shown.kind == "unlabeled"
        if not unlabeled_view or not self.model.ids:
            self.qualify.setText("")
            return
        n = len(self._above(self.threshold.value() / 100.0))
        self.qualify.setText(f"<small>{n:,} of {len(self.model.ids):,} qualify</small>")

    def _accept(self, pairs: list[tuple[int, int]]) -> int:
        if not pairs or self.controller is None:
            return 0
        project = self.controller.project
        current = {i.id: i.label_id for i in project.images_by_ids([i for i, _ in pairs])}
        pairs = [(i, c) for i, c in pairs if current.get(i) is None]  # never overwrite labels
        if not pairs:
            self.host.status("Those images already have labels.", 4000)
            return 0
        n = len(pairs)
        change = self.controller.label_images_many(
            pairs, SOURCE_PREDICTION, f"Accept {n} prediction{'s' if n != 1 else ''}")
        done = len(change) if change is not None else 0
        self.host.status(
            f"Accepted {done} prediction{'s' if done != 1 else ''} as labels (Ctrl+Z undoes).",
            5000)
        return done

    def _tile_menu(self, pos: QPoint) -> None:
        made = self._selection_menu(pos)
        if made is None:
            return
        menu, ids = made
        current = self.gallery.currentIndex()
        if current.isValid():
            menu.addAction("Open in viewer\tEnter", lambda: self.open_row(current.row()))
            menu.addSeparator()
        pairs = self._acceptable(ids)
        if pairs:
            menu.addAction(f"Accept prediction{'s' if len(pairs) != 1 else ''}",
                           self.accept_selected)
            menu.addSeparator()
        self._add_relabel_actions(menu, remove_label=True)
        menu.addSeparator()
        assert self.project is not None  # there are tiles
        assert self.controller is not None
        add_golden_actions(menu, self.project, ids, self.controller.golden_changed)
        self.host.exec_menu(menu, self.gallery.viewport().mapToGlobal(pos))

    def open_row(self, row: int) -> None:
        """Open a tile in the viewer (Images tab, with exactly the tiles shown here)."""
        if 0 <= row < len(self.model.ids):
            self.openInViewer.emit(list(self.model.ids), self.model.ids[row])

    def step_tile_size(self, delta: int) -> None:
        """Ctrl+ / Ctrl- while the Review tab is shown."""
        self.gallery.set_tile_size(self.gallery.delegate.tile + delta)
