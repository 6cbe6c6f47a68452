"""Relabeling the selected tiles of a results gallery (review, label audit) with 1-9 or
from the tile context menu."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QPoint
from PySide6.QtWidgets import QMenu

from densestudio.core import history

if TYPE_CHECKING:
    from densestudio.ui.context import AppContext
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.gallery_view import GalleryView


class RelabelSelectedMixin:
    """Needs ``self.controller`` (ProjectController | None), ``self.host`` (the main window),
    ``self.gallery`` (a GalleryView) and ``self.selected_ids()``. Changes go through the
    controller, so they are undoable."""

    relabel_how = history.HOW_REVIEW  # how the label history records these changes

    if TYPE_CHECKING:  # what the panel using the mixin provides
        controller: ProjectController | None
        host: AppContext
        gallery: GalleryView

        def selected_ids(self) -> list[int]: ...

    def _menu_selection(self, pos: QPoint) -> list[int]:
        """The ids a context menu at ``pos`` acts on: a right-click on an unselected tile
        selects just that tile first."""
        index = self.gallery.indexAt(pos)
        if index.isValid() and not self.gallery.selectionModel().isSelected(index):
            self.gallery.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        return self.selected_ids() if self.controller is not None else []

    def _add_relabel_actions(self, menu: QMenu, remove_label: bool) -> None:
        """One "Relabel as ..." entry per class (with its key), optionally "Remove label"."""
        from densestudio.ui.class_panel import swatch

        assert self.controller is not None  # a menu on tiles of the open project
        for cls in self.controller.classes():
            key = f"\t{cls.shortcut}" if cls.shortcut else ""
            action = menu.addAction(swatch(cls.color), f"Relabel as {cls.name}{key}")
            action.triggered.connect(lambda _=False, cid=cls.id: self.relabel_selected(cid))
        if remove_label:
            menu.addAction("Remove label\t0", lambda: self.relabel_selected(None))

    def _label_with_shortcut(self, key: str) -> None:
        if self.controller is None:
            return
        cls = self.controller.class_for_shortcut(key)
        if cls is None:
            self.host.status(f"No class has the shortcut {key}.", 4000)
            return
        self.relabel_selected(cls.id)

    def relabel_selected(self, class_id: int | None) -> int:
        """Label the selected tiles (undoable); they stay in view, marked "relabeled"."""
        if self.controller is None:
            return 0
        ids = self.selected_ids()
        if not ids:
            return 0
        change = self.controller.label_images(ids, class_id, how=self.relabel_how)
        n = len(change) if change is not None else 0
        cls = self.controller.class_by_id(class_id)
        if n:
            self.host.status(
                f"Relabeled {n} image{'s' if n != 1 else ''} as '{cls.name}'." if cls else
                f"Removed the label of {n} image{'s' if n != 1 else ''}.", 4000)
        return n
