"""Issue 24 item 4 in the Train tab: the input size from this computer's speed (measured in
the background once per session, or an earlier run's), and the time cap control. The
measurement is stubbed: tests never depend on this CPU's speed."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from densestudio.core.importer import ImportOptions
from densestudio.core.runs import OWNER_KEY, RunInfo
from densestudio.ml import budget
from densestudio.ui.train_panel import speed_from_runs
from tests.ml.conftest import write_images

if TYPE_CHECKING:
    from densestudio.ui.main_window import MainWindow

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture(autouse=True)
def _from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed logic on the from-scratch recommendation: with the shipped backbone, 20
    labeled images get the fast first model, whose input is capped at 128 px anyway."""
    monkeypatch.setattr("densestudio.ui.train_panel.backbone_problem", lambda: "not here")


def _project(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    write_images(tmp_path / "a", 10, classes=2, size=320)
    assert window.new_project(tmp_path / "p.dsproj")
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([tmp_path / "a"], ImportOptions(labels_from_subfolders=True))
    qtbot.waitUntil(lambda: window.import_worker is None, timeout=30_000)
    window.show_panel(window.train_panel)
    qtbot.waitUntil(lambda: window.train_panel.data_label.text().startswith("20 labeled"),
                    timeout=10_000)


def test_measured_speed_picks_the_input_size_and_says_so(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DENSESTUDIO_MEASURE_SPEED", "0")
    panel = window.train_panel
    _project(qtbot, window, tmp_path)
    table_size = panel.config().img_size
    assert table_size == 320 and "images/s" not in panel.reasons_label.text()

    # A very slow computer (1 image/s at 128 px): the same budget buys a smaller input.
    calls: list[tuple[str, str]] = []

    def slow(arch: str, device: str = "cpu", seconds: float = 3.0) -> float:
        calls.append((arch, device))
        return 1.0

    monkeypatch.setattr(budget, "measure_train_speed", slow)
    monkeypatch.setenv("DENSESTUDIO_MEASURE_SPEED", "1")
    qtbot.mouseClick(panel.defaults_button, LEFT)  # the recommendation, again, measuring now
    qtbot.waitUntil(lambda: panel.config().img_size < table_size, timeout=30_000)
    assert calls == [(panel.config().arch, panel.device_type)]
    text = panel.reasons_label.text()
    assert "about 1 images/s at 128 px (measured here)" in text
    # once per session: the next recommendation uses it without measuring again
    qtbot.mouseClick(panel.defaults_button, LEFT)
    assert len(calls) == 1 and panel.config().img_size < table_size

    # An earlier run of the model on this computer beats the measurement.
    run = _run(3, socket.gethostname(), panel.config().arch, panel.device_type)
    monkeypatch.setattr(panel.runs, "refresh", lambda select=None: None)
    panel.runs.infos = [run]
    qtbot.mouseClick(panel.defaults_button, LEFT)
    assert "about 40 images/s at 128 px (from run #3)" in panel.reasons_label.text()
    assert len(calls) == 1


def test_a_speed_that_arrives_after_an_edit_leaves_the_form_alone(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = window.train_panel
    gate = threading.Event()

    def slow(arch: str, device: str = "cpu", seconds: float = 3.0) -> float:
        gate.wait(30)
        return 1.0

    monkeypatch.setattr(budget, "measure_train_speed", slow)
    monkeypatch.setenv("DENSESTUDIO_MEASURE_SPEED", "1")
    try:
        _project(qtbot, window, tmp_path)
        assert panel.config().img_size == 320  # the table, while measuring
        panel.batch.setValue(8)
        panel.batch.editingFinished.emit()  # the user's own setting
    finally:
        gate.set()
    qtbot.waitUntil(lambda: bool(panel.speeds), timeout=30_000)
    assert panel.config().img_size == 320 and panel.config().batch_size == 8
    assert "measured here" not in panel.reasons_label.text()
    qtbot.mouseClick(panel.defaults_button, LEFT)  # asked for: now the measured speed counts
    assert panel.config().img_size < 320 and "measured here" in panel.reasons_label.text()


def _run(run_id: int, host: str, arch: str = "densenet_bc_1m", device: str = "cpu") -> RunInfo:
    return RunInfo(
        id=run_id, name="", created_at=datetime.now(UTC), finished_at=None, status="finished",
        config={"arch": arch, "img_size": 256, "aspect": 1.0}, class_names=("a", "b"),
        metrics={"train_images_per_s": 10.0}, best_epoch=1, best_score=None, epochs_done=1,
        checkpoint_best=None, checkpoint_last=None, error=None, device=device,
        extra={OWNER_KEY: {"host": host, "pid": 1}},
    )  # fmt: skip


def test_an_earlier_run_here_gives_the_speed() -> None:
    here = socket.gethostname()
    runs = [_run(5, "elsewhere"), _run(4, here, "densenet_bc_tiny"), _run(3, here),
            _run(2, here)]
    # 10 images/s at 256 x 256 px is 40 at 128 x 128; the newest run of the model, here
    assert speed_from_runs(runs, "densenet_bc_1m", "cpu") == (pytest.approx(40.0), 3)
    assert speed_from_runs(runs, "densenet_bc_1m", "cuda") is None
    assert speed_from_runs(runs[:1], "densenet_bc_1m", "cpu") is None


def test_the_cap_control_maps_to_the_time_cap(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    panel = window.train_panel
    _project(qtbot, window, tmp_path)
    assert not panel.cap_on.isChecked() and panel.config().time_cap_s is None  # as the CLI
    panel.budget.setValue(10)
    panel.cap_on.setChecked(True)
    panel.cap.setValue(25)
    assert panel.cap.isEnabled() and panel.config().time_cap_s == 1500.0
    assert panel.config().problems() == []
    panel.budget.setValue(30)  # the cap never falls below the budget
    assert panel.cap.value() == 30 and panel.config().time_cap_s == 1800.0
    panel.budget_on.setChecked(False)  # no budget, nothing to extend
    assert not panel.cap_on.isEnabled() and panel.config().time_cap_s is None
