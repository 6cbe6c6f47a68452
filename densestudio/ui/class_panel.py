"""Class panel: the project's classes with 1-9 shortcuts, colours and counts per split.

Add, rename, recolour, reorder, merge and delete go through the controller, so each is one
undoable step written to the project at once. The name and merge dialogs open without
blocking (``self.dialog``; see ``class_dialogs``), so tests drive them like a user; the
colour and delete questions are small overridable methods (``ask_color``, ``confirm``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from PySide6.QtCore import QEvent, QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from densestudio.core.constants import SPLITS
from densestudio.core.formatting import html_text
from densestudio.ml.operating_point import GoodClass, project_good_class, set_project_good_class
from densestudio.ui.class_dialogs import ClassNameDialog, MergeDialog
from densestudio.ui.controller import ProjectController

ID_ROLE = Qt.ItemDataRole.UserRole + 1
UNLABELED = -1
_Dialog = TypeVar("_Dialog", ClassNameDialog, MergeDialog)


def swatch(color: str, size: int = 14) -> QIcon:
    pixmap = QPixmap(QSize(size, size))
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(color))
    p.setPen(QColor(0, 0, 0, 90))
    p.drawRoundedRect(1, 1, size - 2, size - 2, 3, 3)
    p.end()
    return QIcon(pixmap)


class ClassPanel(QWidget):
    labelSelectionRequested = Signal(object)  # class id, or None to unlabel
    showClassRequested = Signal(object)  # class id, or None for unlabeled images

    COLUMNS = ("Key", "Class", "Total", "Train", "Val", "Test")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller: ProjectController | None = None
        self.dialog: ClassNameDialog | MergeDialog | None = None  # the one open now
        self.good = GoodClass(None, "name")  # the project's good class, as last shown

        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(len(self.COLUMNS))
        self.tree.setHeaderLabels(list(self.COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for col in range(2, len(self.COLUMNS)):
            self.tree.headerItem().setTextAlignment(col, Qt.AlignmentFlag.AlignRight)
        self.tree.setToolTip(
            "Press 1-9 in the gallery to label the selected images with a class.\n"
            "Double-click a class to label the selection with it."
        )

        self.add_action = QAction("Add class…", self)
        self.add_action.triggered.connect(self.add_class)
        self.rename_action = QAction("Rename…", self)
        self.rename_action.setShortcut("F2")
        self.rename_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.rename_action.triggered.connect(self.rename_selected)
        self.color_action = QAction("Colour…", self)
        self.color_action.triggered.connect(self.recolor_selected)
        self.up_action = QAction("Move up", self)
        self.up_action.triggered.connect(lambda: self.move_selected(-1))
        self.down_action = QAction("Move down", self)
        self.down_action.triggered.connect(lambda: self.move_selected(1))
        self.merge_action = QAction("Merge into…", self)
        self.merge_action.triggered.connect(self.merge_selected)
        self.delete_action = QAction("Delete…", self)
        self.delete_action.triggered.connect(self.delete_selected)
        self.good_action = QAction("Good class (OK)", self)
        self.good_action.setCheckable(True)
        self.good_action.triggered.connect(self.toggle_good_class)
        self.addAction(self.rename_action)

        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        for action, text in (
            (self.add_action, "Add"), (self.rename_action, "Rename"),
            (self.color_action, "Colour"), (self.up_action, "▲"), (self.down_action, "▼"),
            (self.merge_action, "Merge"), (self.delete_action, "Delete"),
            (self.good_action, "OK"),
        ):
            action.setIconText(text)
            action.setToolTip(action.text().rstrip("…"))
            b = QToolButton(self)
            b.setDefaultAction(action)
            b.setAutoRaise(True)
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.good_action.setToolTip(
            "The class that means a good part: every Train then ends with an OK/NG decision "
            "(few defects passed as good, the unsure ones sent to a person). Unchecking it "
            "leaves the project without a good class.")

        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: palette(placeholder-text);")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.summary)
        self.refresh()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            self.refresh()  # the (unlabeled) row is drawn in the placeholder colour

    # ------------------------------------------------------------ binding
    def set_controller(self, controller: ProjectController | None) -> None:
        self.controller = controller
        if controller is not None:
            controller.classesChanged.connect(self.refresh)
            controller.countsChanged.connect(self.refresh)
            controller.splitsChanged.connect(self.refresh)
        self.refresh()

    def selected_class_ids(self) -> list[int]:
        ids = [item.data(0, ID_ROLE) for item in self.tree.selectedItems()]
        return [i for i in ids if i is not None and i != UNLABELED]

    def select_class(self, class_id: int) -> None:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            assert item is not None  # i < topLevelItemCount()
            item.setSelected(item.data(0, ID_ROLE) == class_id)

    def refresh(self) -> None:
        keep = set(self.selected_class_ids())
        self.tree.clear()
        c = self.controller
        if c is None:
            self.summary.setText("")
            self._update_buttons()
            return
        counts = c.counts()
        classes = c.classes()
        authors = c.author_counts()
        self.good = project_good_class(c.project)
        for info in classes:
            item = QTreeWidgetItem(
                [info.shortcut or "", info.name, _n(counts.count(info.id))]
                + [_n(counts.count(info.id, s)) for s in SPLITS]
            )
            item.setIcon(1, swatch(info.color))
            item.setData(0, ID_ROLE, info.id)
            by = _by_author(authors.get(info.id, {}))
            good = info.name == self.good.name
            if good:  # the good class: bold, and said so in its tooltip
                font = item.font(1)
                font.setBold(True)
                item.setFont(1, font)
            item.setToolTip(1, info.name + (" · the good class (OK)" if good else "")
                            + (f"\nLabeled by {by}" if by else ""))
            item.setToolTip(2, f"Labeled by {by}" if by else "")
            self._align(item)
            self.tree.addTopLevelItem(item)
            item.setSelected(info.id in keep)
        unlabeled = counts.count(None)
        item = QTreeWidgetItem(["", "(unlabeled)", _n(unlabeled), "", "", ""])
        item.setData(0, ID_ROLE, UNLABELED)
        placeholder = self.palette().color(self.palette().ColorRole.PlaceholderText)
        item.setForeground(1, QBrush(placeholder))
        self._align(item)
        self.tree.addTopLevelItem(item)
        total = counts.total
        labeled = total - unlabeled
        if not classes:
            self.summary.setText("No classes yet. Click Add to create one, or import folders "
                                 "with sub-folder names as classes.")
        else:
            pct = f" ({labeled / total:.0%})" if total else ""
            totals: dict[str, int] = {}
            for per_class in authors.values():
                for who, n in per_class.items():
                    totals[who] = totals.get(who, 0) + n
            by = _by_author(totals) if len(totals) > 1 or c.project.shared else ""
            self.summary.setText(f"{_n(labeled)} of {_n(total)} images labeled{pct}."
                                 + (f"\nBy {by}." if by else "")
                                 + f"\nGood class: {self.good.describe()}.")
        self._update_buttons()

    def _align(self, item: QTreeWidgetItem) -> None:
        for col in range(2, len(self.COLUMNS)):
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setTextAlignment(0, Qt.AlignmentFlag.AlignCenter)

    def _update_buttons(self) -> None:
        has_project = self.controller is not None
        ids = self.selected_class_ids()
        one = len(ids) == 1
        self.add_action.setEnabled(has_project)
        for a in (self.rename_action, self.color_action, self.up_action, self.down_action):
            a.setEnabled(has_project and one)
        self.merge_action.setEnabled(
            bool(self.controller is not None and ids and len(self.controller.classes()) > 1)
        )
        self.delete_action.setEnabled(has_project and len(ids) >= 1)
        self.good_action.setEnabled(has_project and one)
        names = {i.id: i.name for i in self.controller.classes()} if self.controller else {}
        self.good_action.setChecked(one and names.get(ids[0]) == self.good.name)

    def toggle_good_class(self, checked: bool) -> None:
        """Make the selected class the good one (checked) or leave the project without one
        (project data: ``operating_point.set_project_good_class``)."""
        ids = self.selected_class_ids()
        if self.controller is None or len(ids) != 1:
            return
        name = next(i.name for i in self.controller.classes() if i.id == ids[0])
        set_project_good_class(self.controller.project, name if checked else None)
        self.controller.classesChanged.emit()  # the tree, the Train tab

    # ------------------------------------------------------------ dialogs (overridable)
    def _open(self, dialog: _Dialog) -> _Dialog:
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = dialog
        dialog.finished.connect(lambda _r: self._forget(dialog))
        dialog.open()
        return dialog

    def _forget(self, dialog: QWidget) -> None:
        if self.dialog is dialog:
            self.dialog = None
        dialog.deleteLater()

    def _apply(self, operation: Callable[[Callable[[str], None]], object]) -> str | None:
        """Run a controller operation with its error reported to the dialog (returned)."""
        errors: list[str] = []
        operation(errors.append)
        return errors[0] if errors else None

    def ask_color(self, initial: str) -> str | None:
        color = QColorDialog.getColor(QColor(initial), self, "Class colour")
        return color.name() if color.isValid() else None

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(
            self, title, text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------------ actions
    def add_class(self) -> ClassNameDialog | None:
        c = self.controller
        if c is None:
            return None

        def apply(name: str) -> str | None:
            def add(on_error: Callable[[str], None]) -> None:
                info = c.add_class(name, on_error=on_error)
                if info is not None:
                    self.select_class(info.id)
            return self._apply(add)

        return self._open(ClassNameDialog(self, "Add class", "Name of the new class:",
                                          apply=apply))

    def rename_selected(self) -> ClassNameDialog | None:
        ids = self.selected_class_ids()
        c = self.controller
        info = c.class_by_id(ids[0]) if c is not None and len(ids) == 1 else None
        if c is None or info is None:
            return None
        return self._open(ClassNameDialog(
            self, f"Rename class {info.name}", f"Rename the class <b>{html_text(info.name)}</b> "
            f"({_n(c.counts().count(info.id))} images) to:", info.name,
            apply=lambda name: self._apply(
                lambda on_error: c.rename_class(ids[0], name, on_error=on_error))))

    def recolor_selected(self) -> None:
        ids = self.selected_class_ids()
        if self.controller is None or len(ids) != 1:
            return
        info = self.controller.class_by_id(ids[0])
        color = self.ask_color(info.color if info else "#888888")
        if color:
            self.controller.recolor_class(ids[0], color)

    def move_selected(self, delta: int) -> None:
        ids = self.selected_class_ids()
        if self.controller is not None and len(ids) == 1:
            self.controller.move_class(ids[0], delta)
            self.select_class(ids[0])

    def merge_selected(self) -> MergeDialog | None:
        """Merge the selected classes into one the user chooses (several selected: into one
        of them or another class; the chosen one stays)."""
        c = self.controller
        ids = self.selected_class_ids()
        if c is None or not ids:
            return None
        targets = [info for info in c.classes() if info.id not in ids or len(ids) > 1]
        if not targets:
            return None
        counts = c.counts()
        sources = [(info.name, counts.count(info.id)) for info in c.classes()
                   if info.id in ids]
        dialog = MergeDialog(self, sources, [t.name for t in targets])

        def merge() -> None:
            choice = dialog.choice()
            if choice is None:
                return
            target = targets[choice]
            moved = [i for i in ids if i != target.id]
            if moved and c.merge_classes(moved, target.id):
                self.select_class(target.id)

        dialog.accepted.connect(merge)
        return self._open(dialog)

    def delete_selected(self) -> None:
        c = self.controller
        ids = self.selected_class_ids()
        if c is None or not ids:
            return
        counts = c.counts()
        n = sum(counts.count(i) for i in ids)
        names = ", ".join(f"'{info.name}'" for info in map(c.class_by_id, ids) if info)
        text = (f"Delete class {names}? Its {n} image(s) become unlabeled; the images "
                f"themselves stay in the project. You can undo this (Ctrl+Z).")
        if not self.confirm("Delete class", text):
            return
        for class_id in ids:
            c.delete_class(class_id)

    def _on_double_click(self, item: QTreeWidgetItem, _column: int) -> None:
        class_id = item.data(0, ID_ROLE)
        self.labelSelectionRequested.emit(None if class_id == UNLABELED else class_id)

    def _context_menu(self, pos: QPoint) -> None:
        item = self.tree.itemAt(pos)
        menu = QMenu(self)
        if item is not None:
            class_id = item.data(0, ID_ROLE)
            cid = None if class_id == UNLABELED else class_id
            label = "Remove label of selected images" if cid is None else (
                f"Label selected images as '{item.text(1)}'")
            menu.addAction(label, lambda: self.labelSelectionRequested.emit(cid))
            menu.addAction("Show only these images", lambda: self.showClassRequested.emit(cid))
            menu.addSeparator()
        for a in (self.add_action, self.rename_action, self.color_action, self.up_action,
                  self.down_action, self.merge_action, self.delete_action, self.good_action):
            menu.addAction(a)
        menu.exec(self.tree.viewport().mapToGlobal(pos))


def _by_author(counts: dict[str, int]) -> str:
    """"alice 1,200 · bob 800": who labeled how many (most first)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return " · ".join(f"{who or '(unknown)'} {_n(n)}" for who, n in ranked)


def _n(value: int) -> str:
    return f"{value:,}"


