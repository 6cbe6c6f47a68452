"""The main window's gallery and labeling: the filter, the images shown, the current image
in the viewer, labeling the selection (keys, menus) and going to the next unlabeled image,
and the counts in the status bar. A mixin of ``MainWindow``; labels change through the
controller, so they are undoable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex

from densestudio.ui.mixins import WindowMixin

if TYPE_CHECKING:
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QLabel, QTabWidget

    from densestudio.core.store import ImageInfo
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.filter_bar import FilterBar
    from densestudio.ui.gallery_model import GalleryModel
    from densestudio.ui.gallery_view import GalleryView
    from densestudio.ui.viewer import ImageViewer


class GalleryFlows(WindowMixin):
    """Filter, selection, labeling and counts of ``MainWindow``'s Images tab."""

    if TYPE_CHECKING:  # what they use of the window
        controller: ProjectController | None
        model: GalleryModel
        gallery: GalleryView
        viewer: ImageViewer
        filter_bar: FilterBar
        tabs: QTabWidget
        status_count: QLabel
        auto_advance_action: QAction
        _matching: int

        def _fill_label_menu(self) -> None: ...

    def apply_filter(self) -> None:
        if self.controller is None:
            return
        current = self._current_image_id()
        self.model.set_query(self.filter_bar.image_filter(), self.filter_bar.sort_key(),
                             self.filter_bar.descending())
        row = self.model.row_of(current) if current is not None else None
        if row is None and self.model.rowCount():
            row = 0
        if row is not None:
            self.gallery.go_to_row(row)
        else:
            self.viewer.show_image(None)

    def _show_class(self, class_id: int | None) -> None:
        self.filter_bar.set_class(class_id)

    def _show_split(self, split: str) -> None:
        self.filter_bar.set_split(split)

    def show_images(self, image_ids: list[int], title: str = "") -> None:
        """Show exactly these images in the Images tab (until the filter changes)."""
        if self.controller is None:
            return
        self.tabs.setCurrentIndex(0)
        self.model.set_ids(list(image_ids))
        self.gallery.go_to_row(0)
        self.statusBar().showMessage(
            f"Showing {title or f'{len(image_ids):,} images'}; change the filter to see all.",
            10000)

    def _on_model_reset(self) -> None:
        total = self.controller.counts().total if self.controller else 0
        if self.controller is None:
            self.gallery.empty_text = ""
        elif total == 0:
            self.gallery.empty_text = ("No images yet.\n\nDrop folders or files here, or use "
                                       "File › Import Images… (Ctrl+I).")
        else:
            self.gallery.empty_text = "No images match the filter."
        self.gallery.viewport().update()

    def _current_image_id(self) -> int | None:
        index = self.gallery.currentIndex()
        if not index.isValid() or index.row() >= self.model.rowCount():
            return None
        return self.model.image_id(index.row())

    def selected_image_ids(self) -> list[int]:
        ids = self.model.ids_in_selection(self.gallery.selectionModel().selection())
        if not ids:
            current = self._current_image_id()
            ids = [current] if current is not None else []
        return ids

    def label_with_shortcut(self, key: str) -> None:
        if self.controller is None:
            return
        cls = self.controller.class_for_shortcut(key)
        if cls is None:
            self.statusBar().showMessage(
                f"No class has the shortcut {key}. Add classes in the Classes panel.", 5000)
            return
        self.label_selection(cls.id)

    def label_selection(self, class_id: int | None) -> None:
        if self.controller is None:
            return
        ids = self.selected_image_ids()
        if not ids:
            self.statusBar().showMessage("Select images to label first.", 4000)
            return
        change = self.controller.label_images(ids, class_id)
        if change is None:
            return
        cls = self.controller.class_by_id(class_id)
        what = f"{len(ids):,} image{'s' if len(ids) != 1 else ''}"
        self.statusBar().showMessage(
            f"Labeled {what} as '{cls.name}'." if cls else f"Removed the label of {what}.", 4000)
        if len(ids) == 1 and class_id is not None and self.auto_advance_action.isChecked():
            self.go_to_next_unlabeled(quiet=True)

    def go_to_next_unlabeled(self, quiet: bool = False) -> bool:
        if self.controller is None:
            return False
        index = self.gallery.currentIndex()
        start = index.row() if index.isValid() else -1
        row = self._next_unlabeled_row(start)
        if row is None:
            if not quiet:
                self.statusBar().showMessage("No unlabeled image after this one.", 4000)
            return False
        self.gallery.go_to_row(row)
        return True

    def _next_unlabeled_row(self, start: int) -> int | None:
        # Look a little ahead in rows already in memory; then ask the store once.
        limit = min(self.model.rowCount(), start + 1 + 1000)
        for row in range(start + 1, limit):
            info = self.model.info(row)
            if info is not None and info.label_id is None:
                return row
        if limit >= self.model.rowCount():
            return None
        from dataclasses import replace

        flt = replace(self.model.filter, class_ids=None, unlabeled=True)
        if self.model.explicit:
            flt = replace(flt, image_ids=tuple(self.model.ids))
        assert self.controller is not None  # the model has rows
        best = None
        for image_id in self.controller.project.image_ids(flt, self.model.sort_by,
                                                          self.model.descending):
            found = self.model.row_of(image_id)
            if found is not None and found > start and (best is None or found < best):
                best = found
                if self.model.explicit is False:
                    break  # same order as the view: the first one after start is it
        return best

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            self.viewer.show_image(None)
            return
        info = self.model.info(current.row())
        self.viewer.show_image(info, self.model.class_of(info))

    def _on_labels_changed(self, image_ids: list[int]) -> None:
        info = self.viewer.info
        if info is not None and info.id in set(image_ids):
            row = self.model.row_of(info.id)
            fresh = self.model.info(row) if row is not None else None
            if fresh is None and self.controller is not None:
                fresh = self.controller.project.image(info.id)
            self.viewer.update_label(fresh, self.model.class_of(fresh))

    def _on_classes_changed(self) -> None:
        if self.controller is None:
            return
        self.filter_bar.set_classes(self.controller.classes())
        self._fill_label_menu()
        info = self.viewer.info
        if info is not None:
            row = self.model.row_of(info.id)
            fresh: ImageInfo | None = self.model.info(row) if row is not None else info
            self.viewer.update_label(fresh, self.model.class_of(fresh))

    def _viewer_navigate(self, delta: int) -> None:
        self.gallery.move_current(delta)

    def _recount(self) -> None:
        """After a query or label changes (not on every selection change: one count query)."""
        self._matching = self.model.matching_count() if self.controller is not None else 0
        self._update_counts()

    def _update_counts(self, *_args: object) -> None:
        if self.controller is None:
            return
        total = self.controller.counts().total
        shown = self.model.rowCount()
        self.filter_bar.set_count(shown, total, min(self._matching, shown))
        selection = self.gallery.selectionModel().selection()
        selected = sum(r.height() for r in selection)  # type: ignore[attr-defined]  # stubs lack __iter__
        sel = f" · {selected:,} selected" if selected > 1 else ""
        unlabeled = self.controller.counts().count(None)
        self.status_count.setText(f"{total:,} images · {unlabeled:,} unlabeled{sel}")
