"""Controller + undo stack over the store, the gallery model, workers and settings."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from densestudio.core import history, signoff
from densestudio.core.errors import ProjectError
from densestudio.core.models import utcnow
from densestudio.core.progress import CancelToken, EventCallback, Progress
from densestudio.core.store import ImageFilter, Project, bulk_insert_images

if TYPE_CHECKING:
    from densestudio.ui.controller import ProjectController
    from densestudio.ui.main_window import MainWindow


def _add_rows(project: Project, n: int) -> list[int]:
    now = utcnow()
    rows = [dict(path=f"/nowhere/img_{i:04d}.png", filename=f"img_{i:04d}.png", folder="/nowhere",
                 content_hash=f"{i:032x}", byte_size=100, width=8, height=8, mode="L",
                 bit_depth=8, added_at=now, missing=False) for i in range(n)]
    with project.transaction() as s:
        bulk_insert_images(s, rows)
    return project.image_ids()


@pytest.fixture
def controller(qtbot: QtBot, tmp_path: Path) -> Iterator[ProjectController]:
    from densestudio.ui.controller import ProjectController

    project = Project.create(tmp_path / "c.dsproj")
    c = ProjectController(project)
    yield c
    c.close()


def test_label_undo_redo_persist(controller: ProjectController) -> None:
    ids = _add_rows(controller.project, 10)
    a = controller.add_class("a")
    b = controller.add_class("b")
    stack = controller.undo_stack
    controller.label_images(ids[:4], a.id)
    controller.label_images(ids[2:6], b.id)
    assert stack.count() == 4  # two classes, two label operations
    counts = controller.project.counts()
    assert counts.count(a.id) == 2 and counts.count(b.id) == 4
    stack.undo()
    assert controller.project.counts().count(a.id) == 4
    stack.undo()
    assert controller.project.counts().count(None) == 10
    stack.redo()
    stack.redo()
    assert controller.project.counts().count(b.id) == 4
    # A no-op label pushes nothing.
    controller.label_images(ids[2:6], b.id)
    assert stack.count() == 4
    assert "Label 4 images as 'b'" in stack.text(3)
    # the label history: bulk for a selection, keyboard for one image, undo and redo
    controller.label_images([ids[9]], a.id)
    assert [(e.how, e.old_class, e.new_class) for e in history.image_history(
        controller.project, ids[2])] == [
        ("bulk", None, "a"), ("bulk", "a", "b"), ("undo", "b", "a"), ("undo", "a", None),
        ("redo", None, "a"), ("redo", "a", "b")]
    assert [e.how for e in history.image_history(controller.project, ids[9])] == ["keyboard"]


def test_class_operations_undo(controller: ProjectController, qtbot: QtBot) -> None:
    ids = _add_rows(controller.project, 6)
    stack = controller.undo_stack
    a = controller.add_class("a")
    b = controller.add_class("b")
    c = controller.add_class("c")
    controller.label_images(ids[:2], a.id)
    controller.label_images(ids[2:4], b.id)
    controller.label_images(ids[4:], c.id)

    with qtbot.waitSignal(controller.classesChanged):
        assert controller.rename_class(a.id, "alpha")
    assert controller.class_by_id(a.id).name == "alpha"
    assert controller.recolor_class(a.id, "#123456")
    assert controller.move_class(c.id, -2)
    assert [x.name for x in controller.classes()] == ["c", "alpha", "b"]
    assert controller.class_for_shortcut("1").id == c.id

    assert controller.merge_classes([b.id], a.id)
    assert controller.project.counts().count(a.id) == 4
    assert controller.delete_class(c.id)
    assert controller.project.counts().count(None) == 2
    assert [x.name for x in controller.classes()] == ["alpha"]

    stack.undo()  # delete
    assert controller.project.counts().count(c.id) == 2
    assert controller.class_for_shortcut("1").id == c.id
    stack.undo()  # merge
    assert controller.project.counts().count(b.id) == 2
    assert {x.name for x in controller.classes()} == {"alpha", "b", "c"}
    stack.undo()  # move
    stack.undo()  # recolour
    assert controller.class_by_id(a.id).color != "#123456"
    stack.undo()  # rename
    assert controller.class_by_id(a.id).name == "a"
    for _ in range(5):
        stack.redo()
    assert [x.name for x in controller.classes()] == ["alpha"]
    assert controller.project.counts().count(a.id) == 4
    # Undo everything back to an empty class list, then redo all: ids stay stable.
    while stack.canUndo():
        stack.undo()
    assert controller.classes() == [] and controller.project.counts().count(None) == 6
    while stack.canRedo():
        stack.redo()
    assert controller.project.counts().count(a.id) == 4
    hows = {e.how for e in history.all_history(controller.project)}
    assert hows == {"bulk", "class-merge", "class-delete", "undo", "redo"}
    assert signoff.verify_project(controller.project).ok


def test_user_errors_become_messages(controller: ProjectController, qtbot: QtBot) -> None:
    controller.add_class("a")
    with qtbot.waitSignal(controller.error) as blocker:
        assert controller.add_class("a") is None
    assert "already exists" in blocker.args[0]
    assert controller.undo_stack.count() == 1


def test_gallery_model_pages_filters_and_overlay(
    controller: ProjectController, qtbot: QtBot
) -> None:
    from densestudio.ui import gallery_model
    from densestudio.ui.gallery_model import GalleryModel, TileOverlay
    from densestudio.ui.thumbnail_loader import ThumbnailLoader

    ids = _add_rows(controller.project, 450)
    a = controller.add_class("a")
    loader = ThumbnailLoader()
    model = GalleryModel(controller, loader)
    model.reload()
    assert model.rowCount() == 450
    assert model.info(0).filename == "img_0000.png"
    assert len(model._infos) == gallery_model.PAGE_SIZE  # one page loaded, not all rows
    assert model.info(449).filename == "img_0449.png"
    assert len(model._infos) == gallery_model.PAGE_SIZE + 50  # plus the last (short) page

    with qtbot.waitSignal(model.dataChanged):
        controller.label_images(ids[:3], a.id)
    assert model.class_of(model.info(0)).name == "a"
    model.set_query(ImageFilter(class_ids=(a.id,)))
    assert model.rowCount() == 3
    model.set_query(ImageFilter(unlabeled=True), sort="name", descending=True)
    assert model.rowCount() == 447 and model.info(0).filename == "img_0449.png"

    model.set_ids([ids[5], ids[1]], {ids[5]: TileOverlay(a.id, 0.9, correct=False)})
    assert model.rowCount() == 2 and model.image_id(0) == ids[5]
    assert model.data(model.index(0), GalleryModel.OverlayRole).confidence == 0.9
    assert model.data(model.index(1), GalleryModel.OverlayRole) is None
    assert model.row_of(ids[1]) == 1


def test_thumbnail_loader_decodes_off_thread_and_bounds_memory(qtbot: QtBot) -> None:
    import io
    import threading

    from densestudio.core.store import ImageInfo
    from densestudio.ui.thumbnail_loader import ThumbnailLoader

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    threads = set()

    def fetch(info: ImageInfo) -> bytes | None:
        threads.add(threading.get_ident())
        return None if info.id == 3 else jpeg

    loader = ThumbnailLoader(fetch, max_bytes=64 * 64 * 4 * 5)
    infos = [ImageInfo(i, f"/x/{i}.png", f"{i}.png", "/x", f"{i:032x}", 1, 64, 64, "L", 8,
                       utcnow(), False, None, None, None, None, None) for i in range(12)]
    for info in infos:
        loader.request(info)
    qtbot.waitUntil(lambda: loader.pending == 0, timeout=10_000)
    assert threading.get_ident() not in threads
    assert loader.failed(3)
    cached = [i for i in range(12) if loader.pixmap(i) is not None]
    assert 1 <= len(cached) <= 5  # bounded by bytes
    assert loader.cached_bytes <= 64 * 64 * 4 * 5
    loader.shutdown()


@dataclass(frozen=True)
class FakeProgress(Progress):
    done: int


@dataclass(frozen=True)
class EpochEnded:
    epoch: int


def test_worker_throttles_progress_but_keeps_other_events(qtbot: QtBot) -> None:
    from densestudio.ui.workers import Worker

    def job(n: int, on_event: EventCallback, cancel: CancelToken) -> str:
        for i in range(n):
            on_event(FakeProgress(i))
            if i % 100 == 0:
                on_event(EpochEnded(i // 100))
            time.sleep(0.0002)
        return "done"

    worker = Worker(job, 1000)
    events = []
    worker.event.connect(events.append)
    with qtbot.waitSignal(worker.done, timeout=20_000):
        with qtbot.waitSignal(worker.finished) as finished:
            worker.start()
    assert finished.args == ["done"]
    epochs = [e.epoch for e in events if isinstance(e, EpochEnded)]
    assert epochs == list(range(10))
    progress = [e.done for e in events if isinstance(e, FakeProgress)]
    assert progress[-1] == 999  # the last one always arrives
    assert len(progress) < 200  # throttled to ~10 Hz (plus the ones flushed before epochs)
    assert not worker.running


def test_worker_reports_errors_and_cancel(qtbot: QtBot) -> None:
    from densestudio.ui.workers import Worker

    def bad(on_event: EventCallback, cancel: CancelToken) -> None:
        raise ProjectError("That project is read-only.")

    w = Worker(bad)
    with qtbot.waitSignal(w.failed) as failed, qtbot.waitSignal(w.done):
        w.start()
    assert failed.args == ["That project is read-only."] and w.user_error

    def slow(on_event: EventCallback, cancel: CancelToken) -> None:
        while True:
            cancel.raise_if_cancelled()
            time.sleep(0.005)

    w2 = Worker(slow)
    w2.start()
    with qtbot.waitSignal(w2.cancelled, timeout=10_000), qtbot.waitSignal(w2.done):
        w2.cancel()


def test_preferences_and_recent_projects(tmp_path: Path) -> None:
    from densestudio.ui import settings

    prefs = settings.load_preferences()
    assert prefs == settings.Preferences()
    prefs.tile_size = 200
    prefs.auto_advance = False
    settings.save_preferences(prefs)
    assert settings.preferences_path().is_relative_to(tmp_path)
    assert settings.load_preferences().tile_size == 200
    settings.preferences_path().write_text("{broken")
    assert settings.load_preferences() == settings.Preferences()
    for i in range(12):
        settings.add_recent_project(tmp_path / f"p{i}.dsproj")
    recent = settings.recent_projects()
    assert len(recent) == settings.MAX_RECENT and recent[0].endswith("p11.dsproj")
    settings.add_recent_project(tmp_path / "p5.dsproj")
    assert settings.recent_projects()[0].endswith("p5.dsproj")


def test_window_geometry_is_remembered(qtbot: QtBot, window: MainWindow) -> None:
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences

    window.resize(760, 540)  # within the offscreen screen (800x600)
    window.close()
    again = MainWindow(Preferences())
    qtbot.addWidget(again)
    assert (again.width(), again.height()) == (window.width(), window.height()) == (760, 540)


def test_viewer_shows_16_bit_images_windowed(qtbot: QtBot, tmp_path: Path) -> None:
    from densestudio.core.store import ImageInfo
    from densestudio.ui.viewer import ImageViewer

    # A dim 12-bit sensor image in a 16-bit PNG: a plain >>8 would be nearly black.
    arr = (np.linspace(100, 900, 64 * 48).reshape(48, 64)).astype(np.uint16)
    path = tmp_path / "dim16.png"
    Image.fromarray(arr).save(path)
    info = ImageInfo(1, str(path), "dim16.png", str(tmp_path), "0" * 32, path.stat().st_size,
                     64, 48, "I;16", 16, utcnow(), False, None, None, None, None, "train")
    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.resize(400, 300)
    viewer.show()
    with qtbot.waitSignal(viewer.imageShown, timeout=10_000):
        viewer.show_image(info)
    pixmap = viewer.canvas._item.pixmap()
    assert (pixmap.width(), pixmap.height()) == (64, 48)
    image = pixmap.toImage()
    assert image.pixelColor(63, 47).lightness() > 200  # windowed: the top end is bright
    assert image.pixelColor(0, 0).lightness() < 40
    assert "16-bit" in viewer.details.text() and "windowed" in viewer.details.text()
    viewer.canvas.set_zoom(1.0)
    assert viewer.zoom_label.text() == "100 %"
    viewer.canvas.fit()
    assert viewer.canvas.fit_mode
    # A missing file is a message, not a crash.
    gone = ImageInfo(2, str(tmp_path / "gone.png"), "gone.png", str(tmp_path), "1" * 32, 1, 8, 8,
                     "L", 8, utcnow(), True, None, None, None, None, None)
    with qtbot.waitSignal(viewer.imageShown, timeout=10_000):
        viewer.show_image(gone)
    assert "Cannot show" in viewer.canvas.message
    viewer.shutdown()


def test_viewer_navigation_follows_gallery(
    qtbot: QtBot, window: MainWindow, neu_subset: Path, tmp_path: Path
) -> None:
    from densestudio.core.importer import ImportOptions

    assert window.new_project(tmp_path / "v.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([neu_subset], ImportOptions(labels_from_subfolders=True))
    with qtbot.waitSignal(window.viewer.imageShown, timeout=10_000):
        window.gallery.go_to_row(0)
    assert window.viewer.info.id == window.model.image_id(0)
    window.viewer.setFocus()
    from PySide6.QtCore import Qt

    qtbot.keyClick(window.viewer, Qt.Key.Key_Right)
    assert window.gallery.currentIndex().row() == 1
    assert window.viewer.info.id == window.model.image_id(1)
    # Keys in the viewer label the current image too.
    qtbot.keyClick(window.viewer, Qt.Key.Key_0)
    assert window.model.info(1).label_id is None
    assert "unlabeled" in window.viewer.details.text()


def test_demo_project_from_welcome(qtbot: QtBot, window: MainWindow) -> None:
    with qtbot.waitSignal(window.projectOpened, timeout=120_000) as opened:
        window.welcome.demo_button.click()
    path = Path(opened.args[0])
    assert path.is_relative_to(Path(window.demo_project_path()).parent)
    names = [c.name for c in window.controller.classes()]
    assert sorted(names) == ["crack", "ok", "scratch", "spot"]
    counts = window.controller.counts()
    assert counts.count(None) == 0 and counts.total >= 4 * 20
    assert counts.count(..., "test") > 0
    # Opening it again reuses the project (labels kept).
    window.close_project()
    assert window.stack.currentWidget() is window.welcome
    assert window.welcome.recent.count() == 1
    with qtbot.waitSignal(window.projectOpened, timeout=10_000):
        window.open_demo_project()
    assert window.controller.counts().total == counts.total


def test_open_bad_project_shows_message(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dsproj"
    bad.write_bytes(b"not sqlite at all" * 100)
    assert not window.open_project(bad)
    assert window.last_error and "bad.dsproj" in window.last_error
    assert window.stack.currentWidget() is window.welcome


def test_recent_projects_open_with_a_button_and_show_size_and_date(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    from tests.ml.conftest import add_images, write_images

    path = tmp_path / "line3.dsproj"
    assert window.new_project(path)
    add_images(window.controller.project, write_images(tmp_path / "imgs", n_per_class=2))
    window.controller.reload()
    window.close_project()
    welcome = window.welcome
    item = welcome.recent.item(0)
    lines = item.text().splitlines()
    assert lines[0] == "line3" and lines[2].startswith("6 images · opened 20")
    assert welcome.recent_hint.isVisible() and "Double-click" in welcome.recent_hint.text()
    assert not welcome.open_recent_button.isEnabled()  # nothing selected yet
    welcome.recent.setCurrentItem(item)  # a single click selects
    assert welcome.open_recent_button.isEnabled()
    with qtbot.waitSignal(window.projectOpened, timeout=10_000):
        qtbot.mouseClick(welcome.open_recent_button, Qt.MouseButton.LeftButton)
    assert window.controller is not None and window.controller.project.path == path.resolve()


def test_extreme_aspect_images_stay_visible_in_tiles_and_viewer(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """A 20000 x 3 strip was a 256 x 1 thumbnail and a 0.06-pixel line at "Fit"."""
    from densestudio.core.imaging import THUMBNAIL_MIN_SHORT_SIDE, make_thumbnail
    from densestudio.core.store import ImageInfo
    from densestudio.ui.viewer import MIN_FIT_SIDE, ImageViewer

    strip = Image.fromarray(np.full((3, 20000, 3), 200, np.uint8))
    tall = Image.fromarray(np.full((9000, 2), 90, np.uint8))
    sizes = {}
    for name, img in (("strip", strip), ("tall", tall), ("square", Image.new("RGB", (800, 600))),
                      ("tiny", Image.new("L", (5, 3)))):
        with Image.open(io.BytesIO(make_thumbnail(img))) as thumb:
            sizes[name] = thumb.size
    assert sizes == {"strip": (256, THUMBNAIL_MIN_SHORT_SIDE), "tall": (16, 256),
                     "square": (256, 192), "tiny": (5, 3)}

    path = tmp_path / "strip.png"
    strip.save(path)
    info = ImageInfo(1, str(path), "strip.png", str(tmp_path), "0" * 32, path.stat().st_size,
                     20000, 3, "RGB", 8, utcnow(), False, None, None, None, None, None)
    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    viewer.resize(400, 300)
    viewer.show()
    with qtbot.waitSignal(viewer.imageShown, timeout=10_000):
        viewer.show_image(info)
    canvas = viewer.canvas
    assert canvas.fit_mode and 3 * canvas.zoom >= MIN_FIT_SIDE - 0.01
    assert canvas.horizontalScrollBar().value() == canvas.horizontalScrollBar().minimum()
    assert canvas.mapToScene(0, 0).x() <= 1, "shown from its start"


def test_preferences_refuse_a_name_the_cli_refuses(qtbot: QtBot, window: MainWindow) -> None:
    """Edit › Preferences refuses (never cuts) an over-long name or one with control
    characters, with the CLI's message; nothing is saved and the recorded name stays."""
    from densestudio.core.users import MAX_AUTHOR, current_user, normalize_author
    from densestudio.ui import settings

    before = current_user()
    for bad in ("x" * (MAX_AUTHOR + 1), "Q.\x07Inspector", "two\nlines"):
        with pytest.raises(ProjectError) as refused:
            normalize_author(bad)
        dialog = window.show_preferences()
        dialog.user_name.setText(bad)
        assert dialog.user_name.text() == bad  # not cut while typing or pasting
        assert dialog.name_error.text() == str(refused.value)
        assert not dialog.ok_button.isEnabled()
        dialog.accept()  # e.g. Enter in the field
        assert dialog.isVisible() and dialog.result() == 0
        assert window.prefs.user_name == "" and current_user() == before
        assert settings.load_preferences().user_name == ""
        dialog.reject()
        with pytest.raises(ProjectError):
            settings.apply_user_name(settings.Preferences(user_name=bad))
    dialog = window.show_preferences()
    dialog.user_name.setText("x" * MAX_AUTHOR)  # at the limit: fine
    assert dialog.name_error.text() == "" and dialog.ok_button.isEnabled()
    dialog.accept()
    assert current_user() == "x" * MAX_AUTHOR == window.prefs.user_name
    window.prefs.user_name = ""
    settings.apply_user_name(window.prefs)


def test_a_hand_edited_overlong_name_is_not_used(qtbot: QtBot) -> None:
    from densestudio.core.users import current_user
    from densestudio.ui.app import create_application
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences

    create_application([])
    before = current_user()
    win = MainWindow(Preferences(user_name="y" * 65))
    qtbot.addWidget(win)
    assert current_user() == before and win.prefs.user_name == ""
    assert "at most 64 characters" in win.statusBar().currentMessage()
    win.close()
