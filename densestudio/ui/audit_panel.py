"""The "Label audit" tab: which labels look wrong, and fixing them with one key.

"Find suspected label errors" runs ``ml.crossval.cross_validate`` in a worker thread (k-fold
cross-training of a small model, so every labeled image is predicted by a model that never
saw it; progress per fold and epoch with an ETA; Cancel). The result is stored in the project
(a "label audit" run), so the view is there again after a restart.

The gallery lists the suspects, most suspicious first: each tile shows its given label (the
class chip), the class the model suggests and its confidence. Enter or C says "this label is
right" (the image leaves the list; recorded in the audit; Ctrl+Z brings it back); 1-9 relabel
the selected images (undoable like everywhere else; the tile stays, marked "relabeled").
Images relabeled before the view was opened count as resolved and are not listed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import formatting, history
from densestudio.core.formatting import html_text
from densestudio.core.progress import CancelToken, EventCallback
from densestudio.ml.events import PreparingData
from densestudio.ui import undo
from densestudio.ui.gallery_model import GalleryModel, TileOverlay
from densestudio.ui.gallery_view import GalleryView, selected_ids
from densestudio.ui.jobs import TRAIN_NICE, background_training
from densestudio.ui.relabel import RelabelSelectedMixin
from densestudio.ui.workers import Worker

if TYPE_CHECKING:
    from densestudio.core.store import Project
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.crossval import LabelAudit
    from densestudio.ml.label_errors import LabelIssue
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController


# ------------------------------------------------------------------ job (worker thread)
def audit_job(
    project: Project,
    folds: int,
    config: TrainConfig | None,
    threads: int | None = None,
    nice: int = TRAIN_NICE,
    *,
    on_event: EventCallback,
    cancel: CancelToken,
) -> int:
    """Run a label audit with all cores but one, at a lower priority; returns its run id."""
    from densestudio.ml.crossval import cross_validate

    with background_training(threads, nice):
        return cross_validate(project, folds, config, on_event, cancel).run_id




class AuditGallery(GalleryView):
    """The tile grid with a message when empty, plus Enter / C = "the label is right"."""

    confirmRequested = Signal()
    empty_text = ""


    def keyPressEvent(self, event: QKeyEvent) -> None:
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if mods == Qt.KeyboardModifier.NoModifier and event.key() in (
            Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_C
        ):
            self.confirmRequested.emit()
            return
        super().keyPressEvent(event)


class AuditPanel(RelabelSelectedMixin, QWidget):
    relabel_how = history.HOW_AUDIT
    auditStarted = Signal()
    auditFinished = Signal(int)  # run id
    auditEnded = Signal(str)  # "finished" | "cancelled" | "failed"
    suspectsChanged = Signal(int)  # number listed

    def __init__(self, host: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host  # the application (ui.context)
        self.controller: ProjectController | None = None
        self.audit: LabelAudit | None = None
        self.order: list[int] = []  # suspects (image ids), most suspicious first
        self.issue_of: dict[int, LabelIssue] = {}
        self.class_ids: list[int | None] = []  # audit class index -> current class id
        self.overlay: dict[int, TileOverlay] = {}
        self.last_outcome = ""
        self._build()

    # ================================================================ construction
    def _build(self) -> None:
        self.folds = QSpinBox(self)
        self.folds.setRange(2, 10)
        self.folds.setValue(5)
        self.folds.setToolTip("Each image is predicted by a model trained on the other folds")
        self.epochs = QSpinBox(self)
        self.epochs.setRange(0, 60)
        self.epochs.setSpecialValueText("auto")
        self.epochs.setToolTip("Epochs per fold (auto: from the number of images)")
        self.img_size = QSpinBox(self)
        self.img_size.setRange(32, 128)
        self.img_size.setSingleStep(16)
        self.img_size.setValue(64)
        self.img_size.setSuffix(" px")
        for spin, widest in ((self.folds, "20"), (self.epochs, "auto"), (self.img_size, "128 px")):
            spin.setMinimumWidth(spin.fontMetrics().horizontalAdvance(widest) + 44)
        self.estimate = QLabel(self)  # how long the audit will take, before it starts
        self.estimate.setStyleSheet("color: palette(placeholder-text);")
        self.start_button = QPushButton("Find suspected label errors", self)
        self.start_button.setToolTip(
            "Train a small model k times, each time predicting the images it did not see; "
            "images whose label the models confidently disagree with are listed first.")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Folds", self))
        bar.addWidget(self.folds)
        bar.addWidget(QLabel("Epochs", self))
        bar.addWidget(self.epochs)
        bar.addWidget(QLabel("Image size", self))
        bar.addWidget(self.img_size)
        bar.addStretch(1)
        bar.addWidget(self.estimate)
        bar.addWidget(self.start_button)
        bar.addWidget(self.cancel_button)

        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.notes = QLabel(self)  # which suggestions not to trust, and why
        self.notes.setWordWrap(True)
        self.notes.setStyleSheet("color: #b26a00;")
        self.notes.hide()

        self.model = GalleryModel(None, self.host.loader, self)
        self.gallery = AuditGallery(self)
        self.gallery.setModel(self.model)
        self.gallery.set_tile_size(152)
        self.gallery.empty_text = "Open a project to audit its labels."
        self.gallery.confirmRequested.connect(self.confirm_selected)
        self.gallery.labelShortcut.connect(self._label_with_shortcut)
        self.gallery.unlabelRequested.connect(lambda: self.relabel_selected(None))
        self.gallery.customContextMenuRequested.connect(self._tile_menu)

        self.hint = QLabel(
            "<small>Tile: given label (bottom), model's suggestion and confidence (top). "
            "<b>Enter</b> or <b>C</b>: the label is right (removes it from the list) · "
            "<b>1–9</b>: relabel · <b>Ctrl+Z</b>: undo</small>", self)
        self.hint.setWordWrap(True)
        self.confirm_button = QPushButton("Label is right", self)
        self.confirm_button.setToolTip("The selected images are labeled correctly (Enter / C)")
        self.confirm_button.clicked.connect(self.confirm_selected)
        actions = QHBoxLayout()
        actions.addWidget(self.hint, 1)
        actions.addWidget(self.confirm_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(self.progress)
        layout.addWidget(self.summary)
        layout.addWidget(self.notes)
        layout.addWidget(self.gallery, 1)
        layout.addLayout(actions)

        for spin in (self.folds, self.epochs, self.img_size):
            spin.valueChanged.connect(lambda _v: self._update_estimate())
        self.start_button.clicked.connect(self.start_audit)
        self.cancel_button.clicked.connect(self.cancel)
        self.gallery.selectionModel().selectionChanged.connect(self._update_buttons)
        self._update_buttons()

    # ================================================================ project
    @property
    def project(self) -> Project | None:
        return self.controller.project if self.controller else None

    @property
    def running(self) -> bool:
        return self.worker is not None

    def set_controller(self, controller: ProjectController | None) -> None:
        if self.controller is not None:
            try:
                self.controller.labelsChanged.disconnect(self._on_labels_changed)
                self.controller.classesChanged.disconnect(self._on_classes_changed)
                self.controller.countsChanged.disconnect(self._update_estimate)
            except (RuntimeError, TypeError):
                pass
        self.controller = controller
        self.model.set_controller(controller)
        self.audit = None
        if controller is not None:
            controller.labelsChanged.connect(self._on_labels_changed)
            controller.classesChanged.connect(self._on_classes_changed)
            controller.countsChanged.connect(self._update_estimate)
        self.load_audit()
        self._update_estimate()

    def load_audit(self, run_id: int | None = None) -> None:
        """Show a stored audit (default: the newest) or say how to start one."""
        from densestudio.ml.crossval import load_audit

        self.audit = load_audit(self.project, run_id) if self.project is not None else None
        self.order, self.issue_of, self.overlay = [], {}, {}
        if self.audit is None:
            self.class_ids = []
            self.gallery.empty_text = (
                "Which labels look wrong? Press “Find suspected label errors”: a small model "
                "is trained once per fold and predicts the images it did not see."
                if self.project is not None else "Open a project to audit its labels.")
            self.model.set_ids([], {})
            self._update_summary()
            self._update_buttons()
            return
        assert self.project is not None  # the audit was loaded from it
        self._show_settings_of(self.audit)
        self.class_ids = self._class_map(self.audit.class_names)
        suspects = self.audit.suspects()
        ids = [self.audit.image_id(i) for i in suspects]
        current = {i.id: i.label_id for i in self.project.images_by_ids(ids)}
        for issue, image_id in zip(suspects, ids, strict=False):
            if image_id not in current:
                continue  # deleted since
            if current[image_id] != self._class_id(issue.given):
                continue  # relabeled since the audit: resolved
            self.order.append(image_id)
            self.issue_of[image_id] = issue
        self.gallery.empty_text = "No suspected label errors left. Well done."
        self._show(keep_row=None)

    def _show_settings_of(self, audit: LabelAudit) -> None:
        """The form shows the settings of the audit on screen (epochs stay "auto" when the
        audit used the automatic number)."""
        from densestudio.ml.crossval import audit_config
        from densestudio.ml.runtime import resolve_device

        cfg = audit.config
        if audit.folds:
            self.folds.setValue(audit.folds)
        if cfg.get("img_size"):
            self.img_size.setValue(int(cfg["img_size"]))
        epochs = int(cfg.get("epochs", 0))
        auto = audit_config(len(audit.image_ids), resolve_device("auto").type).epochs
        self.epochs.setValue(0 if epochs == auto else epochs)

    def _update_estimate(self) -> None:
        from densestudio.ml.crossval import check_auditable, estimate_seconds, list_audits
        from densestudio.ml.threads import interactive_threads

        if self.project is None or self.running or check_auditable(self.project,
                                                                   self.folds.value()):
            self.estimate.setText("")
            return
        assert self.controller is not None  # it has the project
        counts = self.controller.counts()
        n = counts.total - counts.count(None)
        previous = next(iter(list_audits(self.project)), None)
        seconds = estimate_seconds(n, self.folds.value(), self.config(),
                                   interactive_threads(), previous)
        self.estimate.setText(f"about {formatting.duration(seconds)}")
        self.estimate.setToolTip(
            f"{self.folds.value()} folds × {self.config().epochs} epochs on {n:,} labeled "
            "images; estimated from " + ("the last audit's speed" if previous else
                                         "the small model's usual speed on this device"))

    def _class_map(self, names: Sequence[str]) -> list[int | None]:
        by_name = {c.name: c.id for c in self.controller.classes()} if self.controller else {}
        return [by_name.get(n) for n in names]

    def _class_id(self, index: int) -> int | None:
        return self.class_ids[index] if 0 <= index < len(self.class_ids) else None

    def shown_ids(self) -> list[int]:
        confirmed: frozenset[int] = self.audit.confirmed if self.audit is not None else frozenset()
        return [i for i in self.order if i not in confirmed]

    def _show(self, keep_row: int | None) -> None:
        ids = self.shown_ids()
        self.overlay = self._overlay_for(ids)
        self.model.set_ids(ids, self.overlay)
        if ids:
            self.gallery.go_to_row(min(keep_row or 0, len(ids) - 1))
        self._update_summary()
        self._update_buttons()
        self.suspectsChanged.emit(len(ids))

    def _overlay_for(self, ids: list[int]) -> dict[int, TileOverlay]:
        if not ids or self.audit is None or self.project is None:
            return {}
        current = {i.id: i.label_id for i in self.project.images_by_ids(ids)}
        out = {}
        for image_id in ids:
            issue = self.issue_of.get(image_id)
            if issue is None:
                continue
            p = float(self.audit.probs[issue.index, issue.suggested])
            relabeled = current.get(image_id) != self._class_id(issue.given)
            out[image_id] = TileOverlay(self._class_id(issue.suggested), p, False,
                                        f"{p * 100:.0f}%", relabeled)
        return out

    def _update_summary(self) -> None:
        a = self.audit
        notes: list[str] = a.notes() if a is not None else []
        self.notes.setText("<br>".join(f"⚠ {html_text(n)}" for n in notes))
        self.notes.setVisible(bool(notes))
        if a is None:
            self.summary.setText("")
            return
        shown = len(self.shown_ids())
        relabeled = sum(1 for o in self.overlay.values() if o.relabeled)
        when = a.created_at.strftime("%Y-%m-%d %H:%M") if a.created_at else ""
        cfg = a.config
        self.summary.setText(
            f"<b>{shown:,} suspected label error{'s' if shown != 1 else ''}</b> "
            f"(most suspicious first) among {len(a.image_ids):,} labeled images · "
            f"out-of-sample accuracy {a.oos_accuracy * 100:.1f} % · {len(a.confirmed):,} "
            f"confirmed right" + (f" · {relabeled} relabeled" if relabeled else "")
            + f"<br><small>Audit of {when}: {a.folds} folds, {cfg.get('arch', '?')} "
            f"{cfg.get('img_size', '?')} px, {cfg.get('epochs', '?')} epochs per fold."
            "</small>")

    # ================================================================ labeling
    def selected_ids(self) -> list[int]:
        return selected_ids(self.gallery, self.model)

    def confirm_selected(self) -> int:
        """The selected images are labeled right: they leave the list (Ctrl+Z undoes)."""
        if self.audit is None or self.controller is None:
            return 0
        ids = [i for i in self.selected_ids() if i not in self.audit.confirmed]
        if not ids:
            return 0
        run_id = self.audit.run_id
        self._set_confirmed(run_id, ids, True)
        n = len(ids)

        def redo() -> None:
            self._set_confirmed(run_id, ids, True)
            self.host.status(f"Redone: {text.lower()} as right.", 4000)

        def undo_() -> None:
            self._set_confirmed(run_id, ids, False)
            self.host.status(
                f"Undone: {n} image{'s are' if n != 1 else ' is'} back in the list of suspects.",
                4000)

        text = f"Confirm {n} label{'s' if n != 1 else ''}"
        self.controller.undo_stack.push(undo.DoneCommand(text, redo, undo_))
        self.host.status(
            f"Confirmed {n} label{'s' if n != 1 else ''} as right (Ctrl+Z undoes).", 4000)
        return n

    def _set_confirmed(self, run_id: int, image_ids: list[int], confirmed: bool) -> None:
        from densestudio.ml.crossval import set_confirmed

        if self.project is None:
            return
        stored = set_confirmed(self.project, run_id, image_ids, confirmed)
        if self.audit is None or self.audit.run_id != run_id:
            return
        from dataclasses import replace

        index = self.gallery.currentIndex()
        row = index.row() if index.isValid() else 0
        if not confirmed:  # back in the list: go to it
            shown = [i for i in self.order if i not in stored]
            rows = [shown.index(i) for i in image_ids if i in shown]
            row = min(rows) if rows else row
        self.audit = replace(self.audit, confirmed=stored)
        self._show(keep_row=row)

    def _on_labels_changed(self, image_ids: list[int]) -> None:
        shown = [i for i in image_ids if i in self.overlay]
        if not shown:
            return
        self.overlay.update(self._overlay_for(shown))
        self.model.set_overlay(self.overlay)
        self._update_summary()

    def _on_classes_changed(self) -> None:
        if self.audit is not None and self.controller is not None:
            self.class_ids = self._class_map(self.audit.class_names)
            self.overlay = self._overlay_for(self.model.ids)
            self.model.set_overlay(self.overlay)

    def _tile_menu(self, pos: QPoint) -> None:
        if not self._menu_selection(pos):
            return
        menu = QMenu(self)
        menu.addAction("Label is right\tEnter", self.confirm_selected)
        menu.addSeparator()
        self._add_relabel_actions(menu, remove_label=False)
        self.host.exec_menu(menu, self.gallery.viewport().mapToGlobal(pos))

    # ================================================================ the audit job
    def config(self) -> TrainConfig:
        from densestudio.ml.crossval import audit_config
        from densestudio.ml.runtime import resolve_device

        assert self.controller is not None  # only asked while a project is open
        counts = self.controller.counts(fresh=True)
        n = counts.total - counts.count(None)
        cfg = audit_config(n, resolve_device("auto").type).with_(img_size=self.img_size.value())
        if self.epochs.value() > 0:
            cfg = cfg.with_(epochs=self.epochs.value())
        return cfg

    def start_audit(self) -> Worker | None:
        from densestudio.ml.crossval import check_auditable

        if self.project is None or self.running:
            return None
        k = self.folds.value()
        problems = check_auditable(self.project, k)
        if problems:
            self.host.show_error("Cannot audit the labels yet", " ".join(problems))
            return None
        cfg = self.config()
        worker = Worker(audit_job, self.project, k, cfg, parent=self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        worker.done.connect(lambda: self._on_done(worker))
        self.progress.setRange(0, 0)
        self.progress.setFormat("Starting…")
        self.progress.show()
        self.host.jobs.start(worker, self, error_title=None)
        self._update_buttons()
        self.estimate.setText("")
        self.auditStarted.emit()
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.progress.setFormat("Cancelling…")

    def _on_event(self, event: object) -> None:
        from densestudio.ml.crossval import AuditProgress, FoldEnded  # loaded by the job

        if isinstance(event, PreparingData):
            self.progress.setRange(0, max(1, event.total))
            self.progress.setValue(event.done)
            self.progress.setFormat(f"Preparing images {event.done:,} / {event.total:,}")
        elif isinstance(event, AuditProgress):
            per_fold = event.epochs * event.steps
            done = (event.fold - 1) * per_fold + (event.epoch - 1) * event.steps + event.step
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / max(1, event.folds * per_fold)))
            self.progress.setFormat(
                f"Fold {event.fold}/{event.folds} · epoch {event.epoch}/{event.epochs} · "
                f"ETA {formatting.eta(event.eta_s)}")
        elif isinstance(event, FoldEnded):
            self.host.status(
                f"Label audit: fold {event.fold}/{event.folds} done ({event.held_out} images "
                f"predicted, {event.accuracy * 100:.1f} % agree with their labels).", 5000)

    def _on_finished(self, run_id: int) -> None:
        self.last_outcome = "finished"
        self.load_audit(run_id)
        n = len(self.shown_ids())
        self.host.status(
            f"Label audit finished: {n} suspected label error{'s' if n != 1 else ''}.", 8000)
        self.auditFinished.emit(run_id)

    def _on_failed(self, message: str) -> None:
        self.last_outcome = "failed"
        self.host.show_error("The label audit failed", message)

    def _on_cancelled(self) -> None:
        self.last_outcome = "cancelled"
        self.host.status("Label audit cancelled.", 5000)

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.host.jobs.job_of(self)

    def _on_done(self, worker: Worker) -> None:
        if self.worker is None:  # (the runner lets go of a job before its ``done``)
            self.progress.hide()
            self._update_buttons()
            self._update_estimate()
            self.auditEnded.emit(self.last_outcome)

    def _update_buttons(self, *_args: object) -> None:
        has_project = self.project is not None
        self.start_button.setEnabled(has_project and not self.running)
        self.cancel_button.setEnabled(self.running)
        for w in (self.folds, self.epochs, self.img_size):
            w.setEnabled(not self.running)
        self.confirm_button.setEnabled(self.audit is not None and bool(self.model.ids))
