"""Gallery benchmark: open a 100,000-image project in the window and scroll through it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_gallery.py [--rows 100000]

1. Builds a project with ``--rows`` synthetic image rows (one transaction via
   ``store.bulk_insert_images``), 4 classes with ~60 % of the images labeled (so tiles show class
   chips and split markers), and a real thumbnail-cache row for EVERY image: 64 distinct
   128 px JPEG textures, each stored under every content hash that uses it (content_hash is
   unique per image, so 100k cache rows; ~2 KB each). Nothing is faked on the read path:
   the loader threads read the SQLite cache, decode JPEGs to QImages, and the GUI thread converts
   them to pixmaps and paints them scaled into tiles.
2. Opens it in the main window (1400x900) and reports the open time: from the call until the
   grid has been laid out and painted once (thumbnails then stream in asynchronously; the time
   until the first screenful of thumbnails is in is reported too).
3. Scrolls programmatically while a 10 ms QTimer measures the GUI thread: a smooth fling
   (3 tile rows every 16 ms, 10 s), then 60 random jumps across the whole grid (each needs a
   fresh page of rows from SQLite and new thumbnails). The worst stall is the longest interval
   between two ticks of the 10 ms timer, minus 10 ms.
4. Also times a 1-9 key press (label one image, auto-advance) and a class filter change.

Targets (issue): open < 2 s, worst stall < 100 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication


def make_thumbnails(n: int = 64, size: int = 128) -> list[bytes]:
    from densestudio.core.demo import DEMO_CLASSES, demo_image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = demo_image(DEMO_CLASSES[i % 4], rng, size)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def build_project(folder: Path, rows: int) -> Path:
    from densestudio.core.models import utcnow
    from densestudio.core.store import Project, bulk_insert_images
    from densestudio.core.thumbnails import ThumbnailCache

    path = folder / "bench100k.dsproj"
    t0 = time.perf_counter()
    project = Project.create(path)
    classes = [project.add_class(n) for n in ("ok", "scratch", "spot", "crack")]
    now = utcnow()
    rng = random.Random(0)
    data = []
    for i in range(rows):
        label = classes[i % 4].id if rng.random() < 0.6 else None
        data.append(dict(
            path=f"/bench/line{i // 10000}/part_{i:06d}.png", filename=f"part_{i:06d}.png",
            folder=f"/bench/line{i // 10000}", content_hash=f"{i:032x}", byte_size=50_000,
            width=1024, height=768, mode="L", bit_depth=8, added_at=now, missing=False,
            label_id=label, label_source="folder" if label else None,
            labeled_by="bench" if label else None, labeled_at=now if label else None,
        ))
    with project.transaction() as s:
        bulk_insert_images(s, data)
        from densestudio.core.splits import assign_missing_splits

        assign_missing_splits(s)
    t1 = time.perf_counter()
    thumbs = make_thumbnails()
    cache = ThumbnailCache(project.cache_dir)
    cache.put_many((f"{i:032x}", thumbs[i % len(thumbs)]) for i in range(rows))
    cache.close()
    project.close()
    size_mb = cache.path.stat().st_size / 1e6
    print(f"built {rows:,} rows in {t1 - t0:.1f} s; thumbnail cache {rows:,} rows, "
          f"{size_mb:.0f} MB, in {time.perf_counter() - t1:.1f} s")
    return path


class StallMeter:
    """Longest gap between ticks of a 10 ms timer on the GUI thread."""

    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.gaps = []
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def report(self, name: str) -> float:
        gaps = sorted(self.gaps)
        worst = (gaps[-1] - 0.010) * 1000 if gaps else 0.0
        p99 = (gaps[int(len(gaps) * 0.99)] - 0.010) * 1000 if gaps else 0.0
        print(
            f"  {name:<34} ticks {len(gaps):5d}   worst stall {max(0, worst):6.1f} ms   "
            f"p99 {max(0, p99):5.1f} ms   median interval {statistics.median(gaps) * 1000:5.1f} ms"
        )
        return worst


def run_for(app: QApplication, seconds: float, until: Callable[[], bool] | None = None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="build into / reuse this folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-gallery-"))
    os.environ["DENSESTUDIO_CONFIG_DIR"] = str(tmp / "config")
    os.environ["DENSESTUDIO_DATA_DIR"] = str(tmp / "data")
    folder = args.keep or tmp
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench100k.dsproj"
    if not path.exists():
        path = build_project(folder, args.rows)

    from PySide6.QtCore import QSettings, QTimer

    QSettings.setPath(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, str(tmp / "qs"))
    from densestudio.ui.app import create_application
    from densestudio.ui.main_window import MainWindow
    from densestudio.ui.settings import Preferences

    app = create_application([])
    window = MainWindow(Preferences(tile_size=144))
    window.resize(1400, 900)
    window.show()
    run_for(app, 0.3)

    # ---------------------------------------------------------------- open
    t0 = time.perf_counter()
    ok = window.open_project(path)
    app.processEvents()
    window.gallery.viewport().repaint()
    open_s = time.perf_counter() - t0
    assert ok, window.last_error
    model, gallery, loader = window.model, window.gallery, window.loader

    def visible_rows() -> list[int]:
        top = gallery.indexAt(gallery.viewport().rect().topLeft() + gallery.rect().topLeft())
        rows = []
        r = max(0, top.row())
        while r < model.rowCount():
            rect = gallery.visualRect(model.index(r))
            if rect.top() > gallery.viewport().height():
                break
            rows.append(r)
            r += 1
        return rows

    def screen_loaded() -> bool:
        return all(loader.pixmap(model.image_id(r)) is not None for r in visible_rows())

    run_for(app, 10, screen_loaded)
    thumbs_s = time.perf_counter() - t0
    print(f"\n{model.rowCount():,} images; open: {open_s:.2f} s (target < 2 s); first screenful "
          f"of {len(visible_rows())} thumbnails: {thumbs_s:.2f} s")

    # ---------------------------------------------------------------- scroll
    bar = gallery.verticalScrollBar()
    row_h = gallery.delegate.sizeHint(None, None).height() + 2 * gallery.spacing()
    meter = StallMeter()
    print(f"scrolling (range {bar.maximum():,} px, tile row {row_h} px):")

    stepper = QTimer()
    stepper.setInterval(16)
    stepper.timeout.connect(lambda: bar.setValue(bar.value() + 3 * row_h))
    meter.start()
    stepper.start()
    run_for(app, 10.0)
    stepper.stop()
    meter.stop()
    worst_fling = meter.report("fling (3 rows / 16 ms, 10 s)")
    fling_px = bar.value()

    rng = random.Random(1)
    jumps = [rng.randrange(bar.maximum()) for _ in range(60)]
    meter.start()
    for value in jumps:
        bar.setValue(value)
        run_for(app, 0.08)
    meter.stop()
    worst_jump = meter.report("60 random jumps (80 ms apart)")
    run_for(app, 3, screen_loaded)

    # ---------------------------------------------------------------- labeling & filter
    meter.start()
    gallery.go_to_row(model.rowCount() // 2)
    row = window._next_unlabeled_row(model.rowCount() // 2 - 1)
    gallery.go_to_row(row)
    t = time.perf_counter()
    window.label_with_shortcut("2")
    label_ms = (time.perf_counter() - t) * 1000
    run_for(app, 0.5)
    t = time.perf_counter()
    window.filter_bar.set_class(window.controller.classes()[1].id)
    app.processEvents()
    filter_ms = (time.perf_counter() - t) * 1000
    shown = model.rowCount()
    t = time.perf_counter()
    window.filter_bar.set_class(None)
    app.processEvents()
    filter2_ms = (time.perf_counter() - t) * 1000
    run_for(app, 0.5)
    meter.stop()
    meter.report("label key + 2 filter changes")
    print(f"  label one image (key 2, auto-advance): {label_ms:.0f} ms; filter to one class "
          f"({shown:,} shown): {filter_ms:.0f} ms; to unlabeled: {filter2_ms:.0f} ms")
    print(f"  thumbnail memory cache: {loader.cached_bytes / 1e6:.0f} MB "
          f"(bound {loader.max_bytes / 1e6:.0f} MB); scrolled {fling_px:,} px in the fling")

    worst = max(worst_fling, worst_jump)
    print(f"\nRESULT open {open_s:.2f} s (target < 2 s), worst scroll stall {worst:.0f} ms "
          f"(target < 100 ms): {'PASS' if open_s < 2 and worst < 100 else 'FAIL'}")
    window.close()
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
