"""Near-duplicate and same-name groups share a split by default (issue 21, items 1-2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densestudio.core import splits
from densestudio.core.constants import SOURCE_PREDICTION
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.near_duplicates import refresh_groups, resplit, stem_key
from densestudio.core.store import ImageFilter, Project, lock_test_split


def _texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((96, 96), Image.Resampling.BILINEAR))


def _variants(base: np.ndarray, seed: int) -> list[np.ndarray]:
    """The same part under other lightings / sensor noise."""
    rng = np.random.default_rng(seed)
    out = []
    for shift in (-12, 10, 20):
        out.append(np.clip(base.astype(int) + shift, 0, 255).astype(np.uint8))
    out.append(np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8))
    return out


def _make(tmp_path: Path, parts: int = 12) -> Path:
    root = tmp_path / "imgs"
    folder = root / "ok"
    folder.mkdir(parents=True)
    for p in range(parts):
        base = _texture(p)
        Image.fromarray(base).save(folder / f"part{p:02d}.png")
        for k, arr in enumerate(_variants(base, p)):
            Image.fromarray(arr).save(folder / f"shot{p:02d}{k}.png")  # unrelated names
    return root


def _groups_by_part(project: Project) -> dict[int, set[str | None]]:
    found: dict[int, set[str | None]] = {}
    for row in project.page(limit=10_000):
        name = row.filename
        part = int(name[4:6])
        found.setdefault(part, set()).add(row.split)
    return found


def test_import_and_resplit_keep_near_duplicates_in_one_split(
        project: Project, tmp_path: Path) -> None:
    run_import(project, [_make(tmp_path)], ImportOptions(labels_from_subfolders=True))
    by_part = _groups_by_part(project)
    assert all(len(v) == 1 for v in by_part.values()), by_part
    assert {sp for v in by_part.values() for sp in v} >= {"train", "test"}
    with project.session() as s:
        assert len(splits.read_groups(s)) == 12
        assert splits.group_leaks(s).spanning == ()
    for seed in (1, 2, 3):
        resplit(project, seed=seed)
        assert all(len(v) == 1 for v in _groups_by_part(project).values())


def test_locked_test_set_is_never_changed_but_the_leak_is_reported(
        project: Project, tmp_path: Path) -> None:
    root = _make(tmp_path, parts=8)
    run_import(project, [root], ImportOptions(labels_from_subfolders=True))
    # an older project: a re-shot of a test image sits in train
    test_id = project.image_ids(ImageFilter(split="test"))[0]
    other = next(i for i in project.image_ids() if i != test_id)
    with project.transaction() as s:
        splits.write_groups(s, [[test_id, other]])
        splits.set_split(s, [other], "train")
    lock_test_split(project, True)
    before = set(project.image_ids(ImageFilter(split="test")))
    resplit(project, seed=9)  # refreshes the groups; the locked test set stays as it is
    assert set(project.image_ids(ImageFilter(split="test"))) == before
    with project.transaction() as s:
        splits.write_groups(s, [[test_id, other]])
        splits.set_split(s, [other], "train")
        leaks = splits.group_leaks(s)
    assert leaks.spanning and leaks.touching_test == 1
    assert "span more than one split" in leaks.warning()


def test_same_name_stem_groups_and_label_conflicts(project: Project, tmp_path: Path) -> None:
    assert stem_key("/x/tile7_light2.png") == "tile7"
    assert stem_key("/x/tile7-a.jpg") == "tile7"
    assert stem_key("/x/crazing_73.jpg") == "crazing_73"  # a counter, not a variant
    assert stem_key("/x/0001.png") is None
    root = tmp_path / "imgs"
    for cls in ("good", "scratch"):
        (root / cls).mkdir(parents=True)
    for p in range(6):
        for k, light in enumerate(("light1", "light2", "light3")):
            cls = "scratch" if (p == 0 and k == 2) else "good"
            Image.fromarray(_texture(100 * p + k)).save(root / cls / f"tile{p}_{light}.png")
    run_import(project, [root], ImportOptions(labels_from_subfolders=True))
    found: dict[str, set[str | None]] = {}
    for row in project.page(limit=100):
        found.setdefault(row.filename.split("_")[0], set()).add(row.split)
    assert all(len(v) == 1 for v in found.values()), found
    with project.session() as s:
        leaks = splits.group_leaks(s)
    assert len(leaks.conflicts) == 1 and "label conflicts" in leaks.warning()


def test_model_labels_never_become_test_answers(project: Project) -> None:
    from densestudio.core.store import bulk_insert_images

    with project.transaction() as s:
        bulk_insert_images(s, [
            dict(path=f"/d/img{k}.png", filename=f"img{k}.png", folder="/d",
                 content_hash=f"h{k}", byte_size=1, width=1, height=1, mode="L")
            for k in range(200)
        ])  # fmt: skip
    a = project.add_class("a")
    ids = project.image_ids()
    project.set_labels(ids[:100], a.id)
    project.set_labels(ids[100:], a.id, source=SOURCE_PREDICTION)
    model_made = set(ids[100:])
    in_test = set(project.image_ids(ImageFilter(split="test")))
    assert in_test and not (in_test & model_made)
    resplit(project, seed=4)
    in_test = set(project.image_ids(ImageFilter(split="test")))
    assert in_test and not (in_test & model_made)
    # a test image whose label is replaced by an accepted prediction leaves the test set
    victim = sorted(in_test)[0]
    b = project.add_class("b")
    project.set_labels([victim], b.id, source=SOURCE_PREDICTION)
    assert victim not in set(project.image_ids(ImageFilter(split="test")))
    assert project.image(victim).split in ("train", "val")


@pytest.mark.parametrize("names", [("lot01_a.png", "lot01_b.png")])
def test_refresh_groups_stores_stem_groups(project: Project, tmp_path: Path,
                                           names: tuple[str, ...]) -> None:
    folder = tmp_path / "i" / "a"
    folder.mkdir(parents=True)
    for k, name in enumerate(names):
        Image.fromarray(_texture(50 + k)).save(folder / name)
    run_import(project, [tmp_path / "i"], ImportOptions(labels_from_subfolders=True))
    assert len(refresh_groups(project)) == 1
