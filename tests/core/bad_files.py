"""Generate a corpus of awkward image files for import tests (nothing third-party on disk)."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# name -> expected outcome: "ok" (imported) or "skip" (reported with a reason)
EXPECTED: dict[str, str] = {}


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def noise(size: tuple[int, int] = (32, 24), mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr.squeeze() if channels == 1 else arr, mode)


def make_bad_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    """Write the corpus under ``root``; returns name -> (path, "ok" | "skip")."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}

    def add(name: str, path: Path, outcome: str) -> None:
        out[name] = (path, outcome)

    p = root / "zero.jpg"
    p.write_bytes(b"")
    add("zero-byte", p, "skip")

    good = io.BytesIO()
    noise((64, 64), seed=1).save(good, format="JPEG")
    p = root / "truncated.jpg"
    p.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    add("truncated jpeg", p, "skip")

    png = io.BytesIO()
    noise((16, 16), seed=2).save(png, format="PNG")
    data = bytearray(png.getvalue())
    idat = data.find(b"IDAT")
    data[idat + 6] ^= 0xFF  # corrupt compressed data -> CRC mismatch
    p = root / "broken_crc.png"
    p.write_bytes(bytes(data))
    add("png broken crc", p, "skip")

    p = root / "text.jpg"
    p.write_text("this is not an image\n")
    add("text named jpg", p, "skip")

    add("1x1", _save(Image.new("L", (1, 1), 7), root / "one_pixel.png"), "ok")

    arr16 = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    add("16-bit tiff", _save(Image.fromarray(arr16), root / "gray16.tif"), "ok")

    pages = [noise((20, 20), "L", seed=s) for s in range(3)]
    p = root / "multipage.tif"
    pages[0].save(p, save_all=True, append_images=pages[1:])
    add("multi-page tiff", p, "ok")

    add("cmyk jpeg", _save(noise((30, 20), seed=3).convert("CMYK"), root / "cmyk.jpg"), "ok")

    pal = Image.new("P", (20, 20))
    pal.putpalette([i % 256 for i in range(768)])
    pal.putpixel((3, 3), 5)
    add("palette png transparency",
        _save(pal, root / "palette.png", transparency=0), "ok")

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    add("exif rotated jpeg",
        _save(noise((40, 20), seed=4), root / "rotated.jpg", exif=exif.tobytes()), "ok")

    frames = [noise((16, 16), seed=s).convert("P") for s in range(3)]
    p = root / "animated.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated gif", p, "ok")

    add("bmp", _save(noise((20, 20), seed=5), root / "plain.bmp"), "ok")
    add("webp", _save(noise((20, 20), seed=6), root / "plain.webp"), "ok")

    add("unicode name", _save(noise((20, 20), seed=7), root / "Prüfung ✓ 🙂 teil.png"), "ok")
    add("spaces in name", _save(noise((20, 20), seed=8), root / "with  spaces .png"), "ok")

    add("decompression bomb", _write_bomb_png(root / "bomb.png"), "skip")

    fifo = make_fifo(root / "pipe.jpg")
    if fifo is not None:  # used to hang the import (and training, and predict) forever
        add("fifo named jpg", fifo, "skip")
    odd = non_utf8_path(root, b"caf\xe9-latin1.png")
    if odd is not None:  # its UnicodeEncodeError used to abort the whole batch
        add("non-utf-8 name", _save(noise((20, 20), seed=9), odd), "ok")
    return out


def make_fifo(path: Path) -> Path | None:
    """A named pipe with an image's name (None where the OS has none)."""
    if not hasattr(os, "mkfifo"):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def non_utf8_path(folder: Path, name: bytes) -> Path | None:
    """``folder/name`` for a name that is not UTF-8 (Python sees lone surrogates), or None
    where the file system refuses such names (macOS, Windows)."""
    path = folder / os.fsdecode(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        path.unlink()
    except (OSError, UnicodeError):
        return None
    return path


def write_zero_padded_jpeg(path: Path, total_bytes: int) -> Path:
    """A small valid JPEG followed by zeros up to ``total_bytes`` (a sparse file: it costs
    no disk). Decoding it must not read the padding into memory."""
    buf = io.BytesIO()
    noise((64, 48), seed=11).save(buf, format="JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
        f.truncate(total_bytes)
    return path


def _write_bomb_png(path: Path) -> Path:
    """A tiny PNG whose header claims 30000x30000 pixels (900 MP)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF
        )

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 30001 * 4)  # a few rows; the header is what matters
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def make_class_folders(
    root: Path,
    classes: Sequence[str] = ("ok", "ng"),
    per_class: int = 6,
    size: tuple[int, int] = (32, 32),
    seed: int = 0,
) -> Path:
    """Synthetic labeled images: root/<class>/<i>.png, classes differ in brightness."""
    for c_index, name in enumerate(classes):
        for i in range(per_class):
            rng = np.random.default_rng((seed, c_index, i))
            base = 60 + 120 * c_index
            arr = np.clip(rng.normal(base, 20, size=(size[1], size[0])), 0, 255).astype(np.uint8)
            _save(Image.fromarray(arr, "L"), root / name / f"{name}_{i:03d}.png")
    return root


def can_chmod_deny() -> bool:
    """Root ignores permission bits, so 'unreadable' tests only mean something otherwise."""
    return hasattr(os, "geteuid") and os.geteuid() != 0
