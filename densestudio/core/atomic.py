"""Atomic file writes: the previous file stays intact unless the new one is complete.

Write to a temporary file in the same folder, flush and fsync it, then rename it over the
target (atomic on POSIX and Windows). The temporary file's name holds the writer's process
id, so one left by a killed process is removed by the next write of the same file. A full
disk, a crash or a kill at any moment leaves either the old file or the new one, never half
of one. The new file gets the permissions a plain ``open`` would give it (the old file's,
or the umask's), not the temporary file's 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; done once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _final_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


@contextmanager
def atomic_output(
    path: Path,
    mode: str = "wb",
    *,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """``with atomic_output(p) as f: f.write(...)`` - replaces ``p`` only on success."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        os.chmod(tmp, _final_mode(path))
        with os.fdopen(fd, mode, encoding=encoding, errors=errors, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_via(path: Path, write: Callable[[Path], None]) -> None:
    """For libraries that insist on writing to a path themselves (torch.save, jit.save)."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        os.chmod(tmp, _final_mode(path))
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, named after it and this process
    (``.name.<pid>.<random>.tmp``), after removing the ones a killed process left for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                            suffix=".tmp")


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # cannot tell cheaply: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files of ``path`` whose writing process is gone (killed during
    an export or a save): a kill cannot run the cleanup, the next write does it."""
    removed: list[Path] = []
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                (path.parent / name).unlink()
                removed.append(path.parent / name)
            except OSError:
                pass
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
