"""The decoded-image cache: each image's preprocessed uint8 pixels, decoded once, on disk.

An image is decoded, made upright and turned into the run's input pixels once by its
``core.preprocess.Preprocessing``; the pixels are kept on disk, keyed by the image's content
hash, so later runs (and evaluation, the label audit, other processes) read them instead of
decoding JPEGs again. Per preprocessing, ``<project>-cache/decoded/<cache key>/`` holds

- ``pixels.u8``: one flat uint8 array, a row of C x H x W bytes per image (append-only;
  the layout ``np.memmap(path, np.uint8, "r", shape=(rows, C, H, W))`` reads);
- ``index.bin``: a 64-byte record per row, the image's content hash (record i = row i);
- ``writer.lock``: held by a process while it appends a batch.

Crash safety without renames: a batch's rows are written and fsync'd before its index
records, and a reader trusts only rows that have a complete record *and* whose bytes are in
the data file, so a torn tail (a kill mid-batch) is invisible and the next writer overwrites
it. Appends take the lock and first read what others appended, so concurrent runs (the GUI
and the CLI, the processes of a torchrun job) never store an image twice; readers take no
lock. Every batch is committed as it is decoded, so a cancelled run keeps its finished work.
The cache is disposable: delete the folder and it is rebuilt from the images. A file is
decoded only if its bytes still hash to the item's content hash (``FileChanged`` otherwise),
so a file replaced after import can never put its pixels under the old content's hash.

Bounded memory: nothing holds all pixels. ``Pixels`` is a list of rows; ``pixels[idx]``
reads just those rows (sorted, adjacent rows in one read) into a new tensor - a batch.
Rows are read with positional reads, not through a memory mapping: the bytes stay in the
operating system's page cache (shared by all processes, dropped under memory pressure)
instead of being counted in the process's resident memory page by page as a mapping is,
so a 200,000-image project trains in a few hundred MB.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densestudio.core.imaging import ImageDecodeError
from densestudio.core.preprocess import Preprocessing
from densestudio.core.progress import CancelToken

RECORD = 64  # bytes per index record: a content hash in ASCII, NUL-padded
BATCH = 256  # images decoded, written and committed together
_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class CacheItem:
    image_id: int
    path: str
    content_hash: str


@dataclass(frozen=True)
class DecodeFailure:
    image_id: int
    path: str
    reason: str


# ------------------------------------------------------------------ reading rows
class _ArrayRows:
    """Rows held in memory (no cache folder, or one that cannot be written)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def read(self, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.array[rows]
        return out


class _FileRows:
    """Rows of a pixels file, read on demand. Positional reads (no shared file offset)
    make it safe to read from several threads; a lock stands in where the OS has none."""

    def __init__(self, path: Path, row_shape: tuple[int, int, int]) -> None:
        self.row_shape = row_shape
        self.row_bytes = int(np.prod(row_shape))
        self.fd = os.open(path, os.O_RDONLY | _BINARY)
        self._lock = threading.Lock()
        weakref.finalize(self, os.close, self.fd)

    def _read_into(self, view: memoryview, offset: int) -> None:
        while len(view):
            if hasattr(os, "preadv"):
                n = os.preadv(self.fd, [view], offset)
            else:  # Windows
                with self._lock:
                    os.lseek(self.fd, offset, os.SEEK_SET)
                    data = os.read(self.fd, len(view))
                n = len(data)
                view[:n] = data
            if n == 0:
                raise OSError(f"the decoded-image cache ended early (row at byte {offset})")
            view, offset = view[n:], offset + n

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted, distinct), adjacent ones in one read."""
        out = np.empty((len(rows), *self.row_shape), dtype=np.uint8)
        if not len(rows):
            return out
        flat = memoryview(out).cast("B")  # type: ignore[arg-type]  # see _write_at
        starts = np.flatnonzero(np.diff(rows) != 1) + 1
        bounds = zip(np.concatenate(([0], starts)), np.concatenate((starts, [len(rows)])),
                     strict=True)
        rb = self.row_bytes
        for a, b in bounds:
            self._read_into(flat[a * rb : b * rb], int(rows[a]) * rb)
        return out


# What Pixels can be indexed with, as a tensor: an int, a slice, an index array or tensor.
Index = int | slice | Sequence[int] | np.ndarray | torch.Tensor


class Pixels:
    """N images' uint8 pixels (N x C x H x W), indexed like a tensor but read on demand.

    ``pixels[idx]`` (an index array or tensor, a slice, an int) reads those images into a
    new uint8 tensor: a batch. ``take(idx)`` is a view of some of the images that reads
    nothing. Images that could not be decoded (row -1) read as zeros.
    """

    def __init__(self, source: _ArrayRows | _FileRows, rows: np.ndarray,
                 row_shape: tuple[int, ...]) -> None:  # fmt: skip
        self._source = source  # row_shape: (C, H, W)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.row_shape = tuple(row_shape)

    @classmethod
    def of(cls, x: torch.Tensor | np.ndarray) -> Pixels:
        """Pixels of an in-memory uint8 N x C x H x W array."""
        arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return cls(_ArrayRows(arr), np.arange(len(arr)), arr.shape[1:])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.row_shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    def __len__(self) -> int:
        return len(self.rows)

    def _select(self, idx: Index) -> np.ndarray:
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        rows: np.ndarray = self.rows[idx]
        return rows

    def take(self, idx: Index) -> Pixels:
        return Pixels(self._source, np.atleast_1d(self._select(idx)), self.row_shape)

    def __getitem__(self, idx: Index) -> torch.Tensor:
        rows = self._select(idx)
        if np.ndim(rows) == 0:
            return self._gather(np.array([int(rows)]))[0]
        return self._gather(rows)

    def _gather(self, rows: np.ndarray) -> torch.Tensor:
        wanted, inverse = np.unique(rows, return_inverse=True)  # sorted: friendly to the disk
        block = np.zeros((len(wanted), *self.row_shape), dtype=np.uint8)
        valid = wanted >= 0
        if valid.any():
            block[valid] = self._source.read(wanted[valid])
        return torch.from_numpy(block[inverse.reshape(-1)])


# ------------------------------------------------------------------ the store
@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, released when the file is closed."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _BINARY, 0o666)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    # Windows only: mypy checks for Linux, where msvcrt has neither name
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
                    break
                except OSError:  # LK_LOCK gives up after ~10 s; keep waiting
                    continue
        yield
    finally:
        os.close(fd)


def _write_at(path: Path, offset: int, data: np.ndarray) -> None:
    """Write ``data``'s bytes at ``offset`` and make them durable before returning."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _BINARY, 0o666)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        # ndarray has the buffer protocol; numpy's stubs declare it only for Python >= 3.12
        view = memoryview(np.ascontiguousarray(data)).cast("B")  # type: ignore[arg-type]
        while len(view):
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class _Store:
    """One preprocessing's pixels file and index (see the module docstring)."""

    def __init__(self, folder: Path, row_shape: tuple[int, int, int]) -> None:
        self.folder = folder
        self.data_path = folder / "pixels.u8"
        self.index_path = folder / "index.bin"
        self.row_shape = row_shape
        self.row_bytes = int(np.prod(row_shape))
        self.rows: dict[str, int] = {}  # content hash -> row
        self.count = 0  # committed rows read so far

    def refresh(self) -> dict[str, int]:
        """Read the index records committed since the last call (by any process)."""
        try:
            records = os.stat(self.index_path).st_size // RECORD
            complete = min(records, os.stat(self.data_path).st_size // self.row_bytes)
        except OSError:  # not there yet (or unreadable: then appending fails too)
            return self.rows
        if complete > self.count:
            with open(self.index_path, "rb") as f:
                f.seek(self.count * RECORD)
                raw = f.read((complete - self.count) * RECORD)
            hashes = np.frombuffer(raw[: len(raw) // RECORD * RECORD], dtype=f"S{RECORD}")
            for i, h in enumerate(hashes, start=self.count):
                if h:
                    self.rows.setdefault(h.decode("ascii", "replace"), i)
            self.count += len(hashes)
        return self.rows

    def append(self, hashes: list[str], pixels: np.ndarray) -> None:
        """Commit decoded images (those no other process committed meanwhile)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder / "writer.lock"):
            self.refresh()
            keep = [i for i, h in enumerate(hashes) if h not in self.rows]
            if not keep:
                return
            first = self.count
            _write_at(self.data_path, first * self.row_bytes, pixels[keep])
            records = np.array([hashes[i].encode("ascii") for i in keep], dtype=f"S{RECORD}")
            _write_at(self.index_path, first * RECORD, records)
            for row, i in enumerate(keep, start=first):
                self.rows[hashes[i]] = row
            self.count = first + len(keep)
            for old in self.folder.glob("chunk-*.npz"):  # the format before the flat file
                old.unlink(missing_ok=True)

    def reader(self) -> _FileRows | None:
        return _FileRows(self.data_path, self.row_shape) if self.count else None


class _MemorySink:
    """Decoded images kept in memory: no cache folder, or one that cannot be written."""

    def __init__(self, items: Sequence[CacheItem], row_shape: tuple[int, int, int]) -> None:
        self.position = {it.content_hash: i for i, it in reversed(list(enumerate(items)))}
        self.array = np.zeros((len(items), *row_shape), dtype=np.uint8)
        self.filled: set[str] = set()

    @classmethod
    def from_store(cls, store: _Store, items: Sequence[CacheItem],
                   row_shape: tuple[int, int, int]) -> _MemorySink:  # fmt: skip
        sink = cls(items, row_shape)
        reader = store.reader()
        on_disk = sorted((r, h) for h, r in store.rows.items() if h in sink.position)
        if reader is not None and on_disk:
            sink.put([h for _, h in on_disk], reader.read(np.array([r for r, _ in on_disk])))
        return sink

    def known(self) -> set[str] | dict[str, int]:
        return self.filled

    def put(self, hashes: list[str], pixels: np.ndarray) -> None:
        for h, px in zip(hashes, pixels, strict=True):
            self.array[self.position[h]] = px
            self.filled.add(h)

    def result(self, items: Sequence[CacheItem], row_shape: tuple[int, int, int]) -> Pixels:
        rows = [self.position[it.content_hash] if it.content_hash in self.filled else -1
                for it in items]
        return Pixels(_ArrayRows(self.array), np.array(rows, dtype=np.int64), row_shape)


class _DiskSink:
    """Decoded images committed to the cache folder's store."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    def known(self) -> dict[str, int]:
        return self.store.refresh()

    def put(self, hashes: list[str], pixels: np.ndarray) -> None:
        self.store.append(hashes, pixels)

    def result(self, items: Sequence[CacheItem], row_shape: tuple[int, int, int]) -> Pixels:
        index = self.store.refresh()
        rows = np.array([index.get(it.content_hash, -1) for it in items], dtype=np.int64)
        reader = self.store.reader()
        return Pixels(reader if reader is not None
                      else _ArrayRows(np.zeros((0, *row_shape), np.uint8)), rows, row_shape)


def _cacheable(content_hash: str) -> bool:
    return content_hash.isascii() and 0 < len(content_hash) <= RECORD


class DecodedCache:
    """Decoded, preprocessed uint8 pixels keyed by content hash and preprocessing."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def folder(self, prep: Preprocessing) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / "decoded" / prep.cache_key

    def load(
        self,
        items: Sequence[CacheItem],
        prep: Preprocessing,
        on_progress: Callable[[int, int, int], None] | None = None,
        cancel: CancelToken | None = None,
        workers: int | None = None,
        share: tuple[int, int] = (0, 1),
    ) -> tuple[Pixels, list[DecodeFailure]]:
        """The pixels of ``items`` (in their order) and the images that failed (zeros).

        Images not in the cache are decoded by a thread pool and committed batch by batch
        (a full or read-only disk only means they are kept in memory this time).
        ``share=(rank, processes)``: processes loading the same items at once (a torchrun
        job) start decoding at different places and skip what the others committed, so
        they split the work instead of each decoding everything.
        """
        row_shape = (prep.channels, prep.height, prep.width)
        folder = self.folder(prep)
        sink: _MemorySink | _DiskSink
        if folder is not None and all(_cacheable(it.content_hash) for it in items):
            sink = _DiskSink(_Store(folder, row_shape))
        else:
            sink = _MemorySink(items, row_shape)
        known = sink.known()
        multiplicity = Counter(it.content_hash for it in items)
        todo = list({it.content_hash: it for it in reversed(items)
                     if it.content_hash not in known}.values())[::-1]
        rank, processes = share
        if processes > 1 and todo:
            k = rank * len(todo) // processes
            todo = todo[k:] + todo[:k]
        total = len(items)
        done = from_disk = total - sum(multiplicity[it.content_hash] for it in todo)
        if on_progress:
            on_progress(from_disk, total, from_disk)
        failures: dict[str, DecodeFailure] = {}

        def work(it: CacheItem) -> np.ndarray | str:
            try:  # never cache other content under this hash: a replaced file fails
                return prep.load(it.path, it.content_hash)
            except ImageDecodeError as exc:
                return str(exc)
            except OSError as exc:
                return f"cannot read: {exc}"

        with ThreadPoolExecutor(workers or max(1, min(8, os.cpu_count() or 1))) as pool:
            for start in range(0, len(todo), BATCH):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                batch = todo[start : start + BATCH]
                known = sink.known()  # another process may have committed some meanwhile
                fresh = [it for it in batch if it.content_hash not in known]
                hashes, arrays = [], []
                for it, px in zip(fresh, pool.map(work, fresh), strict=True):
                    if isinstance(px, str):
                        failures[it.content_hash] = DecodeFailure(it.image_id, it.path, px)
                    else:
                        hashes.append(it.content_hash)
                        arrays.append(px)
                if arrays:
                    try:
                        sink.put(hashes, np.stack(arrays))
                    except OSError:
                        assert isinstance(sink, _DiskSink)
                        sink = _MemorySink.from_store(sink.store, items, row_shape)
                        sink.put(hashes, np.stack(arrays))
                done += sum(multiplicity[it.content_hash] for it in batch)
                if on_progress:
                    on_progress(done, total, from_disk)
        pixels = sink.result(items, row_shape)
        ok = set(sink.known())
        return pixels, [f for h, f in failures.items() if h not in ok]
