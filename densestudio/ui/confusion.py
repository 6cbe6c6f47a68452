"""A clickable confusion matrix: counts, row-normalised colour, class names on both axes.

Rows are the true class, columns the predicted class. The diagonal is shaded blue, mistakes
orange-red; the shade is the share of the row, so a rare class's errors stand out as much as
a frequent one's. Clicking a cell emits ``cellClicked(true_index, predicted_index)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QWidget,
)

from densestudio.ui.gallery_view import text_color_for


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    t = max(0.0, min(1.0, t))
    return QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


WHITE = QColor("#ffffff")
DIAGONAL = QColor("#08519c")
MISTAKE = QColor("#cb181d")


class ConfusionModel(QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.names: list[str] = []
        self.counts: list[list[int]] = []
        self._bold = QFont()
        self._bold.setBold(True)

    def set_matrix(self, names: Sequence[str], counts: Sequence[Sequence[int]]) -> None:
        self.beginResetModel()
        self.names = list(names)
        self.counts = [list(map(int, row)) for row in counts]
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.counts)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.names)

    def share(self, row: int, col: int) -> float:
        total = sum(self.counts[row])
        return self.counts[row][col] / total if total else 0.0

    def color(self, row: int, col: int) -> QColor:
        share = self.share(row, col)
        if self.counts[row][col] == 0:
            return WHITE
        target = DIAGONAL if row == col else MISTAKE
        # Any non-zero cell gets a visible tint; full colour at 100 % of the row.
        return _mix(WHITE, target, 0.12 + 0.88 * share)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        n = self.counts[r][c]
        if role == Qt.ItemDataRole.DisplayRole:
            return str(n)
        if role == Qt.ItemDataRole.BackgroundRole:
            return self.color(r, c)
        if role == Qt.ItemDataRole.ForegroundRole:
            return text_color_for(self.color(r, c)) if n else QColor("#9a9a9a")
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.FontRole and r == c:
            return self._bold
        if role == Qt.ItemDataRole.ToolTipRole:
            what = "correct" if r == c else "mistakes"
            return (f"True {self.names[r]}, predicted {self.names[c]}: {n} image"
                    f"{'s' if n != 1 else ''} ({self.share(r, c):.0%} of {self.names[r]}, "
                    f"{what}). Click to show them.")
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if section >= len(self.names):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.names[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            kind = "true" if orientation == Qt.Orientation.Vertical else "predicted"
            return f"{kind} class: {self.names[section]}"
        return None


class _CellDelegate(QStyledItemDelegate):
    """Colour, count and (for the active cell) a thick outline; no selection highlight."""

    def __init__(self, view: ConfusionMatrixView) -> None:
        super().__init__(view)
        self.view = view

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        model: ConfusionModel = index.model()  # type: ignore[assignment]
        r, c = index.row(), index.column()
        rect = option.rect
        painter.save()
        painter.fillRect(rect, model.color(r, c))
        painter.setPen(model.data(index, Qt.ItemDataRole.ForegroundRole))
        font = QFont(option.font)
        font.setBold(r == c)
        painter.setFont(font)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(model.counts[r][c]))
        if self.view.active == (r, c):
            painter.setPen(QPen(QColor("#111111"), 3))
            painter.drawRect(rect.adjusted(1, 1, -2, -2))
        painter.restore()


class RotatedHeader(QHeaderView):
    """Column header with the class names written bottom-to-top, so long names fit."""

    MAX_HEIGHT = 150

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setMinimumSectionSize(24)

    def _names(self) -> list[str]:
        model = self.model()
        if model is None:
            return []
        return [str(model.headerData(i, Qt.Orientation.Horizontal) or "")
                for i in range(model.columnCount())]

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        width = max((fm.horizontalAdvance(n) for n in self._names()), default=0)
        return QSize(super().sizeHint().width(), min(self.MAX_HEIGHT, width + 14))

    def paintSection(self, painter: QPainter, rect: QRect, index: int) -> None:
        painter.save()
        pal = self.palette()
        painter.fillRect(rect, pal.color(QPalette.ColorRole.Button))
        painter.setPen(pal.color(QPalette.ColorRole.Mid))
        painter.drawLine(rect.topRight(), rect.bottomRight())
        painter.drawLine(rect.bottomLeft(), rect.bottomRight())
        names = self._names()
        text = names[index] if index < len(names) else ""
        fm = self.fontMetrics()
        text = fm.elidedText(text, Qt.TextElideMode.ElideRight, rect.height() - 10)
        painter.setPen(pal.color(QPalette.ColorRole.ButtonText))
        painter.translate(rect.center().x() + (fm.ascent() - fm.descent()) / 2,
                          rect.bottom() - 6)
        painter.rotate(-90)
        painter.drawText(0, 0, text)
        painter.restore()


class ConfusionMatrixView(QTableView):
    cellClicked = Signal(int, int)  # true index, predicted index

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.matrix = ConfusionModel(self)
        self.setHorizontalHeader(RotatedHeader(self))
        self.setModel(self.matrix)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.active: tuple[int, int] | None = None
        self.setItemDelegate(_CellDelegate(self))
        self.setCornerButtonEnabled(False)
        self.setWordWrap(False)
        self.setMouseTracking(True)
        self.viewport().setCursor(Qt.CursorShape.PointingHandCursor)
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().setMinimumSectionSize(22)
        self.clicked.connect(lambda index: self.click_cell(index.row(), index.column()))

    def set_matrix(self, names: Sequence[str], counts: Sequence[Sequence[int]]) -> None:
        self.active = None
        self.matrix.set_matrix(names, counts)
        self.horizontalHeader().updateGeometry()
        self.updateGeometries()

    def set_active(self, cell: tuple[int, int] | None) -> None:
        self.active = cell
        self.viewport().update()

    def click_cell(self, true_index: int, pred_index: int) -> None:
        """Outline a cell and report it (what a mouse click does)."""
        self.set_active((true_index, pred_index))
        self.cellClicked.emit(true_index, pred_index)
