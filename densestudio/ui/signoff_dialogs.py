"""Sign-off records in the GUI: which run is approved, approving one, must-pass marks.

An approval (``core.signoff.approve_run``) records who, when, why, the run's data fingerprint
and metrics, append-only; the newest approval names "the approved run", which the release
gate compares against and the export dialog offers first. Run lists mark it with
``run_mark``. Must-pass ("golden") images are marked from any gallery's context menu
(``add_golden_actions``); the gate fails a run that gets one of them wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core import signoff
from densestudio.core.errors import DenseStudioError
from densestudio.core.formatting import html_text
from densestudio.core.store import Project, current_user
from densestudio.ml import summary
from densestudio.ui.runs_panel import approval_state, local_time, run_title

if TYPE_CHECKING:
    from densestudio.ml.gate import GateResult

APPROVED_COLOR = "#1b7f3b"
WARN_COLOR = "#b26a00"


# ------------------------------------------------------------------ the approved run
def approval_note(project: Project, run_id: int) -> tuple[str, bool]:
    """(What to say about exporting ``run_id``, whether it is the approved run)."""
    state = approval_state(project)
    if state.approved_run == run_id:
        a = state.current
        assert a is not None
        return (f"✓ Run #{run_id} is the approved run (by {html_text(a.approved_by)}, "
                f"{local_time(a.approved_at)}).", True)
    if state.current is None:
        return (f"Run #{run_id} is not approved for release: no run is (Review tab › "
                "Sign-off › Approve run…).", False)
    return (f"Run #{run_id} is not the approved run: run #{state.approved_run} is. Export "
            f"#{state.approved_run} for the line, or approve this one first.", False)


# ------------------------------------------------------------------ approving
def approvable_runs(project: Project) -> list[core_runs.RunInfo]:
    return [r for r in core_runs.list_runs(project) if r.status == "finished"]


class ApproveDialog(QDialog):
    """Approve a finished run for release: who (default: the current user), why (required).

    ``gate``: a release-gate result for the run, shown and kept in mind by the person
    approving (the approval itself stores the run's metrics and data fingerprint)."""

    approved = Signal(object)  # signoff.ApprovalInfo

    def __init__(self, project: Project, run_id: int | None = None,
                 gate: GateResult | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.gate = gate
        self.result_info: signoff.ApprovalInfo | None = None
        self.setWindowTitle("Approve run for release")
        self.setMinimumWidth(560)
        state = approval_state(project)
        self.run_combo = QComboBox(self)
        for info in approvable_runs(project):
            text = summary.short_text(summary.summarize(info.metrics))
            self.run_combo.addItem(f"{run_title(info)}{state.mark(info.id)} · {text}",
                                   info.id)
        if run_id is not None and self.run_combo.findData(run_id) >= 0:
            self.run_combo.setCurrentIndex(self.run_combo.findData(run_id))
        self.who = QLineEdit(current_user(), self)
        self.who.setMaxLength(64)
        self.who.setToolTip("Recorded as who approved (Edit › Preferences sets the default)")
        self.why = QPlainTextEdit(self)
        self.why.setPlaceholderText("Why this run may go on the line, e.g. \"line 3 trial: no "
                                    "escapes in 2 shifts; gate passed against run 5\"")
        self.why.setFixedHeight(72)
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828;")
        self.error.hide()
        note = QLabel("<small>The approval is kept permanently in the project (append-only, "
                      "hash-chained) with the run's data fingerprint, its metrics and the "
                      "label history's newest hash. A later approval of another run makes "
                      "that one the approved run.</small>", self)
        note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Run", self.run_combo)
        form.addRow("Approved by", self.who)
        form.addRow("Why", self.why)
        self.buttons = QDialogButtonBox(self)
        self.approve_button = self.buttons.addButton(
            "Approve", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.approve)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.details)
        layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.run_combo.currentIndexChanged.connect(lambda _i: self._update())
        self.why.textChanged.connect(self._update)
        self.who.textChanged.connect(self._update)
        self._update()

    def run_id(self) -> int | None:
        return self.run_combo.currentData()

    def _update(self) -> None:
        run_id = self.run_id()
        ready = (run_id is not None and bool(self.why.toPlainText().strip())
                 and bool(self.who.text().strip()))
        self.approve_button.setEnabled(ready)
        if run_id is None:
            self.details.setText("No finished training run to approve.")
            return
        info = core_runs.get_run(self.project, run_id)
        fingerprint = str(info.metrics.get("data_fingerprint") or "—")[:16]
        lines = [f"<b>{html_text(run_title(info))}</b>: "
                 f"{html_text(summary.long_text(summary.summarize(info.metrics)))}",
                 f"Data fingerprint {html_text(fingerprint)}"]
        state = approval_state(self.project)
        if run_id in state.by_run:
            lines.append(f"<span style='color:{APPROVED_COLOR}'>"
                         f"{html_text(state.describe(run_id))}</span>")
        gate = self.gate
        if gate is not None and getattr(gate, "candidate", None) == run_id:
            color = {"pass": APPROVED_COLOR, "fail": "#c62828"}.get(gate.outcome, WARN_COLOR)
            lines.append(f"Release gate: <b style='color:{color}'>{html_text(gate.verdict)}</b>")
        elif state.current is not None and state.approved_run != run_id:
            lines.append(f"<span style='color:{WARN_COLOR}'>Tip: run the release gate "
                         f"against the approved run #{state.approved_run} first "
                         "(Sign-off › Release gate…).</span>")
        self.details.setText("<br>".join(lines))

    def approve(self) -> signoff.ApprovalInfo | None:
        run_id = self.run_id()
        if run_id is None or not self.approve_button.isEnabled():
            return None
        try:
            info = signoff.approve_run(self.project, run_id, self.why.toPlainText(),
                                       by=self.who.text().strip())
        except DenseStudioError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return None
        self.result_info = info
        self.approved.emit(info)
        self.accept()
        return info


# ------------------------------------------------------------------ must-pass images
def add_golden_actions(menu: QMenu, project: Project, image_ids: Sequence[int],
                       changed: Callable[[str], None]) -> None:
    """"Mark as must-pass" / "Remove must-pass mark" for a selection; ``changed`` gets a
    status message after a change."""
    ids = list(image_ids)
    if not ids:
        return
    golden = signoff.golden_ids(project)
    fresh = [i for i in ids if i not in golden]
    marked = [i for i in ids if i in golden]

    def n(k: int) -> str:
        return f"{k:,} image{'s' if k != 1 else ''}"

    def mark() -> None:
        added = signoff.add_golden(project, fresh)
        changed(f"Marked {n(added)} as must-pass: the release gate fails a run that gets "
                f"{'it' if added == 1 else 'one of them'} wrong.")

    def unmark() -> None:
        removed = signoff.remove_golden(project, marked)
        changed(f"Removed the must-pass mark of {n(removed)}.")

    if fresh:
        action = menu.addAction(f"Mark as Must-pass ({len(fresh):,})" if marked
                                else "Mark as Must-pass", mark)
        action.setToolTip("The release gate fails a run that gets a must-pass image wrong")
    if marked:
        menu.addAction(f"Remove Must-pass Mark ({len(marked):,})" if fresh
                       else "Remove Must-pass Mark", unmark)
