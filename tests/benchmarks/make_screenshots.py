"""Regenerate the README screenshots (offscreen; no display needed).

    .venv/bin/python tests/benchmarks/make_screenshots.py [--out docs/screenshots]

Writes welcome.png, gallery.png, viewer.png and gallery-dark.png. The gallery shows 8 NEU
surface-defect images per class read from ../shared/datasets/neu-surface-defects (linked into a
temporary folder, never copied into the repository), imported with sub-folder names as classes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
NEU = ROOT.parent / "shared" / "datasets" / "neu-surface-defects"
SIZE = (1440, 900)


def wait(app, seconds: float, until=None) -> None:  # noqa: ANN001
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            break
        time.sleep(0.005)
    for _ in range(5):
        app.processEvents()


def neu_subset(folder: Path, per_class: int) -> Path:
    root = folder / "NEU surface defects"
    for class_dir in sorted(p for p in NEU.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for src in sorted(class_dir.iterdir())[:per_class]:
            (root / class_dir.name / src.name).symlink_to(src)
    return root


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--per-class", type=int, default=8)
    args = parser.parse_args()
    if not NEU.is_dir():
        print(f"NEU images not found at {NEU}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ds-shots-"))
    os.environ["DENSESTUDIO_CONFIG_DIR"] = str(tmp / "config")
    os.environ["DENSESTUDIO_DATA_DIR"] = str(tmp / "data")
    theme = os.environ.get("DENSESTUDIO_THEME")
    os.environ["DENSESTUDIO_THEME"] = "light"

    from PySide6.QtCore import QItemSelection, QItemSelectionModel, QSettings

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp / "qs"))
    from densestudio.core.importer import ImportOptions
    from densestudio.ui.app import apply_palette, create_application
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences

    app = create_application([])
    window = MainWindow(Preferences(tile_size=136))
    window.resize(*SIZE)
    window.show()
    wait(app, 0.3)

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
