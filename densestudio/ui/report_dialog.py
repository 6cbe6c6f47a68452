"""Write a run's validation report from the GUI: choose the file, write it in the background,
then open it in the browser.

The report is ``ml.report.write_report``: one self-contained HTML file (images inlined, opens
offline, prints to PDF). Writing it may evaluate the run, compute heatmaps and run the release
gate, so it runs in a worker; the dialog shows the section being written and can cancel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import runs as core_runs
from densestudio.core.store import Project
from densestudio.ml.report import SECTIONS, ReportOptions
from densestudio.ui.job_progress import JobProgress
from densestudio.ui.jobs import report_job
from densestudio.ui.runs_panel import run_title
from densestudio.ui.signoff_dialogs import approval_state
from densestudio.ui.workers import Worker

if TYPE_CHECKING:
    from densestudio.ml.report import ReportWritten
    from densestudio.ui.context import AppContext

SECTION_TITLES = dict(SECTIONS)


def default_report_path(project: Project, run_id: int) -> Path:
    """Next to the project file; for a shared project (no file) in the home folder."""
    folder = Path.home() if project.shared else project.path.parent
    return folder / f"{project.name}-run{run_id}-report.html"


class ReportDialog(QDialog):
    written = Signal(object)  # ml.report.ReportWritten

    def __init__(self, host: AppContext, run_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host  # the application (ui.context)
        assert host.controller is not None  # opened for a run of the open project
        self.project = host.controller.project
        self.last_report: ReportWritten | None = None
        self.last_error: str | None = None
        self.setWindowTitle("Validation report")
        self.setMinimumWidth(620)

        state = approval_state(self.project)
        self.run_combo = QComboBox(self)
        for info in core_runs.list_runs(self.project):
            if info.status == "finished":
                self.run_combo.addItem(f"{run_title(info)}{state.mark(info.id)}", info.id)
        self.run_combo.setCurrentIndex(max(0, self.run_combo.findData(run_id)))
        self.path_edit = QLineEdit(str(default_report_path(self.project, run_id)), self)
        self._path_is_default = True
        self.path_edit.textEdited.connect(lambda _t: setattr(self, "_path_is_default", False))
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.subset_combo = QComboBox(self)
        self.subset_combo.addItem("Test", "test")
        self.subset_combo.addItem("Validation", "val")
        self.subset_combo.setToolTip("The set the metrics are reported on (validation when "
                                     "the run has no test images)")
        self.mistakes = QSpinBox(self)
        self.mistakes.setRange(0, 50)
        self.mistakes.setValue(ReportOptions.mistakes)
        self.mistakes.setToolTip("The most confident mistakes shown, each with its heatmap")
        self.gate = QCheckBox("Include the release gate against the approved run", self)
        self.gate.setChecked(True)
        self.gate.setToolTip("May predict must-pass images with both runs' models")
        intro = QLabel("One HTML file with everything inline (charts, images, heatmaps): it "
                       "opens offline in any browser and prints to PDF with one section per "
                       "page.", self)
        intro.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Run", self.run_combo)
        form.addRow("File", path_row)
        form.addRow("Metrics on", self.subset_combo)
        form.addRow("Mistakes shown", self.mistakes)
        form.addRow("", self.gate)

        self.write_button = QPushButton("Write report", self)
        self.write_button.setDefault(True)
        self.progress = JobProgress(self)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_button = QPushButton("Open", self)
        self.open_button.setToolTip("Open the report in the browser")
        self.open_button.setEnabled(False)
        self.folder_button = QPushButton("Show folder", self)
        self.folder_button.setEnabled(False)
        self.close_button = QPushButton("Close", self)
        row = QHBoxLayout()
        row.addWidget(self.write_button)
        row.addWidget(self.progress, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.folder_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addLayout(buttons)

        self.run_combo.currentIndexChanged.connect(lambda _i: self._on_run_changed())
        self.write_button.clicked.connect(self.write)
        self.progress.cancelRequested.connect(self.cancel)
        self.open_button.clicked.connect(self.open_report)
        self.folder_button.clicked.connect(self._open_folder)
        self.close_button.clicked.connect(self.close)
        if self.run_combo.count() == 0:
            self.write_button.setEnabled(False)
            self.status.setText("No finished run to report on.")

    @property
    def run_id(self) -> int | None:
        return self.run_combo.currentData()

    def _on_run_changed(self) -> None:
        if self._path_is_default and self.run_id is not None:
            self.path_edit.setText(str(default_report_path(self.project, self.run_id)))

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save validation report",
                                              self.path_edit.text(), "HTML (*.html *.htm)")
        if path:
            self.path_edit.setText(path)
            self._path_is_default = False

    def options(self) -> ReportOptions:
        return ReportOptions(subset=self.subset_combo.currentData(),
                             mistakes=self.mistakes.value(), heatmaps=self.mistakes.value() > 0,
                             gate=self.gate.isChecked())

    # ------------------------------------------------------------ writing
    def write(self) -> Worker | None:
        text = self.path_edit.text().strip()
        if not text or self.worker is not None or self.run_id is None:
            return None
        worker = Worker(report_job, self.project, text, self.run_id, self.options(),
                        parent=self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_written)
        worker.failed.connect(self._on_failed)
        worker.done.connect(lambda: self._on_done(worker))
        self.last_error = None
        self.status.setStyleSheet("")
        self.status.setText("Writing the report…")
        self.progress.start()
        self.write_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.folder_button.setEnabled(False)
        self.host.jobs.start(worker, self, error_title=None)
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_event(self, event: object) -> None:
        section = getattr(event, "section", None)
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        if section is not None and total:
            self.progress.count(done or 0, total)
            self.status.setText(f"Writing: {SECTION_TITLES.get(section, section)}…")
        elif done is not None and total:  # evaluating or predicting before the sections
            self.progress.count(done, total)

    def _on_written(self, result: ReportWritten) -> None:
        self.last_report = result
        self.path_edit.setText(str(result.path))
        self.status.setStyleSheet("color: #1b7f3b;")
        self.status.setText(f"Written: {result.path} ({result.size_bytes / 1024:,.0f} KiB, "
                            f"{len(result.sections)} sections, metrics on the "
                            f"{'test' if result.subset == 'test' else 'validation'} set).")
        self.open_button.setEnabled(True)
        self.folder_button.setEnabled(True)
        self.host.status(f"Validation report written: {result.path}", 10000)
        self.written.emit(result)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self.status.setStyleSheet("color: #c62828;")
        self.status.setText(message)

    @property
    def worker(self) -> Worker | None:
        """Its running job: one at a time, held by the app's ``JobRunner``."""
        return self.host.jobs.job_of(self)

    def _on_done(self, worker: Worker) -> None:
        if self.worker is None:  # (the runner lets go of a job before its ``done``)
            self.progress.hide()
            self.write_button.setEnabled(self.run_id is not None)
            if self.last_report is None and self.last_error is None:
                self.status.setText("Cancelled: no report was written.")

    def report_url(self) -> QUrl | None:
        if self.last_report is None:
            return None
        return QUrl.fromLocalFile(str(self.last_report.path))

    def open_report(self) -> bool:
        if self.last_report is None:
            return False
        return self._open(QUrl.fromLocalFile(str(self.last_report.path)), "the report",
                          str(self.last_report.path))

    def _open_folder(self) -> bool:
        if self.last_report is None:
            return False
        folder = str(Path(self.last_report.path).parent)
        return self._open(QUrl.fromLocalFile(folder), "the folder", folder)

    def _open(self, url: QUrl, what: str, path: str) -> bool:
        """Open with the desktop's program; when none starts (no browser, no file manager)
        say so with the path, which can be copied from the message."""
        if QDesktopServices.openUrl(url):
            return True
        self.status.setStyleSheet("color: #c62828;")
        self.status.setText(f"Could not open {what}: no program to show it could be started. "
                            f"It is at {path}")
        return False

    def done(self, result: int) -> None:  # cancels a running worker first
        if self.worker is not None:
            self.worker.cancel()
        super().done(result)
