"""Before/after screenshots of issue 21 (offscreen; no training, no display, about a minute).

    PYTHONPATH=<tree> .venv/bin/python tests/benchmarks/make_round3_screenshots.py \
        --out docs/screenshots/round3 --tag after

Run it once with PYTHONPATH on a checkout of the commit before the fixes (``--tag before``)
and once on the fixed tree (``--tag after``). It works on both: what a tree lacks is skipped.
Uses the GUI tests' crafted sign-off project (tests/ui/signoff_fixtures.py: generated images,
two runs with stored predictions) and a generated project of one base image per part plus
brightness/noise variants. Writes 256-colour PNGs ``<item>_<name>_<tag>.png``:

- 01_splits: the Splits panel's near-duplicate check right after importing the variants
  (before: groups span splits; after: each group shares a split by default);
- 03_train_status: the Train tab after an epoch (status line and run list);
- 04_review_val_test: the Review header with test and validation side by side;
- 06_wheel: the Train form after three wheel notches over Batch size and Class balance;
- 07_enter_threshold: the OK/NG window after typing 0.67 and Enter;
- 09_gate_nothing: the release gate with no approved run;
- 12_review_open: what a double-click on a Review tile does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np
from PIL import Image

from tests.benchmarks.make_screenshots import isolate_settings, open_window, wait
from tests.ui.signoff_fixtures import make_signoff_project


def save(widget: object, out: Path, name: str, tag: str) -> None:
    """Grab ``widget`` and write it as a small 256-colour PNG."""
    path = out / f"{name}_{tag}.png"
    widget.grab().save(str(path))  # type: ignore[attr-defined]
    with Image.open(path) as img:
        small = img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"{path.name}: {path.stat().st_size // 1024} KiB")


def show_tab(window: object, panel: object) -> None:
    tabs = window.tabs  # type: ignore[attr-defined]
    for i in range(tabs.count()):
        page = tabs.widget(i)
        if page is panel or page.isAncestorOf(panel):
            tabs.setCurrentIndex(i)


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((96, 96), Image.Resampling.BILINEAR))


def write_variants(root: Path, parts: int = 24) -> None:
    """One base image per part plus 3 lightings and a noisy copy (unrelated file names)."""
    for cls in ("ok", "scratch"):
        (root / cls).mkdir(parents=True)
    for p in range(parts):
        cls = "scratch" if p % 3 == 0 else "ok"
        base = _texture(p).astype(int)
        if cls == "scratch":
            base[:, 40:43] = 20
        rng = np.random.default_rng(100 + p)
        shots = [base, base - 12, base + 10, base + 20, base + rng.normal(0, 3, base.shape)]
        for k, arr in enumerate(shots):
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
                root / cls / f"img{p:02d}{k}.png")


def splits_shot(app: object, window: object, tmp: Path, out: Path, tag: str) -> None:
    from densestudio.core.importer import ImportOptions, run_import
    from densestudio.core.store import Project

    root = tmp / "variants"
    write_variants(root)
    path = tmp / "Tiles under four lightings.dsproj"
    with Project.create(path) as project:
        run_import(project, [root], ImportOptions(labels_from_subfolders=True))
    window.open_project(path)  # type: ignore[attr-defined]
    panel = window.split_panel  # type: ignore[attr-defined]
    done: list = []
    panel.duplicatesChecked.connect(done.append)
    panel.check_duplicates()
    wait(app, 60, lambda: bool(done))
    wait(app, 10, lambda: panel.worker is None)
    panel.resize(460, panel.sizeHint().height() + 40)
    wait(app, 0.5)
    save(panel, out, "01_splits", tag)
    print(f"  {panel.dup_label.text()}")
    window.close_project()  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "round3")
    parser.add_argument("--tag", default="after")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ds-shots-round3-"))
    isolate_settings(tmp)
    os.environ["DENSESTUDIO_USER"] = "Q. Inspector"
    from densestudio.core import runs
    from densestudio.ml.events import EpochEnded

    path, _run_a, run_b = make_signoff_project(tmp / "Line 3 scratches")
    app, window = open_window()
    try:
        splits_shot(app, window, tmp, args.out, args.tag)

        window.open_project(path)
        project = window.controller.project
        info = runs.get_run(project, run_b)
        runs.update_run(project, run_b, metrics={
            **info.metrics, "test_acc": 0.988, "test_balanced_acc": 0.989, "val_acc": 0.86,
            "val_balanced_acc": 0.80})
        # A stopped run whose best epoch had 52 % balanced accuracy (68 % accuracy: the big
        # class), as the run list and the status line show it during training.
        stopped = runs.create_run(project, name="stopped at epoch 3", config_json="{}",
                                  class_names=("ok", "scratch"), snapshot=[])
        runs.update_run(project, stopped, status="cancelled", epochs_done=3, best_epoch=3,
                        epoch_metric=runs.EpochMetricInfo(3, 0.5, 0.61, 0.68, 0.4, 1e-3,
                                                          100.0, 2.0))
        runs.update_run_extra(project, stopped, live_metric={
            "metric": "val_balanced_acc", "best_epoch": 3, "best_value": 0.52,
            "best_balanced_acc": 0.52})

        # 3: the Train tab after an epoch.
        panel = window.train_panel
        show_tab(window, panel)
        panel.runs.refresh()
        fields = EpochEnded.__dataclass_fields__
        extra = {"monitor": "val_balanced_acc", "monitor_value": 0.52} \
            if "monitor" in fields else {}
        panel.total_epochs = 20
        panel._on_event(EpochEnded(stopped, 3, 0.5, 0.61, 0.68, 0.4, 1e-3, 100.0, 2.0, True,
                                   val_balanced_acc=0.52, **extra))
        wait(app, 0.5)
        save(window, args.out, "03_train_status", args.tag)

        # 6: three wheel notches over Batch size and Class balance while scrolling the form.
        from PySide6.QtCore import QPoint, QPointF, Qt
        from PySide6.QtGui import QWheelEvent
        from PySide6.QtWidgets import QApplication

        def wheel(widget: object) -> None:
            centre = QPointF(widget.width() / 2, widget.height() / 2)  # type: ignore[attr-defined]
            QApplication.sendEvent(widget, QWheelEvent(
                centre, QPointF(widget.mapToGlobal(centre.toPoint())),  # type: ignore[attr-defined]
                QPoint(0, 0), QPoint(0, -120), Qt.MouseButton.NoButton,
                Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False))

        window.setFocus()
        before = (panel.batch.value(), panel.balance.currentText())
        for _ in range(3):
            wheel(panel.batch)
            wheel(panel.balance)
        from PySide6.QtWidgets import QScrollArea

        area = panel.batch.parentWidget()
        while area is not None and not isinstance(area, QScrollArea):
            area = area.parentWidget()
        if area is not None:
            area.ensureWidgetVisible(panel.balance)  # show the two settings in the shot
        wait(app, 0.3)
        save(window, args.out, "06_wheel", args.tag)
        print(f"  batch/balance {before} -> {(panel.batch.value(), panel.balance.currentText())}")

        # 4: Review header, test and validation.
        window.review_run(run_b)
        wait(app, 0.5)
        save(window, args.out, "04_review_val_test", args.tag)

        # 7: the OK/NG window: pick for a 12 % target, then type 0.67 and press Enter.
        dialog = window.review_panel.show_operating_point()
        dialog.resize(1000, 720)
        op = dialog.panel
        op.good_combo.setCurrentIndex(op.good_combo.findText("ok"))
        op.target.setValue(12.0)
        op.pick_for_target()
        wait(app, 0.3)
        from PySide6.QtTest import QTest

        op.threshold.setFocus()
        op.threshold.lineEdit().selectAll()
        QTest.keyClicks(op.threshold.lineEdit(), "0.67")
        QTest.keyClick(op.threshold.lineEdit(), Qt.Key.Key_Return)
        wait(app, 0.5)
        save(dialog, args.out, "07_enter_threshold", args.tag)
        print(f"  threshold after typing 0.67 + Enter: {op.threshold.value():.4f}")
        dialog.close()

        # 9: the release gate with nothing approved.
        gate = window.review_panel.show_gate()
        finished: list = []
        gate.gateFinished.connect(finished.append)
        gate.run_gate()
        wait(app, 60, lambda: bool(finished))
        wait(app, 10, lambda: window.loader.pending == 0)
        wait(app, 0.5)
        save(gate, args.out, "09_gate_nothing", args.tag)
        print(f"  gate: {finished[0].verdict}")
        gate.close()

        # 12: double-click a Review tile.
        review = window.review_panel
        show_tab(window, review)
        review.show_view("top_losses")
        wait(app, 10, lambda: window.loader.pending == 0)
        index = review.model.index(1)
        review.gallery.setCurrentIndex(index)
        review.gallery.doubleClicked.emit(index)
        wait(app, 10, lambda: window.loader.pending == 0)
        wait(app, 1.0)
        save(window, args.out, "12_review_open", args.tag)
        window.close_project()
    finally:
        window.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
