"""Edit › Preferences: the name recorded in the label history and approvals, and labeling
behaviour. Values live in ``settings.Preferences`` (saved when the window closes)."""

from __future__ import annotations

import getpass

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.errors import ProjectError
from densestudio.core.store import USER_ENV
from densestudio.core.users import normalize_author
from densestudio.ui.settings import Preferences


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers): core says "user"
        return "user"


class PreferencesDialog(QDialog):
    def __init__(self, prefs: Preferences, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(480)
        self.user_name = QLineEdit(prefs.user_name, self)
        self.name_error = QLabel("", self)  # why the name is refused (the CLI's message)
        self.name_error.setStyleSheet("color: #c62828")
        self.name_error.setWordWrap(True)
        self.name_error.hide()
        self.user_name.setPlaceholderText(_login_name())
        note = QLabel(
            "<small>Recorded as who changed a label (the image's history) and who approved "
            f"a run. Empty: ${USER_ENV} if it is set, else your login name "
            f"(<i>{_login_name()}</i>). The command line takes <i>--user</i>.</small>", self)
        note.setWordWrap(True)
        self.auto_advance = QCheckBox("After labeling one image, go to the next unlabeled one",
                                      self)
        self.auto_advance.setChecked(prefs.auto_advance)
        form = QFormLayout()
        form.addRow("Your name", self.user_name)
        form.addRow("", self.name_error)
        form.addRow("", note)
        form.addRow("Labeling", self.auto_advance)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.user_name.textChanged.connect(lambda _t: self.name_problem())
        self.name_problem()

    def name_problem(self) -> str:
        """Why the name typed would be refused ("" if it is fine), shown under the field; OK
        is disabled meanwhile. The same rule and message as ``--user``/``--author``."""
        problem = ""
        if self.user_name.text().strip():
            try:
                normalize_author(self.user_name.text())
            except ProjectError as exc:
                problem = str(exc)
        self.name_error.setText(problem)
        self.name_error.setVisible(bool(problem))
        self.ok_button.setEnabled(not problem)
        return problem

    def accept(self) -> None:
        if not self.name_problem():  # refused: nothing saved, the dialog stays open
            super().accept()

    def apply(self) -> None:
        """Copy the fields into the preferences (the caller applies and saves them)."""
        name = self.user_name.text().strip()
        self.prefs.user_name = normalize_author(name) if name else ""
        self.prefs.auto_advance = self.auto_advance.isChecked()
