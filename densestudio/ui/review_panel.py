"""The Review tab: what a run gets right and wrong, and fixing labels from there.

Left: the run and subset (validation / test), a summary led by balanced accuracy and the
worst class's recall (``ml.summary``; accuracy after them), warnings for classes too small to
judge, the clickable confusion matrix, and tabs with per-class precision / recall / F1 /
support and the comparison with a second run. Right: a gallery of the images behind what
was clicked (a matrix cell sorted by confidence, all misclassified, top losses, predictions
for unlabeled images, or the images one run gets right and the other wrong) with the true
class, the predicted class and the confidence on each tile. Keys 1-9 relabel the selected
tiles (undo with Ctrl+Z); tiles whose label changed since the run are marked "relabeled".

All numbers come from predictions stored in the project (``core.runs``); evaluating a run,
predicting unlabeled images and exporting run in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core.constants import SOURCE_PREDICTION
from densestudio.core.formatting import html_text
from densestudio.core.formatting import percent as pct
from densestudio.core.stats import clopper_pearson
from densestudio.core.store import ImageFilter
from densestudio.ml import summary
from densestudio.ml.events import PreparingData
from densestudio.ml.frame_ranges import FramesChecked, checked_subsets, frame_reasons
from densestudio.runtime.frame_checks import PRIORITY
from densestudio.ui.confusion import ConfusionMatrixView
from densestudio.ui.gallery_model import TileOverlay
from densestudio.ui.gallery_view import selected_ids
from densestudio.ui.heatmaps import HeatmapGalleryModel
from densestudio.ui.intervals import ci_range, ci_tip, pct_ci
from densestudio.ui.job_progress import JobProgress
from densestudio.ui.jobs import (
    RunPredictions,
    evaluate_job,
    frame_check_job,
    predict_job,
    review_predictions_job,
)
from densestudio.ui.relabel import RelabelSelectedMixin
from densestudio.ui.review_parts import (
    SUBSETS,
    VIEWS,
    WARN_COLOR,
    ReviewGallery,
    Shown,
    fill_comparison,
    make_run_combo,
    make_table,
    prediction_warnings,
    run_entry,
    table_item,
    too_few,
)
from densestudio.ui.review_signoff import ReviewSignoff
from densestudio.ui.runs_panel import ApprovalState, approval_state, run_title
from densestudio.ui.signoff_dialogs import add_golden_actions
from densestudio.ui.workers import Worker

if TYPE_CHECKING:  # imported when first opened (they pull in the whole window)
    import numpy as np

    from densestudio.core.store import Project
    from densestudio.ml.eval_report import EvalReport
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.gate_view import GateDialog
    from densestudio.ui.operating_point import OperatingPointDialog
    from densestudio.ui.report_dialog import ReportDialog

log = logging.getLogger(__name__)

# The frame-check filter: (text, data); data "" = every image, "*" = failed any check,
# "-" = passed, else one reason.
REASON_FILTERS = (("All frames", ""), ("Unfit frames (any reason)", "*"),
                  *((f"UNSURE: {r}", r) for r in PRIORITY),
                  ("Frames fit to judge", "-"))


class ReviewPanel(ReviewSignoff, RelabelSelectedMixin, QWidget):
    shownChanged = Signal(object)  # Shown
    predictionsReady = Signal(int)  # number of images predicted
    evaluated = Signal(int)  # run id
    exportRequested = Signal(int)  # run id
    runChanged = Signal(object)  # run id or None: the run shown changed
    loaded = Signal()  # the shown run's (and the compared run's) predictions were read
    openInViewer = Signal(object, int)  # the ids shown (in order), the image to open

    def __init__(self, host: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host  # the application (ui.context)
        self.controller: ProjectController | None = None
        self.run: core_runs.RunInfo | None = None
        self.subset = "val"
        self.report: EvalReport | None = None
        self.preds: dict[int, core_runs.PredictionInfo] = {}
        self.unlabeled_preds: dict[int, core_runs.PredictionInfo] = {}
        self.frame_reasons: dict[int, str] = {}  # unlabeled images failing frame checks
        self.other: core_runs.RunInfo | None = None
        self.other_preds: dict[int, core_runs.PredictionInfo] = {}
        self.class_ids: list[int | None] = []  # run class index -> current class id
        self.shown: Shown | None = None
        self.overlay: dict[int, TileOverlay] = {}
        self.op_dialog: OperatingPointDialog | None = None
        self.gate_dialog: GateDialog | None = None
        self.report_dialog: ReportDialog | None = None
        self.approvals = ApprovalState()
        self._loading = False
        self._reading_run = 0  # the newest requests to read predictions (_read_predictions)
        self._reading_other = 0
        self.other_report: EvalReport | None = None
        self._build()

    # ================================================================ construction
    def _build(self) -> None:
        self.run_combo = make_run_combo(self, 28)
        self.subset_combo = QComboBox(self)
        for key, text in SUBSETS:
            self.subset_combo.addItem(text, key)
        self.compare_combo = make_run_combo(self, 16)
        self.predict_button = QPushButton("Predict unlabeled", self)
        self.predict_button.setToolTip("Run this model over the images without a label")
        self.export_button = QPushButton("Export model…", self)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Run", self))
        bar.addWidget(self.run_combo, 2)
        bar.addWidget(self.subset_combo)
        bar.addStretch(1)
        bar.addWidget(self.predict_button)
        self.op_button = QPushButton("OK/NG threshold…", self)
        self.op_button.setToolTip(
            "For inspection: pick the class that means a good part and see missed defects "
            "vs. rejected good parts as the threshold moves; save the threshold with the run")
        bar.addWidget(self.op_button)
        bar.addWidget(self._build_signoff_button())
        bar.addWidget(self.export_button)

        # Left column.
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.evaluate_button = QPushButton("Evaluate now", self)
        self.evaluate_button.hide()
        self.matrix = ConfusionMatrixView(self)
        self.matrix.setMinimumHeight(180)
        caption = QLabel("<small>Rows: true class · columns: predicted class · colour: share "
                         "of the row · click a cell to see its images</small>", self)
        caption.setWordWrap(True)
        self.per_class = make_table(self, ["Class", "Precision %", "Recall %", "F1 %", "Support"])
        for col in (1, 2):
            self.per_class.horizontalHeaderItem(col).setToolTip(  # type: ignore[union-attr]  # the labels made it
                "The rate on these images, then its exact 95 % interval in brackets")
        # Comparing gets a tab of its own (the whole height, every column readable).
        self.compare_table = make_table(self, ["Metric", "This run", "Other run", "Δ"])
        header = self.compare_table.horizontalHeader()
        for col in (1, 2, 3):  # figures always whole; a long metric name elides
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.compare_box = QGroupBox("Comparison", self)
        self.compare_box.setFlat(True)
        QVBoxLayout(self.compare_box).addWidget(self.compare_table)
        self.compare_box.hide()
        self.compare_hint = QLabel("<small>Choose a run to compare this one with: its "
                                   "figures on the same images, side by side.</small>", self)
        self.compare_hint.setWordWrap(True)
        compare_page = QWidget(self)
        compare_layout = QVBoxLayout(compare_page)
        compare_layout.setContentsMargins(4, 4, 4, 4)
        compare_row = QHBoxLayout()
        compare_row.addWidget(QLabel("Compare with", self))
        compare_row.addWidget(self.compare_combo, 1)
        compare_layout.addLayout(compare_row)
        compare_layout.addWidget(self.compare_hint)
        compare_layout.addWidget(self.compare_box, 1)
        self.compare_views = QHBoxLayout()  # the images one run gets right, the other wrong
        compare_layout.addLayout(self.compare_views)
        self.details = QTabWidget(self)
        self.details.addTab(self.per_class, "Per class")
        self.details.addTab(compare_page, "Compare runs")
        matrix_box = QWidget(self)
        matrix_layout = QVBoxLayout(matrix_box)
        matrix_layout.setContentsMargins(0, 0, 0, 0)
        matrix_layout.addWidget(self.matrix, 1)
        matrix_layout.addWidget(caption)
        self.left_split = QSplitter(Qt.Orientation.Vertical, self)  # matrix | tables
        self.left_split.addWidget(matrix_box)
        self.left_split.addWidget(self.details)
        self.left_split.setChildrenCollapsible(False)
        self.left_split.setSizes([400, 400])
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.summary)
        left_layout.addWidget(self.evaluate_button)
        left_layout.addWidget(self.left_split, 1)

        # Right column.
        self.view_buttons: dict[str, QToolButton] = {}
        self.view_group = QButtonGroup(self)
        self.view_group.setExclusive(True)
        views = QHBoxLayout()
        for key, text in VIEWS:
            b = QToolButton(self)
            b.setText(text)
            b.setCheckable(True)
            b.setAutoRaise(False)
            b.clicked.connect(lambda _=False, k=key: self.show_view(k))
            self.view_group.addButton(b)
            self.view_buttons[key] = b
            (self.compare_views if key in ("a_only", "b_only") else views).addWidget(b)
        views.addStretch(1)
        self.reason_combo = QComboBox(self)  # frame checks: show the unfit frames, or hide them
        for text, data in REASON_FILTERS:
            self.reason_combo.addItem(text, data)
        self.reason_combo.setToolTip(
            "Frame checks (Predict unlabeled): frames too dark, overexposed, out of focus, flat "
            "or unlike the training images are UNSURE whatever the model says; show only "
            "them, one reason, or only the frames fit to judge")
        self.reason_combo.currentIndexChanged.connect(self._on_reason_filter)
        views.addWidget(self.reason_combo)
        self.heat_button = QToolButton(self)
        self.heat_button.setText("Heatmaps")
        self.heat_button.setCheckable(True)
        self.heat_button.setToolTip("Lay the model's heatmap (where it finds evidence for the "
                                    "predicted class) over each tile; computed in the "
                                    "background")
        views.addWidget(self.heat_button)
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.warning = QLabel(self)  # what to distrust in the predictions shown
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(f"color: {WARN_COLOR};")
        self.warning.hide()
        self.model = HeatmapGalleryModel(None, self.host.loader, self)
        self.gallery = ReviewGallery(self)
        self.gallery.setModel(self.model)
        self.gallery.set_tile_size(152)
        self.gallery.empty_text = "Open a finished run to review it."
        self.gallery.labelShortcut.connect(self._label_with_shortcut)
        self.gallery.unlabelRequested.connect(lambda: self.relabel_selected(None))
        self.gallery.customContextMenuRequested.connect(self._tile_menu)
        self.gallery.activatedImage.connect(self.open_row)  # double-click, Enter
        self.accept_button = QPushButton("Accept selected predictions", self)
        self.accept_all_button = QPushButton("Accept all with confidence ≥", self)
        self.threshold = QDoubleSpinBox(self)
        self.threshold.setRange(0, 100)
        self.threshold.setDecimals(0)
        self.threshold.setValue(90)
        self.threshold.setSuffix(" %")
        self.qualify = QLabel(self)  # how many predictions reach the threshold
        self.hint = QLabel("<small>Keys 1–9 relabel the selected images; Ctrl+Z undoes."
                           "</small>", self)
        self.hint.setWordWrap(True)  # never what makes the page wider than the window
        actions = QHBoxLayout()
        actions.addWidget(self.hint, 1)
        actions.addWidget(self.accept_button)
        actions.addWidget(self.accept_all_button)
        actions.addWidget(self.threshold)
        actions.addWidget(self.qualify)
        self.progress = JobProgress(self)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(views)
        right_layout.addWidget(self.title)
        right_layout.addWidget(self.warning)
        right_layout.addWidget(self.gallery, 1)
        right_layout.addWidget(self.progress)
        right_layout.addLayout(actions)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([520, 760])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)

        self.run_combo.currentIndexChanged.connect(self._on_run_combo)
        self.subset_combo.currentIndexChanged.connect(self._on_subset_combo)
        self.compare_combo.currentIndexChanged.connect(self._on_compare_combo)
        self.matrix.cellClicked.connect(self.show_cell)
        self.evaluate_button.clicked.connect(self.evaluate)
        self.predict_button.clicked.connect(self.predict_unlabeled)
        self.export_button.clicked.connect(self._export)
        self.op_button.clicked.connect(self.show_operating_point)
        self.heat_button.toggled.connect(lambda _on: self._update_tile_heatmaps())
        self.accept_button.clicked.connect(self.accept_selected)
        self.accept_all_button.clicked.connect(
            lambda: self.accept_above(self.threshold.value() / 100.0))
        self.threshold.valueChanged.connect(lambda _v: self._update_qualify())
        self.progress.cancelRequested.connect(self.cancel)
        self.gallery.selectionModel().selectionChanged.connect(self._update_buttons)
        self._update_buttons()

    def _build_signoff_button(self) -> QToolButton:
        """Sign-off: release gate, approval, validation report, must-pass marks."""
        self.signoff_button = QToolButton(self)
        self.signoff_button.setText("Sign-off")
        self.signoff_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.signoff_button.setToolTip("Release gate against the approved run, approve a run "
                                       "for release, write the validation report, mark "
                                       "must-pass images")
        menu = QMenu(self.signoff_button)
        self.gate_action = menu.addAction("Release Gate…", self.show_gate)
        self.gate_action.setToolTip("Compare this run with the approved run image by image "
                                    "on the test split and every must-pass image")
        self.approve_action = menu.addAction("Approve Run…", self.show_approve)
        self.report_action = menu.addAction("Validation Report…", self.show_report_dialog)
        menu.addSeparator()
        self.mark_golden_action = menu.addAction(
            "Mark Selected as Must-pass", lambda: self._set_golden(True))
        self.unmark_golden_action = menu.addAction(
            "Remove Must-pass Mark of Selected", lambda: self._set_golden(False))
        self.signoff_button.setMenu(menu)
        return self.signoff_button

    # ================================================================ project and runs
    @property
    def project(self) -> Project | None:
        return self.controller.project if self.controller else None

    def set_controller(self, controller: ProjectController | None) -> None:
        if self.controller is not None:
            try:
                self.controller.labelsChanged.disconnect(self._on_labels_changed)
                self.controller.classesChanged.disconnect(self._on_classes_changed)
                self.controller.runDeleted.disconnect(self._on_run_deleted)
            except (RuntimeError, TypeError):
                pass
        for dialog in (self.op_dialog, self.gate_dialog, self.report_dialog):
            if dialog is not None:  # they belong to the project that is closing
                dialog.close()
        self.op_dialog = self.gate_dialog = self.report_dialog = None
        self.controller = controller
        self.model.set_controller(controller)
        self.run = None
        self.other = None
        self.preds, self.unlabeled_preds, self.other_preds = {}, {}, {}
        self.frame_reasons = {}
        self.current_labels: dict[int, int | None] = {}
        if controller is not None:
            controller.labelsChanged.connect(self._on_labels_changed)
            controller.classesChanged.connect(self._on_classes_changed)
            controller.runDeleted.connect(self._on_run_deleted)
        self.refresh_runs()

    def _on_run_deleted(self, _run_id: int) -> None:
        self.refresh_runs()

    def reviewable_runs(self) -> list[core_runs.RunInfo]:
        if self.project is None:
            return []
        return [r for r in core_runs.list_runs(self.project)
                if r.checkpoint_best or core_runs.prediction_count(self.project, r.id)]

    def refresh_runs(self, select: int | None = None, reload: bool = True) -> None:
        """Re-read the list of runs. ``reload=False`` keeps what is shown now (e.g. a cell the
        user is relabeling) when the current run is still there."""
        keep = select if select is not None else (self.run.id if self.run else None)
        infos = self.reviewable_runs()
        self.approvals = approval_state(self.project)
        self._loading = True
        try:
            self.run_combo.clear()
            for info in infos:
                entry = run_entry(info, self.approvals.mark(info.id))
                self.run_combo.addItem(entry, info.id)
                self.run_combo.setItemData(self.run_combo.count() - 1, entry,
                                           Qt.ItemDataRole.ToolTipRole)
            index = self.run_combo.findData(keep) if keep is not None else -1
            if index < 0 and infos:
                index = 0
            self.run_combo.setCurrentIndex(index)
        finally:
            self._loading = False
        run_id = self.run_combo.currentData()
        if not reload and self.run is not None and run_id == self.run.id:
            self._loading = True
            try:
                self._fill_compare()
            finally:
                self._loading = False
            if self.report is not None:
                self.summary.setText(self._header_html(self.report,
                                                       dict(SUBSETS)[self.subset].lower()))
            return
        if run_id is None:
            self._clear("No trained runs yet. Train one in the Train tab." if self.project
                        else "Open a project.")
        else:
            self.set_run(run_id)

    def set_run(self, run_id: int, subset: str | None = None) -> None:
        if self.project is None:
            return
        index = self.run_combo.findData(run_id)
        if index < 0:
            self.refresh_runs(select=run_id)
            index = self.run_combo.findData(run_id)
            if index < 0:
                return
        self._loading = True
        try:
            self.run_combo.setCurrentIndex(index)
            self.run = core_runs.get_run(self.project, run_id)
            if subset is None:
                has_test = core_runs.prediction_count(self.project, run_id, "test") > 0
                subset = "test" if has_test else "val"
            self.subset_combo.setCurrentIndex(self.subset_combo.findData(subset))
            self.subset = subset
            self._fill_compare()
        finally:
            self._loading = False
        self.load()
        self._update_tile_heatmaps()
        self.runChanged.emit(run_id)

    def _fill_compare(self) -> None:
        keep = self.other.id if self.other else None
        self.compare_combo.clear()
        self.compare_combo.addItem("— (no comparison)", None)
        for i in range(self.run_combo.count()):
            run_id = self.run_combo.itemData(i)
            if self.run is not None and run_id != self.run.id:
                self.compare_combo.addItem(self.run_combo.itemText(i), run_id)
        index = self.compare_combo.findData(keep) if keep is not None else 0
        self.compare_combo.setCurrentIndex(max(0, index))
        if self.compare_combo.currentData() is None:
            self.other = None

    def _on_run_combo(self, _index: int) -> None:
        if not self._loading and self.run_combo.currentData() is not None:
            self.set_run(self.run_combo.currentData())

    def _on_subset_combo(self, _index: int) -> None:
        if not self._loading and self.run is not None:
            self.subset = self.subset_combo.currentData()
            self.load()

    def _on_compare_combo(self, _index: int) -> None:
        if self._loading:
            return
        self.set_compare(self.compare_combo.currentData())

    # ================================================================ loading
    def _class_map(self, names: tuple[str, ...]) -> list[int | None]:
        assert self.controller is not None  # callers check for a project
        by_name = {c.name: c.id for c in self.controller.classes()}
        return [by_name.get(n) for n in names]

    def _read_predictions(self, with_run: bool) -> None:
        """Read the stored predictions of the run (``with_run``) and of the compared run in a
        job; the newest request for each wins, ``loaded`` says when they are shown."""
        assert self.project is not None and self.run is not None
        wanted = []
        if with_run:
            self._reading_run += 1
            wanted.append((self.run.id, self.run.class_names, True))
        if self.other is not None:
            self._reading_other += 1
            wanted.append((self.other.id, self.other.class_names, False))
        request = (self._reading_run if with_run else None, self.run.id,
                   self._reading_other if self.other is not None else None,
                   self.other.id if self.other is not None else None)
        worker = Worker(review_predictions_job, self.project, self.subset, wanted, parent=self)
        worker.on_result(lambda found: self._on_read(request, found))
        self.host.jobs.start(worker, error_title="Cannot read the predictions")

    def _on_read(self, request: tuple[int | None, int, int | None, int | None],
                 found: list[RunPredictions]) -> None:
        reading_run, run_id, reading_other, other_id = request
        now_run = self.run.id if self.run is not None else None
        now_other = self.other.id if self.other is not None else None
        mine = reading_run == self._reading_run and run_id == now_run
        theirs = reading_other == self._reading_other and other_id == now_other
        if mine:
            got = found[0]
            self.preds = {p.image_id: p for p in got.preds}
            self.unlabeled_preds = {p.image_id: p for p in got.unlabeled}
            self.report = got.report
            self.frame_reasons = dict(got.frame_reasons)
            self.current_labels = dict(got.current_labels)
        if theirs:
            got = found[-1]
            self.other_preds = {p.image_id: p for p in got.preds}
            self.other_report = got.report
        if self.other is not None and (mine or theirs):
            self._show_other(self.other_report)
        if mine:
            self._show_loaded()
        elif theirs:
            self.details.setCurrentIndex(1)  # show the comparison just asked for
            self._update_buttons()
        if mine or theirs:
            self.loaded.emit()

    def load(self) -> None:
        """Read the run's stored predictions for the subset (in a job), then show the
        report."""
        if self.run is None or self.project is None:
            return
        self.class_ids = self._class_map(self.run.class_names)
        self.preds, self.unlabeled_preds, self.report = {}, {}, None
        self.summary.setText("Reading the predictions…")
        self._read_predictions(with_run=True)

    def _show_loaded(self) -> None:
        self._show_report()
        self._update_buttons()
        if self.report is not None:
            self.show_view("misclassified")
        elif self.unlabeled_preds:
            self.show_view("unlabeled")
        else:
            self._show_ids([], Shown("none", ""))

    def _show_report(self) -> None:
        rep = self.report
        name = dict(SUBSETS)[self.subset].lower()
        if rep is None:
            self.matrix.set_matrix([], [])
            self.per_class.setRowCount(0)
            status = self.run.status if self.run else ""
            can = self.run is not None and bool(self.run.checkpoint_best)
            self.summary.setText(
                f"<b>{run_title(self.run) if self.run else 'This run'}</b> has no stored "
                f"predictions for the {name} set"
                + (" (the run did not finish)." if status != "finished" else ".")
                + (" Evaluate it to see the confusion matrix." if can else ""))
            self.evaluate_button.setVisible(can)
            self.gallery.empty_text = "No predictions to show."
            return
        self.evaluate_button.hide()
        self.summary.setText(self._header_html(rep, name))
        self.matrix.set_matrix(rep.class_names, rep.confusion)
        self.per_class.setRowCount(len(rep.per_class))
        for row, c in enumerate(rep.per_class):
            precision, recall = rep.precision_interval(row), rep.recall_interval(row)
            values = (c.name, pct_ci(precision, unit=False), pct_ci(recall, unit=False),
                      f"{c.f1 * 100:.1f}", f"{c.support:,}")
            tips = (c.name, ci_tip(precision, f"precision of {c.name}"),
                    ci_tip(recall, f"recall of {c.name}"), "", "")
            for col, text in enumerate(values):
                item = table_item(text, right=col > 0)
                if tips[col]:
                    item.setToolTip(tips[col])
                self.per_class.setItem(row, col, item)

    def _header_html(self, rep: EvalReport, name: str) -> str:
        """Balanced accuracy and the worst class first (accuracy hides a class that is never
        found); a warning for classes too small to judge. With an OK/NG point, its
        decisions lead."""
        assert self.run is not None  # ``rep`` is one of its reports
        s = summary.summarize({}, rep, self.subset)  # the figures of what is shown
        loss = f" · loss {rep.loss:.3f}" if rep.loss is not None else ""
        cfg = self.run.config
        nb = "&nbsp;"
        bal = rep.balanced_accuracy_interval()
        decided = self._decision_html()  # OK/NG first; argmax figures follow
        lines = [
            f"<b>{html_text(run_title(self.run))}</b> <small>({cfg.get('arch', '?')},{nb}"
            f"{cfg.get('img_size', '?')}{nb}px)</small>" + self._approval_badge(),
            *([decided, "<small>By the most likely class:</small>"] if decided else []),
            f"<span style='font-size:large'><b>{pct(s.balanced_accuracy)}</b> balanced "
            f"accuracy</span> <small>({ci_range(bal).replace(' ', nb)})</small>",
        ]
        if s.worst_recall is not None:
            worst = (rep.recall_interval(rep.class_names.index(s.worst_class))
                     if s.worst_class in rep.class_names else None)
            bracket = f" <small>({ci_range(worst).replace(' ', nb)})</small>" if worst else ""
            lines.append(f"worst class <b>{html_text(s.worst_class or '?')} {pct(s.worst_recall)}"
                         f"</b> recall{bracket}")
        both = summary.side_by_side(self.run.metrics, self.subset, rep.balanced_accuracy)
        if both:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {html_text(both)}</span>"
                         if "points apart" in both else f"<small>{html_text(both)}</small>")
        lines.append(f"accuracy {pct_ci(rep.accuracy_interval()).replace(' ', nb)} · "
                     f"macro-F1 {pct(rep.macro_f1)}"
                     f" <small>· {rep.n:,} {name} images{loss} · brackets: 95 % "
                     "intervals</small>")
        few = summary.few_image_classes(rep.per_class)
        if few:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {html_text(too_few(few, rep, name))}"
                         "</span>")
        recount = self._recount()
        if recount:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {recount}</span>")
        leak = self._leak_warning()
        if leak:
            lines.append(f"<span style='color:{WARN_COLOR}'>⚠ {html_text(leak)}</span>")
        return "<br>".join(lines)

    def _recount(self) -> str:
        """After relabeling: the figures with the labels as they are now (the matrix, the
        table and the views keep the labels of the run's time, and say so)."""
        from densestudio.ml.eval_report import build_report

        if self.run is None or self.report is None:
            return ""
        index_of = {cid: k for k, cid in enumerate(self.class_ids) if cid is not None}
        changed, now_preds = 0, []
        for p in self.preds.values():
            if p.true_index is None:
                continue
            then = self.class_ids[p.true_index] if p.true_index < len(self.class_ids) else None
            now = self.current_labels.get(p.image_id, then)
            if now == then:
                now_preds.append(p)
                continue
            changed += 1
            if now is not None and now in index_of:  # unlabeled or a new class: left out
                now_preds.append(replace(p, true_index=index_of[now]))
        if not changed:
            return ""
        rep = build_report(self.run.id, self.subset, self.run.class_names, now_preds)
        wrong = sum(p.pred_index != p.true_index for p in now_preds)
        return (f"{changed:,} image{'s' if changed != 1 else ''} relabeled since the run. "
                f"With the labels as they are now: <b>{pct(rep.balanced_accuracy)}</b> "
                f"balanced accuracy, accuracy {pct(rep.accuracy)}, {wrong:,} misclassified "
                f"of {rep.n:,}. The matrix, the table and the views below count the labels "
                "as they were at the run's time.")

    def _leak_warning(self) -> str:
        """Near-identical images across splits, model-made test labels (as of now)."""
        from densestudio.core.splits import leak_warning
        from densestudio.core.store import split_leaks

        assert self.project is not None  # a report is shown
        leaks, model_in_test = split_leaks(self.project)
        return leak_warning(leaks, model_in_test if self.subset == "test" else 0)

    def _decision_html(self) -> str:
        """What the run's saved OK/NG point decides on the shown subset, over all of it:
        defects passed as good, good parts rejected, sent to a person (empty without a
        point), and Train's note when validation could not show its target."""
        from densestudio.ml import operating_point as op

        assert self.run is not None and self.project is not None  # a report is shown
        point = op.load_operating_point(self.project, self.run.id)
        record = op.picked_record(self.project, self.run.id)
        note = (f"<span style='color:{WARN_COLOR}'>⚠ {html_text(str(record['message']))}"
                "</span>" if record and not record.get("shown") else "")
        if point is None or point.good_class not in self.run.class_names:
            return note
        good = list(self.run.class_names).index(point.good_class)
        labeled = [p for p in self.preds.values()
                   if p.true_index is not None and good < len(p.probs)]
        if not labeled:
            return note
        c = op.decision_counts(np.array([float(p.probs[good]) for p in labeled]),
                               np.array([p.true_index == good for p in labeled]), point)
        color = "#c62828" if c.passed else "#1b7f3b"
        rejected = clopper_pearson(c.rejected, c.good)
        return (
            f"<span style='font-size:large;color:{color}'>Defects passed as good: "
            f"<b>{c.passed} of {c.defects}</b></span> ({pct(c.passed / max(c.defects, 1))}, "
            f"at most {c.passed_upper * 100:.1f} % at 95 %) <small>· OK when "
            f"P({html_text(point.good_class)}) ≥ {point.threshold:.3g}</small><br>"
            f"good parts rejected <b>{c.rejected} of {c.good}</b> ({pct_ci(rejected)}) · "
            f"sent to a person <b>{c.unsure} of {c.n}</b> ({pct(c.unsure / max(c.n, 1))})"
            + (f"<br>{note}" if note else ""))

    def _clear(self, text: str) -> None:
        self.run, self.report, self.other = None, None, None
        self.preds, self.unlabeled_preds, self.other_preds = {}, {}, {}
        self.frame_reasons = {}
        self.summary.setText(text)
        self.evaluate_button.hide()
        self.matrix.set_matrix([], [])
        self.per_class.setRowCount(0)
        self.compare_box.hide()
        self.compare_hint.show()
        self.compare_combo.clear()
        self.gallery.empty_text = text
        self._show_ids([], Shown("none", ""))
        self._update_buttons()
        self._update_tile_heatmaps()
        self.runChanged.emit(None)

    # ================================================================ views
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
            still = set(self.project.image_ids(ImageFilter(unlabeled=True)))
            preds = [p for p in self.unlabeled_preds.values() if p.image_id in still]
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
                or self.subset in checked_subsets(self.project, self.run.id)):
            return None
        run_id, kind = self.run.id, self.shown.kind if self.shown else "misclassified"
        worker = Worker(frame_check_job, self.project, run_id, self.subset, parent=self)
        worker.finished.connect(lambda _found: self._on_frames_checked(run_id, kind))
        self._run_worker(worker, "Checking the frames (too dark, out of focus, …)…")
        return worker

    def _on_frames_checked(self, run_id: int, kind: str) -> None:
        if self.run is None or self.run.id != run_id or self.project is None:
            return
        self.frame_reasons = frame_reasons(self.project, run_id)
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

    def _prediction(self, image_id: int) -> core_runs.PredictionInfo | None:
        if self.shown is not None and self.shown.kind == "unlabeled":
            return self.unlabeled_preds.get(image_id) or self.preds.get(image_id)
        return self.preds.get(image_id) or self.unlabeled_preds.get(image_id)

    def _overlay_for(self, ids: list[int]) -> dict[int, TileOverlay]:
        if not ids or self.project is None:
            return {}
        current = {i.id: i.label_id for i in self.project.images_by_ids(ids)}
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
        from densestudio.ml import operating_point as op

        if self.run is None or self.project is None:
            return None
        point = op.load_operating_point(self.project, self.run.id)
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
        ours = [i for i in image_ids if i in self.preds]
        if ours and self.project is not None and self.report is not None:
            self.current_labels.update(
                (i.id, i.label_id) for i in self.project.images_by_ids(ours))
            self.summary.setText(self._header_html(self.report,
                                                   dict(SUBSETS)[self.subset].lower()))
        shown = [i for i in image_ids if i in self.overlay]
        if not shown:
            return
        self.overlay.update(self._overlay_for(shown))
        self.model.set_overlay(self.overlay)

    def _on_classes_changed(self) -> None:
        if self.run is not None and self.controller is not None:
            self.class_ids = self._class_map(self.run.class_names)
            if self.model.ids:
                self.overlay = self._overlay_for(self.model.ids)
                self.model.set_overlay(self.overlay)

    # ================================================================ compare
    def set_compare(self, run_id: int | None) -> None:
        if run_id is not None and self.compare_combo.currentData() != run_id:
            index = self.compare_combo.findData(run_id)
            if index >= 0:
                self._loading = True
                self.compare_combo.setCurrentIndex(index)
                self._loading = False
        if run_id is None or self.project is None:
            self.other, self.other_preds, self.other_report = None, {}, None
            self.compare_box.hide()
            self.compare_hint.show()
            self._update_buttons()
            return
        self.other = core_runs.get_run(self.project, run_id)
        if self.run is not None:
            self._read_predictions(with_run=False)

    def _show_other(self, other: EvalReport | None) -> None:
        """The comparison table of the shown run's report and ``other``'s."""
        assert self.other is not None and self.run is not None
        fill_comparison(self.compare_table, self.run, self.report, self.other, other,
                        self.compare_counts())
        self.compare_box.setTitle(f"Comparison on the {dict(SUBSETS)[self.subset].lower()} set")
        self.compare_box.show()
        self.compare_hint.hide()

    @staticmethod
    def _right(p: core_runs.PredictionInfo | None) -> bool | None:
        if p is None or p.true_index is None:
            return None
        return p.pred_index == p.true_index

    def compare_ids(self, kind: str) -> list[int]:
        """Images (in both runs' subset) that only this run ("a_only") or only the other
        run ("b_only") gets right; most confident first."""
        if self.other is None:
            return []
        out = []
        for image_id, p in self.preds.items():
            q = self.other_preds.get(image_id)
            ra, rb = self._right(p), self._right(q)
            if ra is None or rb is None:
                continue
            assert q is not None  # else rb is None
            if (kind == "a_only" and ra and not rb) or (kind == "b_only" and rb and not ra):
                out.append((-(p.confidence if kind == "b_only" else q.confidence), image_id))
        return [i for _, i in sorted(out)]

    def compare_counts(self) -> tuple[int, int]:
        return len(self.compare_ids("a_only")), len(self.compare_ids("b_only"))

    # ================================================================ labeling
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
        ids = self._menu_selection(pos)
        if not ids:
            return
        menu = QMenu(self)
        header = menu.addAction(f"{len(ids):,} image{'s' if len(ids) != 1 else ''} selected")
        header.setEnabled(False)
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

    # ================================================================ workers
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

    # ================================================================ heatmaps, OK/NG
    def _update_tile_heatmaps(self) -> None:
        """Heatmaps on the tiles when the toggle is on and the run has a model."""
        service = self.host.heatmaps
        on = (self.heat_button.isChecked() and self.run is not None
              and bool(self.run.checkpoint_best) and service is not None)
        self.model.set_heatmaps(service, self.run.id if on and self.run is not None else None)

    def _update_buttons(self, *_args: object) -> None:
        has_run = self.run is not None and bool(self.run.checkpoint_best)
        self.op_button.setEnabled(self.run is not None and (
            self.report is not None or bool(self.preds)))
        busy = self._busy()
        self.predict_button.setEnabled(has_run and not busy)
        self.export_button.setEnabled(has_run)
        finished = self.run is not None and self.run.status == "finished"
        self.signoff_button.setEnabled(self.run is not None)
        for action in (self.gate_action, self.approve_action, self.report_action):
            action.setEnabled(finished)
        selected = bool(self.model.ids) and self.gallery.selectionModel().hasSelection()
        self.mark_golden_action.setEnabled(selected)
        self.unmark_golden_action.setEnabled(selected)
        self.evaluate_button.setEnabled(not busy)
        unlabeled_view = self.shown is not None and self.shown.kind == "unlabeled"
        self.accept_button.setEnabled(unlabeled_view and bool(self.model.ids))
        self.accept_all_button.setEnabled(unlabeled_view and bool(self.model.ids))
        self.threshold.setEnabled(unlabeled_view)
        self._update_qualify()
        has_other = self.other is not None
        for key in ("a_only", "b_only"):
            self.view_buttons[key].setEnabled(has_other)
        self.view_buttons["misclassified"].setEnabled(self.report is not None)
        self.view_buttons["top_losses"].setEnabled(self.report is not None)
        self.view_buttons["unlabeled"].setEnabled(self.run is not None)
