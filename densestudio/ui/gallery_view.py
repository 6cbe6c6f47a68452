"""The thumbnail grid: a virtualized QListView and the delegate that paints each tile.

A tile shows the thumbnail, the class colour chip, the split marker, the file name and - once
predictions exist - the predicted class with a right/wrong mark. Painting uses only what the
model has in memory; thumbnails not yet decoded show a placeholder until they arrive.
"""

from __future__ import annotations

from typing import cast

from PySide6.QtCore import (
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from densestudio.ui.gallery_model import GalleryModel, TileOverlay

MIN_TILE, MAX_TILE, DEFAULT_TILE = 72, 256, 144
SPLIT_LABELS = {"train": "train", "val": "val", "test": "test"}
SHORT_SPLIT_LABELS = {"train": "Tr", "val": "Va", "test": "Te"}  # small tiles: still distinct


def text_color_for(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    luma = 0.299 * background.redF() + 0.587 * background.greenF() + 0.114 * background.blueF()
    return QColor("#111111") if luma > 0.6 else QColor("#ffffff")


def overlay_label(overlay: TileOverlay, predicted: str) -> str:
    """The tile's prediction chip: "✗ scratch 93%"; with an OK/NG threshold the decision
    and the P(good) it comes from ("✓ NG · P(ok) 29%"), never the decision beside the
    most likely class ("NG · ok 55%" read as a contradiction)."""
    mark = "" if overlay.correct is None else ("✓ " if overlay.correct else "✗ ")
    label = f"{mark}{predicted}" + (f" {overlay.text}" if overlay.text else "")
    if overlay.reason:  # first, so eliding a long class name keeps it
        return f"UNSURE: {overlay.reason} · {label}"
    if overlay.decision and overlay.p_good:
        return f"{mark}{overlay.decision} · {overlay.p_good}"
    if overlay.decision:
        return f"{overlay.decision} · {label}"
    return label


class TileDelegate(QStyledItemDelegate):
    MARGIN = 5

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tile = DEFAULT_TILE
        self._small = QFont()
        self._small.setPointSizeF(max(7.0, self._small.pointSizeF() * 0.85))
        self._bold_small = QFont(self._small)
        self._bold_small.setBold(True)

    def set_tile_size(self, size: int) -> None:
        self.tile = max(MIN_TILE, min(MAX_TILE, int(size)))

    def sizeHint(
        self,
        option: QStyleOptionViewItem | None,
        index: QModelIndex | QPersistentModelIndex | None,
    ) -> QSize:
        fm = QFontMetrics(self._small)
        return QSize(self.tile, self.tile + fm.height() + 4)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        model: GalleryModel = index.model()  # type: ignore[assignment]
        row = index.row()
        info = model.info(row)
        palette = option.palette
        rect: QRect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        current = bool(option.state & QStyle.StateFlag.State_HasFocus)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)

        # Background / selection.
        inner = QRectF(rect).adjusted(1.5, 1.5, -1.5, -1.5)
        if selected:
            highlight = QColor(palette.color(QPalette.ColorRole.Highlight))
            fill = QColor(highlight)
            fill.setAlpha(70)
            painter.setPen(QPen(highlight, 2.5))
            painter.setBrush(fill)
            painter.drawRoundedRect(inner, 6, 6)
        elif current:
            highlight = palette.color(QPalette.ColorRole.Highlight)
            painter.setPen(QPen(highlight, 1.2, Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(inner, 6, 6)

        fm = QFontMetrics(self._small)
        m = self.MARGIN
        side = rect.width() - 2 * m
        thumb_rect = QRect(rect.left() + m, rect.top() + m, side, side - 2)
        if info is None:
            painter.restore()
            return

        # Thumbnail (or placeholder).
        pixmap = cast("QPixmap | None", model.data(index, Qt.ItemDataRole.DecorationRole))
        if pixmap is not None and not pixmap.isNull():
            size = pixmap.size().scaled(thumb_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(QPoint(0, 0), size)
            target.moveCenter(thumb_rect.center())
            painter.drawPixmap(target, pixmap)
            heat = cast("QPixmap | None", model.data(index, GalleryModel.HeatmapRole))
            if heat is not None and not heat.isNull():  # review tiles: where the model looks
                painter.setOpacity(0.65)
                painter.drawPixmap(target, heat)
                painter.setOpacity(1.0)
        else:
            base = QColor(palette.color(QPalette.ColorRole.Mid))
            base.setAlpha(60)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(base)
            painter.drawRoundedRect(QRectF(thumb_rect), 4, 4)
            if model.loader.failed(info.id):
                painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
                painter.setFont(self._small)
                text = "file missing" if info.missing else "cannot read"
                painter.drawText(thumb_rect, Qt.AlignmentFlag.AlignCenter, text)

        # Class chip (bottom-left of the thumbnail).
        cls = model.class_of(info)
        chip_h = fm.height() + 2
        if cls is not None:
            color = QColor(cls.color)
            name = fm.elidedText(cls.name, Qt.TextElideMode.ElideRight, side - 8 - 10)
            width = fm.horizontalAdvance(name) + 10
            chip = QRectF(thumb_rect.left() + 3, thumb_rect.bottom() - chip_h - 2, width, chip_h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(chip, chip_h / 2, chip_h / 2)
            painter.setPen(text_color_for(color))
            painter.setFont(self._small)
            painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, name)

        # Split marker (top-right); a split only matters for labeled images.
        if info.split and info.label_id is not None:
            labels = SHORT_SPLIT_LABELS if self.tile < 112 else SPLIT_LABELS
            text = labels.get(info.split, info.split)
            w = fm.horizontalAdvance(text) + 8
            tag = QRectF(thumb_rect.right() - w - 2, thumb_rect.top() + 3, w, chip_h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawRoundedRect(tag, 3, 3)
            painter.setPen(QColor("#ffffff") if info.split != "test" else QColor("#ffd166"))
            painter.setFont(self._small)
            painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, text)

        # Prediction overlay (top-left): predicted class and right/wrong mark.
        overlay = cast("TileOverlay | None", model.data(index, GalleryModel.OverlayRole))
        if overlay is not None:
            pred = model.class_by_id(overlay.predicted_class_id)
            label = overlay_label(overlay, pred.name if pred else "?")
            width = max(side // 2 + 20, side - 44)  # leave room for the split marker
            label = fm.elidedText(label, Qt.TextElideMode.ElideRight, width)
            w = fm.horizontalAdvance(label) + 8
            tag = QRectF(thumb_rect.left() + 3, thumb_rect.top() + 3, w, chip_h)
            bg = (QColor(0, 0, 0, 160) if overlay.correct is None
                  else QColor("#1b7f3b") if overlay.correct else QColor("#c62828"))
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(bg)
            painter.drawRoundedRect(tag, 3, 3)
            painter.setPen(QColor("#ffffff"))
            painter.setFont(self._bold_small)
            painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, label)

            if overlay.relabeled:
                text = "relabeled" if self.tile >= 112 else "R"
                w = fm.horizontalAdvance(text) + 8
                tag = QRectF(thumb_rect.right() - w - 2, thumb_rect.bottom() - chip_h - 2, w,
                             chip_h)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QColor("#e69f00"))
                painter.drawRoundedRect(tag, 3, 3)
                painter.setPen(QColor("#111111"))
                painter.setFont(self._bold_small)
                painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, text)

        # File name.
        name_rect = QRect(rect.left() + m, thumb_rect.bottom() + 2, side, fm.height() + 2)
        painter.setFont(self._small)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        painter.drawText(
            name_rect, Qt.AlignmentFlag.AlignCenter,
            fm.elidedText(info.name, Qt.TextElideMode.ElideMiddle, side),
        )
        painter.restore()


def selected_ids(view: QListView, model: GalleryModel) -> list[int]:
    """The images an action applies to: the selected tiles, else the current one."""
    ids = model.ids_in_selection(view.selectionModel().selection())
    if not ids:
        index = view.currentIndex()
        if index.isValid() and index.row() < model.rowCount():
            ids = [model.image_id(index.row())]
    return ids


class GalleryView(QListView):
    """Grid of tiles; 1-9 label, 0/Backspace unlabel, Space/Shift+Space move."""

    labelShortcut = Signal(str)  # "1".."9"
    unlabelRequested = Signal()
    activatedImage = Signal(int)  # row (Enter / double-click)
    empty_text = ""  # centred hint shown when the grid has no tiles

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        model = self.model()
        if model is not None and model.rowCount() == 0 and self.empty_text:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(self.palette().ColorRole.PlaceholderText))
            rect = self.viewport().rect().adjusted(24, 24, -24, -24)
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self.empty_text)
            painter.end()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.delegate = TileDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setSpacing(3)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionRectVisible(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setMouseTracking(False)
        self.setDragEnabled(False)
        self.setAcceptDrops(False)  # drops go to the main window (import)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)  # no relayout loop
        self.doubleClicked.connect(lambda index: self.activatedImage.emit(index.row()))
        self._update_scroll_step()
        self._update_grid()

    def set_tile_size(self, size: int) -> None:
        self.delegate.set_tile_size(size)
        self._update_scroll_step()
        self._update_grid()
        if self.currentIndex().isValid():  # zooming keeps the current tile in view
            self.scrollTo(self.currentIndex(), QAbstractItemView.ScrollHint.PositionAtCenter)

    def _update_grid(self) -> None:
        """Spread the columns over the full width (no ragged gap at the right edge)."""
        tile = self.delegate.tile
        height = self.delegate.sizeHint(None, None).height() + 6
        avail = max(1, self.viewport().width() - 2)
        columns = max(1, avail // (tile + 6))
        size = QSize(max(tile + 6, avail // columns), height)
        if size != self.gridSize():
            self.setGridSize(size)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._update_grid()

    def _update_scroll_step(self) -> None:
        self.verticalScrollBar().setSingleStep(max(20, self.delegate.tile // 3))

    def move_current(self, delta: int) -> None:
        model = self.model()
        if model is None or model.rowCount() == 0:
            return
        row = self.currentIndex().row() if self.currentIndex().isValid() else -1
        self.go_to_row(max(0, min(model.rowCount() - 1, row + delta)))

    def go_to_row(self, row: int) -> None:
        model = self.model()
        if model is None or not 0 <= row < model.rowCount():
            return
        index = model.index(row, 0)
        self.setCurrentIndex(index)  # selects just this tile (ExtendedSelection)
        self.scrollTo(index)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if mods == Qt.KeyboardModifier.NoModifier and Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
            self.labelShortcut.emit(str(key - Qt.Key.Key_0))
            return
        if mods == Qt.KeyboardModifier.NoModifier and key in (
            Qt.Key.Key_0, Qt.Key.Key_Backspace, Qt.Key.Key_Delete
        ):
            self.unlabelRequested.emit()
            return
        if key == Qt.Key.Key_Space:
            self.move_current(-1 if mods & Qt.KeyboardModifier.ShiftModifier else 1)
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.activatedImage.emit(self.currentIndex().row())
            return
        super().keyPressEvent(event)
