"""Regenerate the README screenshots (offscreen; no display needed).

    .venv/bin/python tests/benchmarks/make_screenshots.py [--out docs/screenshots]

Writes welcome.png, gallery.png, viewer.png, train.png, review.png, export.png and
gallery-dark.png. The gallery shows 8 NEU surface-defect images per class read from
../shared/datasets/neu-surface-defects (linked into a temporary folder, never copied into the
repository), imported with sub-folder names as classes. train.png, review.png and export.png
come from a real short training run (compact DenseNet-BC, 64 px) on 40 NEU images per class:
the Train tab mid-run with its live plots, the Review tab with the test-set confusion matrix
and a clicked cell, and the export dialog after "Check it".
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from densestudio.ui.main_window import MainWindow

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
NEU = ROOT.parent / "shared" / "datasets" / "neu-surface-defects"
SIZE = (1440, 900)


def wait(app: QApplication, seconds: float, until: Callable[[], bool] | None = None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            break
        time.sleep(0.005)
    for _ in range(5):
        app.processEvents()


def review_run(app: QApplication, window: MainWindow, run_id: int) -> None:
    """Show a run in the Review tab and wait until its predictions (read in a job) are in."""
    loaded: list[bool] = []
    window.review_panel.loaded.connect(lambda: loaded.append(True))
    review_run(app, window, run_id)
    wait(app, 60, lambda: bool(loaded))


def isolate_settings(tmp: Path) -> None:
    """Settings, data and QSettings under ``tmp`` (not the user's), light theme."""
    os.environ["DENSESTUDIO_CONFIG_DIR"] = str(tmp / "config")
    os.environ["DENSESTUDIO_DATA_DIR"] = str(tmp / "data")
    os.environ["DENSESTUDIO_THEME"] = "light"
    from PySide6.QtCore import QSettings

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp / "qs"))


def open_window() -> tuple[QApplication, MainWindow]:
    """The app and a shown main window of the screenshot size (call isolate_settings first)."""
    from densestudio.ui.app import create_application
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences

    app = create_application([])
    window = MainWindow(Preferences(tile_size=136))
    window.resize(*SIZE)
    window.show()
    wait(app, 0.3)
    return app, window


def neu_subset(folder: Path, per_class: int) -> Path:
    root = folder / "NEU surface defects"
    for class_dir in sorted(p for p in NEU.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for src in sorted(class_dir.iterdir())[:per_class]:
            (root / class_dir.name / src.name).symlink_to(src)
    return root


def train_review_export(
    app: QApplication, window: MainWindow, tmp: Path, args: argparse.Namespace
) -> None:
    """train.png (mid-run), review.png (confusion matrix, a clicked cell), export.png."""
    from densestudio.core.importer import ImportOptions

    images = neu_subset(tmp / "train-images", args.train_per_class)
    window.new_project(tmp / "projects" / "NEU steel defects.dsproj")
    done: list = []
    window.importFinished.connect(done.append)
    window.start_import([images], ImportOptions(labels_from_subfolders=True))
    wait(app, 120, lambda: bool(done) and window.import_worker is None)
    panel = window.train_panel
    panel.set_controller(window.controller)
    window.show_panel(panel)
    panel.img_size.setValue(64)
    panel.epochs.setValue(args.epochs)
    panel.batch.setValue(16)
    panel.name.setText("first try")
    wait(app, 0.3)
    ended: list = []
    panel.trainingEnded.connect(ended.append)
    panel.start_training()
    half = max(2, args.epochs // 2)
    wait(app, 600, lambda: panel.events_seen.get("EpochEnded", 0) >= half
         and panel.events_seen.get("TrainingSteps", 0) >= 3 + half * 2)
    wait(app, 0.3)
    window.grab().save(str(args.out / "train.png"))
    wait(app, 900, lambda: bool(ended))
    run_id = panel.run_id

    # Review: the test set; show the cell with the most mistakes.
    review_run(app, window, run_id)
    review = window.review_panel
    review.splitter.setSizes([560, 880])
    wait(app, 0.2)
    cm = review.report.confusion if review.report else []
    cells = [(cm[t][p], t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p]
    if cells and max(cells)[0] > 0:
        _, t, p = max(cells)
        review.matrix.click_cell(t, p)
    else:
        review.show_view("top_losses")
    wait(app, 10, lambda: window.loader.pending == 0)
    wait(app, 0.5)
    window.grab().save(str(args.out / "review.png"))

    # Export and check.
    dialog = window.show_export_dialog(run_id)
    dialog.resize(760, 640)
    dialog.path_edit.setText(str(tmp / "export" / "steel-defects.onnx"))  # the default format
    results: list = []
    dialog.exported.connect(results.append)
    dialog.checked.connect(results.append)
    dialog.export()
    wait(app, 300, lambda: len(results) >= 1 and dialog.worker is None)
    dialog.check()
    wait(app, 300, lambda: len(results) >= 2 and dialog.worker is None)
    wait(app, 0.3)
    dialog.grab().save(str(args.out / "export.png"))
    dialog.close()
    window.open_project(tmp / "projects" / "Steel strip inspection.dsproj")
    window.tabs.setCurrentIndex(0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    if not NEU.is_dir():
        print(f"NEU images not found at {NEU}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ds-shots-"))
    theme = os.environ.get("DENSESTUDIO_THEME")
    isolate_settings(tmp)
    from PySide6.QtCore import QItemSelection, QItemSelectionModel

    from densestudio.core.importer import ImportOptions
    from densestudio.ui.app import apply_palette

    app, window = open_window()

    # A project with the NEU images, labeled from their folders; the demo in recent projects.
    projects = tmp / "projects"
    window.open_demo_project()
    wait(app, 60, lambda: window.controller is not None)
    window.close_project()
    images = neu_subset(tmp, args.per_class)
    window.new_project(projects / "Steel strip inspection.dsproj")
    done = []
    window.importFinished.connect(done.append)
    window.start_import([images], ImportOptions(labels_from_subfolders=True))
    wait(app, 60, lambda: bool(done))
    window.close_project()
    wait(app, 0.3)
    window.grab().save(str(args.out / "welcome.png"))

    window.open_project(projects / "Steel strip inspection.dsproj")
    c = window.controller
    model, gallery = window.model, window.gallery
    # Unlabel a few so the shot shows unlabeled tiles and the (unlabeled) count, as in real use.
    rows = [r for r in range(model.rowCount()) if model.info(r).name.startswith("patches")][:3]
    c.label_images([model.image_id(r) for r in rows], None)
    c.undo_stack.clear()
    wait(app, 0.5)
    gallery.go_to_row(9)
    sel = QItemSelection(model.index(9), model.index(11))
    gallery.selectionModel().select(sel, QItemSelectionModel.SelectionFlag.Select)
    wait(app, 5, lambda: window.loader.pending == 0 and window.viewer.canvas.has_image())
    wait(app, 0.3)
    window.grab().save(str(args.out / "gallery.png"))

    # Viewer: more room, actual pixels.
    window.splitter.setSizes([420, 780])
    gallery.go_to_row(20)
    wait(app, 5, lambda: window.viewer.canvas.has_image())
    window.viewer.canvas.set_zoom(2.0)
    wait(app, 0.3)
    window.grab().save(str(args.out / "viewer.png"))

    train_review_export(app, window, tmp, args)

    # Dark palette (what users with a dark desktop get).
    os.environ["DENSESTUDIO_THEME"] = "dark"
    apply_palette(app)
    window.splitter.setSizes([760, 440])
    gallery.go_to_row(30)
    wait(app, 5, lambda: window.loader.pending == 0 and window.viewer.canvas.has_image())
    window.viewer.canvas.fit()
    wait(app, 0.3)
    window.grab().save(str(args.out / "gallery-dark.png"))

    window.close()
    if theme is None:
        os.environ.pop("DENSESTUDIO_THEME", None)
    shutil.rmtree(tmp, ignore_errors=True)
    print("wrote", ", ".join(sorted(p.name for p in args.out.glob("*.png"))), "to", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
