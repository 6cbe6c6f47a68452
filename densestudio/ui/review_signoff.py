"""The Review tab's sign-off actions: the Sign-off button and its menu, the OK/NG operating
point window, must-pass marks, the release gate, approving a run and the validation report.
A mixin of ``ReviewPanel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu, QToolButton

from densestudio.core.formatting import html_text
from densestudio.ui.context import one_dialog
from densestudio.ui.review_base import ReviewBase
from densestudio.ui.runs_panel import local_time
from densestudio.ui.signoff_dialogs import APPROVED_COLOR, ApproveDialog

if TYPE_CHECKING:
    from densestudio.core.signoff import ApprovalInfo
    from densestudio.ml.gate import GateResult
    from densestudio.runtime.operating_point import OperatingPoint
    from densestudio.ui.gate_view import GateDialog
    from densestudio.ui.operating_point import OperatingPointDialog
    from densestudio.ui.report_dialog import ReportDialog


class ReviewSignoff(ReviewBase):
    """Sign-off actions of ``ReviewPanel``."""

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

    def show_operating_point(self) -> OperatingPointDialog | None:
        from densestudio.ui.operating_point import OperatingPointDialog

        if self.run is None or self.project is None:
            return None
        project, run_id = self.project, self.run.id
        dialog = one_dialog(self, "op_dialog", lambda: OperatingPointDialog(
            project, run_id, self, subset=self.subset))
        dialog.panel.saved.connect(self._on_operating_point_saved)
        dialog.show()
        return dialog

    def _on_operating_point_saved(self, run_id: int, point: OperatingPoint | None) -> None:
        if self.run is None or run_id != self.run.id:
            return
        self.point = point  # (None: removed)
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
        run_id = self.run.id
        dialog = one_dialog(self, "gate_dialog",
                            lambda: GateDialog(self.host, run_id, against, self))
        dialog.approveRequested.connect(self.show_approve)
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
        run_id = self.run.id if self.run is not None else next(  # the list, newest first
            (r.id for r in self._runs.values() if r.status == "finished"), None)
        if run_id is None:
            self.host.show_error("No run to report on", "Train a run first (Train tab).")
            return None
        dialog = one_dialog(self, "report_dialog", lambda: ReportDialog(self.host, run_id, self))
        dialog.show()
        return dialog
