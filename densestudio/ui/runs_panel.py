"""The list of training runs: settings, best metrics, date, which run is approved for release;
select one to review; delete.

While the list is visible it re-reads the runs every ``POLL_MS`` and redraws when one
changed, so a run trained elsewhere (``densestudio train`` or a torchrun job on a server,
writing to the same project) appears and advances live."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core import signoff
from densestudio.core.formatting import percent as pct
from densestudio.ml import summary

if TYPE_CHECKING:
    from densestudio.core.store import Project

POLL_MS = 2000
# Balanced accuracy and the worst class lead: accuracy hides a class that is never found.
COLUMNS = ("Run", "Status", "Balanced acc", "Worst class", "Accuracy", "Epochs", "Date",
           "Settings")
COLUMN_TIPS = {
    "Balanced acc": "Mean recall over the classes, on the test set (validation when the run "
                    "has no test images): every class counts the same, however few images it has",
    "Worst class": "The class the run recognises least often, with its recall",
    "Accuracy": "Share of all test (else validation) images predicted right; on imbalanced "
                "data it can be high while a small class is never found",
}
NUMERIC = {"Balanced acc", "Worst class", "Accuracy", "Epochs"}
STATUS_TEXT = {
    "running": "training…", "finished": "finished", "cancelled": "stopped (resumable)",
    "failed": "failed", "created": "created", "interrupted": "interrupted (resumable)",
}  # fmt: skip


def settings_text(config: dict) -> str:
    parts = [str(config.get("arch", "?")), f"{config.get('img_size', '?')} px",
             f"batch {config.get('batch_size', '?')}", f"lr {config.get('lr', 0):g}"]
    if config.get("pretrained") or config.get("weights_path"):
        parts.append(f"pretrained, {config.get('strategy', 'full')}")
    if config.get("augment") and config.get("augment") != "none":
        parts.append(f"aug {config['augment']}")
    if config.get("balance") and config.get("balance") != "none":
        parts.append(config["balance"].replace("_", " "))
    if config.get("early_stopping_patience"):
        parts.append(f"early stop {config['early_stopping_patience']}")
    return ", ".join(parts)


def local_time(utc: datetime) -> str:
    """Run times are stored as naive UTC; show them in local time."""
    if utc.tzinfo is None:
        utc = utc.replace(tzinfo=timezone.utc)
    return utc.astimezone().strftime("%Y-%m-%d %H:%M")


def run_title(info: core_runs.RunInfo) -> str:
    return f"#{info.id} {info.name}"


@dataclass(frozen=True)
class ApprovalState:
    """The approved run (the newest approval of a run that still exists) and each run's
    newest approval."""

    current: signoff.ApprovalInfo | None = None
    by_run: dict[int, signoff.ApprovalInfo] = field(default_factory=dict)

    @property
    def approved_run(self) -> int | None:
        return self.current.run_id if self.current else None

    def mark(self, run_id: int) -> str:
        """" · ✓ approved" for the approved run, " · approved earlier" for a run whose
        approval a newer one replaced, else ""."""
        if self.current is not None and run_id == self.current.run_id:
            return " · ✓ approved"
        return " · approved earlier" if run_id in self.by_run else ""

    def describe(self, run_id: int) -> str:
        """One sentence about the run's approval (for tooltips and headers)."""
        a = self.by_run.get(run_id)
        if a is None:
            if self.current is None:
                return "No run is approved for release yet."
            return f"Not approved; the approved run is #{self.current.run_id}."
        when = local_time(a.approved_at)
        text = f"Approved by {a.approved_by} on {when}: {a.why}"
        if self.current is not None and self.current.run_id != run_id:
            text += f" (since replaced by the approval of run #{self.current.run_id})"
        return text


def approval_state(project: Project | None) -> ApprovalState:
    if project is None:
        return ApprovalState()
    by_run = {a.run_id: a for a in signoff.approvals(project)}  # oldest first: newest wins
    return ApprovalState(signoff.latest_approval(project), by_run)


class RunsPanel(QWidget):
    runSelected = Signal(object)  # run id or None
    reviewRequested = Signal(int)
    resumeRequested = Signal(int)
    runDeleted = Signal(int)
    runUpdated = Signal(int)  # a run's row changed in the project (e.g. trained elsewhere)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project: Project | None = None
        self.busy_run_id: int | None = None  # the run being trained now (cannot be deleted)
        self.infos: list[core_runs.RunInfo] = []
        self.title = QLabel("<b>Runs</b>", self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for col, name in enumerate(COLUMNS):
            if name in COLUMN_TIPS:
                tip_item = self.table.horizontalHeaderItem(col)
                tip_item.setToolTip(COLUMN_TIPS[name])  # type: ignore[union-attr]  # the labels made it
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.doubleClicked.connect(lambda _i: self._review())
        self.review_button = QPushButton("Review", self)
        self.review_button.setToolTip("Open the selected run in the Review tab")
        self.review_button.clicked.connect(self._review)
        self.resume_button = QPushButton("Resume", self)
        self.resume_button.setToolTip("Continue a stopped run from its last saved epoch")
        self.resume_button.clicked.connect(self._resume)
        self.delete_button = QPushButton("Delete…", self)
        self.delete_button.setToolTip("Delete the run, its metrics, predictions and checkpoints")
        self.delete_button.clicked.connect(self.delete_selected)
        self.empty = QLabel("No runs yet. Press Train to start one.", self)
        self.empty.setStyleSheet("color: palette(placeholder-text);")
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(POLL_MS)
        self.poll_timer.timeout.connect(self.poll)

        buttons = QHBoxLayout()
        buttons.addWidget(self.title)
        buttons.addStretch(1)
        for b in (self.review_button, self.resume_button, self.delete_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty)
        self._update_buttons()

    # ------------------------------------------------------------ data
    def set_project(self, project: Project | None) -> None:
        self.project = project
        self.refresh()

    def refresh(self, select: int | None = None) -> None:
        keep = select if select is not None else self.selected_run_id()
        self.infos = core_runs.list_runs(self.project) if self.project is not None else []
        approvals = approval_state(self.project)
        self.table.blockSignals(True)
        try:
            self.table.setRowCount(len(self.infos))
            for row, info in enumerate(self.infos):
                epochs = f"{info.epochs_done}/{info.config.get('epochs', '?')}"
                if info.best_epoch:
                    epochs += f" (best {info.best_epoch})"
                values = {
                    "Run": run_title(info),
                    "Status": STATUS_TEXT.get(info.shown_status, info.shown_status)
                    + approvals.mark(info.id),
                    **self._metric_cells(info), "Epochs": epochs,
                    "Date": local_time(info.created_at), "Settings": settings_text(info.config),
                }  # fmt: skip
                for col, name in enumerate(COLUMNS):
                    text = values[name]
                    item = QTableWidgetItem(text)
                    item.setData(Qt.ItemDataRole.UserRole, info.id)
                    if name == "Status" and info.error:
                        item.setToolTip(info.error)
                    elif name == "Status" and info.id in approvals.by_run:
                        item.setToolTip(approvals.describe(info.id))
                        if info.id == approvals.approved_run:
                            item.setForeground(QColor("#1b7f3b"))
                    elif name in ("Settings", "Worst class"):
                        item.setToolTip(text)
                    if name in NUMERIC:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(row, col, item)
            selected = self.row_of(keep) if keep is not None else None
            if selected is None and self.infos:
                selected = 0
            if selected is not None:
                self.table.selectRow(selected)
            else:
                self.table.clearSelection()
        finally:
            self.table.blockSignals(False)
        self.empty.setVisible(not self.infos and self.project is not None)
        self._update_buttons()
        self.runSelected.emit(self.selected_run_id())

    def poll(self) -> None:
        """Redraw if any run changed since the list was drawn (new, progressed, finished)."""
        if self.project is None:
            return
        fresh = core_runs.list_runs(self.project)
        if fresh == self.infos:
            return
        before = {info.id: info for info in self.infos}
        self.refresh()
        for info in fresh:
            if before.get(info.id) != info:
                self.runUpdated.emit(info.id)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.poll_timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.poll_timer.stop()
        super().hideEvent(event)

    def _metric_cells(self, info: core_runs.RunInfo) -> dict[str, str]:
        """Balanced accuracy, worst class and accuracy of a finished run; a running or
        stopped run shows the validation balanced accuracy and accuracy of its best (else
        last) validated epoch, every epoch."""
        s = summary.summarize(info.metrics)
        if not s.empty:
            where = "" if s.subset == "test" else f" ({s.subset})"
            worst = ("—" if s.worst_recall is None
                     else f"{s.worst_class} {pct(s.worst_recall)}")
            return {"Balanced acc": pct(s.balanced_accuracy) + where, "Worst class": worst,
                    "Accuracy": pct(s.accuracy) + where}
        validated = [m for m in core_runs.epoch_metrics(self.project, info.id)
                     if m.val_acc is not None] if self.project is not None else []
        best = next((m for m in validated if m.epoch == info.best_epoch),
                    validated[-1] if validated else None)
        accuracy = "—" if best is None else f"{pct(best.val_acc)} (val, epoch {best.epoch})"
        live = info.extra.get(core_runs.LIVE_KEY)
        balanced = "—"
        if isinstance(live, dict) and live.get("best_balanced_acc") is not None:
            balanced = (f"{pct(float(live['best_balanced_acc']))} (val, epoch "
                        f"{live.get('best_epoch', '?')})")
        return {"Balanced acc": balanced, "Worst class": "—", "Accuracy": accuracy}

    def row_of(self, run_id: int) -> int | None:
        for row, info in enumerate(self.infos):
            if info.id == run_id:
                return row
        return None

    def info(self, run_id: int | None) -> core_runs.RunInfo | None:
        row = self.row_of(run_id) if run_id is not None else None
        return self.infos[row] if row is not None else None

    def selected_run_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole)  # type: ignore[union-attr]  # a row's cell

    def select_run(self, run_id: int) -> None:
        row = self.row_of(run_id)
        if row is not None:
            self.table.selectRow(row)

    # ------------------------------------------------------------ actions
    def _on_selection(self) -> None:
        self._update_buttons()
        self.runSelected.emit(self.selected_run_id())

    def _update_buttons(self) -> None:
        info = self.info(self.selected_run_id())
        busy = info is not None and info.id == self.busy_run_id
        self.review_button.setEnabled(info is not None and bool(info.checkpoint_best)
                                      and not busy)
        self.resume_button.setEnabled(info is not None and info.resumable and not busy
                                      and self.busy_run_id is None)
        self.delete_button.setEnabled(info is not None and not busy)

    def set_busy_run(self, run_id: int | None) -> None:
        self.busy_run_id = run_id
        self._update_buttons()

    def _review(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None and self.review_button.isEnabled():
            self.reviewRequested.emit(run_id)

    def _resume(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.resumeRequested.emit(run_id)

    def confirm(self, title: str, text: str) -> bool:
        """Ask the user (a separate method so tests can answer)."""
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self) -> bool:
        info = self.info(self.selected_run_id())
        if info is None or self.project is None or info.id == self.busy_run_id:
            return False
        if not self.confirm("Delete run",
                            f"Delete run {run_title(info)} with its metrics, predictions and "
                            "saved models? Exported model files are kept."):
            return False
        core_runs.delete_run(self.project, info.id)
        self.refresh()
        self.runDeleted.emit(info.id)
        return True
