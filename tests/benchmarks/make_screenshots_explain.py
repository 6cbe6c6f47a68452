"""Screenshots of heatmaps and the OK/NG operating point (offscreen; no display needed).

    .venv/bin/python tests/benchmarks/make_screenshots_explain.py [--out docs/screenshots]

Writes three files (the other README screenshots come from make_screenshots.py):
- gradcam.png: the Images tab with the viewer's heatmap overlay on a NEU surface-defect test
  image, after a short training run (compact DenseNet-BC, 96 px) on 40 NEU images per class
  (read from ../shared/datasets, linked into a temporary folder, never copied);
- review_ok_ng.png: the Review tab's top losses with OK / NG / UNSURE on each tile;
- operating_point.png: the OK/NG threshold window of a run trained on the app's own demo
  images (ok / scratch / spot / crack; "ok" is the good class), with costs entered, the
  suggested threshold and an unsure band.
Prints the training figures and what each shot shows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from densestudio.ui.main_window import MainWindow

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.make_screenshots import (
    NEU,
    isolate_settings,
    neu_subset,
    open_window,
    review_run,
    wait,
)

SIZE = (1440, 900)


def train(project_path: Path, images: Path, img_size: int, epochs: int) -> int:
    from densestudio.core import runs
    from densestudio.core.importer import ImportOptions, run_import
    from densestudio.core.store import Project
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.threads import limited_threads
    from densestudio.ml.train import fit

    project_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with Project.create(project_path) as project:
        run_import(project, [images], ImportOptions(labels_from_subfolders=True))
        cfg = TrainConfig(arch="densenet_bc_1m", img_size=img_size, epochs=epochs,
                          batch_size=32, device="cpu", name="first try")
        with limited_threads():
            run_id = fit(project, cfg)
        m = runs.get_run(project, run_id).metrics
    print(f"{project_path.stem}: trained in {time.perf_counter() - t0:.0f} s, "
          f"val acc {m.get('val_acc', 0) * 100:.1f} %, test acc {m.get('test_acc', 0) * 100:.1f} %")
    return run_id


def gradcam_shot(
    app: QApplication, window: MainWindow, tmp: Path, args: argparse.Namespace
) -> None:
    from densestudio.core import runs

    images = neu_subset(tmp / "neu", args.per_class)
    path = tmp / "projects" / "NEU steel defects.dsproj"
    run_id = train(path, images, 96, args.epochs)
    window.open_project(path)
    project = window.controller.project
    names = runs.run_class_names(project, run_id)
    # A confidently right test image of a class with a local defect.
    preds = [p for p in runs.predictions(project, run_id, "test")
             if p.pred_index == p.true_index and names[p.true_index] == args.neu_class]
    preds.sort(key=lambda p: -p.confidence)
    image_id = preds[0].image_id if preds else window.model.image_id(0)
    window.tabs.setCurrentIndex(0)
    window.splitter.setSizes([520, 880])
    row = window.model.row_of(image_id)
    window.gallery.go_to_row(row)
    viewer = window.viewer
    wait(app, 10, lambda: viewer.canvas.has_image() and viewer.info.id == image_id)
    shown: list = []
    viewer.heatmapShown.connect(shown.append)
    viewer.heat_opacity.setValue(55)
    viewer.heat_button.setChecked(True)
    wait(app, 120, lambda: bool(shown))
    wait(app, 10, lambda: window.loader.pending == 0)
    viewer.canvas.fit()
    wait(app, 0.4)
    window.grab().save(str(args.out / "gradcam.png"))
    e = window.heatmaps.get(run_id, image_id, None)
    print(f"gradcam.png: {Path(viewer.info.path).name}, {e.class_name} p={e.probs.max():.2f}, "
          f"{e.method} over {', '.join(e.layers)}")
    window.close_project()


def operating_point_shot(
    app: QApplication, window: MainWindow, tmp: Path, args: argparse.Namespace
) -> None:
    from densestudio.core.demo import make_demo_images

    folder = tmp / "demo images"
    make_demo_images(folder, per_class=args.demo_per_class)
    path = tmp / "projects" / "Demo inspection.dsproj"
    run_id = train(path, folder, 64, args.demo_epochs)
    window.open_project(path)
    review_run(app, window, run_id)
    wait(app, 0.3)
    dialog = window.review_panel.show_operating_point()
    panel = dialog.panel
    dialog.resize(900, 700)
    panel.good_combo.setCurrentIndex(panel.good_combo.findText("ok"))
    panel.cost_miss.setValue(10.0)
    panel.cost_reject.setValue(1.0)
    t = panel.suggest()
    panel.band_check.setChecked(True)
    lo, hi = max(0.0, (t or 0.5) - 0.1), min(1.0, (t or 0.5) + 0.1)
    panel.band_low.setValue(round(lo, 2))
    panel.band_high.setValue(round(hi, 2))
    panel.save()
    wait(app, 0.5)
    dialog.grab().save(str(args.out / "operating_point.png"))
    print(f"operating_point.png: good class 'ok', suggested threshold {t:.3f} "
          f"(miss costs 10, false reject 1), {len(panel.p_good)} validation images")
    dialog.close()
    review = window.review_panel
    review.show_view("top_losses")
    wait(app, 1.0)  # thumbnails load in the background
    window.grab().save(str(args.out / "review_ok_ng.png"))
    print("review_ok_ng.png: top losses with the OK/NG decision on each tile")
    window.close_project()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--neu-class", default="scratches")
    parser.add_argument("--demo-per-class", type=int, default=60)
    parser.add_argument("--demo-epochs", type=int, default=12)
    parser.add_argument("--only", choices=["gradcam", "operating_point"])
    args = parser.parse_args()
    if args.only != "operating_point" and not NEU.is_dir():
        print(f"NEU images not found at {NEU}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ds-shots-explain-"))
    isolate_settings(tmp)
    app, window = open_window()
    try:
        if args.only in (None, "gradcam"):
            gradcam_shot(app, window, tmp, args)
        if args.only in (None, "operating_point"):
            operating_point_shot(app, window, tmp, args)
    finally:
        window.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
