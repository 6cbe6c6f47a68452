from __future__ import annotations

from pathlib import Path

import pytest

from densestudio.core.errors import ProjectError
from densestudio.core.store import ImageFilter, Project, lock_test_split, resplit, split_settings
from tests.core.test_store import add_rows


def split_of(project: Project) -> dict[int, str | None]:
    return {r.id: r.split for r in project.page(limit=10_000)}


def test_stratified_counts_and_stability(project: Project) -> None:
    ids = add_rows(project, 200)
    a, b = project.add_class("a"), project.add_class("b")
    project.set_labels(ids[:100], a.id)
    project.set_labels(ids[100:], b.id)
    counts = project.counts()
    for cls in (a.id, b.id):
        assert (
            counts.count(cls, "train"),
            counts.count(cls, "val"),
            counts.count(cls, "test"),
        ) == (70, 15, 15)
    before = split_of(project)
    more = add_rows(project, 20, prefix="new")
    project.set_labels(more, a.id)
    after = split_of(project)
    assert all(after[i] == before[i] for i in before), "adding images never moves existing ones"
    assert project.counts().count(a.id, "train") == 84


def test_small_class_gets_validation_first(project: Project) -> None:
    ids = add_rows(project, 3)
    a = project.add_class("a")
    project.set_labels(ids, a.id)
    splits = sorted(split_of(project).values())
    assert splits == ["train", "train", "val"]


def test_deterministic_for_same_seed(tmp_path: Path) -> None:
    results = []
    for name in ("p1", "p2"):
        with Project.create(tmp_path / name) as p:
            ids = add_rows(p, 50)
            a = p.add_class("a")
            p.set_labels(ids, a.id)
            results.append({r.content_hash: r.split for r in p.page(limit=100)})
    assert results[0] == results[1]


def test_resplit_and_locked_test(project: Project) -> None:
    ids = add_rows(project, 100)
    a = project.add_class("a")
    project.set_labels(ids, a.id)
    test_before = set(project.image_ids(ImageFilter(split="test")))
    lock_test_split(project, True)
    assert split_settings(project).test_locked
    n = resplit(project, (0.5, 0.5, 0.0), seed=7)
    assert n == 85
    assert set(project.image_ids(ImageFilter(split="test"))) == test_before
    counts = project.counts()
    assert counts.count(a.id, "train") + counts.count(a.id, "val") == 85
    extra = add_rows(project, 10, prefix="late")
    project.set_labels(extra, a.id)
    assert set(project.image_ids(ImageFilter(split="test"))) == test_before, (
        "locked: nothing enters"
    )
    lock_test_split(project, False)
    resplit(project, (0.7, 0.15, 0.15), seed=1)
    assert split_settings(project).seed == 1
    with pytest.raises(ProjectError):
        resplit(project, (0.9, 0.9, 0.1))
