"""The release gate in a window: a candidate run against the approved one, image by image.

The gate itself is ``ml.gate.compare_runs_for_gate`` (run in a worker: it may predict
must-pass images a run has no stored prediction for). The window shows its verdict and the
reasons, the warnings (test split not locked, gate images the runs trained on), the metric
changes with 95 % intervals, and the images behind them as review tiles: must-pass images the
candidate gets wrong, newly wrong, newly right, and the largest confidence drops. Keys 1-9
relabel the selected tiles as in the Review tab (the gate judges current labels: run it again
afterwards). *Approve run…* opens the approval dialog with the verdict beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core.formatting import html_text
from densestudio.ui.gallery_model import GalleryModel, TileOverlay
from densestudio.ui.gallery_view import GalleryView, selected_ids
from densestudio.ui.intervals import ci_tip, pct_ci
from densestudio.ui.job_progress import JobProgress
from densestudio.ui.jobs import gate_job
from densestudio.ui.relabel import RelabelSelectedMixin
from densestudio.ui.runs_panel import run_title
from densestudio.ui.signoff_dialogs import add_golden_actions, approval_state
from densestudio.ui.workers import Worker

if TYPE_CHECKING:
    from densestudio.ml.gate import GateResult
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController

PASS_COLOR = "#1b7f3b"
FAIL_COLOR = "#c62828"
WARN_COLOR = "#b26a00"
VIEWS = (
    ("golden_failures", "Must-pass wrong"),
    ("newly_wrong", "Newly wrong"),
    ("newly_right", "Newly right"),
    ("confidence_drops", "Confidence drops"),
)
VIEW_TITLES = {  # (one image, several)
    "golden_failures": ("must-pass image the candidate gets wrong",
                        "must-pass images the candidate gets wrong"),
    "newly_wrong": ("image the approved run gets right and the candidate wrong",
                    "images the approved run gets right and the candidate wrong"),
    "newly_right": ("image the approved run gets wrong and the candidate right",
                    "images the approved run gets wrong and the candidate right"),
    "confidence_drops": ("image both get right where the candidate is much less sure",
                         "images both get right where the candidate is much less sure"),
}


class GateGallery(GalleryView):
    empty_text = "Run the gate to see the images it found."


def _item(text: str, right: bool = True, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tip:
        item.setToolTip(tip)
    return item


class GateDialog(RelabelSelectedMixin, QDialog):
    """Compare ``candidate`` with the approved run (or ``against``) and show the result."""

    gateFinished = Signal(object)  # ml.gate.GateResult
    approveRequested = Signal(int, object)  # candidate run id, GateResult

    def __init__(self, host: AppContext, candidate: int, against: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host  # the application (ui.context)
        assert host.controller is not None  # opened for runs of the open project
        self.controller: ProjectController = host.controller
        self.project = self.controller.project
        self.outcome: GateResult | None = None
        self.view = "golden_failures"
        self.last_error: str | None = None
        self.setWindowTitle("Release gate")
        self._build()
        self._fill_runs(candidate, against)
        self._show_result()

    # ================================================================ construction
    def _build(self) -> None:
        self.candidate_combo = QComboBox(self)
        self.candidate_combo.setMinimumContentsLength(22)
        self.against_combo = QComboBox(self)
        self.against_combo.setMinimumContentsLength(22)
        self.against_combo.setToolTip("The run the candidate must not be worse than: by "
                                      "default the approved run")
        self.max_wrong = QSpinBox(self)
        self.max_wrong.setRange(-1, 100_000)
        self.max_wrong.setValue(-1)
        self.max_wrong.setSpecialValueText("no limit")
        self.max_wrong.setToolTip("Fail when more images than this are newly wrong (besides "
                                  "the must-pass and significance rules)")
        self.run_button = QPushButton("Run gate", self)
        self.run_button.setDefault(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Candidate", self))
        top.addWidget(self.candidate_combo, 1)
        top.addWidget(QLabel("against", self))
        top.addWidget(self.against_combo, 1)
        top.addWidget(QLabel("Newly wrong allowed", self))
        top.addWidget(self.max_wrong)
        top.addWidget(self.run_button)

        self.progress = JobProgress(self)

        self.verdict = QLabel(self)
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warnings = QLabel(self)
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet(f"color: {WARN_COLOR};")

        self.metrics = QTableWidget(0, 4, self)
        self.metrics.setHorizontalHeaderLabels(["Metric (test split)", "Candidate",
                                                "Approved", "Δ"])
        self.metrics.verticalHeader().hide()
        self.metrics.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metrics.setAlternatingRowColors(True)
        self.metrics.setWordWrap(False)
        header = self.metrics.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.counts = QLabel(self)
        self.counts.setWordWrap(True)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.counts)
        left_layout.addWidget(self.metrics, 1)
        left_layout.addWidget(QLabel("<small>Brackets: 95 % intervals (exact; balanced "
                                     "accuracy: Bonferroni-adjusted). Δ in points.</small>",
                                     self))

        self.view_buttons: dict[str, QToolButton] = {}
        group = QButtonGroup(self)
        group.setExclusive(True)
        views = QHBoxLayout()
        for key, text in VIEWS:
            b = QToolButton(self)
            b.setText(text)
            b.setCheckable(True)
            b.clicked.connect(lambda _=False, k=key: self.show_view(k))
            group.addButton(b)
            views.addWidget(b)
            self.view_buttons[key] = b
        views.addStretch(1)
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.model = GalleryModel(self.controller, self.host.loader, self)
        self.gallery = GateGallery(self)
        self.gallery.setModel(self.model)
        self.gallery.set_tile_size(136)
        self.gallery.labelShortcut.connect(self._label_with_shortcut)
        self.gallery.unlabelRequested.connect(lambda: self.relabel_selected(None))
        self.gallery.customContextMenuRequested.connect(self._tile_menu)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(views)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.gallery, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([460, 700])

        self.show_button = QPushButton("Show in Images tab", self)
        self.show_button.setToolTip("Open these images in the gallery and viewer")
        self.approve_button = QPushButton("Approve run…", self)
        self.close_button = QPushButton("Close", self)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("<small>Keys 1–9 relabel the selected images; the gate "
                                "judges current labels, so run it again after "
                                "relabeling.</small>", self), 1)
        bottom.addWidget(self.show_button)
        bottom.addWidget(self.approve_button)
        bottom.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.verdict)
        layout.addWidget(self.warnings)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(bottom)
        self.resize(1180, 760)

        self.run_button.clicked.connect(self.run_gate)
        self.progress.cancelRequested.connect(self.cancel)
        self.candidate_combo.currentIndexChanged.connect(lambda _i: self._on_runs_changed())
        self.against_combo.currentIndexChanged.connect(lambda _i: self._on_runs_changed())
        self.show_button.clicked.connect(self._show_in_gallery)
        self.approve_button.clicked.connect(self._approve)
        self.close_button.clicked.connect(self.close)

    def _fill_runs(self, candidate: int | None, against: int | None) -> None:
        state = approval_state(self.project)
        runs = [r for r in core_runs.list_runs(self.project) if r.status == "finished"]
        for combo in (self.candidate_combo, self.against_combo):
            combo.blockSignals(True)
            combo.clear()
        approved = state.current
        self.against_combo.addItem(
            f"the approved run (#{approved.run_id})" if approved
            else "nothing: no run is approved yet", None)
        for info in runs:
            text = f"{run_title(info)}{state.mark(info.id)}"
            self.candidate_combo.addItem(text, info.id)
            self.against_combo.addItem(text, info.id)
        self.candidate_combo.setCurrentIndex(max(0, self.candidate_combo.findData(candidate)))
        index = self.against_combo.findData(against) if against is not None else 0
        self.against_combo.setCurrentIndex(max(0, index))
        for combo in (self.candidate_combo, self.against_combo):
            combo.blockSignals(False)

    def refresh_runs(self) -> None:
        """Re-read the runs and which one is approved (after an approval)."""
        keep = self.outcome
        self._fill_runs(self.candidate, self.against)
        self.outcome = keep
        self._show_result()

    # ================================================================ running
    @property
    def candidate(self) -> int | None:
        return self.candidate_combo.currentData()

    @property
    def against(self) -> int | None:
        return self.against_combo.currentData()

    def run_gate(self) -> Worker | None:
        if self.worker is not None or self.candidate is None:
            return None
        limit = self.max_wrong.value()
        worker = Worker(gate_job, self.project, self.candidate, self.against,
                        None if limit < 0 else limit, parent=self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.done.connect(lambda: self._on_done(worker))
        self.last_error = None
        self.progress.start("Comparing the runs image by image…")
        self.run_button.setEnabled(False)
        self.host.jobs.start(worker, self, error_title=None)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_event(self, event: object) -> None:
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        if done is not None and total:
            self.progress.count(done, total, f"Predicting gate images {done:,} / {total:,}")

    def _on_finished(self, result: GateResult) -> None:
        self.outcome = result
        self._show_result()
        self.gateFinished.emit(result)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self.outcome = None
        self._show_result()
        self.verdict.setText(f"<span style='color:{FAIL_COLOR}'>The gate could not run: "
                             f"{html_text(message)}</span>")

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.host.jobs.job_of(self)

    def _on_done(self, worker: Worker) -> None:
        if self.worker is None:  # (the runner lets go of a job before its ``done``)
            self.progress.hide()
            self.run_button.setEnabled(True)

    def _on_runs_changed(self) -> None:
        if self.outcome is not None and (self.outcome.candidate != self.candidate
                                        or self.against not in (None, self.outcome.against)):
            self.outcome = None
            self._show_result()

    # ================================================================ showing
    def _show_result(self) -> None:
        r = self.outcome
        self.approve_button.setEnabled(self.candidate is not None)
        if self.candidate is not None:
            self.approve_button.setText(f"Approve run #{self.candidate}…")
        if r is None:
            self.verdict.setText("Press <b>Run gate</b> to compare the candidate with the "
                                 "approved run on the test split and every must-pass image.")
            self.warnings.hide()
            self.counts.setText("")
            self.metrics.setRowCount(0)
            for key, text in VIEWS:
                self.view_buttons[key].setText(text)
                self.view_buttons[key].setEnabled(False)
            self.model.set_ids([], {})
            self.title.setText("")
            self.show_button.setEnabled(False)
            return
        color = {"pass": PASS_COLOR, "fail": FAIL_COLOR}.get(
            r.outcome, WARN_COLOR)  # nothing compared: never a green PASS
        head, _, rest = r.verdict.partition(": ")
        self.verdict.setText(
            f"<span style='font-size:large; color:{color}'><b>{html_text(head)}</b></span>"
            f"<br>{html_text(rest)}")
        self.warnings.setText("<br>".join(f"⚠ {html_text(w)}" for w in r.warnings))
        self.warnings.setVisible(bool(r.warnings))
        ref = (f"#{r.against}" if r.against is not None else "nothing")
        parts = [f"<b>{len(r.images):,}</b> gate images: {r.n_test:,} in the test split, "
                 f"{r.n_golden:,} must-pass"]
        if r.against is not None:
            parts.append(f"newly wrong <b>{len(r.newly_wrong)}</b>, newly right "
                         f"<b>{len(r.newly_right)}</b> (McNemar one-sided p = "
                         f"{r.mcnemar_p:.3g})")
        parts.append(f"must-pass wrong <b>{len(r.golden_failures)}</b>")
        self.counts.setText(" · ".join(parts))
        approved = "approved " if r.against_approved else ""
        self.metrics.setHorizontalHeaderLabels(
            ["Metric (test split)", f"Candidate #{r.candidate}", f"{approved}{ref}".strip()
             .capitalize(), "Δ"])
        self.metrics.setRowCount(len(r.metrics))
        for row, m in enumerate(r.metrics):
            delta = "" if m.delta is None else f"{m.delta * 100:+.1f}"
            name = m.name[:1].upper() + m.name[1:]
            self.metrics.setItem(row, 0, _item(name, right=False, tip=name))
            self.metrics.setItem(row, 1, _item(pct_ci(m.candidate),
                                               tip=ci_tip(m.candidate, m.name)))
            self.metrics.setItem(row, 2, _item(pct_ci(m.against),
                                               tip=ci_tip(m.against, m.name)
                                               if m.against else ""))
            cell = _item(delta)
            if m.delta is not None and abs(m.delta) > 1e-12:
                cell.setForeground(Qt.GlobalColor.darkGreen if m.delta > 0
                                   else Qt.GlobalColor.red)
            self.metrics.setItem(row, 3, cell)
        for key, text in VIEWS:
            n = len(getattr(r, key))
            self.view_buttons[key].setText(f"{text} ({n:,})")
            self.view_buttons[key].setEnabled(key == "golden_failures" or r.against is not None)
        first = next((k for k, _ in VIEWS if getattr(r, k)), "golden_failures")
        self.show_view(first)

    def ids(self, view: str | None = None) -> list[int]:
        """The image ids of a view of the result (in the gate's order)."""
        if self.outcome is None:
            return []
        return [i.image_id for i in getattr(self.outcome, view or self.view)]

    def show_view(self, view: str) -> list[int]:
        self.view = view
        self.view_buttons[view].setChecked(True)
        items = getattr(self.outcome, view) if self.outcome is not None else ()
        ids = [i.image_id for i in items]
        self.model.set_ids(ids, self._overlay(items))
        what = VIEW_TITLES[view][len(ids) != 1]
        self.title.setText(f"<b>{len(ids):,}</b> {what} · tiles: the candidate's prediction, "
                           "then P(true class)" + (", approved run → candidate"
                                                   if self.outcome and self.outcome.against
                                                   else ""))
        self.gallery.empty_text = "None." if self.outcome is not None else GateGallery.empty_text
        self.show_button.setEnabled(bool(ids))
        if ids:
            self.gallery.go_to_row(0)
        return ids

    def _overlay(self, items: tuple) -> dict[int, TileOverlay]:
        by_name = {c.name: c.id for c in self.controller.classes()}
        out = {}
        for i in items:
            now = f"{i.candidate_p_true * 100:.0f}%"
            text = (f"{i.against_p_true * 100:.0f}→{now}" if i.against_p_true is not None
                    else now)
            confidence = (i.candidate_confidence if i.candidate_confidence is not None
                          else i.candidate_p_true)
            out[i.image_id] = TileOverlay(by_name.get(i.candidate_pred), confidence,
                                          i.candidate_right, text)
        return out

    # ================================================================ actions
    def selected_ids(self) -> list[int]:
        return selected_ids(self.gallery, self.model)

    def _tile_menu(self, pos: QPoint) -> None:
        ids = self._menu_selection(pos)
        if not ids:
            return
        menu = QMenu(self)
        header = menu.addAction(f"{len(ids):,} image{'s' if len(ids) != 1 else ''} selected")
        header.setEnabled(False)
        self._add_relabel_actions(menu, remove_label=True)
        menu.addSeparator()
        add_golden_actions(menu, self.project, ids, self.controller.golden_changed)
        self.host.exec_menu(menu, self.gallery.viewport().mapToGlobal(pos))

    def _show_in_gallery(self) -> None:
        ids = self.ids()
        if ids:
            label = dict(VIEWS)[self.view].lower()
            self.host.show_images(ids, f"Release gate: {label}")

    def _approve(self) -> None:
        if self.candidate is not None:
            result = self.outcome if self.outcome and self.outcome.candidate == self.candidate \
                else None
            self.approveRequested.emit(self.candidate, result)

    def done(self, result: int) -> None:  # cancels a running worker first
        if self.worker is not None:
            self.worker.cancel()
        super().done(result)
