"""Read-only queries on the ORM tables that ml/ needs (ml never runs SQL itself).

Each returns plain values (tuples, dicts, sets), so callers hold no session or ORM object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, or_, select

from densestudio.core.constants import SOURCE_CHANGED
from densestudio.core.models import Image, LabelClass, LabelEvent, RunImage
from densestudio.core.store import Project


def run_image_counts(project: Project, run_id: int) -> Counter[tuple[int, str]]:
    """How many images of each (class index, split) a run's label snapshot holds."""
    counts: Counter[tuple[int, str]] = Counter()
    with project.session() as s:
        for c, sp, n in s.execute(
                select(RunImage.class_index, RunImage.split, func.count())
                .where(RunImage.run_id == run_id)
                .group_by(RunImage.class_index, RunImage.split)):
            counts[(c, sp)] = n
    return counts


def label_changes_since(project: Project, when: datetime) -> int:
    """Label changes recorded after ``when``."""
    with project.session() as s:
        return s.scalar(select(func.count(LabelEvent.id)).where(LabelEvent.at > when)) or 0


def content_hashes(project: Project) -> dict[int, str]:
    """image id -> content hash, for every image."""
    with project.session() as s:
        return {i: h for i, h in s.execute(select(Image.id, Image.content_hash))}


def labeled_present_images(project: Project) -> list[tuple[int, int, str | None, str, str, str]]:
    """(id, label id, split, path, hash, mode) of labeled images whose files exist and did
    not change since they were labeled (see ``core.file_changes``), by id."""
    with project.session() as s:
        rows = s.execute(
            select(Image.id, Image.label_id, Image.split, Image.path, Image.content_hash,
                   Image.mode)
            .where(Image.label_id.is_not(None), Image.missing.is_(False),
                   or_(Image.label_source.is_(None), Image.label_source != SOURCE_CHANGED))
            .order_by(Image.id)
        ).all()
    return [(i, lab, sp, path, h, mode) for i, lab, sp, path, h, mode in rows if lab is not None]


def class_names_by_id(project: Project) -> dict[int, str]:
    """class id -> name, for every class."""
    with project.session() as s:
        return {i: n for i, n in s.execute(select(LabelClass.id, LabelClass.name))}


def test_or_listed_images(
    project: Project, listed: Collection[int]
) -> list[tuple[int, str, int | None, str | None, bool]]:
    """(id, path, label id, split, missing) of test-split images and of ``listed``, by id."""
    with project.session() as s:
        rows = s.execute(
            select(Image.id, Image.path, Image.label_id, Image.split, Image.missing)
            .where((Image.split == "test") | Image.id.in_(listed))
            .order_by(Image.id)
        ).all()
    return [(i, p, lab, sp, m) for i, p, lab, sp, m in rows]


def trained_image_ids(project: Project, run_id: int) -> set[int]:
    """The images a run trained on (its snapshot's train split)."""
    with project.session() as s:
        return set(s.scalars(select(RunImage.image_id).where(
            RunImage.run_id == run_id, RunImage.split == "train")))
