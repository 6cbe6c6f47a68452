"""The Review tab runs no SQL on the GUI thread: what it shows is read in jobs."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy import event

from densestudio.core.store import Project
from densestudio.ui.controller import ProjectController
from tests.ui.fake_context import FakeContext, fake_context
from tests.ui.signoff_fixtures import make_signoff_project

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow


@pytest.fixture
def opened(qtbot: QtBot, tmp_path: Path) -> Iterator[tuple[FakeContext, int, int]]:
    from densestudio.ui.app import create_application

    create_application([])
    path, run_a, run_b = make_signoff_project(tmp_path)
    ctx = fake_context(ProjectController(Project.open(path)))
    yield ctx, run_a, run_b
    ctx.close()
    assert ctx.controller is not None
    ctx.controller.close()


class QuerySpy:
    """Records where each statement on the project's engine came from: the GUI thread's
    ones with the Review modules on their stack."""

    def __init__(self, project: Project) -> None:
        self.engine = project.engine
        self.gui: list[str] = []
        self.elsewhere = 0
        self.watch = True
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not self.watch:
            return
        if threading.current_thread() is not threading.main_thread():
            self.elsewhere += 1
            return
        ours = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack()
                if "densestudio/ui/review" in f.filename.replace("\\", "/")]
        if ours:
            self.gui.append(ours[-1])

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_review_reads_in_jobs_never_on_the_gui_thread(
        qtbot: QtBot, opened: tuple[FakeContext, int, int]) -> None:
    from densestudio.ui.review_panel import ReviewPanel

    ctx, run_a, run_b = opened
    assert ctx.controller is not None
    spy = QuerySpy(ctx.controller.project)
    try:
        panel = ReviewPanel(ctx)
        qtbot.addWidget(panel)
        with qtbot.waitSignal(panel.loaded, timeout=30_000):
            panel.set_controller(ctx.controller)
        with qtbot.waitSignal(panel.loaded, timeout=30_000):
            panel.set_run(run_b)
        assert panel.report is not None and panel.model.ids
        with qtbot.waitSignal(panel.loaded, timeout=30_000):
            panel.set_compare(run_a)
        for kind in ("misclassified", "top_losses", "unlabeled", "a_only", "b_only"):
            panel.show_view(kind)
        ids = panel.show_cell(1, 0)
        # Labels changed (by anyone): the tiles follow, with labels read in a job.
        ok = next(c.id for c in ctx.controller.classes() if c.name == "ok")
        spy.watch = False  # the write itself is the controller's
        ctx.controller.label_images([ids[0]], ok)
        spy.watch = True
        qtbot.waitUntil(lambda: panel.overlay[ids[0]].relabeled, timeout=30_000)
        # The frame-check filter on the test set checks its frames in a job first.
        panel.show_view("misclassified")
        with qtbot.waitSignal(panel.shownChanged, timeout=30_000):
            panel.reason_combo.setCurrentIndex(panel.reason_combo.findData("*"))
        qtbot.waitUntil(lambda: panel.worker is None, timeout=30_000)
        assert panel.frames_checked
        with qtbot.waitSignal(panel.runsRead, timeout=30_000):
            panel.refresh_runs(reload=False)
        # Which images to predict is read in the job too: here none is unlabeled.
        with qtbot.waitSignal(panel.predictionsReady, timeout=30_000) as ready:
            assert panel.predict_unlabeled() is not None
        assert ready.args == [0]
        assert "There are no unlabeled images to predict." in ctx.messages
        qtbot.waitUntil(lambda: panel.worker is None, timeout=30_000)
        assert spy.elsewhere > 0  # the spy sees the jobs' queries
        assert sorted(set(spy.gui)) == [], "\n".join(sorted(set(spy.gui)))
    finally:
        spy.close()
    assert ctx.errors == []


def test_the_viewer_heatmap_run_is_picked_without_a_gui_thread_query(
        qtbot: QtBot, window: MainWindow, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The window picks the run that explains images in the viewer from the Review tab's run
    list (read in a job), never calling ``list_runs`` on the GUI thread; a run deleted or
    finished later is followed through the same list."""
    from densestudio.core import runs as core_runs

    path, run_a, run_b = make_signoff_project(tmp_path)
    with Project.open(path) as project:
        for run_id in (run_a, run_b):
            core_runs.update_run(project, run_id, checkpoint_best=str(tmp_path / f"{run_id}.pt"))
    original = core_runs.list_runs
    on_gui: list[str] = []

    def spy(*args: object, **kwargs: object) -> object:
        window_frames = [f"{f.name}:{f.lineno}" for f in traceback.extract_stack()
                         if f.filename.replace("\\", "/").endswith("ui/main_window.py")
                         and f.name == "_update_heatmap_run"]
        if window_frames and threading.current_thread() is threading.main_thread():
            on_gui.append(window_frames[-1])  # (other panels: not this test's business)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core_runs, "list_runs", spy)
    with qtbot.waitSignal(window.review_panel.runsRead, timeout=30_000):
        assert window.open_project(path)
    qtbot.waitUntil(lambda: window.viewer.heat_run is not None, timeout=30_000)
    assert window.viewer.heat_run in (run_a, run_b)
    shown = window.viewer.heat_run
    core_runs.delete_run(window.controller.project, shown)  # as the Runs list does
    window.controller.run_deleted(shown)
    qtbot.waitUntil(lambda: window.viewer.heat_run != shown, timeout=30_000)
    assert on_gui == [], "\n".join(on_gui)
