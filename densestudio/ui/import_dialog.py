"""Import from the GUI: the options dialog, the progress strip and the end-of-import report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from densestudio.core import formatting
from densestudio.core.imaging import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from densestudio.core.importer import ImportReport


def has_class_subfolders(paths: list[Path]) -> bool:
    """True if a given folder holds sub-folders (a hint that sub-folders are classes)."""
    for path in paths:
        try:
            if path.is_dir() and any(e.is_dir() for e in os.scandir(path)):
                return True
        except OSError:
            continue
    return False


class ImportDialog(QDialog):
    """Choose folders/files and whether sub-folder names become classes."""

    def __init__(
        self, paths: list[Path] | None = None, subfolders_as_classes: bool | None = None,
        start_dir: str = "", parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import images")
        self.setMinimumWidth(560)
        self.start_dir = start_dir

        intro = QLabel(
            "Images stay where they are; the project remembers their location. "
            "Files already in the project and duplicates are skipped.", self)
        intro.setWordWrap(True)

        self.list = QListWidget(self)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setToolTip("Folders are searched recursively.")
        add_folder = QPushButton("Add folder…", self)
        add_folder.clicked.connect(self.choose_folder)
        add_files = QPushButton("Add files…", self)
        add_files.clicked.connect(self.choose_files)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.clicked.connect(self._remove_selected)
        side = QVBoxLayout()
        for b in (add_folder, add_files, self.remove_button):
            side.addWidget(b)
        side.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        row.addLayout(side)

        self.subfolders = QCheckBox("Use sub-folder names as classes", self)
        self.subfolders.setToolTip(
            "folder/scratch/img1.png is labeled 'scratch'. Images directly in the chosen "
            "folder stay unlabeled."
        )
        hint = QLabel("Example: <i>parts/scratch/a.png</i> → class <b>scratch</b>", self)
        hint.setStyleSheet("color: palette(placeholder-text);")
        self._explicit_subfolders = subfolders_as_classes

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row, 1)
        layout.addWidget(self.subfolders)
        layout.addWidget(hint)
        layout.addWidget(self.buttons)
        self.list.model().rowsInserted.connect(self._update)
        self.list.model().rowsRemoved.connect(self._update)
        self.add_paths(paths or [])
        if subfolders_as_classes is not None:
            self.subfolders.setChecked(subfolders_as_classes)
        self._update()

    def paths(self) -> list[Path]:
        return [Path(self.list.item(i).text()) for i in range(self.list.count())]

    def add_paths(self, paths: list[Path]) -> None:
        known = set(map(str, self.paths()))
        for path in paths:
            if str(path) not in known:
                self.list.addItem(str(path))
                known.add(str(path))
        if self._explicit_subfolders is None:
            self.subfolders.setChecked(has_class_subfolders(self.paths()))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a folder", self.start_dir)
        if folder:
            self.start_dir = folder
            self.add_paths([Path(folder)])

    def choose_files(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
        files, _ = QFileDialog.getOpenFileNames(
            self, "Import images", self.start_dir, f"Images ({patterns});;All files (*)"
        )
        if files:
            self.start_dir = str(Path(files[0]).parent)
            self.add_paths([Path(f) for f in files])

    def _remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))

    def _update(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(self.list.count() > 0)
        self.remove_button.setEnabled(self.list.count() > 0)


class ImportProgressWidget(QWidget):
    """A strip for the status bar: what is happening, a bar, and Cancel."""

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("Preparing import…", self)
        self.bar = QProgressBar(self)
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.bar.setRange(0, 0)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self._cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)

    def _cancel(self) -> None:
        self.cancel_button.setEnabled(False)
        self.label.setText("Cancelling… (images imported so far are kept)")
        self.cancelRequested.emit()

    def show_progress(self, event: object) -> None:
        phase = getattr(event, "phase", "importing")
        done, total = getattr(event, "done", 0), getattr(event, "total", 0)
        if phase == "scanning" or total == 0:
            self.bar.setRange(0, 0)
            if self.cancel_button.isEnabled():
                self.label.setText(f"Looking for images… {total:,} found")
            return
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        if not self.cancel_button.isEnabled():
            return
        rate = getattr(event, "rate", 0.0)
        eta = formatting.eta(getattr(event, "eta_s", None))
        self.label.setText(
            f"Importing {done:,} / {total:,} · {getattr(event, 'added', 0):,} added · "
            f"{rate:,.0f}/s · {eta} left"
        )

    def show_message(self, text: str) -> None:
        self.bar.setRange(0, 0)
        self.label.setText(text)


class ImportReportDialog(QDialog):
    """The summary of a finished (or cancelled) import and every skipped file with its reason."""

    def __init__(self, report: ImportReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report = report
        self.setWindowTitle("Import cancelled" if report.cancelled else "Import finished")
        self.setMinimumSize(640, 220)
        summary = QLabel(report.summary(), self)
        summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        skipped = list(report.skipped)
        self.table = QTableWidget(len(skipped), 2, self)
        if skipped:
            layout.addWidget(QLabel(f"{len(skipped):,} file(s) were skipped:", self))
            self.table.setHorizontalHeaderLabels(["File", "Reason"])
            self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
            self.table.verticalHeader().setVisible(False)
            header = self.table.horizontalHeader()
            header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
            for row, item in enumerate(skipped[:10_000]):
                path = QTableWidgetItem(str(item.path))
                path.setToolTip(str(item.path))
                self.table.setItem(row, 0, path)
                self.table.setItem(row, 1, QTableWidgetItem(item.reason))
            layout.addWidget(self.table, 1)
            self.resize(820, 420)
        else:
            self.table.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        if skipped:
            copy = buttons.addButton("Copy list", QDialogButtonBox.ButtonRole.ActionRole)
            copy.clicked.connect(self.copy_list)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        buttons.button(QDialogButtonBox.StandardButton.Close).clicked.connect(self.accept)
        layout.addWidget(buttons)

    def copy_list(self) -> None:
        text = "\n".join(f"{s.path}\t{s.reason}" for s in self.report.skipped)
        QGuiApplication.clipboard().setText(text)


def align_right(item: QTableWidgetItem) -> QTableWidgetItem:
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item
