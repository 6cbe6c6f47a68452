"""One stress round: many thumbnail loads while animated widgets are created and destroyed
on the GUI thread.

Run by ``test_no_deadlock.py`` in a process of its own, so a deadlock fails the test instead
of freezing the test run (and by hand: ``python -m tests.ui.stress_thumbnails``). The
thumbnails are PNG, JPEG, BMP, GIF, TIFF and WebP bytes. The deadlock it catches (issue 12):
``QImage.fromData`` in a worker thread holds the GIL while Qt probes every image plugin; the
SVG probe builds a QTextStream (a QBuffer, a signal connection), which takes one of Qt's
signal-slot locks; meanwhile the GUI thread, destroying an animation connected to a Python
object's signal, holds such a lock and waits for the GIL to look up a Python override. If the
round does not finish in ``HANG_S`` seconds, faulthandler prints every thread's stack
("Timeout") and the process exits with code 1. Prints ``ok <thumbnails> <animations
destroyed> failed <n>`` otherwise.
"""

from __future__ import annotations

import faulthandler
import io
import os
import sys
from datetime import datetime, timezone

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image
from PySide6.QtCore import QByteArray, QPropertyAnimation, QTimer
from PySide6.QtWidgets import QApplication, QLineEdit, QPushButton, QWidget

from densestudio.core.store import ImageInfo
from densestudio.ui.thumbnail_loader import ThumbnailLoader

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


def image_bytes(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (48 + i, 32 + i), (i * 37 % 256, 90, 200 - i)).save(
            buf, FORMATS[i % len(FORMATS)])
        out.append(buf.getvalue())
    return out


def info(image_id: int) -> ImageInfo:
    return ImageInfo(image_id, f"/x/{image_id}.png", f"{image_id}.png", "/x", f"{image_id:032x}",
                     1, 64, 64, "RGB", 8, datetime.now(timezone.utc), False, None, None, None,
                     None, None)


class Churn:
    """Creates and destroys widgets with running QPropertyAnimations, as fast as it can."""

    def __init__(self) -> None:
        self.destroyed = 0
        self.edit = QLineEdit()
        self.edit.setClearButtonEnabled(True)  # Qt's own fade animation on every text change
        self.edit.show()
        self.parents: list[QWidget] = []

    def step(self) -> None:
        parent = QWidget()
        for _ in range(12):
            anim = QPropertyAnimation(parent, QByteArray(b"windowOpacity"), parent)
            anim.setDuration(500)
            anim.setStartValue(0.0)
            anim.setEndValue(1.0)
            anim.valueChanged.connect(lambda _v: None)
            anim.start()
            QPushButton(parent).clicked.connect(anim.stop)
        self.parents.append(parent)
        while len(self.parents) > 4:
            self.parents.pop(0).deleteLater()
            self.destroyed += 12
        self.edit.setText("" if self.edit.text() else "x")


def main() -> int:
    hang_s = float(os.environ.get("HANG_S", "30"))
    n = int(os.environ.get("THUMBNAILS", "3000"))
    faulthandler.dump_traceback_later(hang_s, exit=True)  # every thread's stack, exit 1
    app = QApplication(sys.argv[:1])
    blobs = image_bytes(24)
    loader = ThumbnailLoader(lambda i: blobs[i.id % len(blobs)], threads=2, max_queue=n)
    done: set[int] = set()
    churn = Churn()
    timer = QTimer()
    timer.timeout.connect(churn.step)

    def on_ready(image_id: int) -> None:
        done.add(image_id)
        if len(done) == n:
            app.quit()

    def load_all() -> None:
        for i in range(n):
            loader.request(info(i))

    loader.ready.connect(on_ready)
    timer.start(0)
    QTimer.singleShot(5, load_all)  # the first decodes start while the churn is running
    app.exec()
    timer.stop()
    loader.shutdown()
    failed = sum(loader.failed(i) for i in range(n))
    print("ok", len(done), churn.destroyed, "failed", failed, flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
