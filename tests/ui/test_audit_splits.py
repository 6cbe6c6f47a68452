"""GUI tests: the Label audit tab (start, progress, cancel, confirm with Enter, relabel with
1-9, undo, survives reopening) and the split panel's group key and near-duplicate check."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import select, update

from densestudio.core import history
from densestudio.core import runs as core_runs
from densestudio.core.importer import ImportOptions
from densestudio.core.models import Image as ImageRow
from densestudio.ml import crossval
from tests.ml.conftest import write_images

if TYPE_CHECKING:
    from densestudio.core.store import Project
    from densestudio.ui.audit_panel import AuditPanel
    from densestudio.ui.main_window import MainWindow

AUDIT_TIMEOUT = 240_000  # ms; generous for a loaded 2-core machine


def _import(qtbot: QtBot, window: MainWindow, folder: Path, subfolders: bool = True) -> None:
    with qtbot.waitSignal(window.importFinished, timeout=60_000):
        window.start_import([folder], ImportOptions(labels_from_subfolders=subfolders))
    qtbot.waitUntil(lambda: window.import_worker is None, timeout=30_000)


def _audit_form(panel: AuditPanel, epochs: int = 10) -> None:
    panel.folds.setValue(3)
    panel.epochs.setValue(epochs)
    panel.img_size.setValue(32)


# ====================================================================== label audit
def test_label_audit_tab(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", n_per_class=12)
    assert window.new_project(tmp_path / "audit.dsproj")
    _import(qtbot, window, tmp_path / "imgs")
    c = window.controller
    project = c.project
    classes = {k.name: k.id for k in c.classes()}
    # Three wrong labels: a dark image called bright, a bright one stripes, a stripe dark.
    wrong = {}
    for src, dst in (("dark", "bright"), ("bright", "stripes"), ("stripes", "dark")):
        image_id = next(i.id for i in project.page(limit=1000) if i.folder.endswith("/" + src))
        project.set_labels([image_id], classes[dst])
        wrong[image_id] = classes[src]

    panel = window.audit_panel
    window.show_panel(panel)
    assert panel.audit is None and panel.model.rowCount() == 0
    assert "Find suspected label errors" in panel.gallery.empty_text
    _audit_form(panel)
    assert panel.config().epochs == 10 and panel.config().img_size == 32
    # Before it starts, the user sees roughly how long it will take.
    assert panel.estimate.text().startswith("about ")
    assert "3 folds × 10 epochs on 36 labeled images" in panel.estimate.toolTip()

    # Cancel mid-way: nothing is kept.
    with qtbot.waitSignal(panel.auditEnded, timeout=AUDIT_TIMEOUT) as ended:
        worker = panel.start_audit()
        assert worker is not None and panel.running and not panel.start_button.isEnabled()
        qtbot.waitUntil(lambda: "Fold" in panel.progress.format(), timeout=AUDIT_TIMEOUT)
        qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["cancelled"]
    assert core_runs.list_runs(project, kind=None) == []

    # Run it to the end.
    formats: list[str] = []
    worker = None
    with qtbot.waitSignal(panel.auditEnded, timeout=AUDIT_TIMEOUT) as ended:
        worker = panel.start_audit()
        worker.event.connect(lambda _e: formats.append(panel.progress.format()))
    assert ended.args == ["finished"], window.last_error
    assert any(re.match(r"Fold \d/3 · epoch \d+/10 · ETA", f) for f in formats), formats[-5:]
    assert panel.audit is not None and len(panel.audit.image_ids) == 36
    assert core_runs.list_runs(project) == []  # not a training run
    shown = panel.model.ids
    assert len(shown) >= 2
    assert "suspected label error" in panel.summary.text()
    # The flipped labels are at the top, and tiles show the suggestion.
    assert len(set(shown[:5]) & set(wrong)) >= 2, (shown[:5], wrong)
    top_wrong = next(i for i in shown if i in wrong)
    overlay = panel.overlay[top_wrong]
    assert overlay.predicted_class_id == wrong[top_wrong]
    assert overlay.text.endswith("%") and not overlay.relabeled

    # Enter = "label is right": the tile leaves the list; Ctrl+Z brings it back.
    panel.gallery.setFocus()
    panel.gallery.go_to_row(0)
    first = shown[0]
    qtbot.keyClick(panel.gallery, Qt.Key.Key_Return)
    assert first not in panel.model.ids
    assert first in crossval.load_audit(project).confirmed
    assert "Confirmed 1 label as right" in window.statusBar().currentMessage()
    c.undo_stack.undo()
    assert panel.model.ids[0] == first
    assert first not in crossval.load_audit(project).confirmed
    assert window.statusBar().currentMessage().startswith("Undone: 1 image is back")
    qtbot.keyClick(panel.gallery, Qt.Key.Key_C)
    assert first not in panel.model.ids and first in crossval.load_audit(project).confirmed

    # 1-9 relabel (with the suggested class), undoable; the tile stays, marked relabeled.
    target = next(i for i in panel.model.ids if i in wrong)
    panel.gallery.go_to_row(panel.model.row_of(target))
    key = c.class_by_id(wrong[target]).shortcut
    qtbot.keyClick(panel.gallery, key)
    assert project.image(target).label_id == wrong[target]
    assert target in panel.model.ids and panel.overlay[target].relabeled
    assert "relabeled" in panel.summary.text()
    c.undo_stack.undo()
    assert project.image(target).label_id != wrong[target]
    assert not panel.overlay[target].relabeled
    c.undo_stack.redo()
    assert panel.overlay[target].relabeled
    # the label history says how: relabeled in the audit, undone, redone; Enter/C confirmed
    assert [e.how for e in history.image_history(project, target)][-3:] == [
        "audit", "undo", "redo"]
    assert [e.how for e in history.image_history(project, first)][-3:] == [
        "audit-confirm", "audit-unconfirm", "audit-confirm"]

    # The tile menu: right-click selects the tile; "label is right" and one entry per class.
    menus = []
    window.exec_menu = lambda menu, _pos: menus.append(menu)  # the window is per test
    row = panel.model.row_of(target)
    panel._tile_menu(panel.gallery.visualRect(panel.model.index(row)).center())
    texts = [a.text() for a in menus[0].actions()]
    assert panel.selected_ids() == [target] and texts[0] == "Label is right\tEnter"
    assert sum(t.startswith("Relabel as ") for t in texts) == len(c.classes())
    assert not any(t.startswith("Remove label") for t in texts)

    # After reopening: confirmed and relabeled images are resolved and not listed again, and
    # the form shows the settings of the audit shown (not 5 folds / auto).
    panel.set_controller(None)
    panel.folds.setValue(5)
    panel.epochs.setValue(0)
    panel.set_controller(c)
    assert (panel.folds.value(), panel.epochs.value(), panel.img_size.value()) == (3, 10, 32)
    assert "from the last audit's speed" in panel.estimate.toolTip()
    assert panel.audit is not None and first not in panel.model.ids
    assert target not in panel.model.ids
    assert len(panel.model.ids) == len(shown) - 2


def test_label_audit_says_when_a_small_class_cannot_be_judged(
    window: MainWindow, tmp_path: Path
) -> None:
    """A stored audit whose model barely predicts the 6-image class "stripes": its images
    are not suggested for relabeling, and the tab says why."""
    from densestudio.core.store import Project
    from tests.ml.conftest import small_class_audit

    path = tmp_path / "small.dsproj"
    with Project.create(path) as project:
        ids = small_class_audit(project, tmp_path)
    assert window.open_project(path)
    panel = window.audit_panel
    window.show_panel(panel)
    assert panel.model.ids == [ids[0]], "only the real error; no stripes image"
    assert panel.notes.isVisible()
    assert ("The audit model barely predicts 'stripes' (recall 0 % of its 6 images); "
            "suggestions for it are unreliable") in panel.notes.text()


def test_label_audit_refuses_too_few_images(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    write_images(tmp_path / "imgs", n_per_class=2, classes=1)
    assert window.new_project(tmp_path / "few.dsproj")
    _import(qtbot, window, tmp_path / "imgs")
    panel = window.audit_panel
    assert panel.start_audit() is None
    assert "at least 2 classes" in (window.last_error or "")


# ====================================================================== split panel
def _texture(rng: np.random.Generator) -> np.ndarray:
    base = rng.integers(0, 256, (8, 8)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8), dtype=np.uint8))  # 64 x 64 blocks


def _write_lots(folder: Path) -> dict[str, list[Path]]:
    """2 classes x 4 lots x 3 images; one near-duplicate (one pixel changed) per class."""
    rng = np.random.default_rng(7)
    out: dict[str, list[Path]] = {}
    for cls in ("ok", "ng"):
        d = folder / cls
        d.mkdir(parents=True)
        for lot in range(4):
            for i in range(3):
                p = d / f"lot{lot}_{cls}_{i}.png"
                arr = _texture(rng)
                Image.fromarray(arr, mode="L").save(p)
                out.setdefault(cls, []).append(p)
        dup = np.asarray(Image.open(out[cls][0])).copy()
        dup[0, 0] ^= 1
        p = d / f"copy_{cls}.png"
        Image.fromarray(dup, mode="L").save(p)
    return out


def _splits_by_path(project: Project) -> dict[str, str | None]:
    with project.session() as s:
        return {p: sp for p, sp in s.execute(select(ImageRow.path, ImageRow.split))}


def test_split_panel_group_key(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    _write_lots(tmp_path / "imgs")
    assert window.new_project(tmp_path / "lots.dsproj")
    _import(qtbot, window, tmp_path / "imgs")
    panel = window.split_panel
    panel.confirm = lambda *_a: True  # no modal dialog in tests
    assert panel.group_combo.currentData() == "" and not panel.regex_edit.isEnabled()
    assert not panel.group_button.isEnabled()  # nothing to apply yet

    panel.group_combo.setCurrentIndex(panel.group_combo.findData("regex"))
    assert panel.regex_edit.isEnabled()
    assert "Enter a pattern" in panel.group_message.text()
    panel.regex_edit.setText("(lot")
    assert "Invalid group pattern" in panel.group_message.text()
    assert not panel.group_button.isEnabled()
    panel.regex_edit.setText(r"(lot\d+)")
    assert panel.group_button.isEnabled()
    qtbot.mouseClick(panel.group_button, Qt.MouseButton.LeftButton)
    project = window.controller.project
    assert window.controller.split_settings().group_by == r"regex:(lot\d+)"
    lots: dict[str, set] = {}
    for path, split in _splits_by_path(project).items():
        m = re.search(r"lot\d+", Path(path).name)
        if m:
            lots.setdefault(m.group(0), set()).add(split)
    assert lots and all(len(s) == 1 and None not in s for s in lots.values())
    assert "groups share a split" in panel.group_message.text()
    assert not panel.group_button.isEnabled()

    # The setting is shown again after a refresh; "folder" and "none" apply too.
    panel.refresh()
    assert panel.group_combo.currentData() == "regex"
    assert panel.regex_edit.text() == r"(lot\d+)"
    panel.group_combo.setCurrentIndex(panel.group_combo.findData("folder"))
    assert panel.apply_group_by() is not None
    assert window.controller.split_settings().group_by == "folder"
    folders: dict[str, set] = {}
    for path, split in _splits_by_path(project).items():
        folders.setdefault(str(Path(path).parent), set()).add(split)
    assert all(len(s) == 1 for s in folders.values())
    panel.group_combo.setCurrentIndex(panel.group_combo.findData(""))
    assert panel.apply_group_by() is not None
    assert window.controller.split_settings().group_by == ""


def test_split_panel_near_duplicates(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    files = _write_lots(tmp_path / "imgs")
    assert window.new_project(tmp_path / "dups.dsproj")
    _import(qtbot, window, tmp_path / "imgs")
    project = window.controller.project
    # Put each class's original in train, its copy in test (a leak).
    with project.transaction() as s:
        for cls, paths in files.items():
            s.execute(update(ImageRow).where(ImageRow.path == str(paths[0]))
                      .values(split="train"))
            s.execute(update(ImageRow).where(ImageRow.path == str(paths[0].parent /
                                                                   f"copy_{cls}.png"))
                      .values(split="test"))
    panel = window.split_panel
    assert not panel.dup_show.isEnabled() and not panel.dup_move.isEnabled()

    with qtbot.waitSignal(panel.duplicatesChecked, timeout=60_000) as checked:
        qtbot.mouseClick(panel.dup_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=10_000)
    groups = checked.args[0]
    assert len(groups) == 2 and all(g.crosses_test for g in groups)
    assert "2 groups of near-identical images" in panel.dup_label.text()
    assert "2 touch the test set" in panel.dup_label.text()

    # Show them in the gallery.
    qtbot.mouseClick(panel.dup_show, Qt.MouseButton.LeftButton)
    assert window.tabs.currentIndex() == 0
    assert sorted(window.model.ids) == sorted(i for g in groups for i in g.image_ids)

    # A locked test set is never changed: a clear message, nothing moves.
    window.controller.lock_test_split(True)
    before = _splits_by_path(project)
    assert panel.move_duplicates() == 0
    assert "locked test set" in panel.dup_label.text()
    assert "Unlock" in panel.dup_label.text()
    assert _splits_by_path(project) == before

    # Unlocked: each group moves into one split; a second check finds none.
    window.controller.lock_test_split(False)
    qtbot.mouseClick(panel.dup_move, Qt.MouseButton.LeftButton)
    assert "Moved 2 images" in panel.dup_label.text()
    after = _splits_by_path(project)
    for cls, paths in files.items():
        assert after[str(paths[0])] == after[str(paths[0].parent / f"copy_{cls}.png")]
    with qtbot.waitSignal(panel.duplicatesChecked, timeout=60_000) as checked:
        panel.check_duplicates()
    assert checked.args[0] == []
    assert "No near-identical images span splits" in panel.dup_label.text()


def test_resplit_runs_in_a_job_and_the_gui_stays_responsive(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-split reads thumbnails (refreshing the near-identical groups): it runs in a job off
    the GUI thread, with a progress bar, one at a time; the splits change on the GUI thread
    when it ends; Cancel changes nothing; the undo stack is as before (a re-split is not on
    it, earlier label changes still undo)."""
    import threading

    from densestudio.core import near_duplicates
    from tests.ui.test_train_review import Heartbeat

    _write_lots(tmp_path / "imgs")
    assert window.new_project(tmp_path / "rs.dsproj")
    _import(qtbot, window, tmp_path / "imgs")
    c = window.controller
    panel = window.split_panel
    panel.confirm = lambda *_a: True  # no modal dialog in tests
    ids = c.project.image_ids()
    other = next(k.id for k in c.classes() if k.id != c.project.image(ids[0]).label_id)
    c.label_images([ids[0]], other)
    undo_count = c.undo_stack.count()

    original = near_duplicates.refresh_groups
    gate = threading.Event()
    seen: dict[str, object] = {}

    def held_refresh(project: Project, *args: object, **kwargs: object) -> object:
        seen["thread"] = threading.current_thread()
        seen["released"] = gate.wait(30)
        return original(project, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(near_duplicates, "refresh_groups", held_refresh)
    seed = c.split_settings().seed
    qtbot.mouseClick(panel.resplit_button, Qt.MouseButton.LeftButton)
    worker = panel.worker
    assert worker is not None
    assert panel.progress.isVisible() and not panel.resplit_button.isEnabled()
    assert not panel.group_button.isEnabled() and not panel.dup_button.isEnabled()
    assert panel.start_resplit() is None  # one job at a time
    qtbot.waitUntil(lambda: "thread" in seen, timeout=10_000)
    assert seen["thread"] is not threading.main_thread()
    beat = Heartbeat()  # the GUI thread keeps ticking while the job is held
    beat.start()
    qtbot.waitUntil(lambda: len(beat.gaps) >= 3, timeout=10_000)
    beat.stop()
    assert c.split_settings().seed == seed  # nothing changed yet
    with qtbot.waitSignal(c.splitsChanged, timeout=60_000):
        gate.set()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=10_000)
    assert seen["released"] is True
    assert c.split_settings().seed != seed
    assert not panel.progress.isVisible() and panel.resplit_button.isEnabled()
    assert "Re-assigned the split of" in panel.info.text()
    assert c.undo_stack.count() == undo_count  # as before: a re-split is not undone
    c.undo_stack.undo()  # the label change before it still undoes
    assert c.project.image(ids[0]).label_id != other

    # Cancel while it runs: the splits stay as they are.
    gate.clear()
    seen.clear()
    seed = c.split_settings().seed
    before = _splits_by_path(c.project)
    assert panel.start_resplit() is not None
    qtbot.waitUntil(lambda: "thread" in seen, timeout=10_000)
    panel.progress.cancelRequested.emit()
    gate.set()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=10_000)
    assert c.split_settings().seed == seed and _splits_by_path(c.project) == before
