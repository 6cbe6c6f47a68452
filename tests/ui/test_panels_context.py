"""Panels built with a fake application context (ui.context.AppContext), no main window:
what they need of the app is the context, and what they say goes through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from densestudio.core.store import Project
from densestudio.ui.controller import ProjectController
from tests.ui.fake_context import FakeContext, fake_context


@pytest.fixture
def ctx(qtbot: QtBot, tmp_path: Path) -> Iterator[FakeContext]:
    from densestudio.ui.app import create_application

    create_application([])
    context = fake_context(ProjectController(Project.create(tmp_path / "p.dsproj")))
    yield context
    context.close()
    assert context.controller is not None
    context.controller.close()


def test_every_panel_builds_and_follows_the_project_with_a_fake_context(
        qtbot: QtBot, ctx: FakeContext) -> None:
    from densestudio.ui.audit_panel import AuditPanel
    from densestudio.ui.review_panel import ReviewPanel
    from densestudio.ui.split_panel import SplitPanel
    from densestudio.ui.train_panel import TrainPanel

    panels = [TrainPanel(ctx), ReviewPanel(ctx), AuditPanel(ctx), SplitPanel(None, ctx.jobs)]
    for panel in panels:
        qtbot.addWidget(panel)
        panel.set_controller(ctx.controller)
    for panel in panels:
        panel.set_controller(None)
    assert ctx.errors == []


def test_a_panel_speaks_through_the_context(qtbot: QtBot, ctx: FakeContext) -> None:
    from densestudio.ui.review_panel import ReviewPanel

    panel = ReviewPanel(ctx)
    qtbot.addWidget(panel)
    panel.set_controller(ctx.controller)
    panel._label_with_shortcut("9")
    assert ctx.messages == ["No class has the shortcut 9."]


def test_a_panel_runs_its_job_through_the_runner_one_at_a_time(
        qtbot: QtBot, ctx: FakeContext) -> None:
    from densestudio.ui.split_panel import SplitPanel

    panel = SplitPanel(None, ctx.jobs)
    qtbot.addWidget(panel)
    panel.set_controller(ctx.controller)
    worker = panel.check_duplicates()
    assert worker is not None and ctx.jobs.job_of(panel) is worker
    assert panel.check_duplicates() is None  # one job per panel
    qtbot.waitUntil(lambda: not ctx.jobs.busy(panel), timeout=30_000)
    assert panel.worker is None


def test_golden_marks_reach_the_app_as_a_controller_signal(qtbot: QtBot,
                                                           ctx: FakeContext) -> None:
    assert ctx.controller is not None
    with qtbot.waitSignal(ctx.controller.goldenChanged, timeout=1000) as got:
        ctx.controller.golden_changed("Marked 2 images as must-pass.")
    assert got.args == ["Marked 2 images as must-pass."]


def test_a_deleted_run_and_an_approval_reach_the_other_panels_as_controller_signals(
        qtbot: QtBot, ctx: FakeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Train tab deletes a run, the Review tab lists runs: they share no wiring, only
    the controller's ``runDeleted`` (and ``approvalsChanged``) signals."""
    from densestudio.core import runs as core_runs
    from densestudio.ml.config import TrainConfig
    from densestudio.ui.review_panel import ReviewPanel
    from densestudio.ui.train_panel import TrainPanel

    assert ctx.controller is not None
    project = ctx.controller.project
    run_id = core_runs.create_run(project, name="old", config_json=TrainConfig().to_json(),
                                  class_names=["a", "b"], snapshot=[])
    core_runs.update_run(project, run_id, status="failed")
    train, review = TrainPanel(ctx), ReviewPanel(ctx)
    for panel in (train, review):
        qtbot.addWidget(panel)
        panel.set_controller(ctx.controller)
    refreshed: list[bool] = []
    monkeypatch.setattr(review, "refresh_runs", lambda *a, **k: refreshed.append(True))
    listed: list[bool] = []
    monkeypatch.setattr(train.runs, "refresh", lambda *a, **k: listed.append(True))
    train.runs.confirm = lambda *_a: True  # type: ignore[method-assign]
    train.runs.infos = core_runs.list_runs(project)
    monkeypatch.setattr(train.runs, "selected_run_id", lambda: run_id)
    with qtbot.waitSignal(ctx.controller.runDeleted, timeout=1000) as deleted:
        assert train.runs.delete_selected()
    assert deleted.args == [run_id] and refreshed == [True]
    listed.clear()
    ctx.controller.approvals_changed()
    assert listed == [True]
