"""Safe file access for paths users name: read only regular files, write outputs in place.

Reading: ``open_regular`` never blocks on a named pipe and never reads a device (an image
path replaced by a FIFO used to hang training forever). Writing: ``open_output`` replaces a
regular file atomically, through a symlink the link's target (the link stays a link), and
writes a pipe or character device (``/dev/stdout``, ``/dev/null``, ``>(cmd)``) directly
instead of replacing the node; a folder, block device or socket is refused.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from densestudio.core.atomic import atomic_output
from densestudio.core.errors import DenseStudioError


class NotARegularFile(DenseStudioError):
    """A FIFO, device, socket or folder where a regular file was expected."""


def file_kind(mode: int) -> str:
    """'a named pipe (FIFO)', 'a folder', ... for an ``st_mode``."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "a special file"


def not_found_message(path: Path, what: str) -> str:
    """"Model file not found: X" - or, when X exists but is a FIFO, a device or a folder,
    what it is (a FIFO is never opened: that would wait for a writer for ever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return f"{what} not found: {path}"
    return f"{what} {path} is {file_kind(mode)}, not a regular file."


@contextmanager
def open_regular(path: Path, error: type[Exception] = NotARegularFile) -> Iterator[BinaryIO]:
    """Open a file for reading (binary) only if it is a regular file.

    O_NONBLOCK makes opening a FIFO return at once (a plain open waits for a writer
    forever); fstat on the open descriptor then refuses anything that is not a regular
    file, with no window for the path to be swapped in between. ``error`` is raised for a
    special file; errors of the open itself (missing, permission) are the OSError they are.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"not a regular file ({file_kind(mode)})")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


@contextmanager
def open_output(
    path: Path,
    mode: str = "w",
    *,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """``with open_output(p) as f: f.write(...)`` for an output file a user named."""
    path = Path(path)
    st_mode = check_output(path)
    if st_mode is None or stat.S_ISREG(st_mode):
        with atomic_output(Path(os.path.realpath(path)), mode, encoding=encoding, errors=errors,
                           newline=newline) as f:
            yield f
    else:  # a pipe or a device: written directly, never replaced
        with open(path, mode, encoding=encoding, errors=errors, newline=newline) as f:
            yield f


def check_output(path: Path) -> int | None:
    """The mode of an output a user named (None: a new file), refusing a folder or another
    special file: a long command calls it before its work so that it fails at once."""
    try:
        st_mode = os.stat(path).st_mode  # follows links
    except FileNotFoundError:
        return None  # new file (or a dangling link: its target is created)
    except OSError as exc:
        raise DenseStudioError(f"Cannot write {path}: {exc.strerror or exc}") from exc
    if not (stat.S_ISREG(st_mode) or stat.S_ISFIFO(st_mode) or stat.S_ISCHR(st_mode)):
        raise DenseStudioError(f"Cannot write {path}: it is {file_kind(st_mode)}; give a file "
                               "name.")
    return st_mode


@dataclass(frozen=True)
class Guarded:
    """A path no output may be written over: a file, or (``folder``) a folder and all in it.
    ``what`` names it in the refusal ("the project file", "the model file read")."""

    path: Path
    what: str
    folder: bool = False


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def refuse_overwriting(out: Path, guarded: Iterable[Guarded]) -> None:
    """Refuse an output path that is one of ``guarded`` (or inside a guarded folder) before
    anything is written: paths are compared resolved (through symlinks, ``..``) and by
    inode (hard links, a second mount, a case-insensitive file system), so
    ``export-labels P.dsproj P.dsproj`` cannot turn the project into a CSV file."""
    target = Path(os.path.realpath(out))
    own = _file_id(target)
    parents = {i for i in map(_file_id, target.parents) if i is not None}
    for g in guarded:
        real = Path(os.path.realpath(g.path))
        ident = _file_id(real)
        if target == real or (ident is not None and ident == own):
            raise DenseStudioError(f"Refusing to write {out}: it is {g.what} ({g.path}); "
                                   "choose another output file.")
        if g.folder and (real in target.parents or (ident is not None and ident in parents)):
            raise DenseStudioError(f"Refusing to write {out}: it is inside {g.what} "
                                   f"({g.path}); choose another output file.")


_DIGITS = re.compile(r"\d+")
NUMBER_WIDTH = 20  # digit runs are compared as numbers up to 10**20


def natural_key(filename: str) -> str:
    """A sort key that orders names as people count: crazing_2 before crazing_10.

    Each run of digits is zero-padded to a fixed width, so the key sorts as plain text
    (the database's byte-wise collation) in natural order; case is ignored.
    """
    def pad(match: re.Match[str]) -> str:
        digits = match.group().lstrip("0") or "0"
        return digits.rjust(NUMBER_WIDTH, "0") if len(digits) <= NUMBER_WIDTH else digits

    return _DIGITS.sub(pad, filename.lower())
