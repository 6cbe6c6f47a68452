"""Relabeling the selected tiles of a results gallery (review, label audit) with 1-9."""

from __future__ import annotations


class RelabelSelectedMixin:
    """Needs ``self.controller`` (ProjectController | None), ``self.host`` (the main window)
    and ``self.selected_ids()``. Changes go through the controller, so they are undoable."""

    def _label_with_shortcut(self, key: str) -> None:
        if self.controller is None:
            return
        cls = self.controller.class_for_shortcut(key)
        if cls is None:
            self.host.statusBar().showMessage(f"No class has the shortcut {key}.", 4000)
            return
        self.relabel_selected(cls.id)

    def relabel_selected(self, class_id: int | None) -> int:
        """Label the selected tiles (undoable); they stay in view, marked "relabeled"."""
        if self.controller is None:
            return 0
        ids = self.selected_ids()
        if not ids:
            return 0
        change = self.controller.label_images(ids, class_id)
        n = len(change) if change is not None else 0
        cls = self.controller.class_by_id(class_id)
        if n:
            self.host.statusBar().showMessage(
                f"Relabeled {n} image{'s' if n != 1 else ''} as '{cls.name}'." if cls else
                f"Removed the label of {n} image{'s' if n != 1 else ''}.", 4000)
        return n
