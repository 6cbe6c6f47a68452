"""What the Review tab's modules know of the panel: its state and widgets, typed once.

``ReviewPanel`` (ui.review_panel) is assembled from mixins, one module per part (the header,
the views, the tiles, the comparison, the jobs, the sign-off); each mixin derives from
``ReviewBase`` so mypy checks it against these declarations. At run time it is a plain class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from densestudio.ui.mixins import PanelMixin

if TYPE_CHECKING:
    from PySide6.QtCore import QPoint, SignalInstance
    from PySide6.QtWidgets import (
        QButtonGroup,
        QComboBox,
        QDoubleSpinBox,
        QGroupBox,
        QLabel,
        QMenu,
        QPushButton,
        QTableWidget,
        QTabWidget,
        QToolButton,
    )

    from densestudio.core import runs as core_runs
    from densestudio.core.store import Project
    from densestudio.ml.eval_report import EvalReport
    from densestudio.runtime.operating_point import OperatingPoint
    from densestudio.ui.confusion import ConfusionMatrixView
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.gallery_model import TileOverlay
    from densestudio.ui.gallery_view import GalleryView
    from densestudio.ui.gate_view import GateDialog
    from densestudio.ui.heatmaps import HeatmapGalleryModel
    from densestudio.ui.job_progress import JobProgress
    from densestudio.ui.operating_point import OperatingPointDialog
    from densestudio.ui.report_dialog import ReportDialog
    from densestudio.ui.review_parts import Shown
    from densestudio.ui.runs_panel import ApprovalState
    from densestudio.ui.workers import Worker


class ReviewBase(PanelMixin):
    """The Review panel as its parts see it."""

    if TYPE_CHECKING:
        shownChanged: SignalInstance
        predictionsReady: SignalInstance
        evaluated: SignalInstance
        exportRequested: SignalInstance
        openInViewer: SignalInstance
        labelsRead: SignalInstance
        host: AppContext
        controller: ProjectController | None
        run: core_runs.RunInfo | None
        subset: str
        report: EvalReport | None
        preds: dict[int, core_runs.PredictionInfo]
        unlabeled_preds: dict[int, core_runs.PredictionInfo]
        frame_reasons: dict[int, str]
        current_labels: dict[int, int | None]
        point: OperatingPoint | None
        picked: dict | None
        leak: str
        frames_checked: bool
        _labels_asked: dict[int, int]
        _labels_seq: int
        _runs: dict[int, core_runs.RunInfo]
        other: core_runs.RunInfo | None
        other_preds: dict[int, core_runs.PredictionInfo]
        other_report: EvalReport | None
        class_ids: list[int | None]
        shown: Shown | None
        overlay: dict[int, TileOverlay]
        approvals: ApprovalState
        op_dialog: OperatingPointDialog | None
        gate_dialog: GateDialog | None
        report_dialog: ReportDialog | None
        _loading: bool
        # widgets
        run_combo: QComboBox
        compare_combo: QComboBox
        compare_box: QGroupBox
        compare_hint: QLabel
        compare_table: QTableWidget
        details: QTabWidget
        summary: QLabel
        evaluate_button: QPushButton
        matrix: ConfusionMatrixView
        per_class: QTableWidget
        view_buttons: dict[str, QToolButton]
        view_group: QButtonGroup
        reason_combo: QComboBox
        title: QLabel
        warning: QLabel
        model: HeatmapGalleryModel
        gallery: GalleryView
        threshold: QDoubleSpinBox
        qualify: QLabel
        progress: JobProgress
        signoff_button: QToolButton

        @property
        def project(self) -> Project | None: ...
        @property
        def worker(self) -> Worker | None: ...
        def refresh_runs(self, select: int | None = None, reload: bool = True) -> None: ...
        def _read_predictions(self, with_run: bool) -> None: ...
        def _update_buttons(self, *_args: object) -> None: ...
        def _show_report(self) -> None: ...
        def _header_html(self, rep: EvalReport, name: str) -> str: ...
        def _approval_badge(self) -> str: ...
        def _class_map(self, names: tuple[str, ...]) -> list[int | None]: ...
        def show_view(self, kind: str) -> list[int]: ...
        def _show_ids(self, ids: list[int], shown: Shown) -> None: ...
        def _overlay_for(self, ids: list[int]) -> dict[int, TileOverlay]: ...
        def selected_ids(self) -> list[int]: ...
        def open_row(self, row: int) -> None: ...
        def accept_selected(self) -> int: ...
        def compare_ids(self, kind: str) -> list[int]: ...
        def compare_counts(self) -> tuple[int, int]: ...
        def _busy(self) -> bool: ...
        def _run_worker(self, worker: Worker, text: str) -> None: ...
        def show_gate(self, against: int | None = None) -> GateDialog | None: ...
        def show_report_dialog(self) -> ReportDialog | None: ...
        def _set_golden(self, marked: bool) -> int: ...
        def _menu_selection(self, pos: QPoint) -> list[int]: ...
        def _selection_menu(self, pos: QPoint) -> tuple[QMenu, list[int]] | None: ...
        def _add_relabel_actions(self, menu: QMenu, remove_label: bool) -> None: ...
