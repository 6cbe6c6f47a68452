"""The Review tab's sign-off actions: the OK/NG operating point window, must-pass marks,
the release gate, approving a run and the validation report. A mixin of ``ReviewPanel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from densestudio.core import runs as core_runs
from densestudio.core.formatting import html_text
from densestudio.ui.runs_panel import ApprovalState, local_time
from densestudio.ui.signoff_dialogs import APPROVED_COLOR, ApproveDialog

if TYPE_CHECKING:
    from densestudio.core.signoff import ApprovalInfo
    from densestudio.core.store import Project
    from densestudio.ml.gate import GateResult
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.gallery_model import TileOverlay
    from densestudio.ui.gate_view import GateDialog
    from densestudio.ui.heatmaps import HeatmapGalleryModel
    from densestudio.ui.operating_point import OperatingPointDialog
    from densestudio.ui.report_dialog import ReportDialog

    _Panel = QWidget  # a mixin of the Review tab: typed as a widget, a plain class at run time
else:
    _Panel = object


class ReviewSignoff(_Panel):
    """Sign-off actions of ``ReviewPanel``."""

    if TYPE_CHECKING:  # what they use of the panel
        host: AppContext
        controller: ProjectController | None
        run: core_runs.RunInfo | None
        subset: str
        approvals: ApprovalState
        model: HeatmapGalleryModel
        overlay: dict[int, TileOverlay]
        op_dialog: OperatingPointDialog | None
        gate_dialog: GateDialog | None
        report_dialog: ReportDialog | None

        @property
        def project(self) -> Project | None: ...
        def selected_ids(self) -> list[int]: ...
        def refresh_runs(self, select: int | None = None, reload: bool = True) -> None: ...
        def _show_report(self) -> None: ...
        def _overlay_for(self, ids: list[int]) -> dict[int, TileOverlay]: ...

    def show_operating_point(self) -> OperatingPointDialog | None:
        from densestudio.ui.operating_point import OperatingPointDialog

        if self.run is None or self.project is None:
            return None
        if self.op_dialog is not None:
            self.op_dialog.close()
        dialog = OperatingPointDialog(self.project, self.run.id, self, subset=self.subset)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.panel.saved.connect(self._on_operating_point_saved)
        dialog.destroyed.connect(lambda *_: setattr(self, "op_dialog", None)
                                 if self.op_dialog is dialog else None)
        self.op_dialog = dialog
        dialog.show()
        return dialog

    def _on_operating_point_saved(self, run_id: int, _point: object) -> None:
        if self.run is None or run_id != self.run.id:
            return
        self._show_report()  # the header says how many defects the threshold passes
        if self.model.ids:
            self.overlay = self._overlay_for(self.model.ids)
            self.model.set_overlay(self.overlay)

    # ================================================================ sign-off
    def _approval_badge(self) -> str:
        """"✓ approved for release" beside the run's title, or which run is."""
        state = self.approvals
        if self.run is None or state.current is None:
            return ""
        current = state.current
        if self.run.id == current.run_id:
            return (f" <b style='color:{APPROVED_COLOR}'>✓ approved for release</b> "
                    f"<small>(by {html_text(current.approved_by)}, "
                    f"{local_time(current.approved_at)})</small>")
        what = "approved earlier" if self.run.id in state.by_run else "not approved"
        return (f" <small style='color:gray'>· {what}; the approved run is "
                f"#{current.run_id}</small>")

    def _set_golden(self, marked: bool) -> int:
        """Mark (or unmark) the selected tiles as must-pass."""
        from densestudio.core import signoff

        ids = self.selected_ids()
        if not ids or self.project is None:
            return 0
        if marked:
            n = signoff.add_golden(self.project, ids)
            message = f"Marked {n:,} image{'s' if n != 1 else ''} as must-pass."
        else:
            n = signoff.remove_golden(self.project, ids)
            message = f"Removed the must-pass mark of {n:,} image{'s' if n != 1 else ''}."
        if self.controller is not None:
            self.controller.golden_changed(message)
        return n

    def show_gate(self, against: int | None = None) -> GateDialog | None:
        """The release gate for the run shown (against the approved run by default)."""
        from densestudio.ui.gate_view import GateDialog

        if self.run is None or self.project is None:
            return None
        if self.gate_dialog is not None:
            self.gate_dialog.close()
        dialog = GateDialog(self.host, self.run.id, against, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.approveRequested.connect(self.show_approve)
        dialog.destroyed.connect(lambda *_: setattr(self, "gate_dialog", None)
                                 if self.gate_dialog is dialog else None)
        self.gate_dialog = dialog
        dialog.show()
        return dialog

    def show_approve(self, run_id: int | None = None,
                     gate: GateResult | None = None) -> ApproveDialog | None:
        """Approve a run (default: the one shown) for release."""
        if self.project is None:
            return None
        run_id = run_id if run_id is not None else (self.run.id if self.run else None)
        dialog = ApproveDialog(self.project, run_id, gate, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.approved.connect(self._on_approved)
        dialog.open()
        return dialog

    def _on_approved(self, info: ApprovalInfo) -> None:
        self.refresh_runs(reload=False)
        if self.gate_dialog is not None:
            self.gate_dialog.refresh_runs()
        self.host.status(
            f"Run #{info.run_id} is approved for release (by {info.approved_by}).", 8000)
        if self.controller is not None:
            self.controller.approvals_changed()

    def show_report_dialog(self) -> ReportDialog | None:
        """Write the validation report of the run shown (or the newest finished run)."""
        from densestudio.ui.report_dialog import ReportDialog

        if self.project is None:
            return None
        run_id = self.run.id if self.run is not None else next(
            (r.id for r in core_runs.list_runs(self.project) if r.status == "finished"), None)
        if run_id is None:
            self.host.show_error("No run to report on", "Train a run first (Train tab).")
            return None
        if self.report_dialog is not None:
            self.report_dialog.close()
        dialog = ReportDialog(self.host, run_id, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda *_: setattr(self, "report_dialog", None)
                                 if self.report_dialog is dialog else None)
        self.report_dialog = dialog
        dialog.show()
        return dialog
