"""Filter and sort bar above the gallery: class, split, file-name text, sort order, tile size."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QToolButton,
    QWidget,
)

from densestudio.core.store import ClassInfo, ImageFilter
from densestudio.ui.class_panel import swatch
from densestudio.ui.gallery_view import MAX_TILE, MIN_TILE

ALL, UNLABELED, CHANGED = "all", "unlabeled", "changed"
SORTS = (("name", "Name"), ("added", "Date added"), ("class", "Class"))
SPLIT_CHOICES = ((None, "All splits"), ("train", "Train"), ("val", "Val"), ("test", "Test"),
                 ("none", "No split"))


class FilterBar(QWidget):
    changed = Signal()
    tileSizeChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.class_combo = QComboBox(self)
        self.class_combo.setToolTip(
            "Show one class, the images without a label, or those whose file changed since labeled")
        self.class_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_combo.setMinimumContentsLength(9)
        self.split_combo = QComboBox(self)
        for value, text in SPLIT_CHOICES:
            self.split_combo.addItem(text, value)
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("Filter by file name…")
        self.text.setClearButtonEnabled(True)
        self.text.setMinimumWidth(90)
        self.sort_combo = QComboBox(self)
        self.sort_combo.setToolTip("Sort order")
        for key, text in SORTS:
            self.sort_combo.addItem(text, key)
        self.order_button = QToolButton(self)
        self.order_button.setCheckable(True)
        self.order_button.setText("↑")
        self.order_button.setToolTip("Ascending / descending")
        self.order_button.toggled.connect(
            lambda on: self.order_button.setText("↓" if on else "↑"))
        self.count_label = QLabel("", self)
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.tile_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.tile_slider.setRange(MIN_TILE, MAX_TILE)
        self.tile_slider.setSingleStep(8)
        self.tile_slider.setPageStep(32)
        self.tile_slider.setFixedWidth(80)
        self.tile_slider.setToolTip("Tile size (Ctrl++ / Ctrl+-)")
        self.tile_slider.valueChanged.connect(self.tileSizeChanged)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.changed)
        self.text.textChanged.connect(lambda _t: self._debounce.start())
        self.text.returnPressed.connect(self._apply_now)
        for combo in (self.class_combo, self.split_combo, self.sort_combo):
            combo.currentIndexChanged.connect(self._on_combo)
        self.order_button.toggled.connect(lambda _on: self._on_combo(0))

        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for w in (self.class_combo, self.split_combo, self.text, self.sort_combo,
                  self.order_button):
            layout.addWidget(w)
        layout.setStretchFactor(self.text, 1)
        layout.addWidget(self.count_label)
        layout.addSpacing(4)
        layout.addWidget(self.tile_slider)
        self._building = False
        self.set_classes([])

    def _on_combo(self, _index: int) -> None:
        if not self._building:
            self.changed.emit()

    def _apply_now(self) -> None:
        self._debounce.stop()
        self.changed.emit()

    def set_classes(self, classes: list[ClassInfo]) -> None:
        current = self.class_combo.currentData()
        self._building = True
        try:
            self.class_combo.clear()
            self.class_combo.addItem("All classes", ALL)
            self.class_combo.addItem("Unlabeled", UNLABELED)
            self.class_combo.addItem("Changed since labeled", CHANGED)
            self.class_combo.setItemData(
                self.class_combo.count() - 1,
                "Images whose file changed after they were labeled: check their label",
                Qt.ItemDataRole.ToolTipRole)
            for c in classes:
                key = f"{c.shortcut}  " if c.shortcut else ""
                self.class_combo.addItem(swatch(c.color), f"{key}{c.name}", c.id)
            index = self.class_combo.findData(current) if current is not None else 0
            self.class_combo.setCurrentIndex(max(0, index))
        finally:
            self._building = False
        if current is not None and self.class_combo.currentData() != current:
            self.changed.emit()  # the class shown was deleted: show all

    def set_class(self, class_id: int | None) -> None:
        """Show one class (None: unlabeled images)."""
        index = self.class_combo.findData(UNLABELED if class_id is None else class_id)
        if index >= 0:
            self.class_combo.setCurrentIndex(index)

    def show_changed(self) -> None:
        """Show the images whose file changed since they were labeled."""
        self.class_combo.setCurrentIndex(self.class_combo.findData(CHANGED))

    def set_split(self, split: str | None) -> None:
        index = self.split_combo.findData(split)
        if index >= 0:
            self.split_combo.setCurrentIndex(index)

    def reset(self) -> None:
        self._building = True
        try:
            self.class_combo.setCurrentIndex(0)
            self.split_combo.setCurrentIndex(0)
            self.text.clear()
            self.sort_combo.setCurrentIndex(0)
            self.order_button.setChecked(False)
        finally:
            self._building = False
        self._debounce.stop()

    def image_filter(self) -> ImageFilter:
        data = self.class_combo.currentData()
        class_ids = None if data in (ALL, UNLABELED, CHANGED, None) else (int(data),)
        return ImageFilter(
            class_ids=class_ids,
            unlabeled=data == UNLABELED,
            changed=data == CHANGED,
            split=self.split_combo.currentData(),
            text=self.text.text().strip(),
        )

    def sort_key(self) -> str:
        return self.sort_combo.currentData()

    def descending(self) -> bool:
        return self.order_button.isChecked()

    def set_count(self, shown: int, total: int, matching: int | None = None) -> None:
        """``matching``: images that match the filter now (labeling can take shown rows
        out of an Unlabeled or class filter; they stay until the filter is applied again)."""
        matching = shown if matching is None else matching
        text = f"{matching:,} images" if matching == total else f"{matching:,} of {total:,} images"
        if matching != shown:
            text += f" ({shown - matching:,} shown no longer match)"
        self.count_label.setText(text)
        self.count_label.setToolTip(
            "Change the filter (or press F5) to hide images that no longer match"
            if matching != shown else "")
