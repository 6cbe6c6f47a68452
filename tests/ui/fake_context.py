"""A fake application context (ui.context.AppContext) for building panels without the
main window: it records what a panel says and shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QMenu

from densestudio.ui.context import AppContext
from densestudio.ui.controller import ProjectController
from densestudio.ui.heatmaps import HeatmapService
from densestudio.ui.thumbnail_loader import ThumbnailLoader
from densestudio.ui.workers import JobRunner


@dataclass
class FakeContext:
    controller: ProjectController | None = None
    messages: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    shown: list[tuple[list[int], str]] = field(default_factory=list)
    menus: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loader = ThumbnailLoader()
        self.jobs = JobRunner(self.show_error)
        self.heatmaps = HeatmapService(None, self.jobs)

    def status(self, message: str, ms: int = 4000) -> None:
        self.messages.append(message)

    def show_error(self, title: str, message: str) -> None:
        self.errors.append((title, message))

    def show_images(self, image_ids: list[int], title: str = "") -> None:
        self.shown.append((list(image_ids), title))

    def exec_menu(self, menu: QMenu, global_pos: QPoint) -> None:
        self.menus.append([a.text() for a in menu.actions() if a.text()])

    def close(self) -> None:
        self.heatmaps.shutdown()
        self.jobs.cancel_all()
        self.loader.shutdown()


def fake_context(controller: ProjectController | None = None) -> FakeContext:
    ctx = FakeContext(controller)
    _typed: AppContext = ctx  # mypy: the fake is an AppContext
    return ctx
