"""Image decoding that copes with what inspection cameras and users actually produce.

One place knows how to turn a file into pixels: EXIF orientation, 16-bit grayscale (TIFF/PNG),
CMYK JPEGs, palette images with transparency, multi-page TIFF and animated GIF (first frame),
and images large enough to trip Pillow's decompression-bomb guard. Everything downstream
(thumbnails, training cache, viewer, prediction) gets 8-bit "L" or "RGB".

Files are opened by ``open_regular`` only: a named pipe, a device or a socket put where an
image was expected is refused at once instead of hanging or reading forever. Memory per
decode is bounded: the pixel count is checked from the header before anything is decoded,
JPEGs decode at reduced size when asked, and a file is never read whole into memory when it
is large (zero-padding after a small image costs a streamed hash, not gigabytes of RAM).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from densestudio.core import files
from densestudio.core.errors import DenseStudioError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
     ".pgm", ".ppm", ".pbm", ".pnm", ".tga"}
)  # what Pillow reads that cameras and tools write; other files are counted, not read


def other_types_note(counts: dict[str, int]) -> str | None:
    """"3 other file(s) are not image types it reads and were skipped: .txt 2, .raw 1"."""
    if not counts:
        return None
    kinds = ", ".join(f"{ext or '(no extension)'} {n}"
                      for ext, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"{sum(counts.values())} other file(s) are not image types DenseStudio reads "
            f"and were skipped: {kinds}")
# Pillow's own guard is ~89 MP (warning) / ~179 MP (error). We refuse above this many pixels:
# 200 MP still covers large line-scan frames, while a crafted 50k x 50k PNG is rejected.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated files are errors, not grey bottoms
# Pillow warns for MAX_PIXELS..2 x MAX_PIXELS and raises above; ``_open`` refuses anything
# above MAX_PIXELS itself, right after reading the header. The warning is made an error once
# here, not per image with ``warnings.catch_warnings`` (which swaps the process-wide filter
# list: slow, and not thread-safe in the import's worker threads).
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

THUMBNAIL_SIZE = 256
HASH_CHUNK = 1 << 20
MAX_FILE_BYTES = 2 << 30  # 2 GiB: beyond this a file is not a plausible inspection image
IN_MEMORY_BYTES = 64 << 20  # files up to this size are read once; larger ones are streamed


class ImageDecodeError(DenseStudioError):
    """The file is not an image we can read; the message says why, in the same plain words
    in the import report, the viewer and ``densestudio predict``."""


NOT_AN_IMAGE = "not an image file, or a kind of image DenseStudio cannot read"
DAMAGED = "the image file is damaged or incomplete"


class NotARegularFile(ImageDecodeError):
    """A FIFO, device, socket or folder where an image file was expected."""


def open_regular(path: Path) -> AbstractContextManager[BinaryIO]:
    """``files.open_regular`` raising NotARegularFile (an ImageDecodeError) for a FIFO etc."""
    return files.open_regular(path, NotARegularFile)


def _read_error(exc: OSError) -> ImageDecodeError:
    if isinstance(exc, FileNotFoundError):
        return ImageDecodeError("file not found")
    if isinstance(exc, PermissionError):
        return ImageDecodeError("permission denied")
    return ImageDecodeError(f"cannot read: {exc.strerror or exc}")


@dataclass(frozen=True)
class ImageProbe:
    """What import records about an image file."""

    width: int
    height: int
    mode: str  # source mode as Pillow reports it ("L", "RGB", "I;16", "CMYK", "P", ...)
    bit_depth: int


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def file_hash(path: Path) -> str:
    """Content hash (BLAKE2b-128, hex): the identity of an image across folders and moves.

    Raises OSError, or NotARegularFile for a FIFO/device."""
    with open_regular(path) as f:
        return stream_hash(f)


def stream_hash(f: BinaryIO) -> str:
    """``bytes_hash`` of a file's whole content, read in chunks (constant memory)."""
    h = hashlib.blake2b(digest_size=16)
    while chunk := f.read(HASH_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def bytes_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _bit_depth(mode: str) -> int:
    if mode in ("1",):
        return 1
    if mode.startswith("I;16") or mode == "I":
        return 16 if mode.startswith("I;16") else 32
    if mode == "F":
        return 32
    return 8


def _open(source: bytes | BinaryIO) -> Image.Image:
    """Pillow's lazy open (header only) of bytes or an open file, with the size checks."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large (over {MAX_PIXELS // 1_000_000} MP)") from exc
    except Image.DecompressionBombWarning as exc:
        raise ImageDecodeError(f"image too large ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(NOT_AN_IMAGE) from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError("file not found") from exc
    except PermissionError as exc:
        raise ImageDecodeError("permission denied") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read: {exc}") from exc
    if img.width * img.height > MAX_PIXELS:
        raise ImageDecodeError(
            f"image too large ({img.width}x{img.height}, over {MAX_PIXELS // 1_000_000} MP)"
        )
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError("image has no pixels")
    _check_holds_its_pixels(img, source)
    return img


def _check_holds_its_pixels(img: Image.Image, source: bytes | BinaryIO) -> None:
    """Refuse a baseline JPEG whose header claims more pixels than its data can hold: each
    8x8 block costs at least 2 bits there, so a 14000 x 14000 header over 20 KB of data is
    a crafted or cut file that would decode to a mostly grey 196 MP image."""
    if img.format != "JPEG" or img.info.get("progressive") or img.info.get("progression"):
        return
    try:
        size = len(source) if isinstance(source, bytes) else os.fstat(source.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return
    blocks = -(-img.width // 8) * -(-img.height // 8)
    if size < blocks // 8:  # (1 bit per block: a margin no real file comes near)
        raise ImageDecodeError(
            f"the JPEG header claims {img.width} x {img.height} pixels but the file holds "
            f"data for far fewer ({size // 1024} KiB); it is cut short or crafted")


def to_display_mode(img: Image.Image) -> Image.Image:
    """Convert any decoded frame to 8-bit "L" or "RGB".

    16/32-bit grayscale is windowed to its 0.5-99.5 percentile range so dim sensor data
    becomes visible (a fixed >>8 would render most 12-bit camera images black).
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = np.percentile(arr, (0.5, 99.5)) if arr.size > 1 else (arr.min(), arr.max())
        if hi <= lo:
            hi = lo + 1.0
        scaled = np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    if mode == "1":
        return img.convert("L")
    if mode in ("LA", "La"):
        return img.convert("L")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa", "PA"):
        # Transparent pixels composite onto mid-grey: neither a fake white nor black defect.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


@contextmanager
def _opened(source: Path | bytes) -> Iterator[Image.Image]:
    """A lazily opened image from bytes or a path (regular files only)."""
    if isinstance(source, bytes):
        yield _open(source)
        return
    with ExitStack() as stack:
        try:
            f = stack.enter_context(open_regular(Path(source)))
        except OSError as exc:
            raise _read_error(exc) from exc
        yield _open(f)


def probe(path: Path) -> ImageProbe:
    """Header-only look at a file (fast): dimensions and mode after EXIF rotation."""
    with _opened(path) as img:
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        return ImageProbe(width, height, img.mode, _bit_depth(img.mode))


class FileChanged(ImageDecodeError):
    """The file's content is no longer the content the project recorded for it."""


CHANGED_SINCE_IMPORT = "the file changed since it was imported (its content differs)"


def load_verified(path: Path, content_hash: str, max_side: int | None = None) -> Image.Image:
    """``load_image`` of a file that must still hold the content hashed as ``content_hash``
    (FileChanged otherwise): pixels cached under a hash are then always that content's."""
    try:
        with open_regular(path) as f:
            data = b""
            if os.fstat(f.fileno()).st_size <= IN_MEMORY_BYTES:  # one read: hash and decode
                data = f.read()
                digest = bytes_hash(data)
            else:
                digest = stream_hash(f)
            if digest != content_hash:
                raise FileChanged(CHANGED_SINCE_IMPORT)
            if data:
                return load_image(data, max_side)
            f.seek(0)
            return _decode_upright(_open(f), max_side)
    except OSError as exc:
        raise _read_error(exc) from exc


def load_image(source: Path | bytes, max_side: int | None = None) -> Image.Image:
    """Decode the first frame, upright, as 8-bit "L" or "RGB".

    ``max_side`` lets JPEG decoding use draft mode (DCT scaling), so a 12 MP camera frame
    needed at 256 px decodes ~8x faster; the result is at least ``max_side`` on its long side
    unless the source is smaller.
    """
    with _opened(source) as img:
        return _decode_upright(img, max_side)


def _decode_upright(img: Image.Image, max_side: int | None) -> Image.Image:
    try:
        if max_side is not None and img.format == "JPEG":
            img.draft(img.mode if img.mode in ("L", "RGB") else "RGB", (max_side, max_side))
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_display_mode(img)
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(DAMAGED) from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image too large") from exc


THUMBNAIL_MIN_SHORT_SIDE = 16
"""A thumbnail's short side is stretched to at least this: a 20000 x 3 strip would shrink to a
256 x 1 line that no one can see or click on a tile; 256 x 16 shows it whole, as a band."""


def _shrunk(img: Image.Image, size: int) -> Image.Image:
    """``img`` with its long side at most ``size`` (the image itself when it fits) and its
    short side at least ``THUMBNAIL_MIN_SHORT_SIDE`` when the long side has room for it."""
    width, height = img.size
    scale = min(1.0, size / max(width, height))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    if min(target) < THUMBNAIL_MIN_SHORT_SIDE <= max(target):  # an extreme aspect ratio
        stretched = (max(target[0], THUMBNAIL_MIN_SHORT_SIDE),
                     max(target[1], THUMBNAIL_MIN_SHORT_SIDE))
        return img.resize(stretched, Image.Resampling.BILINEAR, reducing_gap=2.0)
    if scale == 1.0:
        return img
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return thumb


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def make_thumbnail(img: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = 85) -> bytes:
    """A JPEG (long side ``size``) of an already-decoded image."""
    return _jpeg(_shrunk(img, size), quality)


def difference_hash(img: Image.Image) -> int:
    """64-bit dHash (as a signed int, SQLite's integer range): near-identical images differ
    in few bits, so a small Hamming distance flags re-shot or re-saved duplicates."""
    small = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BILINEAR), np.int16)
    value = int.from_bytes(np.packbits(small[:, 1:] > small[:, :-1]).tobytes(), "big")
    return value - (1 << 64) if value >= 1 << 63 else value


def thumbnail_hash(thumbnail_jpeg: bytes) -> int:
    """dHash of a cached thumbnail (back-filling rows imported before dHash existed); the
    import hashes the same thumbnail-size image before it is JPEG-encoded, which gives the
    same bits up to compression noise."""
    with Image.open(io.BytesIO(thumbnail_jpeg)) as img:
        return difference_hash(img)


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # fmt: skip


def decode_for_import(
    data: bytes | BinaryIO, thumb_size: int = THUMBNAIL_SIZE
) -> tuple[ImageProbe, bytes, int]:
    """One decode per imported file (its bytes, or the open file when it is large): its
    probe (original size/mode), thumbnail JPEG and the thumbnail's dHash (from the decoded
    thumbnail-size image, not by decoding the JPEG again)."""
    img = _open(data)
    try:
        width, height = img.size
        mode = img.mode
        orientation = img.getexif().get(0x0112, 1)
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        if img.format == "JPEG":
            img.draft("RGB" if mode not in ("L",) else "L", (thumb_size, thumb_size))
        img.seek(0)
        img.load()
        method = _TRANSPOSE.get(orientation)  # (ImageOps.exif_transpose would also copy)
        small = _shrunk(to_display_mode(img.transpose(method) if method else img), thumb_size)
        thumb, dhash = _jpeg(small), difference_hash(small)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("image too large") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageDecodeError(DAMAGED) from exc
    return ImageProbe(width, height, mode, _bit_depth(mode)), thumb, dhash
