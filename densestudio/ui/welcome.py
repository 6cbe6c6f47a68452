"""The view shown with no project open: new, open, demo and recent projects."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal, SignalInstance
from PySide6.QtGui import QFont, QIcon
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from densestudio.ui.settings import recent_title

PATH_ROLE = Qt.ItemDataRole.UserRole + 1


class WelcomeView(QWidget):
    newRequested = Signal()
    openRequested = Signal()
    demoRequested = Signal()
    recentRequested = Signal(str)

    def __init__(self, icon: QIcon | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("DenseStudio", self)
        font = QFont(title.font())
        font.setPointSizeF(font.pointSizeF() * 2.2)
        font.setBold(True)
        title.setFont(font)
        tagline = QLabel(
            "Label your inspection images, train a DenseNet, see what it gets wrong, "
            "and export a model — all on this computer.", self)
        tagline.setWordWrap(True)
        tagline.setStyleSheet("color: palette(placeholder-text);")

        logo = QLabel(self)
        if icon is not None and not icon.isNull():
            logo.setPixmap(icon.pixmap(QSize(72, 72)))
        head = QHBoxLayout()
        head.addWidget(logo, 0, Qt.AlignmentFlag.AlignTop)
        titles = QVBoxLayout()
        titles.addWidget(title)
        titles.addWidget(tagline)
        head.addLayout(titles, 1)

        def big_button(text: str, detail: str, signal: SignalInstance) -> QPushButton:
            b = QPushButton(f"{text}\n{detail}", self)
            b.setMinimumHeight(58)
            b.setStyleSheet("QPushButton { text-align: left; padding: 8px 14px; }")
            b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            b.clicked.connect(signal.emit)
            return b

        self.new_button = big_button("New project…", "Start from your own image folders",
                                     self.newRequested)
        self.open_button = big_button("Open project…", "Continue with a .dsproj file",
                                      self.openRequested)
        self.demo_button = big_button(
            "Open demo project",
            "Metal-surface defects (ok, scratch, spot, crack), ready to train",
            self.demoRequested,
        )
        actions = QVBoxLayout()
        start = QLabel("<b>Start</b>", self)
        actions.addWidget(start)
        for b in (self.new_button, self.open_button, self.demo_button):
            actions.addWidget(b)
        tips = QLabel(
            "Tip: drop folders onto the window to import them. In the gallery, keys "
            "<b>1–9</b> label the selected images, <b>0</b> removes a label, "
            "<b>Ctrl+Z</b> undoes.", self)
        tips.setWordWrap(True)
        tips.setStyleSheet("color: palette(placeholder-text);")
        actions.addSpacing(12)
        actions.addWidget(tips)
        actions.addStretch(1)

        self.recent = QListWidget(self)
        self.recent.setFrameShape(QFrame.Shape.StyledPanel)
        self.recent.setAlternatingRowColors(True)
        self.recent.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent.itemActivated.connect(self._on_activated)
        self.recent.setToolTip("Double-click or press Enter to open")
        self.recent.itemSelectionChanged.connect(self._update_open_button)
        self.open_recent_button = QPushButton("Open", self)
        self.open_recent_button.setToolTip("Open the selected project")
        self.open_recent_button.clicked.connect(self._open_selected)
        self.recent_hint = QLabel("Double-click a project, or select it and press Open.", self)
        self.recent_hint.setStyleSheet("color: palette(placeholder-text);")
        self.recent_hint.setWordWrap(True)
        self.empty_recent = QLabel(
            "No recent projects yet.\nCreate a new project, or open the demo to try "
            "everything in a minute.", self)
        self.empty_recent.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_recent.setWordWrap(True)
        self.empty_recent.setStyleSheet("color: palette(placeholder-text);")
        self.recent_stack = QStackedWidget(self)
        self.recent_stack.addWidget(self.empty_recent)
        self.recent_stack.addWidget(self.recent)
        recent_box = QVBoxLayout()
        recent_box.addWidget(QLabel("<b>Recent projects</b>", self))
        recent_box.addWidget(self.recent_stack, 1)
        open_row = QHBoxLayout()
        open_row.addWidget(self.recent_hint, 1)
        open_row.addWidget(self.open_recent_button)
        recent_box.addLayout(open_row)

        columns = QHBoxLayout()
        columns.addLayout(actions, 2)
        columns.addSpacing(24)
        columns.addLayout(recent_box, 3)

        panel = QWidget(self)
        panel.setMaximumWidth(980)
        inner = QVBoxLayout(panel)
        inner.addLayout(head)
        inner.addSpacing(18)
        inner.addLayout(columns, 1)

        outer = QHBoxLayout(self)
        outer.setContentsMargins(32, 32, 32, 32)
        outer.addStretch(1)
        outer.addWidget(panel, 20)
        outer.addStretch(1)

    def set_recent(self, paths: list[str], info: dict[str, dict] | None = None) -> None:
        """``info``: {path: {"images": n, "opened": ISO time}} remembered from earlier."""
        self.recent.clear()
        info = info or {}
        for path in paths:
            p = Path(path)
            shared = "://" in path  # a shared project's URL (no password in it)
            exists = shared or p.is_file()
            title = f"{recent_title(path)}\n{path}" if shared else f"{p.stem}\n{p.parent}"
            details = _details(info.get(path, {}))
            item = QListWidgetItem(title + ("" if exists else "  (not found)")
                                   + (f"\n{details}" if details else ""))
            item.setData(PATH_ROLE, path)
            item.setToolTip(path)
            if not exists:
                item.setForeground(self.palette().color(self.palette().ColorRole.PlaceholderText))
            self.recent.addItem(item)
        self.recent_stack.setCurrentWidget(self.recent if paths else self.empty_recent)
        self.recent_hint.setVisible(bool(paths))
        self.open_recent_button.setVisible(bool(paths))
        self._update_open_button()

    def set_busy(self, busy: bool, text: str = "") -> None:
        for b in (self.new_button, self.open_button, self.demo_button):
            b.setEnabled(not busy)
        self.demo_button.setText(
            (text or "Building the demo project…") if busy else
            "Open demo project\nMetal-surface defects (ok, scratch, spot, crack), ready to train"
        )

    def _on_activated(self, item: QListWidgetItem) -> None:
        self.recentRequested.emit(item.data(PATH_ROLE))

    def _update_open_button(self) -> None:
        self.open_recent_button.setEnabled(bool(self.recent.selectedItems()))

    def _open_selected(self) -> None:
        items = self.recent.selectedItems()
        if items:
            self._on_activated(items[0])


def _details(info: dict) -> str:
    """"1,234 images · opened 2026-12-01 09:28" (what is known of it)."""
    parts = []
    if info.get("images") is not None:
        n = int(info["images"])
        parts.append(f"{n:,} image{'s' if n != 1 else ''}")
    try:
        opened = datetime.fromisoformat(str(info["opened"]))
        parts.append(f"opened {opened.astimezone().strftime('%Y-%m-%d %H:%M')}")
    except (KeyError, ValueError):
        pass
    return " · ".join(parts)
