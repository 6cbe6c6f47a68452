"""The Review tab: what a run gets right and wrong, and fixing labels from there.

Left: the run and subset (validation / test), a summary led by balanced accuracy and the
worst class's recall (``ml.summary``; accuracy after them), warnings for classes too small to
judge, the clickable confusion matrix, and tabs with per-class precision / recall / F1 /
support and the comparison with a second run. Right: a gallery of the images behind what
was clicked (a matrix cell sorted by confidence, all misclassified, top losses, predictions
for unlabeled images, or the images one run gets right and the other wrong) with the true
class, the predicted class and the confidence on each tile. Keys 1-9 relabel the selected
tiles (undo with Ctrl+Z); tiles whose label changed since the run are marked "relabeled".

All numbers come from predictions stored in the project (``core.runs``). Showing a run queries
nothing on the GUI thread (only user actions do: accepting predictions checks the labels it
would overwrite, the tile menu reads the must-pass marks): the run list, the predictions
with what goes with them and labels after a change are read in jobs (``ui.jobs``);
evaluating a run, predicting unlabeled images and exporting run in worker threads too.
This module builds the tab and reads; its parts are mixins on ``ui.review_base`` (header,
views, tiles, compare, jobs, sign-off).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.runtime.frame_checks import PRIORITY
from densestudio.ui.confusion import ConfusionMatrixView
from densestudio.ui.gallery_model import TileOverlay
from densestudio.ui.heatmaps import HeatmapGalleryModel
from densestudio.ui.job_progress import JobProgress
from densestudio.ui.jobs import (
    ReviewRuns,
    RunPredictions,
    review_predictions_job,
    review_runs_job,
)
from densestudio.ui.relabel import RelabelSelectedMixin
from densestudio.ui.review_compare import ReviewCompare
from densestudio.ui.review_header import ReviewHeader
from densestudio.ui.review_jobs import ReviewJobs
from densestudio.ui.review_parts import (
    SUBSETS,
    VIEWS,
    WARN_COLOR,
    ReviewGallery,
    Shown,
    make_run_combo,
    make_table,
    run_entry,
)
from densestudio.ui.review_signoff import ReviewSignoff
from densestudio.ui.review_tiles import ReviewTiles
from densestudio.ui.review_views import ReviewViews
from densestudio.ui.runs_panel import ApprovalState
from densestudio.ui.workers import Worker

if TYPE_CHECKING:  # imported when first opened (they pull in the whole window)

    from densestudio.core.store import Project
    from densestudio.ml.eval_report import EvalReport
    from densestudio.runtime.operating_point import OperatingPoint
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


class ReviewPanel(ReviewHeader, ReviewViews, ReviewTiles, ReviewCompare, ReviewJobs, ReviewSignoff,
                  RelabelSelectedMixin, QWidget):
    shownChanged = Signal(object)  # Shown
    predictionsReady = Signal(int)  # number of images predicted
    evaluated = Signal(int)  # run id
    exportRequested = Signal(int)  # run id
    runChanged = Signal(object)  # run id or None: the run shown changed
    loaded = Signal()  # the shown run's (and the compared run's) predictions were read
    openInViewer = Signal(object, int)  # the ids shown (in order), the image to open
    runsRead = Signal()  # the run list was read and shown (refresh_runs)
    labelsRead = Signal()  # new labels of predicted images were read (after labelsChanged)

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
        self.current_labels: dict[int, int | None] = {}  # of the predicted images, as of now
        self.point: OperatingPoint | None = None  # the run's OK/NG point (read with preds)
        self.picked: dict | None = None  # how Train picked it
        self.leak = ""  # near-identical images across splits (read with the predictions)
        self.frames_checked = False  # the subset's frames were checked (the filter needs it)
        self._labels_asked: dict[int, int] = {}  # image id -> newest labels_job asking for it
        self._labels_seq = 0
        self._runs: dict[int, core_runs.RunInfo] = {}  # listed, as last read (review_runs_job)
        self._test_counts: dict[int, int] = {}
        self._listing = 0  # the newest request to read the run list
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
        self.model.set_controller(controller, query=False)
        self.run = None
        self.other = None
        self.preds, self.unlabeled_preds, self.other_preds = {}, {}, {}
        self.frame_reasons = {}
        self.current_labels, self._labels_asked = {}, {}
        if controller is not None:
            controller.labelsChanged.connect(self._on_labels_changed)
            controller.classesChanged.connect(self._on_classes_changed)
            controller.runDeleted.connect(self._on_run_deleted)
        self.refresh_runs()

    def _on_run_deleted(self, _run_id: int) -> None:
        self.refresh_runs()

    def reviewable_runs(self) -> list[core_runs.RunInfo]:
        """The runs listed (as last read)."""
        return list(self._runs.values())

    def refresh_runs(self, select: int | None = None, reload: bool = True) -> None:
        """Re-read the list of runs (in a job; ``runsRead`` when shown). ``reload=False``
        keeps what is shown now (e.g. a cell the user is relabeling) when the current run is
        still there."""
        self._listing += 1
        listing = self._listing
        if self.project is None:
            self._on_runs_read(listing, select, reload, ReviewRuns((), {}, (), None))
            return
        worker = Worker(review_runs_job, self.project, parent=self)
        worker.on_result(lambda runs: self._on_runs_read(listing, select, reload, runs))
        self.host.jobs.start(worker, error_title="Cannot read the runs")

    def _on_runs_read(self, listing: int, select: int | None, reload: bool,
                      read: ReviewRuns) -> None:
        if listing != self._listing:
            return  # a newer request follows
        keep = select if select is not None else (self.run.id if self.run else None)
        infos = list(read.runs)
        self._runs = {r.id: r for r in infos}
        self._test_counts = dict(read.test_counts)
        self.approvals = ApprovalState(read.latest_approval,
                                       {a.run_id: a for a in read.approvals})
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
        elif run_id is None:
            self._clear("No trained runs yet. Train one in the Train tab." if self.project
                        else "Open a project.")
        else:
            self.set_run(run_id)
        self.runsRead.emit()

    def listed_runs(self) -> list[core_runs.RunInfo]:
        """The runs as last read (newest first; ``runsRead`` says when it changes): every
        run with a checkpoint or predictions. For the window, which must not query them on
        the GUI thread."""
        return list(self._runs.values())

    def set_run(self, run_id: int, subset: str | None = None) -> None:
        if self.project is None:
            return
        index = self.run_combo.findData(run_id)
        if index < 0 or run_id not in self._runs:
            self.refresh_runs(select=run_id)  # then shown, if it is listed
            return
        self._loading = True
        try:
            self.run_combo.setCurrentIndex(index)
            self.run = self._runs[run_id]
            if subset is None:
                has_test = self._test_counts.get(run_id, 0) > 0
                subset = "test" if has_test else "val"
            self.subset_combo.setCurrentIndex(self.subset_combo.findData(subset))
            self.subset = subset
            self._fill_compare()
        finally:
            self._loading = False
        self.load()
        self._update_tile_heatmaps()
        self.runChanged.emit(run_id)

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
            self.point, self.picked, self.leak = got.point, got.picked, got.leak
            self.frames_checked = got.frames_checked
            self.run = got.run or self.run  # as it is now (the list may be older)
        if theirs:
            got = found[-1]
            self.other_preds = {p.image_id: p for p in got.preds}
            self.other_report = got.report
            self.other = got.run or self.other
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
        self.frames_checked = False  # (until read for this subset)
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

    def _clear(self, text: str) -> None:
        self.run, self.report, self.other = None, None, None
        self.preds, self.unlabeled_preds, self.other_preds = {}, {}, {}
        self.frame_reasons, self.frames_checked = {}, False
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

    # ================================================================ workers

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
