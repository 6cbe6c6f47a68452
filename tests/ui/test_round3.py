"""Issue 21 in the GUI: figures that do not flatter, inputs that never change behind the
user's back. Uses the crafted sign-off project (stored predictions, no training)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QSpinBox, QWidget
from pytestqt.qtbot import QtBot
from sqlalchemy import update

from densestudio.core import splits
from densestudio.core.constants import SOURCE_PREDICTION
from densestudio.core.models import Image as ImageRow
from densestudio.ml.report import ReportOptions, build_report_html
from densestudio.ui.main_window import MainWindow
from tests.ml.conftest import copy_project
from tests.ui.conftest import review_run
from tests.ui.signoff_fixtures import image_id_of, make_signoff_project

Opened = tuple[MainWindow, int, int]


@pytest.fixture(scope="module")
def signoff_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    return make_signoff_project(tmp_path_factory.mktemp("round3-ui"))


@pytest.fixture
def opened(window: MainWindow, signoff_project: tuple[Path, int, int], tmp_path: Path) -> Opened:
    src, run_a, run_b = signoff_project
    dst = copy_project(src, tmp_path / src.name)
    assert window.open_project(dst)
    return window, run_a, run_b


def _leak(window: MainWindow) -> None:
    """A re-shot of a test image sits in train; a model made one test label."""
    project = window.controller.project
    a, b = image_id_of(project, "ok_00.png"), image_id_of(project, "ok_01.png")
    c = image_id_of(project, "ok_02.png")
    with project.transaction() as s:
        splits.write_groups(s, [[a, b]])
        s.execute(update(ImageRow).where(ImageRow.id == b).values(split="train"))
        s.execute(update(ImageRow).where(ImageRow.id == c).values(
            label_source=SOURCE_PREDICTION))
    window.controller.splitsChanged.emit()


def test_train_tab_review_header_and_report_warn_while_a_group_spans_splits(
        qtbot: QtBot, opened: Opened) -> None:
    window, _run_a, run_b = opened
    assert window.train_panel.leak_label.isHidden()
    _leak(window)
    label = window.train_panel.leak_label
    assert not label.isHidden() and "1 group of near-identical" in label.text()
    assert "touching the test set" in label.text()
    review_run(qtbot, window, run_b)
    header = window.review_panel.summary.text()
    assert "span more than one split" in header
    assert "1 test label came from a model" in header
    html = build_report_html(window.controller.project, run_b,
                             ReportOptions(mistakes=0, heatmaps=False, gate=False))
    assert "1 groups (2 images) span more than one split" in html
    assert "1 test labels came from a model" in html


def _wheel(widget: QWidget, steps: int = -1) -> None:
    """One notch of the mouse wheel over ``widget`` (negative: scroll down)."""
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_mouse_wheel_never_changes_an_unfocused_setting(qtbot: QtBot, window: MainWindow,
                                                        tmp_path: Path) -> None:
    """Scrolling the Train form over Batch size / Class balance changes nothing; the form
    scrolls on. A focused box still takes the wheel. One app-wide filter does it, so a
    spin box or combo made anywhere (here a fresh one) behaves the same."""
    assert window.new_project(tmp_path / "wheel.dsproj")
    panel = window.train_panel
    window.tabs.setCurrentIndex(1)
    qtbot.wait(50)
    window.setFocus()
    batch, balance = panel.batch.value(), panel.balance.currentIndex()
    assert panel.batch.focusPolicy() != Qt.FocusPolicy.WheelFocus  # a wheel gives no focus
    for _ in range(3):
        _wheel(panel.batch, -1)
        _wheel(panel.balance, -1)
    assert panel.batch.value() == batch and panel.balance.currentIndex() == balance
    panel.batch.setFocus()
    qtbot.waitUntil(panel.batch.hasFocus)
    _wheel(panel.batch, 1)
    assert panel.batch.value() == batch + panel.batch.singleStep()

    other = QSpinBox()  # any spin box in the app, made after start-up
    qtbot.addWidget(other)
    other.show()
    qtbot.waitExposed(other)
    other.clearFocus()
    _wheel(other, 1)
    assert other.value() == 0


def test_enter_in_the_threshold_field_applies_what_was_typed(qtbot: QtBot,
                                                              opened: Opened) -> None:
    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    dialog = window.review_panel.show_operating_point()
    assert dialog is not None
    qtbot.waitExposed(dialog)
    panel = dialog.panel
    panel.target.setValue(12.0)
    panel.pick_for_target()  # a message about the picked threshold
    picked = panel.threshold.value()
    editor = panel.threshold.lineEdit()
    panel.threshold.setFocus()
    editor.selectAll()
    qtbot.keyClicks(editor, "0.67")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert panel.threshold.value() == pytest.approx(0.67) != picked
    assert dialog.isVisible()  # Enter pressed no dialog button either
    assert "0.670" in panel.readout.text()
    assert "0.670" in panel.status.text() and "by hand" in panel.status.text()
    assert f"{picked:.4f}" not in panel.target_status.text()  # no stale message
    panel.band_check.setChecked(True)  # an UNSURE band: the readout says why n shrinks
    assert "denominators shrink" in panel.readout.text()


def test_training_status_and_run_list_show_the_checkpoint_metric(qtbot: QtBot,
                                                                  opened: Opened) -> None:
    from densestudio.core import runs
    from densestudio.ml.events import EpochEnded
    from densestudio.ui.train_panel import epoch_message

    event = EpochEnded(7, 3, 0.5, 0.61, 0.68, 0.4, 1e-3, 100.0, 2.0, True,
                       val_balanced_acc=0.52, monitor="val_balanced_acc", monitor_value=0.52)
    text = epoch_message(event, 20)
    assert text.startswith("Epoch 3/20: validation balanced accuracy 52.0 % (best so far)")
    assert "picks the checkpoint" in text and "accuracy 68.0 %" in text
    loss = EpochEnded(7, 3, 0.5, 0.61, 0.68, 0.4, 1e-3, 100.0, 2.0, False,
                      monitor="val_loss", monitor_value=0.61)
    assert "validation validation loss 0.610" not in epoch_message(loss, 20)
    assert "validation loss 0.610" in epoch_message(loss, 20)

    window, _a, _b = opened
    project = window.controller.project
    run_id = runs.create_run(project, name="stopped", config_json="{}", class_names=("a", "b"),
                             snapshot=[])
    runs.update_run(project, run_id, status="cancelled")
    runs.update_run_extra(project, run_id, **{runs.LIVE_KEY: {
        "metric": "val_balanced_acc", "best_epoch": 2, "best_value": 0.5625,
        "best_balanced_acc": 0.5625}})
    panel = window.train_panel.runs
    panel.refresh()
    row = panel.row_of(run_id)
    assert panel.table.item(row, 2).text() == "56.2 % (val, epoch 2)"


def test_validation_and_test_side_by_side(qtbot: QtBot, opened: Opened) -> None:
    """Review header and export summary put test and validation together; the OK/NG
    window opens on the split Review shows."""
    from densestudio.core import runs
    from densestudio.core.models import Prediction
    from densestudio.ui.export_dialog import describe

    window, _a, run_b = opened
    project = window.controller.project
    with project.transaction() as s:  # a third of run B's predictions become validation
        s.execute(update(Prediction).where(Prediction.run_id == run_b,
                                           Prediction.image_id % 3 == 0).values(subset="val"))
    info = runs.get_run(project, run_b)
    runs.update_run(project, run_b, metrics={**info.metrics, "test_acc": 0.8,
                                             "test_balanced_acc": 0.72, "val_acc": 0.6,
                                             "val_balanced_acc": 0.56})
    review_run(qtbot, window, run_b)
    panel = window.review_panel
    assert panel.subset == "test"
    header = panel.summary.text()
    shown = panel.report.balanced_accuracy  # the figure on screen leads
    assert f"test {shown * 100:.1f} % · validation 56.0 % balanced accuracy" in header
    assert f"{round(shown * 100 - 56)} points apart" in header
    dialog = panel.show_operating_point()
    assert dialog is not None and dialog.panel.subset == "test"
    dialog.close()
    with qtbot.waitSignal(panel.loaded, timeout=60_000):  # read in a job
        panel.subset_combo.setCurrentIndex(panel.subset_combo.findData("val"))
    val_shown = panel.report.balanced_accuracy
    assert f"validation {val_shown * 100:.1f} % · test 72.0 %" in panel.summary.text()
    dialog = panel.show_operating_point()
    assert dialog is not None and dialog.panel.subset == "val"
    fake = SimpleNamespace(path="/x/model.onnx", size_bytes=1_000_000, metadata={
        "metrics": runs.get_run(project, run_b).metrics, "onnx": True, "class_names": ["a"]})
    text = describe(fake)  # type: ignore[arg-type]  # the fields describe reads
    assert "Test vs validation" in text and "16 points apart" in text


def test_review_recounts_after_a_relabel(qtbot: QtBot, opened: Opened) -> None:
    from tests.ui.signoff_fixtures import MISSED

    window, _a, run_b = opened
    review_run(qtbot, window, run_b)
    panel = window.review_panel
    assert "relabeled since the run" not in panel.summary.text()
    project = window.controller.project
    missed = image_id_of(project, MISSED)  # a scratch run B calls ok
    ok = next(c.id for c in window.controller.classes() if c.name == "ok")
    window.controller.label_images([missed], ok)
    header = panel.summary.text()
    assert "1 image relabeled since the run" in header
    assert "<b>100.0 %</b> balanced accuracy, accuracy 100.0 %, 0 misclassified of 85" in header
    assert "as they were at the run's time" in header
    window.undo_action.trigger()
    assert "relabeled since the run" not in panel.summary.text()


def test_release_gate_without_an_approved_run_is_no_pass(qtbot: QtBot, opened: Opened) -> None:
    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    dialog = window.review_panel.show_gate()
    assert dialog.against_combo.currentData() is None  # nothing approved
    with qtbot.waitSignal(dialog.gateFinished, timeout=120_000) as finished:
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    result = finished.args[0]
    assert result.against is None and result.outcome == "nothing"
    text = dialog.verdict.text()
    assert "NOTHING TO COMPARE AGAINST" in text and "PASS" not in text
    assert "#1b7f3b" not in text  # never the green of a pass
    dialog.close()


def test_report_open_failing_says_so_with_the_path(
        qtbot: QtBot, opened: Opened, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtGui import QDesktopServices

    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    window.report_action.trigger()
    dialog = window.review_panel.report_dialog
    out = tmp_path / "r.html"
    dialog.path_edit.setText(str(out))
    dialog.mistakes.setValue(0)
    with qtbot.waitSignal(dialog.written, timeout=120_000):
        qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)
    opened_urls: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl",
                        lambda url: opened_urls.append(url.toLocalFile()) and False)
    qtbot.mouseClick(dialog.open_button, Qt.MouseButton.LeftButton)  # no browser starts
    assert opened_urls == [str(out)]
    assert "Could not open the report" in dialog.status.text()
    assert str(out) in dialog.status.text()
    dialog.close()


def test_decision_badge_shows_p_good_beside_ok_ng(qtbot: QtBot, opened: Opened) -> None:
    from densestudio.ml import operating_point as op
    from densestudio.ui.gallery_view import overlay_label
    from tests.ui.signoff_fixtures import MISSED

    window, _a, run_b = opened
    project = window.controller.project
    op.save_operating_point(project, run_b, op.OperatingPoint("ok", 0.85))
    review_run(qtbot, window, run_b)
    panel = window.review_panel
    missed = image_id_of(project, MISSED)  # P(ok) 0.8: the most likely class is ok
    panel.show_view("misclassified")
    overlay = panel.overlay[missed]
    assert (overlay.decision, overlay.p_good) == ("NG", "P(ok) 80%")
    assert overlay_label(overlay, "ok") == "✗ NG · P(ok) 80%"
    assert "ok" not in overlay_label(overlay, "ok").replace("P(ok)", "")


def test_review_tiles_open_in_the_viewer_and_resize(qtbot: QtBot, opened: Opened,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    window, _a, run_b = opened
    review_run(qtbot, window, run_b)
    panel = window.review_panel
    window.show_tab(panel)
    ids = panel.show_view("top_losses")
    assert len(ids) >= 3
    # Double-click: the Images tab shows exactly these tiles, the viewer the clicked one.
    rect = panel.gallery.visualRect(panel.model.index(2))
    qtbot.mouseClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(panel.gallery.viewport(), Qt.MouseButton.LeftButton,
                      pos=rect.center())
    assert window.tabs.currentIndex() == 0
    assert window.model.ids == ids and window.viewer.info.id == ids[2]
    # Enter on a tile does the same.
    window.show_tab(panel)
    panel.gallery.setFocus()
    panel.gallery.go_to_row(1)
    qtbot.keyClick(panel.gallery, Qt.Key.Key_Return)
    assert window.tabs.currentIndex() == 0 and window.viewer.info.id == ids[1]
    # The context menu has "Open in viewer".
    window.show_tab(panel)
    menus = []
    monkeypatch.setattr(window, "exec_menu", lambda menu, _pos: menus.append(menu))
    panel._tile_menu(panel.gallery.visualRect(panel.model.index(0)).center())
    opener = next(a for a in menus[0].actions() if a.text().startswith("Open in viewer"))
    opener.trigger()
    assert window.tabs.currentIndex() == 0 and window.viewer.info.id == ids[0]
    # Ctrl+ / Ctrl- change the Review tiles while Review is shown (not the Images tab's).
    window.show_tab(panel)
    before, images = panel.gallery.delegate.tile, window.filter_bar.tile_slider.value()
    window.bigger_action.trigger()
    assert panel.gallery.delegate.tile == before + 16
    window.smaller_action.trigger()
    window.smaller_action.trigger()
    assert panel.gallery.delegate.tile == before - 16
    assert window.filter_bar.tile_slider.value() == images


def test_training_seen_from_every_tab_and_export_shows_its_steps(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    from densestudio.ml.export import ExportProgress
    from densestudio.ui.train_panel import TrainPanel

    window, _a, run_b = opened
    panel = window.train_panel
    indicator = window.training_indicator
    assert indicator.isHidden()
    training: list[object] = [object()]  # a run is training (the panel's job, as the runner has it)
    monkeypatch.setattr(TrainPanel, "worker", property(lambda _self: training[0]))
    panel.progress.setRange(0, 1000)
    panel.progress.setFormat("Epoch 2/20 · step 3/9")
    panel.progress.setValue(120)
    window.show_tab(window.review_panel)
    assert not indicator.isHidden() and indicator.value() == 120
    assert indicator.format() == "Training: Epoch 2/20 · step 3/9"
    indicator.clicked.emit()
    assert window.tabs.currentWidget() is window._tab_page(panel)
    training[0] = None
    panel.trainingEnded.emit(None)
    assert indicator.isHidden()

    dialog = window.show_export_dialog(run_b)
    dialog.progress.start("Exporting…")
    dialog._on_export_event(ExportProgress(run_b, "converting to onnx"))
    assert not dialog.progress.isHidden()
    assert dialog.progress.bar.format() == "Step 3 of 4: converting to onnx…"
    assert dialog.progress.bar.value() == 2 and dialog.progress.bar.maximum() == 4
    dialog.close()


def test_empty_plots_show_no_fake_epoch_axis(qtbot: QtBot) -> None:
    from densestudio.ui.plots import TrainingPlots

    plots = TrainingPlots()
    qtbot.addWidget(plots)

    def shown(plot: object, axis: str) -> bool:
        return plot.getAxis(axis).style["showValues"]  # type: ignore[attr-defined]

    assert not shown(plots.loss_plot, "bottom") and not shown(plots.loss_plot, "left")
    assert not shown(plots.acc_plot, "bottom") and shown(plots.acc_plot, "left")  # 0-100 %
    plots.set_epoch_range(20)  # planned epochs are real numbers
    plots.redraw()
    assert shown(plots.loss_plot, "bottom") and not shown(plots.loss_plot, "left")
    plots.add_epoch(1, 0.7, 0.5, 0.4, 1e-3)
    plots.redraw()
    assert shown(plots.loss_plot, "left") and shown(plots.lr_plot, "left")
    plots.reset()
    assert not shown(plots.lr_plot, "bottom")
