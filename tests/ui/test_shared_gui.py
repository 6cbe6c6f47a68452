"""The GUI with several labelers: others' changes show up by themselves, a stale change is
refused with a message, per-author counts in the Classes panel, File > Open Shared
Project…, and the offline indicator of a shared project whose server went away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from densestudio.core.db import ServerURL
from densestudio.core.store import Project
from densestudio.ui.controller import ProjectController
from densestudio.ui.main_window import MainWindow
from tests.pg_server import PgServer
from tests.ui.test_labeling import _add_rows

Pair = tuple[ProjectController, ProjectController]  # two sessions on one project


@pytest.fixture
def two_windows(qtbot: QtBot, tmp_path: Path) -> Iterator[Pair]:
    """Two controllers on one project file, as two processes (or people) would have."""
    path = tmp_path / "team.dsproj"
    with Project.create(path) as project:
        _add_rows(project, 6)
        project.add_class("ok")
        project.add_class("ng")
    a, b = ProjectController(Project.open(path)), ProjectController(Project.open(path))
    yield a, b
    a.close()
    b.close()


def test_others_changes_arrive_and_stale_ones_are_refused(qtbot: QtBot, two_windows: Pair) -> None:
    a, b = two_windows
    ids = a.project.image_ids()
    ok, ng = (c.id for c in a.classes())
    arrived: list[list[int]] = []
    b.labelsChanged.connect(arrived.append)
    notices: list[str] = []
    b.notice.connect(notices.append)
    a.project.set_labels([ids[0]], ok, who="alice")  # alice, in another process
    # bob labels it before his window heard of alice's change: refused, and told
    change = b.label_images([ids[0], ids[1]], ng)
    assert change.image_ids == [ids[1]] and [c.image_id for c in change.conflicts] == [ids[0]]
    assert notices == ["'img_0000.png' was relabeled as 'ok' by alice a moment ago; your "
                       "change was not applied."]
    assert b.project.image(ids[0]).label_id == ok
    # later changes by alice reach bob's window by themselves, within ~2 s
    arrived.clear()
    a.project.set_labels([ids[2]], ok, who="alice")
    qtbot.waitUntil(lambda: any(ids[2] in batch for batch in arrived), timeout=3000)
    assert b.label_images([ids[2]], ng).conflicts == (), "seen now: bob may change it"
    b.undo_stack.undo()  # undo follows the rule too
    assert b.project.image(ids[2]).label_id == ok


def test_class_panel_shows_counts_per_author(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        ids = _add_rows(project, 5)
        ok = project.add_class("ok")
        project.set_labels(ids[:3], ok.id, who="alice")
        project.set_labels(ids[3:], ok.id, who="bob")
    assert window.open_project(path)
    panel = window.class_panel
    qtbot.waitUntil(lambda: "By alice 3 · bob 2." in panel.summary.text(), timeout=3000)
    assert panel.tree.topLevelItem(0).toolTip(2) == "Labeled by alice 3 · bob 2"


def test_open_shared_project_dialog(qtbot: QtBot) -> None:
    from densestudio.ui.shared_dialog import SharedProjectDialog

    dialog = SharedProjectDialog(["/x/a.dsproj", "postgresql://alice@db.plant/line3"])
    qtbot.addWidget(dialog)
    assert dialog.url.currentText() == "postgresql://alice@db.plant/line3", "recent URLs"
    dialog.password.setText("s3cret")
    dialog.accept()
    target = dialog.target()
    assert isinstance(target, ServerURL) and target.url.password == "s3cret"
    assert "s3cret" not in target.display
    again = SharedProjectDialog([])
    qtbot.addWidget(again)
    again.url.setCurrentText("/home/me/p.dsproj")
    again.accept()
    assert again.target() is None and "database URL such as" in again.problem.text()


@pytest.mark.postgres
def test_shared_project_in_the_window_and_offline(
    qtbot: QtBot, window: MainWindow, pg_server: PgServer, pg_database_url: str, tmp_path: Path
) -> None:
    from densestudio.ui import settings

    with Project.create(pg_database_url, files_root=tmp_path / "files") as project:
        ids = _add_rows(project, 4)
        ok = project.add_class("ok")
    with_password = ServerURL(ServerURL.parse(pg_database_url).url.set(password="pw-77"))
    assert window.open_project(with_password)
    name = with_password.name
    assert window.windowTitle() == f"{name} — DenseStudio"
    assert settings.recent_projects()[0] == with_password.display, "remembered, no password"
    assert "pw-77" not in settings.recent_projects()[0]
    info = settings.recent_project_info()[with_password.display]
    assert info["images"] == 4, "the welcome list's image count, keyed by the URL"
    status = window.connection_status
    assert status.isVisible() and status.text() == "shared · online"
    c = window.controller
    try:
        pg_server.kill()
        assert c.label_images([ids[0]], ok.id) is None, "queued, not lost"
        assert status.text() == "offline — 1 change waiting"
        pg_server.start()
        qtbot.waitUntil(lambda: status.text() == "shared · online", timeout=10_000)
    finally:
        if not pg_server.running():
            pg_server.start()
    assert c.project.image(ids[0]).label_id == ok.id


def test_images_added_elsewhere_appear_in_the_gallery(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        _add_rows(project, 3)
    assert window.open_project(path)
    assert window.model.rowCount() == 3
    with Project.open(path) as other:  # a CLI import, another machine
        from densestudio.core.store import bulk_insert_images

        with other.transaction() as s:
            bulk_insert_images(s, [dict(path="/nowhere/new.png", filename="new.png",
                                        folder="/nowhere", content_hash="f" * 32,
                                        byte_size=1, width=8, height=8, mode="L")])
    qtbot.waitUntil(lambda: window.model.rowCount() == 4, timeout=3000)
    assert window.status_count.text().startswith("4 images")
