"""GUI: heatmap overlay in the viewer (computed in a worker, cached per run/image/class),
heatmaps on the review tiles, and the OK/NG operating-point window (curve from the run's
stored predictions; saving the threshold persists it with the run)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from densestudio.core import runs as core_runs
from densestudio.core.importer import ImportOptions
from densestudio.core.store import Project
from tests.ml.conftest import copy_project, write_images
from tests.ui.conftest import review_run

if TYPE_CHECKING:
    from densestudio.ml.explain import Explainer, Explanation
    from densestudio.ui.main_window import MainWindow

    Opened = tuple[MainWindow, int]  # the window, the run


TIMEOUT = 120_000


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    from densestudio.core.importer import run_import
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.threads import limited_threads
    from densestudio.ml.train import fit

    root = tmp_path_factory.mktemp("explain-ui")
    write_images(root / "imgs", n_per_class=12, seed=5)
    with Project.create(root / "p.dsproj") as project:
        run_import(project, [root / "imgs"], ImportOptions(labels_from_subfolders=True))
        cfg = TrainConfig(arch="densenet_bc_tiny", img_size=32, epochs=2, batch_size=8,
                          augment="light", ema=False, tta=False, device="cpu")
        with limited_threads():
            run_id = fit(project, cfg)
    return root / "p.dsproj", run_id


@pytest.fixture
def opened(window: MainWindow, trained_project: tuple[Path, int], tmp_path: Path) -> Opened:
    src, run_id = trained_project
    dst = tmp_path / src.name
    copy_project(src, dst)
    assert window.open_project(dst)
    return window, run_id


def test_viewer_heatmap_overlay(
    qtbot: QtBot, opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    import densestudio.ml.explain as explain

    window, run_id = opened
    viewer = window.viewer
    threads: list[str] = []
    original = explain.Explainer.explain

    def spy(self: Explainer, *args: object, **kwargs: object) -> Explanation:
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(explain.Explainer, "explain", spy)
    assert viewer.heat_bar.isVisibleTo(window) and viewer.heat_run == run_id
    assert [viewer.heat_class.itemText(i) for i in range(viewer.heat_class.count())] == [
        "Predicted class", "bright", "dark", "stripes"]
    window.gallery.go_to_row(0)  # (already current after opening)
    qtbot.waitUntil(lambda: viewer.info is not None and viewer.canvas.has_image(),
                    timeout=10_000)
    image_id = viewer.info.id
    assert image_id == window.model.image_id(0)
    assert not viewer.canvas.has_overlay()

    # Toggle on: computed in the background, then laid over the image.
    with qtbot.waitSignal(viewer.heatmapShown, timeout=TIMEOUT) as shown:
        qtbot.mouseClick(viewer.heat_button, Qt.MouseButton.LeftButton)
    assert shown.args == [image_id]
    assert viewer.canvas.has_overlay()
    assert "Evidence for" in viewer.heat_status.text()
    assert threads and threading.main_thread().name not in threads
    e = window.heatmaps.get(run_id, image_id, None)
    assert e is not None and e.heatmap.shape == (32, 32) and 0 <= e.heatmap.min()
    viewer.heat_opacity.setValue(30)
    assert abs(viewer.canvas.overlay_opacity - 0.3) < 1e-6

    # Another class: computed once, then cached per (run, image, class).
    with qtbot.waitSignal(viewer.heatmapShown, timeout=TIMEOUT):
        viewer.heat_class.setCurrentIndex(viewer.heat_class.findText("stripes"))
    stripes = window.heatmaps.get(run_id, image_id, 2)
    assert stripes is not None and stripes.class_name == "stripes"
    computed = window.heatmaps.computed
    with qtbot.waitSignal(viewer.heatmapShown, timeout=1000):  # from the cache, at once
        viewer.heat_class.setCurrentIndex(0)
    assert window.heatmaps.computed == computed

    # The next image gets its own heatmap; the key H toggles it off.
    with qtbot.waitSignal(viewer.heatmapShown, timeout=TIMEOUT) as shown:
        window.gallery.go_to_row(1)
    assert shown.args == [window.model.image_id(1)]
    viewer.setFocus()
    qtbot.keyClick(viewer, Qt.Key.Key_H)
    assert not viewer.heat_button.isChecked() and not viewer.canvas.has_overlay()

    # Closing the project hides the bar and stops the service.
    window.close_project()
    assert viewer.heat_run is None and window.heatmaps.worker is None


def test_review_tiles_show_heatmaps(qtbot: QtBot, opened: Opened) -> None:
    window, run_id = opened
    review_run(qtbot, window, run_id)
    panel = window.review_panel
    assert panel.show_view("top_losses")  # every test image, whatever the run got wrong
    assert panel.model.data(panel.model.index(0), panel.model.HeatmapRole) is None
    qtbot.mouseClick(panel.heat_button, Qt.MouseButton.LeftButton)
    assert panel.model.heat_run == run_id
    first = panel.model.image_id(0)
    qtbot.waitUntil(lambda: panel.model.tile_heatmap(first) is not None, timeout=TIMEOUT)
    pixmap = panel.model.data(panel.model.index(0), panel.model.HeatmapRole)
    assert pixmap is not None and not pixmap.isNull()
    qtbot.mouseClick(panel.heat_button, Qt.MouseButton.LeftButton)
    assert panel.model.data(panel.model.index(0), panel.model.HeatmapRole) is None


def test_operating_point_window_loads_and_saves(qtbot: QtBot, opened: Opened) -> None:
    from densestudio.ml.operating_point import load_operating_point

    window, run_id = opened
    project = window.controller.project
    review_run(qtbot, window, run_id)
    review = window.review_panel
    # The OK/NG window opens on the split Review shows: validation here (read in a job).
    with qtbot.waitSignal(review.loaded, timeout=60_000):
        review.subset_combo.setCurrentIndex(review.subset_combo.findData("val"))
    assert review.op_button.isEnabled()
    shown = review.show_view("top_losses")
    assert shown and all(review.overlay[i].decision == "" for i in shown)
    qtbot.mouseClick(review.op_button, Qt.MouseButton.LeftButton)
    dialog = review.op_dialog
    assert dialog is not None and dialog.isVisible()
    panel = dialog.panel
    val = [p for p in core_runs.predictions(project, run_id, "val")]
    assert panel.subset == "val" and len(panel.true) == len(val)
    assert panel.stored is None and "no operating point" in panel.status.text()
    # No class name means "good" (dark / bright / stripes): it asks instead of taking the
    # first class.
    assert panel.good_combo.currentIndex() == -1 and panel.point() is None
    assert "Which class means a good part?" in panel.readout.text()
    assert not panel.save_button.isEnabled()

    panel.good_combo.setCurrentIndex(panel.good_combo.findText("bright"))
    k = list(core_runs.run_class_names(project, run_id)).index("bright")
    assert np.allclose(panel.p_good, [p.probs[k] for p in val])
    assert panel.is_good.sum() == sum(p.true_index == k for p in val)
    x, y = panel.miss_curve.getData()
    assert len(x) == 501 and y[0] == pytest.approx(100.0)  # t = 0: every defect passes
    x, y = panel.reject_curve.getData()
    assert y[0] == 0.0 and y[-1] >= 0.0

    # Spin box and draggable line stay in step; the band too.
    panel.threshold.setValue(0.42)
    assert panel.line.value() == pytest.approx(0.42)
    panel.line.setValue(0.61)
    assert panel.threshold.value() == pytest.approx(0.61)
    panel.band_check.setChecked(True)
    assert panel.band_item.isVisible()
    # Turned on, the band comes from the data: about 5 % of the validation parts (at least
    # one), centred on the threshold; not a fixed 0.3-0.7.
    low, high = panel.band_low.value(), panel.band_high.value()
    assert low < 0.61 < high
    inside = int(((panel.p_good >= low) & (panel.p_good < high)).sum())
    assert 1 <= inside <= max(1, int(np.ceil(0.05 * len(panel.p_good)))) + 1
    panel.band_item.setRegion((0.4, 0.8))
    assert (panel.band_low.value(), panel.band_high.value()) == (0.4, 0.8)
    assert "unsure" in panel.readout.text() and "missed" in panel.readout.text()

    # Costs suggest a threshold; saving persists the point with the run.
    panel.cost_miss.setValue(10.0)
    suggested = panel.suggest()
    assert suggested is not None and panel.threshold.value() == pytest.approx(suggested)
    with qtbot.waitSignal(panel.saved, timeout=5000) as saved:
        qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    point = saved.args[1]
    assert saved.args[0] == run_id
    stored = load_operating_point(project, run_id)
    assert stored == point and stored.good_class == "bright"
    assert stored.threshold == pytest.approx(suggested) and stored.cost_miss == 10.0
    assert (stored.unsure_low, stored.unsure_high) == (0.4, 0.8)
    # The review tiles now say what the line would decide for each image.
    probs = {p.image_id: p.probs[k]
             for p in core_runs.predictions(project, run_id, review.subset)}
    for image_id in shown:
        assert review.overlay[image_id].decision == stored.decide(probs[image_id])
    # The Review header leads with how many defects that point passes as good.
    defects = [p for p in core_runs.predictions(project, run_id, review.subset)
               if p.true_index != k]
    called = sum(stored.decide(p.probs[k]) == "OK" for p in defects)
    header = review.summary.text()
    assert f"Defects passed as good: <b>{called} of {len(defects)}</b>" in header
    assert header.index("Defects passed as good") < header.index("balanced accuracy")
    assert "good parts rejected" in header and "sent to a person" in header
    dialog.close()

    # Reopened: the saved point is shown again.
    dialog = review.show_operating_point()
    again = dialog.panel
    assert again.good_combo.currentText() == "bright"
    assert again.threshold.value() == pytest.approx(suggested)
    assert again.band_check.isChecked() and again.remove_button.isEnabled()
    again.remove()
    assert load_operating_point(project, run_id) is None
    assert all(review.overlay[i].decision == "" for i in shown)
    dialog.close()
