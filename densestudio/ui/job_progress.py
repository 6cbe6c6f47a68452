"""A progress bar with its Cancel button, shown only while a background job runs (Review's
predictions, the release gate, the validation report)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget


class ElidedProgressBar(QProgressBar):
    """A progress bar whose text is elided to its width (never cut mid-letter at both ends, as
    on a laptop screen), the whole text in its tooltip then, after ``base_tip`` if any."""

    def __init__(self, parent: QWidget | None = None, base_tip: str = "") -> None:
        super().__init__(parent)
        self.base_tip = base_tip
        self.setToolTip(base_tip)

    def text(self) -> str:
        full = super().text()
        room = self.contentsRect().width() - 8
        shown = self.fontMetrics().elidedText(full, Qt.TextElideMode.ElideRight, max(0, room))
        tip = "\n".join(t for t in (self.base_tip, full if shown != full else "") if t)
        if tip != self.toolTip():
            self.setToolTip(tip)
        return shown


class JobProgress(QWidget):
    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar(self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancelRequested)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        self.hide()

    def start(self, text: str = "") -> None:
        """Busy (no count yet), with ``text`` in the bar when given."""
        self.bar.setRange(0, 0)
        self.bar.setFormat(text)
        self.bar.setTextVisible(bool(text))
        self.show()

    def count(self, done: int, total: int, text: str = "") -> None:
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        if text:
            self.bar.setFormat(text)
