"""The gallery's Qt model: a list of image ids, with row details paged in on demand.

Opening a view runs one query for the ids in display order (ints only; ~0.1 s at 100k).
Row details (``ImageInfo``) load in pages of ``PAGE_SIZE`` the first time a row is painted
and stay in a bounded cache, so painting never runs SQL per tile. The same model can show an
explicit id list (e.g. a confusion-matrix cell, sorted by confidence) and an overlay of
per-image predictions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import (
    QAbstractListModel,
    QItemSelection,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)

from densestudio.core.store import ClassInfo, ImageFilter, ImageInfo
from densestudio.ui.controller import ProjectController
from densestudio.ui.thumbnail_loader import ThumbnailLoader

PAGE_SIZE = 200
MAX_CACHED_PAGES = 100  # 20,000 rows of details


@dataclass(frozen=True)
class TileOverlay:
    """A prediction shown on a tile (filled in by the review panel later)."""

    predicted_class_id: int | None
    confidence: float
    correct: bool | None = None  # None when the image has no label to compare with
    text: str = ""  # extra line, e.g. "p=0.93"
    relabeled: bool = False  # the label changed since the run that made the prediction
    decision: str = ""  # "OK" / "NG" / "UNSURE" when the run has an operating point
    reason: str = ""  # a failed frame check ("too dark", "out of focus", ...): UNSURE
    p_good: str = ""  # "P(ok) 29%": what the decision was made from


class GalleryModel(QAbstractListModel):
    IdRole = Qt.ItemDataRole.UserRole + 1
    InfoRole = Qt.ItemDataRole.UserRole + 2
    ClassRole = Qt.ItemDataRole.UserRole + 3
    OverlayRole = Qt.ItemDataRole.UserRole + 4
    ThumbStateRole = Qt.ItemDataRole.UserRole + 5  # "ready" | "loading" | "failed"
    HeatmapRole = Qt.ItemDataRole.UserRole + 6  # QPixmap laid over the thumbnail (or None)

    queryChanged = Signal()

    def __init__(
        self,
        controller: ProjectController | None,
        loader: ThumbnailLoader,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.loader = loader
        self.filter = ImageFilter()
        self.sort_by = "name"
        self.descending = False
        self.explicit = False
        self._ids: list[int] = []
        self._row_of: dict[int, int] | None = None
        self._infos: dict[int, ImageInfo] = {}
        self._pages: OrderedDict[int, list[int]] = OrderedDict()
        self._classes: dict[int, ClassInfo] = {}
        self._overlay: dict[int, TileOverlay] = {}
        loader.ready.connect(self._on_thumbnail)
        if controller is not None:
            self._bind(controller)

    # ------------------------------------------------------------ setup
    def set_controller(self, controller: ProjectController | None) -> None:
        self.beginResetModel()
        self.controller = controller
        self._ids = []
        self._clear_cache()
        self._overlay = {}
        self.filter, self.sort_by = ImageFilter(), "name"
        self.descending, self.explicit = False, False
        self._classes = {}
        if controller is not None:
            self._bind(controller)
            self._ids = controller.project.image_ids(self.filter, self.sort_by, self.descending)
        self.endResetModel()
        self.queryChanged.emit()

    def _bind(self, controller: ProjectController) -> None:
        self._classes = {c.id: c for c in controller.classes()}
        controller.labelsChanged.connect(self.refresh_images)
        controller.classesChanged.connect(self._on_classes_changed)
        controller.splitsChanged.connect(self._on_splits_changed)

    # ------------------------------------------------------------ queries
    def set_query(
        self, flt: ImageFilter | None = None, sort: str | None = None,
        descending: bool | None = None,
    ) -> None:
        """Show the images matching ``flt`` in this order (one id query, then a reset)."""
        if flt is not None:
            self.filter = flt
        if sort is not None:
            self.sort_by = sort
        if descending is not None:
            self.descending = descending
        self.explicit = False
        self.reload()

    def set_ids(self, image_ids: Sequence[int],
                overlay: dict[int, TileOverlay] | None = None) -> None:
        """Show exactly these images in this order (e.g. misclassified, by confidence)."""
        self.beginResetModel()
        self.explicit = True
        self._ids = list(image_ids)
        self._row_of = None
        self._clear_cache()
        if overlay is not None:
            self._overlay = dict(overlay)
        self.endResetModel()
        self.queryChanged.emit()

    def set_overlay(self, overlay: dict[int, TileOverlay]) -> None:
        self._overlay = dict(overlay)
        self._emit_all_changed([self.OverlayRole])

    def reload(self) -> None:
        """Re-run the query (after an import, a filter change, another process's edits)."""
        if self.controller is None:
            return
        ids = (
            self._ids
            if self.explicit
            else self.controller.project.image_ids(self.filter, self.sort_by, self.descending)
        )
        self.beginResetModel()
        self._ids = list(ids)
        self._row_of = None
        self._clear_cache()
        self.endResetModel()
        self.queryChanged.emit()

    # ------------------------------------------------------------ access
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._ids)

    @property
    def ids(self) -> list[int]:
        return self._ids

    def image_id(self, row: int) -> int:
        return self._ids[row]

    def row_of(self, image_id: int) -> int | None:
        if self._row_of is None:
            self._row_of = {image_id: row for row, image_id in enumerate(self._ids)}
        return self._row_of.get(image_id)

    def info(self, row: int) -> ImageInfo | None:
        if not 0 <= row < len(self._ids):
            return None
        image_id = self._ids[row]
        info = self._infos.get(image_id)
        if info is None:
            self._load_page(row // PAGE_SIZE)
            info = self._infos.get(image_id)
        return info

    def matching_count(self) -> int:
        """How many images match the filter now. Rows stay while the user labels (so the
        selection does not jump), so with the Unlabeled or a class filter this can be fewer
        than the rows shown."""
        if self.explicit or self.controller is None:
            return len(self._ids)
        return self.controller.project.count_images(self.filter)

    def class_of(self, info: ImageInfo | None) -> ClassInfo | None:
        if info is None or info.label_id is None:
            return None
        return self._classes.get(info.label_id)

    def class_by_id(self, class_id: int | None) -> ClassInfo | None:
        return None if class_id is None else self._classes.get(class_id)

    def ids_in_selection(self, selection: QItemSelection) -> list[int]:
        """Image ids of a selection, in display order, without one QModelIndex per row."""
        rows: set[int] = set()
        for rng in selection:  # type: ignore[attr-defined]  # stubs lack __iter__
            rows.update(range(rng.top(), rng.bottom() + 1))
        return [self._ids[r] for r in sorted(rows) if r < len(self._ids)]

    def next_unlabeled_row(self, after: int) -> int | None:
        """The first row after ``after`` whose image has no label (pages in as it goes)."""
        for row in range(after + 1, len(self._ids)):
            info = self.info(row)
            if info is not None and info.label_id is None:
                return row
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row = index.row()
        if role == self.IdRole:
            return self._ids[row]
        info = self.info(row)
        if info is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return info.name
        if role == self.InfoRole:
            return info
        if role == self.ClassRole:
            return self.class_of(info)
        if role == Qt.ItemDataRole.DecorationRole:
            pixmap = self.loader.pixmap(info.id)
            if pixmap is None and not self.loader.failed(info.id):
                self.loader.request(info)
            return pixmap
        if role == self.ThumbStateRole:
            if self.loader.failed(info.id):
                return "failed"
            return "ready" if self.loader.pixmap(info.id) is not None else "loading"
        if role == self.OverlayRole:
            return self._overlay.get(info.id)
        if role == Qt.ItemDataRole.ToolTipRole:
            cls = self.class_of(info)
            label = cls.name if cls else "unlabeled"
            split = f" · {info.split}" if info.split else ""
            tip = f"{info.path}\n{info.width}×{info.height} · {label}{split}"
            overlay = self._overlay.get(info.id)
            if overlay is not None:
                pred = self.class_by_id(overlay.predicted_class_id)
                tip += f"\npredicted: {pred.name if pred else '?'} ({overlay.confidence:.0%})"
                if overlay.reason:
                    tip += f"\nUNSURE: {overlay.reason} (frame check; not judged)"
                elif overlay.decision:
                    tip += (f"\nOK/NG threshold says: {overlay.decision}"
                            + (f" ({overlay.p_good})" if overlay.p_good else ""))
                if overlay.relabeled:
                    tip += "\nrelabeled since the run"
            return tip
        return None

    # ------------------------------------------------------------ updates
    def refresh_images(self, image_ids: Iterable[int]) -> None:
        """Re-read the rows of these images (their label changed) and repaint their tiles.

        Rows stay where they are even if they no longer match the filter, so the
        selection and the keyboard position do not jump while the user labels.
        """
        if self.controller is None:
            return
        cached = [i for i in image_ids if i in self._infos]
        for start in range(0, len(cached), 5000):
            for info in self.controller.project.images_by_ids(cached[start : start + 5000]):
                self._infos[info.id] = info
        rows = sorted(r for r in (self.row_of(i) for i in cached) if r is not None)
        # Notify in contiguous runs (cheap even for a 100k-row bulk label).
        runs: list[tuple[int, int]] = []  # (first, last) row
        for row in rows:
            if runs and row == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], row)
            else:
                runs.append((row, row))
        for first, last in runs:
            self.dataChanged.emit(self.index(first), self.index(last))

    def _on_classes_changed(self) -> None:
        if self.controller is not None:
            self._classes = {c.id: c for c in self.controller.classes()}
        self._emit_all_changed()

    def _on_splits_changed(self) -> None:
        self._clear_cache()
        self._emit_all_changed()

    def _on_thumbnail(self, image_id: int) -> None:
        row = self.row_of(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def _emit_all_changed(self, roles: list[int] | None = None) -> None:
        if self._ids:
            self.dataChanged.emit(self.index(0), self.index(len(self._ids) - 1), roles or [])

    # ------------------------------------------------------------ paging
    def _clear_cache(self) -> None:
        self._infos.clear()
        self._pages.clear()
        self._row_of = None

    def _load_page(self, page: int) -> None:
        if self.controller is None:
            return
        ids = self._ids[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
        for info in self.controller.project.images_by_ids(ids):
            self._infos[info.id] = info
        self._pages[page] = ids
        self._pages.move_to_end(page)
        while len(self._pages) > MAX_CACHED_PAGES:
            _, old = self._pages.popitem(last=False)
            for image_id in old:
                self._infos.pop(image_id, None)
