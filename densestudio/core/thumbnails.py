"""Thumbnail cache: JPEG bytes keyed by content hash, in a SQLite file beside the project.

Kept out of the project file so the project stays small and can be mailed or backed up; the
cache is disposable and any missing entry is regenerated from the source image on demand.
A damaged cache (not a database, a folder in its place) is moved aside and rebuilt with a
warning; one that cannot be written (full disk, read-only folder) only stops caching.
Thread-safe: each thread gets its own SQLite connection.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from densestudio.core.imaging import THUMBNAIL_SIZE, ImageDecodeError, load_image, make_thumbnail
from densestudio.core.records import ImageInfo

log = logging.getLogger("densestudio")


def _damaged(exc: BaseException, path: Path) -> bool:
    """A cache file that will never work again (as opposed to a busy or full disk)."""
    if isinstance(exc, sqlite3.OperationalError):
        return path.is_dir() or ("unable to open" in str(exc) and path.exists())
    return isinstance(exc, sqlite3.DatabaseError)


class ThumbnailCache:
    def __init__(self, cache_dir: Path) -> None:
        """``cache_dir``: the project's ``cache_dir``."""
        self.path = Path(cache_dir) / "thumbnails.sqlite"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._disabled = False
        self._generation = 0  # bumped on a rebuild: other threads reconnect
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("CREATE TABLE IF NOT EXISTS thumb (hash TEXT PRIMARY KEY, data BLOB)")
            con.execute("SELECT hash FROM thumb LIMIT 1").fetchall()
        except BaseException:
            con.close()
            raise
        return con

    def _connection(self) -> sqlite3.Connection | None:
        con = getattr(self._local, "con", None)
        if con is not None and getattr(self._local, "generation", 0) != self._generation:
            con.close()
            con = self._local.con = None
        if con is None and not self._disabled:
            try:
                con = self._connect()
            except (sqlite3.Error, OSError) as exc:
                con = self._rebuild(exc)
            self._local.con, self._local.generation = con, self._generation
        return con

    def _rebuild(self, exc: BaseException) -> sqlite3.Connection | None:
        """Move a damaged cache aside and start an empty one; or stop caching."""
        with self._lock:
            if self._disabled:
                return None
            if _damaged(exc, self.path):
                aside = self.path.with_name(f"thumbnails.broken-{time.strftime('%Y%m%d-%H%M%S')}"
                                            f"-{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                    for suffix in ("-wal", "-shm"):
                        Path(str(self.path) + suffix).unlink(missing_ok=True)
                    self._generation += 1
                    con = self._connect()
                    log.warning("The thumbnail cache %s was unusable (%s); it was moved to %s "
                                "and is rebuilt as images are shown.", self.path, exc,
                                aside.name)
                    return con
                except (sqlite3.Error, OSError) as second:
                    exc = second
            self._disabled = True
            log.warning("Thumbnails are not cached this time (%s: %s); they are made from "
                        "the images instead.", self.path, exc)
            return None

    def _recover(self, exc: sqlite3.Error) -> None:
        """After an error on an open connection: rebuild a damaged file, else carry on."""
        if _damaged(exc, self.path) and not isinstance(exc, sqlite3.OperationalError):
            con = getattr(self._local, "con", None)
            if con is not None:
                con.close()
                self._local.con = None
            self._local.con = self._rebuild(exc)
            self._local.generation = self._generation
        else:
            self._warn_once(type(exc).__name__ + str(exc),
                            f"Thumbnail cache {self.path}: {exc}; carrying on without it.")

    def get(self, content_hash: str) -> bytes | None:
        con = self._connection()
        if con is None:
            return None
        try:
            row = con.execute("SELECT data FROM thumb WHERE hash = ?", (content_hash,)).fetchone()
        except sqlite3.Error as exc:
            self._recover(exc)
            return None
        return row[0] if row else None

    def put(self, content_hash: str, data: bytes) -> None:
        self.put_many([(content_hash, data)])

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store thumbnails; a cache that cannot be written (full disk) is skipped."""
        items = list(items)
        con = self._connection()
        if con is None:
            return
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO thumb (hash, data) VALUES (?, ?)",
                                items)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._recover(exc)

    def get_or_make(self, image: ImageInfo, size: int = THUMBNAIL_SIZE) -> bytes | None:
        """The cached thumbnail, regenerated from the source file when the cache lacks it."""
        data = self.get(image.content_hash)
        if data is not None:
            return data
        try:
            data = make_thumbnail(load_image(Path(image.path), max_side=size), size)
        except (ImageDecodeError, OSError):
            return None
        self.put(image.content_hash, data)
        return data

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
