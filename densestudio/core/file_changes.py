"""Image files that changed since import: found cheaply, re-hashed, their labels flagged.

An image's label was given to the content that was hashed at import. If the file is later
replaced (``cp other.jpg crazing_1.jpg``), training must not use the new pixels under the old
label. ``check_files`` compares each file's size and modification time with the recorded
ones and hashes only the files where they differ (or were never recorded): a file whose
content is unchanged just gets its new time recorded; a changed one gets its new hash and
size, and its label is marked for review (``SOURCE_CHANGED``: "changed since it was
labeled"), which keeps it out of training until a person labels it again. The decoded-image
cache checks the content hash itself too (``imaging.load_verified``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from densestudio.core import changes
from densestudio.core.constants import SOURCE_CHANGED
from densestudio.core.imaging import ImageDecodeError, file_hash, probe
from densestudio.core.models import Image
from densestudio.core.store import Project


@dataclass(frozen=True)
class ChangedFile:
    image_id: int
    path: str
    labeled: bool  # its label is now marked for review


@dataclass(frozen=True)
class FileCheck:
    checked: int  # files looked at (present ones)
    rehashed: int  # files whose size or time differed (or was unknown) and were hashed
    changed: tuple[ChangedFile, ...]  # files whose content is not what was imported


def check_files(project: Project, image_ids: Sequence[int] | None = None) -> FileCheck:
    """Check the files of ``image_ids`` (default: every present image) for changes since
    they were hashed; record what changed (see the module docstring)."""
    query = select(Image.id, Image.path, Image.byte_size, Image.file_mtime_ns,
                   Image.content_hash, Image.label_id).where(Image.missing.is_(False))
    with project.session() as s:
        if image_ids is None:
            rows = list(s.execute(query))
        else:
            wanted = sorted(set(image_ids))
            rows = [r for start in range(0, len(wanted), 900)
                    for r in s.execute(query.where(Image.id.in_(wanted[start:start + 900])))]
    touched: list[tuple[int, int]] = []  # same content, new time
    found: list[tuple[ChangedFile, dict[str, object]]] = []
    checked = 0
    for image_id, path, size, mtime, digest, label_id in rows:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue  # missing files are `refresh_missing`'s business
        checked += 1
        if st.st_size == size and st.st_mtime_ns == mtime:
            continue
        try:
            new_hash = file_hash(Path(path))
        except (OSError, ImageDecodeError):
            continue  # unreadable now: training reports it when it tries
        if new_hash == digest:
            touched.append((image_id, st.st_mtime_ns))
            continue
        values: dict[str, object] = {"content_hash": new_hash, "byte_size": st.st_size,
                                     "file_mtime_ns": st.st_mtime_ns, "phash": None}
        try:
            p = probe(Path(path))
            values.update(width=p.width, height=p.height, mode=p.mode, bit_depth=p.bit_depth)
        except (OSError, ImageDecodeError, ValueError):
            pass
        if label_id is not None:
            values["label_source"] = SOURCE_CHANGED
        found.append((ChangedFile(image_id, path, label_id is not None), values))
    if touched or found:
        _record(project, touched, found)
    return FileCheck(checked, len(touched) + len(found), tuple(c for c, _ in found))


def _record(project: Project, touched: list[tuple[int, int]],
            found: list[tuple[ChangedFile, dict[str, object]]]) -> None:
    with project.transaction() as s:
        for image_id, mtime in touched:
            s.execute(update(Image).where(Image.id == image_id).values(file_mtime_ns=mtime))
        taken = set(s.scalars(select(Image.content_hash).where(Image.content_hash.in_(
            [str(v["content_hash"]) for _, v in found]))))
        for changed, values in found:
            if values["content_hash"] in taken:  # now a copy of another image: keep the
                values = {k: v for k, v in values.items() if k != "content_hash"}  # old key
            s.execute(update(Image).where(Image.id == changed.image_id).values(**values))
        if found:
            changes.bump(s, [c.image_id for c, _ in found])


def marked_for_review(project: Project, image_ids: Sequence[int] | None = None) -> list[str]:
    """Paths of labeled images (of ``image_ids``, default all) whose file changed since they
    were labeled and that nobody has labeled again since."""
    query = select(Image.id, Image.path).where(Image.label_source == SOURCE_CHANGED)
    with project.session() as s:
        rows = list(s.execute(query.order_by(Image.path)))
    wanted = None if image_ids is None else set(image_ids)
    return [path for i, path in rows if wanted is None or i in wanted]
