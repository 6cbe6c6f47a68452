"""The class panel's dialogs: a name (add, rename) and a merge target.

Both say which class they act on. The name dialog is as wide as the name (up to a limit; a
longer name scrolls in the field, and its tooltip holds it whole) and runs the operation when
OK is pressed: if the project refuses the name (taken, empty, ...), the project's message is
shown in the dialog, which stays open to correct it. The merge dialog starts without a target
(nothing is moved by accident) and says that the source class disappears.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.formatting import html_text

MAX_FIELD_PX = 720  # the name field grows with the name up to this width
ERROR_STYLE = "color: #c62828;"




class ClassNameDialog(QDialog):
    """Ask for a class name. ``apply(name)`` does the work when OK is pressed and returns
    None, or the reason the name was refused (then the dialog stays open)."""

    def __init__(self, parent: QWidget | None, title: str, label: str, text: str = "",
                 apply: Callable[[str], str | None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.apply = apply
        self.label = QLabel(label, self)
        self.label.setWordWrap(True)
        self.edit = QLineEdit(text, self)
        self.edit.selectAll()
        self.error = QLabel(self)
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.edit)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        fm = self.edit.fontMetrics()
        width = max(fm.horizontalAdvance(text), fm.horizontalAdvance("x" * 32)) + 24
        self.edit.setMinimumWidth(min(width, MAX_FIELD_PX))
        self.edit.textChanged.connect(self._on_text)
        self._on_text(text)

    def value(self) -> str:
        return self.edit.text().strip()

    def _on_text(self, text: str) -> None:
        self.edit.setToolTip(text)
        self.error.hide()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(text.strip()))

    def accept(self) -> None:
        if not self.value():
            return
        problem = self.apply(self.value()) if self.apply is not None else None
        if problem:
            self.error.setText(problem)
            self.error.show()
            self.adjustSize()  # room for the message (the label above keeps its lines)
            self.edit.setFocus()
            self.edit.selectAll()
            return
        super().accept()


class MergeDialog(QDialog):
    """Choose the class that the source classes' images move into."""

    def __init__(self, parent: QWidget | None, sources: Sequence[tuple[str, int]],
                 targets: Sequence[str]) -> None:
        super().__init__(parent)
        names = ", ".join(f"'{html_text(n)}'" for n, _ in sources)
        images = sum(k for _, k in sources)
        one = len(sources) == 1
        self.setWindowTitle(f"Merge class {sources[0][0]}" if one else
                            f"Merge {len(sources)} classes")
        self.label = QLabel(
            f"Move the {images:,} image{'s' if images != 1 else ''} of "
            f"{'class ' if one else 'classes '}<b>{names}</b> into:", self)
        self.label.setWordWrap(True)
        self.combo = QComboBox(self)
        self.combo.addItems(list(targets))
        self.combo.setPlaceholderText("Choose the class to keep…")
        self.combo.setCurrentIndex(-1)  # no default: a wrong merge would be easy to miss
        self.combo.setMinimumContentsLength(min(48, max(16, *(len(t) for t in targets))))
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.note = QLabel(
            f"{'Class' if one else 'Classes'} {names} then "
            f"disappear{'s' if one else ''} from the project (with "
            f"{'its' if one else 'their'} shortcut); the images keep their split. Ctrl+Z "
            "undoes the merge.", self)
        self.note.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Merge")
        self.ok.setEnabled(False)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.combo.currentIndexChanged.connect(lambda i: self.ok.setEnabled(i >= 0))
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.combo)
        layout.addWidget(self.note)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(420)

    def choice(self) -> int | None:
        index = self.combo.currentIndex()
        return index if index >= 0 else None
