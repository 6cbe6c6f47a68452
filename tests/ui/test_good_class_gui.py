"""Issue 24 in the GUI: the good class is set and cleared in the Classes panel, shown in the
Train tab with its target; a plain Train then leads its summary and the Review header with
the OK/NG decisions (defects passed as good, good parts rejected, sent to a person)."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from densestudio.ml import operating_point as op
from densestudio.ui.main_window import MainWindow
from tests.ui.conftest import review_run
from tests.ui.test_train_review import TRAIN_TIMEOUT, _open_tiny, _tiny_form


def test_good_class_from_the_classes_panel_to_train_and_review(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    _open_tiny(qtbot, window, tmp_path)
    c = window.controller
    classes = window.class_panel
    train = window.train_panel
    assert op.project_good_class(c.project).name is None  # dark, bright, stripes
    assert "No good class" in train.good_label.text() and not train.max_miss.isEnabled()
    assert "Good class: no good class" in classes.summary.text()

    dark = next(k.id for k in c.classes() if k.name == "dark")
    classes.select_class(dark)
    assert classes.good_action.isEnabled() and not classes.good_action.isChecked()
    classes.good_action.trigger()  # checks it: 'dark' is the good class now
    assert op.project_good_class(c.project) == op.GoodClass("dark", "set")
    assert classes.good_action.isChecked()
    assert "'dark'" in train.good_label.text() and train.max_miss.isEnabled()
    assert "Good class: 'dark'." in classes.summary.text()
    classes.select_class(dark)
    classes.good_action.trigger()  # unchecks it: no good class
    assert op.project_good_class(c.project) == op.GoodClass(None, "none")
    assert "cleared" in train.good_label.text()
    classes.select_class(dark)
    classes.good_action.trigger()

    _tiny_form(train, epochs=1)
    assert train.max_miss.value() == 2.0  # the default target
    train.max_miss.setValue(5.0)
    assert train.config().max_miss_rate == 0.05
    with qtbot.waitSignal(train.trainingEnded, timeout=TRAIN_TIMEOUT):
        train.start_training()
    assert train.last_outcome == "finished", train.last_message
    run_id = train.run_id
    assert run_id is not None
    point = op.load_operating_point(c.project, run_id)
    assert point is not None and point.good_class == "dark"
    record = op.picked_record(c.project, run_id)
    assert record is not None and record["target"] == 0.05
    lines = train.last_message.splitlines()
    assert lines[1].startswith("OK/NG on test") and "defects passed as good" in lines[2]
    assert "good parts rejected" in lines[3] and "sent to a person" in lines[4]
    assert "Too few defect images" in train.last_message  # 8 validation defects

    review_run(qtbot, window, run_id)
    header = window.review_panel.summary.text()
    assert header.index("Defects passed as good") < header.index("balanced accuracy")
    assert "sent to a person" in header and "Too few defect images" in header
