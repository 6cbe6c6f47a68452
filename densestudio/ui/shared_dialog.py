"""File > Open Shared Project…: the URL of a PostgreSQL database (and, if it is not in
PGPASSWORD or ~/.pgpass, a password used to connect and never saved)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.db import ServerURL, project_target
from densestudio.core.errors import DenseStudioError

PLACEHOLDER = "postgresql://user@host/database"


class SharedProjectDialog(QDialog):
    def __init__(self, recent: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open Shared Project")
        self.url = QComboBox(self)
        self.url.setEditable(True)
        self.url.addItems([r for r in recent if "://" in r])
        self.url.setCurrentText(self.url.itemText(0) if self.url.count() else "")
        line_edit = self.url.lineEdit()
        assert line_edit is not None  # setEditable(True) made it
        line_edit.setPlaceholderText(PLACEHOLDER)
        self.url.setMinimumWidth(420)
        self.password = QLineEdit(self)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("from PGPASSWORD or ~/.pgpass when empty")
        self.problem = QLabel("", self)
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: palette(bright-text); background: #b3261e; "
                                   "padding: 4px; border-radius: 3px;")
        self.problem.hide()
        note = QLabel("A shared project is a PostgreSQL database that the whole team labels "
                      "at once. The password is used to connect and is never saved.", self)
        note.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Database URL:", self.url)
        form.addRow("Password:", self.password)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(buttons)
        self._target: ServerURL | None = None

    def target(self) -> ServerURL | None:
        """What to open (the password, if typed, inside the URL object only)."""
        return self._target

    def accept(self) -> None:
        text = self.url.currentText().strip()
        try:
            target = project_target(text) if text else None
        except DenseStudioError as exc:
            self._show_problem(str(exc))
            return
        if not isinstance(target, ServerURL):
            self._show_problem(f"Give a database URL such as {PLACEHOLDER}.")
            return
        if self.password.text():
            target = ServerURL(target.url.set(password=self.password.text()))
        self._target = target
        super().accept()

    def _show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()
