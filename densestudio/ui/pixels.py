"""Decoded pixels handed from a worker thread to the GUI thread.

Worker threads never build QImages, QPixmaps or QObjects and never use Qt's image plugins:
``QImage.fromData`` holds the GIL while Qt probes every plugin (loading one constructs a
QObject and takes Qt locks), and a GUI thread that waits for the GIL while it holds one of
those locks (destroying a QObject whose wrapper needs Python) deadlocks against it. So
workers decode with Pillow (which releases the GIL while it decodes) into ``Pixels``, plain
bytes, and the GUI thread turns them into a QImage with ``to_qimage`` - a copy from a
buffer, no plugin involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtGui import QImage

from densestudio.core.imaging import load_image

_FORMATS = {"L": (QImage.Format.Format_Grayscale8, 1), "RGB": (QImage.Format.Format_RGB888, 3)}


@dataclass(frozen=True)
class Pixels:
    """8-bit pixels, rows top to bottom, no padding: ``mode`` "L" (1 byte) or "RGB" (3)."""

    width: int
    height: int
    mode: str
    data: bytes

    @classmethod
    def from_pil(cls, img: Image.Image) -> Pixels:
        if img.mode not in _FORMATS:
            img = img.convert("RGB")
        return cls(img.width, img.height, img.mode, img.tobytes())

    def to_qimage(self) -> QImage:
        """An independent QImage of these pixels (GUI thread)."""
        fmt, channels = _FORMATS[self.mode]
        view = QImage(self.data, self.width, self.height, self.width * channels, fmt)
        return view.copy()  # owns its memory; ``view`` only borrowed ``self.data``


def decode(source: bytes | Path) -> Pixels:
    """Encoded image bytes or a file -> upright 8-bit Pixels (any thread; raises
    ``ImageDecodeError`` for what cannot be read)."""
    return Pixels.from_pil(load_image(source))
