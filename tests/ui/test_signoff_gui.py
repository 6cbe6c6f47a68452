"""Sign-off in the GUI, one user story per test, on a project with two crafted runs (stored
predictions, no training; see signoff_fixtures): 95 % intervals where decisions are made
(Review header and per-class table, the OK/NG window), the threshold picked by the miss
rate's upper bound, must-pass images failing the release gate, approving a run (then the
export dialog offers it), the validation report, the viewer's label history, and editing
the history behind the app's back reported when the project opens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from densestudio.core import signoff
from densestudio.core.stats import clopper_pearson, images_needed, upper_bound_one_sided
from densestudio.core.store import USER_ENV, current_user
from densestudio.ui.intervals import pct_ci
from densestudio.ui.main_window import MainWindow
from tests.ml.conftest import copy_project
from tests.ui.conftest import review_run
from tests.ui.signoff_fixtures import MISSED, N_OK, N_SCRATCH, image_id_of, make_signoff_project

Opened = tuple[MainWindow, int, int]  # the window, run a (approved), run b

TIMEOUT = 120_000


@pytest.fixture(scope="module")
def signoff_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    return make_signoff_project(tmp_path_factory.mktemp("signoff-ui"))


@pytest.fixture
def opened(window: MainWindow, signoff_project: tuple[Path, int, int], tmp_path: Path) -> Opened:
    src, run_a, run_b = signoff_project
    dst = copy_project(src, tmp_path / src.name)
    assert window.open_project(dst)
    return window, run_a, run_b


def test_review_header_and_per_class_table_show_intervals(qtbot: QtBot, opened: Opened) -> None:
    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    panel = window.review_panel
    rep = panel.report
    assert panel.subset == "test" and rep.n == N_OK + N_SCRATCH
    header = panel.summary.text().replace("&nbsp;", " ")
    # 84 of 85 right: accuracy with its exact interval, balanced accuracy and the worst
    # class (scratch: 44 of 45) with theirs.
    acc = clopper_pearson(N_OK + N_SCRATCH - 1, N_OK + N_SCRATCH)
    assert rep.accuracy_interval() == acc
    assert f"accuracy {pct_ci(acc)}" in header
    bal = rep.balanced_accuracy_interval()
    assert f"balanced accuracy</span> <small>({bal.low * 100:.1f}–{bal.high * 100:.1f} %)" \
        in header
    scratch = clopper_pearson(N_SCRATCH - 1, N_SCRATCH)
    assert (f"worst class <b>scratch 97.8 %</b> recall <small>({scratch.low * 100:.1f}–"
            f"{scratch.high * 100:.1f} %)") in header
    # Per class: precision and recall each with its interval ("97.8 (88.2–99.9)").
    table = panel.per_class
    assert table.horizontalHeaderItem(2).text() == "Recall %"
    row = rep.class_names.index("scratch")
    assert table.item(row, 2).text() == pct_ci(scratch, unit=False) == "97.8 (88.2–99.9)"
    ok = rep.class_names.index("ok")
    precision_ok = clopper_pearson(N_OK, N_OK + 1)  # 40 right of the 41 called ok
    assert table.item(ok, 1).text() == pct_ci(precision_ok, unit=False)
    assert "44 of 45" in table.item(row, 2).toolTip()


def test_operating_point_window_shows_rates_with_intervals(qtbot: QtBot, opened: Opened) -> None:
    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    qtbot.mouseClick(window.review_panel.op_button, Qt.MouseButton.LeftButton)
    panel = window.review_panel.op_dialog.panel
    assert panel.good_combo.currentText() == "ok"  # the name says so
    panel.set_threshold(0.5)  # scratch_00 (P(ok) = 0.8) passes
    r = panel.rates
    assert (r.misses, r.n_defective, r.false_rejects, r.n_good) == (1, N_SCRATCH, 0, N_OK)
    text = panel.intervals.text()
    assert f"miss rate {pct_ci(clopper_pearson(1, N_SCRATCH))}" in text
    assert f"at most {upper_bound_one_sided(1, N_SCRATCH) * 100:.2f} %</b> with 95 % " \
           "confidence" in text
    assert f"false-reject rate {pct_ci(clopper_pearson(0, N_OK))}" in text
    assert "missed 1 of 45 defective" in panel.readout.text()
    # Above every defect: 0 of 45 missed still allows 6.44 %.
    panel.set_threshold(0.85)
    assert panel.rates.misses == 0
    assert "0.0 % (0.0–7.9), <b>at most 6.44 %</b>" in panel.intervals.text()
    # What these 45 defect images can show at all, for the target shown (1 %).
    assert "even 0 missed shows at most 6.44 %" in panel.target_status.text()
    assert "you need ≥ 299 defect images with 0 missed" in panel.target_status.text()


def test_target_miss_rate_picks_the_threshold_by_its_upper_bound(
    qtbot: QtBot, opened: Opened
) -> None:
    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    panel = window.review_panel.show_operating_point().panel
    panel.set_threshold(0.3)
    # 10 %: one miss among 45 would allow 10.1 %, so no miss is allowed: the threshold goes
    # just above the defect at P(ok) = 0.8, although its point estimate (2.2 %) is below.
    assert upper_bound_one_sided(1, N_SCRATCH) > 0.10 >= upper_bound_one_sided(0, N_SCRATCH)
    panel.target.setValue(10.0)
    qtbot.mouseClick(panel.target_button, Qt.MouseButton.LeftButton)
    choice = panel.last_choice
    assert choice.threshold == pytest.approx(0.8001)
    assert panel.threshold.value() == pytest.approx(0.8001)  # 4 decimals: not rounded down
    assert panel.rates.misses == 0 and panel.rates.miss_upper <= 0.10
    assert panel.rates.false_rejects == 0
    assert "Threshold 0.8001: 0 of 45 defect images missed" in panel.target_status.text()
    # 12 %: one miss is allowed, so the threshold may let scratch_00 through.
    panel.target.setValue(12.0)
    choice = panel.pick_for_target()
    assert choice.allowed_misses == 1 and panel.rates.misses == 1
    assert panel.rates.miss_upper <= 0.12 and panel.threshold.value() < 0.8
    # 1 %: 45 defect images cannot show it; the threshold stays and the window says how many
    # would be needed.
    before = panel.threshold.value()
    panel.target.setValue(1.0)
    choice = panel.pick_for_target()
    assert choice.threshold is None and panel.threshold.value() == before
    status = panel.target_status.text()
    assert "Cannot be met" in status and f"≥ {images_needed(0.01)} defect images" in status
    assert f"({images_needed(0.01) - N_SCRATCH} more)" in status


def test_marked_must_pass_image_fails_the_gate(
    qtbot: QtBot, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    window, run_a, run_b = opened
    project = window.controller.project
    review_run(qtbot, window, run_b)
    panel = window.review_panel
    missed = image_id_of(project, MISSED)
    assert panel.show_view("misclassified") == [missed]
    # Right-click the tile: "Mark as Must-pass".
    menus = []
    monkeypatch.setattr(window, "exec_menu", lambda menu, _pos: menus.append(menu))
    panel._tile_menu(panel.gallery.visualRect(panel.model.index(0)).center())
    actions = {a.text(): a for a in menus[0].actions()}
    actions["Mark as Must-pass"].trigger()
    assert signoff.golden_ids(project) == {missed}

    # Nothing is approved: compare with a chosen run.
    dialog = panel.show_gate()
    assert dialog.against_combo.itemText(0) == "nothing: no run is approved yet"
    dialog.against_combo.setCurrentIndex(dialog.against_combo.findData(run_a))
    with qtbot.waitSignal(dialog.gateFinished, timeout=TIMEOUT) as finished:
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    result = finished.args[0]
    assert (result.candidate, result.against) == (run_b, run_a)
    assert not result.passed and result.reasons == ("1 must-pass image(s) wrong",)
    assert "FAIL" in dialog.verdict.text() and "1 must-pass image(s) wrong" in \
        dialog.verdict.text()
    # The failing must-pass image is shown first, as a review tile: it says ok, wrongly.
    assert dialog.view == "golden_failures" and dialog.model.ids == [missed]
    assert dialog.view_buttons["golden_failures"].text() == "Must-pass wrong (1)"
    assert dialog.view_buttons["newly_wrong"].text() == "Newly wrong (1)"
    overlay = dialog.model.data(dialog.model.index(0), dialog.model.OverlayRole)
    ok = next(c for c in window.controller.classes() if c.name == "ok")
    assert overlay.correct is False and overlay.predicted_class_id == ok.id
    assert overlay.text == "90→20%"  # P(scratch): run A 0.9, run B 0.2
    rows = {dialog.metrics.item(r, 0).text(): r for r in range(dialog.metrics.rowCount())}
    acc = rows["Accuracy"]
    assert dialog.metrics.item(acc, 1).text() == pct_ci(clopper_pearson(84, 85))
    assert dialog.metrics.item(acc, 2).text() == pct_ci(clopper_pearson(85, 85))
    assert dialog.metrics.item(acc, 3).text() == f"{(84 / 85 - 1) * 100:+.1f}"
    window.close_project()  # the gate window belongs to the project: it closes too
    assert panel.gate_dialog is None and not dialog.isVisible()


def test_approving_a_run_makes_the_export_dialog_default_to_it(
    qtbot: QtBot, opened: Opened
) -> None:
    window, run_a, run_b = opened
    project = window.controller.project
    # Who is recorded comes from the preferences.
    prefs = window.show_preferences()
    prefs.user_name.setText("Q. Inspector")
    prefs.accept()
    assert current_user() == "Q. Inspector" and window.prefs.user_name == "Q. Inspector"

    review_run(qtbot, window, run_b)
    panel = window.review_panel
    dialog = panel.show_approve()
    assert dialog.run_id() == run_b and dialog.who.text() == "Q. Inspector"
    assert not dialog.approve_button.isEnabled()  # why is required
    dialog.why.setPlainText("line 3 trial: no escapes in 2 shifts")
    assert dialog.approve_button.isEnabled()
    with qtbot.waitSignal(window.controller.approvalsChanged, timeout=5000):
        qtbot.mouseClick(dialog.approve_button, Qt.MouseButton.LeftButton)
    approval = signoff.latest_approval(project)
    assert (approval.run_id, approval.approved_by, approval.why) == (
        run_b, "Q. Inspector", "line 3 trial: no escapes in 2 shifts")
    # The pickers and the runs list say which run is approved.
    entry = panel.run_combo.itemText(panel.run_combo.findData(run_b))
    assert "✓ approved" in entry
    assert "✓ approved" not in panel.run_combo.itemText(panel.run_combo.findData(run_a))
    assert "✓ approved for release" in panel.summary.text()
    runs = window.train_panel.runs
    status = runs.table.item(runs.row_of(run_b), 1)
    assert status.text().endswith("✓ approved") and "Q. Inspector" in status.toolTip()

    # Export without naming a run: the approved one, and it says so.
    panel.set_run(run_a)  # another run is on screen
    export = window.show_export_dialog()
    assert export.run.id == run_b
    assert f"Run #{run_b} is the approved run" in export.approval.text()
    export.close()
    export = window.show_export_dialog(run_a)  # the Review tab's button: the run shown
    assert f"Run #{run_a} is not the approved run: run #{run_b} is" in export.approval.text()
    export.close()


def test_report_action_writes_the_report(qtbot: QtBot, opened: Opened, tmp_path: Path) -> None:
    window, _run_a, run_b = opened
    review_run(qtbot, window, run_b)
    window.report_action.trigger()  # File › Validation Report…
    dialog = window.review_panel.report_dialog
    assert dialog is not None and dialog.run_id == run_b
    assert dialog.path_edit.text().endswith(f"-run{run_b}-report.html")
    out = tmp_path / "reports" / "line 3 sign-off.html"
    out.parent.mkdir()
    dialog.path_edit.setText(str(out))
    dialog.mistakes.setValue(0)  # the crafted runs have no model for heatmaps
    with qtbot.waitSignal(dialog.written, timeout=TIMEOUT) as written:
        qtbot.mouseClick(dialog.write_button, Qt.MouseButton.LeftButton)
    result = written.args[0]
    assert result.path == out and out.is_file() and result.run_id == run_b
    html = out.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "Release gate" in html
    assert dialog.open_button.isEnabled() and dialog.report_url().toLocalFile() == str(out)
    assert str(out) in dialog.status.text()
    assert str(out) in window.statusBar().currentMessage()


def test_viewer_shows_history_after_relabel_and_undo(
    qtbot: QtBot, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    window, _run_a, _run_b = opened
    monkeypatch.setenv(USER_ENV, "labeler-1")
    window.auto_advance_action.setChecked(False)
    viewer = window.viewer
    window.gallery.go_to_row(0)
    image_id = window.model.image_id(0)
    assert viewer.info.id == image_id
    # Imported from its sub-folder: one event.
    assert [e.how for e in viewer.history] == ["import"]
    assert "1 change · last: (unlabeled) → ok" in viewer.history_summary.text()
    viewer.set_history_expanded(True)
    assert viewer.history_list.isVisibleTo(window)

    qtbot.keyClick(window.gallery, Qt.Key.Key_2)  # scratch
    assert [e.how for e in viewer.history] == ["import", "keyboard"]
    top = viewer.history_list.topLevelItem(0)  # newest first
    assert (top.text(1), top.text(2), top.text(3)) == ("labeler-1", "keyboard", "ok → scratch")

    window.undo_action.trigger()
    assert [e.how for e in viewer.history] == ["import", "keyboard", "undo"]
    top = viewer.history_list.topLevelItem(0)
    assert (top.text(2), top.text(3)) == ("undo", "scratch → ok")
    assert viewer.history_list.topLevelItemCount() == 3
    window.redo_action.trigger()
    assert viewer.history_list.topLevelItem(0).text(2) == "redo"
    assert "4 changes · last: ok → scratch by labeler-1" in viewer.history_summary.text()


def test_must_pass_mark_from_the_images_tab(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    window, _run_a, _run_b = opened
    menus = []
    monkeypatch.setattr(window, "exec_menu", lambda menu, _pos: menus.append(menu))
    window.gallery.go_to_row(1)
    image_id = window.model.image_id(1)
    window._tile_menu(window.gallery.visualRect(window.model.index(1)).center())
    {a.text(): a for a in menus[-1].actions()}["Mark as Must-pass"].trigger()
    assert signoff.golden_ids(window.controller.project) == {image_id}
    assert "must-pass" in window.viewer.history_summary.text()
    assert "Marked 1 image as must-pass" in window.statusBar().currentMessage()
    window._tile_menu(window.gallery.visualRect(window.model.index(1)).center())
    {a.text(): a for a in menus[-1].actions()}["Remove Must-pass Mark"].trigger()
    assert signoff.golden_ids(window.controller.project) == set()
    assert "must-pass" not in window.viewer.history_summary.text()


def test_editing_the_history_behind_the_apps_back_is_reported_on_opening(
    qtbot: QtBot, window: MainWindow, signoff_project: tuple[Path, int, int], tmp_path: Path
) -> None:
    src, _run_a, _run_b = signoff_project
    path = copy_project(src, tmp_path / src.name)
    # Intact: opening checks the records quietly; File › Verify Records says so.
    assert window.open_project(path)
    qtbot.waitUntil(lambda: window.last_verification is not None, timeout=TIMEOUT)
    assert window.last_verification.ok and window.last_error is None
    assert not any(w.windowTitle() == "Records intact" for w in window.findChildren(QMessageBox))
    window.last_verification = None
    window.verify_action.trigger()
    qtbot.waitUntil(lambda: window.last_verification is not None, timeout=TIMEOUT)
    box = next(w for w in window.findChildren(QMessageBox) if w.windowTitle() == "Records intact")
    assert "85 label changes and 0 approvals" in box.text()
    assert "Records intact: 85 label changes" in window.statusBar().currentMessage()
    box.close()
    window.close_project()

    # A SQLite tool changes one label-history row: the next opening reports it.
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE label_event SET new_class = 'tampered' WHERE id = 3")
    con.close()
    window.last_verification = None
    assert window.open_project(path)
    qtbot.waitUntil(lambda: window.last_verification is not None, timeout=TIMEOUT)
    assert not window.last_verification.ok
    assert "label history row 3: content was changed after it was written" in window.last_error
    box = next(w for w in window.findChildren(QMessageBox)
               if w.windowTitle() == "Records edited outside DenseStudio")
    assert box.isVisible() and "changed outside DenseStudio" in box.text()
    assert "Records edited outside DenseStudio" in window.statusBar().currentMessage()
