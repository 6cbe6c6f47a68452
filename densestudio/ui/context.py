"""What panels and dialogs may use of the application: a small typed context.

The main window provides it (and a test, a fake one): a panel needs the open project's
controller, the thumbnail loader, the job runner, the status line, an error dialog, a way to
show some images in the gallery, heatmaps and a context menu. It never receives the window
itself, so no panel imports ``ui.main_window`` (docs/ARCHITECTURE.md, "How to add a panel").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QMenu

    from densestudio.ui.controller import ProjectController
    from densestudio.ui.heatmaps import HeatmapService
    from densestudio.ui.thumbnail_loader import ThumbnailLoader
    from densestudio.ui.workers import JobRunner


class AppContext(Protocol):
    @property
    def controller(self) -> ProjectController | None:
        """The open project (None while none is open)."""
        ...

    @property
    def loader(self) -> ThumbnailLoader:
        """Thumbnails, decoded off the GUI thread."""
        ...

    @property
    def heatmaps(self) -> HeatmapService:
        """Explanations ("where is the model looking?"), computed in the background."""
        ...

    @property
    def jobs(self) -> JobRunner:
        """Every background job starts here."""
        ...

    def status(self, message: str, ms: int = 4000) -> None:
        """A message in the status line for ``ms`` milliseconds."""

    def show_error(self, title: str, message: str) -> None:
        """A user-facing error, without blocking."""

    def show_images(self, image_ids: list[int], title: str = "") -> None:
        """Exactly these images in the Images tab (until the filter changes)."""

    def exec_menu(self, menu: QMenu, global_pos: QPoint) -> None:
        """Open a context menu (tests replace this to pick an action)."""
