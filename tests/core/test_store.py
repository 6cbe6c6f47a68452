from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from densestudio.core import db
from densestudio.core.errors import ProjectError
from densestudio.core.store import ImageFilter, Project, bulk_insert_images


def add_rows(project: Project, n: int, prefix: str = "img") -> list[int]:
    with project.transaction() as s:
        bulk_insert_images(s, [
            dict(path=f"/data/{prefix}_{i:05d}.png", filename=f"{prefix}_{i:05d}.png".lower(),
                 folder="/data", content_hash=f"{prefix}{i}", byte_size=10, width=8, height=8,
                 mode="L", bit_depth=8)
            for i in range(n)
        ])  # fmt: skip
    return project.image_ids(ImageFilter(text=f"{prefix}_"))


def test_create_open_and_pragmas(tmp_path: Path) -> None:
    p = Project.create(tmp_path / "a")
    assert p.path.suffix == ".dsproj"
    with p.engine.connect() as con:
        assert con.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert con.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert con.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    p.close()
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(tmp_path / "a.dsproj")
    with Project.open(tmp_path / "a.dsproj") as again:
        assert again.classes() == []


def test_open_refuses_missing_foreign_and_newer(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not found"):
        Project.open(tmp_path / "nope.dsproj")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(ProjectError, match="not a DenseStudio project"):
        Project.open(other)
    junk = tmp_path / "junk.dsproj"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ProjectError):
        Project.open(junk)
    newer = tmp_path / "newer.dsproj"
    Project.create(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ProjectError, match="newer DenseStudio"):
        Project.open(newer)


def test_older_schema_is_upgraded_after_backup(tmp_path: Path) -> None:
    """A version-1 file (no image.phash column) is copied aside, then upgraded in place."""
    path = tmp_path / "old.dsproj"
    with Project.create(path) as p:
        a = p.add_class("kept")
        with p.transaction() as s:
            bulk_insert_images(s, [dict(path="/x.png", filename="x.png", folder="/",
                                        content_hash="h", byte_size=1, width=1, height=1,
                                        mode="L", label_id=a.id)])
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE image DROP COLUMN phash")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with Project.open(path) as upgraded:
        assert upgraded.page()[0].label_id == a.id, "data survives the upgrade"
    assert db.read_schema_version(path) == db.SCHEMA_VERSION
    columns = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(image)")}
    assert "phash" in columns
    backup = db.backup_path_for(path, 1)
    assert backup.exists() and db.read_schema_version(backup) == 1


def _add_named(project: Project, names: list[str]) -> None:
    with project.transaction() as s:
        bulk_insert_images(s, [
            dict(path=f"/data/{n}", filename=n.lower(), folder="/data", content_hash=n,
                 byte_size=1, width=1, height=1, mode="L") for n in names])  # fmt: skip


NAMES = ["crazing_100.png", "Crazing_2.png", "crazing_10.png", "crazing_1.png",
         "crazing_010a.png", "patches_3.png"]
NATURAL = ["crazing_1.png", "crazing_2.png", "crazing_10.png", "crazing_010a.png",
           "crazing_100.png", "patches_3.png"]


def test_name_sort_is_natural(project: Project) -> None:
    """crazing_2 before crazing_10 (and case ignored), in the gallery's pages and id lists."""
    _add_named(project, NAMES)
    assert [r.filename for r in project.page(sort="name")] == NATURAL
    assert [r.filename for r in project.page(sort="name", descending=True)] == NATURAL[::-1]
    ids = project.image_ids(sort="name")
    by_id = {r.id: r.filename for r in project.page(limit=100)}
    assert [by_id[i] for i in ids] == NATURAL


def test_v4_file_gets_natural_name_keys(tmp_path: Path) -> None:
    """A v4 file (no name_key) is upgraded: keys filled from the names, order natural."""
    path = tmp_path / "v4.dsproj"
    with Project.create(path) as p:
        _add_named(p, NAMES)
    con = sqlite3.connect(path)
    for index in ("ix_image_label_name_key", "ix_image_split_name_key", "ix_image_name_key"):
        con.execute(f"DROP INDEX {index}")
    con.execute("ALTER TABLE image DROP COLUMN name_key")
    con.execute("CREATE INDEX ix_image_filename ON image (filename)")
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with Project.open(path) as upgraded:
        assert [r.filename for r in upgraded.page(sort="name")] == NATURAL
    indexes = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "ix_image_name_key" in indexes and "ix_image_filename" not in indexes


def test_class_operations(project: Project) -> None:
    a = project.add_class("scratch")
    b = project.add_class(" spot ")
    assert b.name == "spot" and (a.shortcut, b.shortcut) == ("1", "2")
    assert a.color != b.color
    with pytest.raises(ProjectError, match="already exists"):
        project.add_class("scratch")
    with pytest.raises(ProjectError, match="empty"):
        project.add_class("   ")
    project.rename_class(a.id, "scratch long name with spaces")
    project.recolor_class(a.id, "#123456")
    project.reorder_classes([b.id, a.id])
    classes = project.classes()
    assert [c.name for c in classes] == ["spot", "scratch long name with spaces"]
    assert [c.shortcut for c in classes] == ["1", "2"] and classes[1].color == "#123456"
    with pytest.raises(ProjectError):
        project.rename_class(a.id, "spot")


def test_delete_class_unlabels_and_undo_restores(project: Project) -> None:
    ids = add_rows(project, 10)
    a, b = project.add_class("a"), project.add_class("b")
    project.set_labels(ids[:6], a.id)
    project.set_labels(ids[6:], b.id)
    removed = project.delete_class(a.id)
    assert project.count_images() == 10, "images are never deleted"
    assert project.count_images(ImageFilter(unlabeled=True)) == 6
    assert [c.name for c in project.classes()] == ["b"]
    project.restore_classes(removed)
    assert [c.name for c in project.classes()] == ["a", "b"]
    assert project.count_images(ImageFilter(class_ids=(a.id,))) == 6
    project.redo_remove_classes(removed)
    assert project.count_images(ImageFilter(unlabeled=True)) == 6


def test_merge_and_undo(project: Project) -> None:
    ids = add_rows(project, 9)
    a, b, c = (project.add_class(n) for n in "abc")
    project.set_labels(ids[:3], a.id)
    project.set_labels(ids[3:6], b.id)
    project.set_labels(ids[6:], c.id)
    removed = project.merge_classes([a.id, b.id], c.id)
    assert project.count_images(ImageFilter(class_ids=(c.id,))) == 9
    assert [x.name for x in project.classes()] == ["c"]
    project.restore_classes(removed)
    assert [x.name for x in project.classes()] == ["a", "b", "c"]
    counts = project.counts()
    assert (counts.count(a.id), counts.count(b.id), counts.count(c.id)) == (3, 3, 3)
    with pytest.raises(ProjectError):
        project.merge_classes([c.id], c.id)


def test_label_change_undo_redo_and_history(project: Project) -> None:
    ids = add_rows(project, 5)
    a, b = project.add_class("a"), project.add_class("b")
    first = project.set_labels(ids, a.id)
    assert len(first) == 5
    second = project.set_labels(ids[:2], b.id, who="alice")
    assert len(second) == 2
    row = project.image(ids[0])
    assert (row.label_id, row.labeled_by, row.label_source) == (b.id, "alice", "human")
    again = project.set_labels(ids[:2], b.id)
    assert len(again) == 0, "no-op changes are not recorded"
    project.undo_labels(second)
    assert project.image(ids[0]).label_id == a.id
    project.undo_labels(first)
    assert project.count_images(ImageFilter(unlabeled=True)) == 5
    project.redo_labels(first)
    project.redo_labels(second)
    assert project.count_images(ImageFilter(class_ids=(b.id,))) == 2
    unlabel = project.set_labels(ids[:1], None)
    assert project.image(ids[0]).label_id is None and len(unlabel) == 1


def test_set_labels_many_records_source(project: Project) -> None:
    ids = add_rows(project, 4)
    a, b = project.add_class("a"), project.add_class("b")
    change = project.set_labels_many([(ids[0], a.id), (ids[1], b.id)], source="prediction")
    assert len(change) == 2
    assert project.image(ids[1]).label_source == "prediction"


def test_queries_filters_sort_and_paging(project: Project) -> None:
    ids = add_rows(project, 30)
    add_rows(project, 5, prefix="Other")
    a = project.add_class("a")
    project.set_labels(ids[:10], a.id)
    assert project.count_images() == 35
    assert project.count_images(ImageFilter(text="OTHER")) == 5
    assert project.count_images(ImageFilter(text="%")) == 0, "LIKE wildcards are escaped"
    assert project.count_images(ImageFilter(class_ids=(a.id,))) == 10
    assert project.count_images(ImageFilter(unlabeled=True)) == 25
    assert project.count_images(ImageFilter(class_ids=(a.id,), unlabeled=True)) == 35
    labeled_splits = sum(
        project.count_images(ImageFilter(split=s)) for s in ("train", "val", "test")
    )
    assert labeled_splits == 10
    assert project.count_images(ImageFilter(split="none")) == 25
    page = project.page(sort="name", offset=0, limit=3)
    assert [r.filename for r in page] == ["img_00000.png", "img_00001.png", "img_00002.png"]
    desc = project.page(sort="name", descending=True, limit=1)
    assert desc[0].filename == "other_00004.png"
    by_class = project.image_ids(sort="class")
    assert set(by_class[:10]) == set(ids[:10])
    assert project.image_ids(ImageFilter(image_ids=(ids[3], ids[1]))) == [ids[1], ids[3]]
    assert [r.id for r in project.images_by_ids([ids[5], ids[2]])] == [ids[5], ids[2]]
    with pytest.raises(ProjectError):
        project.page(sort="bogus")
    with pytest.raises(ProjectError):
        project.image(999999)


def test_refresh_missing(project: Project, tmp_path: Path) -> None:
    real = tmp_path / "x.png"
    real.write_bytes(b"x")
    with project.transaction() as s:
        bulk_insert_images(s, [dict(path=str(real), filename="x.png", folder=str(tmp_path),
                                    content_hash="h", byte_size=1, width=1, height=1, mode="L")])
    assert project.refresh_missing() == (0, 0)
    real.unlink()
    assert project.refresh_missing() == (1, 0)
    assert project.count_images(ImageFilter(missing=True)) == 1
    real.write_bytes(b"x")
    assert project.refresh_missing() == (0, 1)
