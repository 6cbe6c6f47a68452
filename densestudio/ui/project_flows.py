"""The main window's project flows: import (dialog and drag-and-drop), re-linking moved
images, refreshing, building the demo project and checking the records. A mixin of
``MainWindow``: each flow starts a background job through the window's ``JobRunner`` and
reports on the window's status line and dialogs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
)
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMessageBox

from densestudio.core.importer import ImportProgress
from densestudio.core.store import PROJECT_SUFFIX
from densestudio.ui import settings as app_settings
from densestudio.ui.import_dialog import ImportDialog, ImportReportDialog
from densestudio.ui.workers import Worker

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance
    from PySide6.QtGui import QAction

    from densestudio.core.db import ServerURL
    from densestudio.core.importer import ImportOptions, ImportReport, RelinkResult
    from densestudio.core.signoff import VerificationReport
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.gallery_model import GalleryModel
    from densestudio.ui.gallery_view import GalleryView
    from densestudio.ui.import_dialog import ImportProgressWidget
    from densestudio.ui.settings import Preferences
    from densestudio.ui.welcome import WelcomeView
    from densestudio.ui.workers import JobRunner

log = logging.getLogger(__name__)


if TYPE_CHECKING:  # a mixin of the main window: typed as one, a plain class at run time
    _Window = QMainWindow
else:
    _Window = object


class ProjectFlows(_Window):
    """Import, relink, refresh, demo and records flows of ``MainWindow``."""

    if TYPE_CHECKING:  # what the flows use of the window
        importFinished: SignalInstance
        relinkFinished: SignalInstance
        controller: ProjectController | None
        prefs: Preferences
        jobs: JobRunner
        welcome: WelcomeView
        model: GalleryModel
        gallery: GalleryView
        import_action: QAction
        import_progress: ImportProgressWidget
        import_worker: Worker | None
        relink_worker: Worker | None
        import_dialog: ImportDialog | None
        report_dialog: ImportReportDialog | None
        last_import_report: ImportReport | None
        last_error: str | None
        last_verification: VerificationReport | None

        def open_project(self, path: str | Path | ServerURL) -> bool: ...
        def show_error(self, title: str, message: str) -> None: ...
        def _current_image_id(self) -> int | None: ...

    def demo_project_path(self) -> Path:
        from densestudio.core.demo import DEMO_PROJECT_NAME

        return app_settings.data_dir() / "demo" / DEMO_PROJECT_NAME

    def open_demo_project(self) -> None:
        from densestudio.core.demo import create_demo_project

        path = self.demo_project_path()
        if path.is_file():
            self.open_project(path)
            return
        if self.jobs.busy(self.welcome):  # building it already
            return
        self.welcome.set_busy(True, "Drawing demo images…")
        self.statusBar().showMessage("Building the demo project…")
        worker = Worker(create_demo_project, path, parent=self)
        worker.event.connect(self._on_demo_event)
        worker.finished.connect(lambda p: self.open_project(p))
        worker.done.connect(lambda: self.welcome.set_busy(False))
        worker.done.connect(self.statusBar().clearMessage)
        self.jobs.start(worker, self.welcome, error_title="Cannot build the demo project")

    def _on_demo_event(self, event: object) -> None:
        done, total = getattr(event, "done", None), getattr(event, "total", None)
        if done is not None and total:
            verb = "Importing" if isinstance(event, ImportProgress) else "Drawing"
            self.welcome.set_busy(True, f"{verb} demo images… {done} / {total}")

    def show_import_dialog(self, paths: list[Path] | None = None) -> ImportDialog | None:
        if self.controller is None:
            self.show_error("No project open",
                            "Create or open a project first, then import images into it.")
            return None
        dialog = ImportDialog(paths, start_dir=self.prefs.last_import_dir, parent=self)
        dialog.accepted.connect(lambda: self._on_import_dialog_accepted(dialog))
        dialog.finished.connect(lambda _result: self._forget_import_dialog(dialog))
        self.import_dialog = dialog
        if not paths:
            dialog.subfolders.setChecked(self.prefs.labels_from_subfolders)
        dialog.open()
        return dialog

    def _forget_import_dialog(self, dialog: ImportDialog) -> None:
        if self.import_dialog is dialog:
            self.import_dialog = None
        dialog.deleteLater()

    def _on_import_dialog_accepted(self, dialog: ImportDialog) -> None:
        from densestudio.core.importer import ImportOptions

        paths = dialog.paths()
        subfolders = dialog.subfolders.isChecked()
        self.prefs.labels_from_subfolders = subfolders
        if paths:
            first = paths[0]
            self.prefs.last_import_dir = str(first if first.is_dir() else first.parent)
        self.start_import(paths, ImportOptions(labels_from_subfolders=subfolders))

    def start_import(
        self, paths: list[Path], options: ImportOptions | None = None
    ) -> Worker | None:
        """Import in a worker thread (the code path of the dialog and of drag-and-drop)."""
        from densestudio.core.importer import ImportOptions, run_import

        if self.controller is None:
            self.show_error("No project open", "Open or create a project first.")
            return None
        # Its own handle, not the runner's one job per owner: a new import may start as
        # soon as the last one's result is in (see _import_ended).
        if self.import_worker is not None and self.import_worker.running:
            self.show_error("An import is running", "Wait for it to finish or cancel it.")
            return None
        worker = Worker(run_import, self.controller.project, list(paths),
                        options or ImportOptions(), parent=self)
        worker.event.connect(self._on_import_event)
        worker.finished.connect(self._on_import_finished)
        worker.failed.connect(self._on_import_failed)
        worker.done.connect(lambda: self._on_import_done(worker))
        self.import_worker = worker
        self.import_progress.cancel_button.setEnabled(True)
        self.import_progress.show_message("Looking for images…")
        self.import_progress.show()
        self.import_action.setEnabled(False)
        self.jobs.start(worker, error_title=None)
        return worker

    def start_relink(self, folder: Path | None = None) -> Worker | None:
        """Look for missing images (by content hash) under a folder, in a worker thread."""
        from densestudio.core.importer import relink

        if self.controller is None:
            return None
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self, "Folder that now holds the images")
            if not chosen:
                return None
            folder = Path(chosen)
        worker = Worker(relink, self.controller.project, [Path(folder)], parent=self)
        worker.finished.connect(self._on_relink_finished)
        self.relink_worker = worker
        self.statusBar().showMessage(f"Looking for missing images in {folder}…")
        self.jobs.start(worker, error_title="Relink failed")
        return worker

    def _on_relink_finished(self, result: RelinkResult) -> None:
        self._refresh_after_import()
        message = (f"Relinked {result.relinked} image(s); {result.still_missing} still missing.")
        self.statusBar().showMessage(message, 15000)
        self.relinkFinished.emit(result)

    def refresh_project(self) -> None:
        """Re-read the project (another process may have imported or labeled) and re-check
        which files are missing."""
        if self.controller is None:
            return
        missing, restored = self.controller.project.refresh_missing()
        self._refresh_after_import()
        self.statusBar().showMessage(
            f"{self.controller.project.count_images():,} images · {missing:,} missing files"
            + (f" · {restored:,} found again" if restored else ""), 10000)

    def cancel_import(self) -> None:
        if self.import_worker is not None:
            self.import_worker.cancel()

    def _on_import_event(self, event: object) -> None:
        if isinstance(event, ImportProgress):
            self.import_progress.show_progress(event)

    def _on_import_finished(self, report: ImportReport) -> None:
        self._import_ended()
        self.last_import_report = report
        self._refresh_after_import()
        self.statusBar().showMessage(report.summary(), 15000)
        if report.skipped or report.cancelled:
            self.report_dialog = ImportReportDialog(report, self)
            self.report_dialog.open()
        self.importFinished.emit(report)

    def _on_import_failed(self, message: str) -> None:
        self._import_ended()
        self._refresh_after_import()
        self.show_error("Import failed", message)

    def _import_ended(self) -> None:
        # The result is in: a new import may start (the old thread is just winding down).
        self.import_worker = None
        self.import_progress.hide()
        self.import_action.setEnabled(self.controller is not None)

    def _on_import_done(self, worker: Worker) -> None:
        if self.import_worker is worker:  # ended without a result (cancelled before start)
            self._import_ended()

    def _on_reload_needed(self) -> None:
        """Others added images or re-split: reload, unless our own import is running (its
        end reloads anyway)."""
        if self.import_worker is None or not self.import_worker.running:
            self._refresh_after_import()

    def _refresh_after_import(self) -> None:
        if self.controller is None:
            return
        current = self._current_image_id()
        self.controller.reload()
        self.model.reload()
        row = self.model.row_of(current) if current is not None else None
        if row is None and self.model.rowCount():
            row = 0
        if row is not None:
            self.gallery.go_to_row(row)

    # ---------------------------------------------------------------- drag and drop

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        event.acceptProposedAction()
        self.handle_dropped_paths(paths)

    def handle_dropped_paths(self, paths: list[Path]) -> None:
        projects = [p for p in paths if p.suffix == PROJECT_SUFFIX and p.is_file()]
        if projects:
            self.open_project(projects[0])
            return
        if self.controller is None:
            self.show_error("No project open",
                            "Create or open a project first; then drop folders to import them.")
            return
        if self.import_dialog is not None and self.import_dialog.isVisible():
            self.import_dialog.add_paths(paths)
            return
        self.show_import_dialog(paths)

    def verify_records(self, quiet: bool = False) -> Worker | None:
        """Check the label history's and the approvals' hash chains in the background.
        ``quiet`` (on opening a project): say something only when they were edited."""
        from densestudio.ui.jobs import verify_job

        if self.controller is None:
            return None
        worker = Worker(verify_job, self.controller.project, parent=self)
        worker.finished.connect(lambda report: self._on_verified(report, quiet))
        self.jobs.start(worker, error_title="Cannot check the records")
        return worker

    def _on_verified(self, report: VerificationReport, quiet: bool) -> None:
        self.last_verification = report
        labels, approvals = report.chains
        if report.ok:  # on opening: silent (no status line over another action's)
            text = (f"Records intact: {labels.rows:,} label changes and {approvals.rows:,} "
                    "approvals, each hash-chained to the one before.")
            if not quiet:
                self.statusBar().showMessage(text, 8000)
                box = QMessageBox(QMessageBox.Icon.Information, "Records intact",
                                  f"{text}\n\nNewest label-history hash: "
                                  f"{labels.head_hash[:16]}…", QMessageBox.StandardButton.Ok,
                                  self)
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()
            return
        n = len(report.problems)
        shown = "\n".join(f"• {p}" for p in report.problems[:5])
        more = f"\n… and {n - 5:,} more (see Details)." if n > 5 else ""
        message = ("This project's label history or approvals were changed outside "
                   f"DenseStudio (e.g. with a SQLite tool):\n\n{shown}{more}\n\nNothing was "
                   "changed or repaired. Treat labels and approvals from before the edit as "
                   "unverified, and compare the newest hashes with those written down at "
                   "sign-off (the validation report prints them).")
        log.warning("Project records edited outside DenseStudio: %s", "; ".join(report.problems))
        self.last_error = message
        self.statusBar().showMessage(f"⚠ Records edited outside DenseStudio ({n:,} "
                                     f"problem{'s' if n != 1 else ''}): File › Verify Records",
                                     0)
        box = QMessageBox(QMessageBox.Icon.Warning, "Records edited outside DenseStudio",
                          message, QMessageBox.StandardButton.Ok, self)
        box.setDetailedText("\n".join(report.problems))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
