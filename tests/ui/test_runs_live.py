"""A run trained elsewhere (a CLI or torchrun job writing to the same project) appears in
the Train tab's runs list and plots while it trains, from the database rows alone."""

from __future__ import annotations

from densestudio.core import runs as core_runs
from densestudio.core.store import Project
from densestudio.ui.runs_panel import COLUMNS
from tests.ml.conftest import add_images, tiny_config, write_images


def _epoch(n: int) -> core_runs.EpochMetricInfo:
    return core_runs.EpochMetricInfo(n, 1.0 / n, 1.2 / n, 0.5 + 0.1 * n, 0.5, 1e-3, 100.0, 2.0)


def test_run_written_by_another_process_shows_live(qtbot, window, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(tmp_path / "imgs", 4))
    assert window.open_project(path)
    panel = window.train_panel
    window.show_panel(panel)
    runs = panel.runs
    assert runs.poll_timer.isActive() and runs.row_of(1) is None

    with Project.open(path) as server:  # its own connection, as another process has
        names, rows = core_runs.current_label_rows(server)
        with qtbot.waitSignal(runs.runUpdated, timeout=20_000) as appeared:
            run_id = core_runs.create_run(
                server, name="on the GPU server", config_json=tiny_config(epochs=3).to_json(),
                class_names=names, snapshot=rows, device="cuda",
            )  # fmt: skip
        assert appeared.args == [run_id]
        runs.select_run(run_id)
        core_runs.update_run(server, run_id, status="running")
        for epoch in (1, 2):
            with qtbot.waitSignal(runs.runUpdated, timeout=20_000):
                core_runs.update_run(server, run_id, epoch_metric=_epoch(epoch),
                                     epochs_done=epoch, best_epoch=epoch)  # fmt: skip
            row = runs.row_of(run_id)
            assert runs.table.item(row, 1).text() == "training…"
            assert runs.table.item(row, COLUMNS.index("Epochs")).text().startswith(f"{epoch}/3")
            assert panel.plotted_run == run_id and panel.plots.epoch_count == epoch

    window.show_panel(window.review_panel)  # hidden: no polling
    assert not runs.poll_timer.isActive()


def test_a_run_whose_process_was_killed_shows_interrupted(qtbot, window, tmp_path) -> None:  # noqa: ANN001
    """A run left "running" by a killed process (SIGKILL, power cut) would show "training…"
    forever; the owner's host and pid tell that it is gone, and it can be resumed."""
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        add_images(project, write_images(tmp_path / "imgs", 4))
        names, rows = core_runs.current_label_rows(project)
        ids = {}
        here = core_runs.owner_here()
        owners = {"killed": {"host": here["host"], "pid": gone.pid},
                  "alive": here,
                  "elsewhere": {"host": "gpu-server-7", "pid": gone.pid}}
        if here["boot"]:  # Linux: the pid lives, but the computer restarted since
            owners["rebooted"] = {**here, "pid": os.getppid(), "boot": "an earlier boot"}
        for who, owner in owners.items():
            ids[who] = core_runs.create_run(
                project, name=who, config_json=tiny_config(epochs=3).to_json(),
                class_names=names, snapshot=rows, extra={core_runs.OWNER_KEY: owner})
        info = core_runs.get_run(project, ids["killed"])
        assert info.status == "running" and info.interrupted and info.resumable
        assert not core_runs.get_run(project, ids["alive"]).interrupted
        assert not core_runs.get_run(project, ids["elsewhere"]).interrupted, \
            "a run trained on another computer cannot be checked: it counts as running"
    assert window.open_project(path)
    runs = window.train_panel.runs
    window.show_panel(window.train_panel)
    status = {who: runs.table.item(runs.row_of(i), 1).text() for who, i in ids.items()}
    assert status.pop("rebooted", "interrupted (resumable)") == "interrupted (resumable)"
    assert status == {"killed": "interrupted (resumable)", "alive": "training…",
                      "elsewhere": "training…"}
