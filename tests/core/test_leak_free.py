from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.core.errors import ProjectError
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.near_duplicates import find_cross_split_duplicates, move_together
from densestudio.core.splits import set_group_by
from densestudio.core.store import (
    ImageFilter,
    Project,
    bulk_insert_images,
    lock_test_split,
    resplit,
)


def test_group_by_regex_keeps_lots_together(project: Project, tmp_path: Path) -> None:
    with project.transaction() as s:
        bulk_insert_images(s, [
            dict(path=f"/d/lot{lot:02d}_shot{k}.png", filename=f"lot{lot:02d}_shot{k}.png",
                 folder="/d", content_hash=f"{lot}-{k}", byte_size=1, width=1, height=1,
                 mode="L") for lot in range(40) for k in range(5)
        ])  # fmt: skip
        set_group_by(s, r"regex:(lot\d+)_")
    a = project.add_class("a")
    project.set_labels(project.image_ids(), a.id)
    by_lot: dict[str, set[str]] = {}
    for row in project.page(limit=1000):
        by_lot.setdefault(row.filename[:5], set()).add(row.split)
    assert all(len(splits) == 1 for splits in by_lot.values()), "a lot never straddles splits"
    counts = project.counts()
    assert counts.count(a.id, "test") > 0 and counts.count(a.id, "val") > 0
    assert abs(counts.count(a.id, "train") - 140) <= 10
    resplit(project, seed=5)
    by_lot.clear()
    for row in project.page(limit=1000):
        by_lot.setdefault(row.filename[:5], set()).add(row.split)
    assert all(len(splits) == 1 for splits in by_lot.values())
    with project.transaction() as s, pytest.raises(ProjectError):
        set_group_by(s, "regex:(unclosed")


def test_group_by_folder(project: Project) -> None:
    with project.transaction() as s:
        bulk_insert_images(s, [
            dict(path=f"/serial{g}/img{k}.png", filename=f"img{k}.png", folder=f"/serial{g}",
                 content_hash=f"{g}-{k}", byte_size=1, width=1, height=1, mode="L")
            for g in range(30) for k in range(4)
        ])  # fmt: skip
        set_group_by(s, "folder")
    a = project.add_class("a")
    project.set_labels(project.image_ids(), a.id)
    seen: dict[str, set[str]] = {}
    for row in project.page(limit=1000):
        seen.setdefault(row.folder, set()).add(row.split)
    assert all(len(v) == 1 for v in seen.values())


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((96, 96), Image.Resampling.BILINEAR))


def test_near_duplicates_across_splits_found_and_moved(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    for i in range(40):
        Image.fromarray(_texture(i)).save(folder / f"img{i:02d}.png")
    # near-identical re-shots of img00..img04: slight brightness change, saved as JPEG
    for i in range(5):
        arr = np.clip(_texture(i).astype(int) + 3, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"reshot{i:02d}.jpg", quality=92)
    run_import(project, [tmp_path / "imgs"], ImportOptions(labels_from_subfolders=True))
    groups = find_cross_split_duplicates(project)
    names = {r.id: r.filename for r in project.page(limit=100)}
    for g in groups:
        stems = {names[i].replace("reshot", "img").split(".")[0] for i in g.image_ids}
        assert len(stems) == 1, f"only true re-shots are grouped: {[names[i] for i in g.image_ids]}"
    # every pair that ended in different splits is reported
    by_stem: dict[str, set[str]] = {}
    for r in project.page(limit=100):
        by_stem.setdefault(r.filename.replace("reshot", "img").split(".")[0], set()).add(r.split)
    assert len(groups) == sum(1 for v in by_stem.values() if len(v) > 1)
    if groups:
        lock_test_split(project, True)
        if any("test" in g.splits for g in groups):
            with pytest.raises(ProjectError, match="unlock"):
                move_together(project, groups)
        lock_test_split(project, False)
        assert move_together(project, groups) == len(groups)
        assert find_cross_split_duplicates(project) == []


def test_near_duplicates_reported_when_forced_apart(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "imgs" / "a"
    folder.mkdir(parents=True)
    Image.fromarray(_texture(1)).save(folder / "one.png")
    Image.fromarray(np.clip(_texture(1).astype(int) + 2, 0, 255).astype(np.uint8)).save(
        folder / "two.jpg", quality=95)
    for i in range(10):
        Image.fromarray(_texture(100 + i)).save(folder / f"other{i}.png")
    run_import(project, [tmp_path / "imgs"], ImportOptions(labels_from_subfolders=True))
    one, two = (project.image_ids(ImageFilter(text=n))[0] for n in ("one.png", "two.jpg"))
    from sqlalchemy import update

    from densestudio.core.models import Image as ImageRow

    with project.transaction() as s:
        s.execute(update(ImageRow).where(ImageRow.id == one).values(split="train"))
        s.execute(update(ImageRow).where(ImageRow.id == two).values(split="test"))
    groups = find_cross_split_duplicates(project)
    assert any(set(g.image_ids) == {one, two} and g.crosses_test for g in groups)
