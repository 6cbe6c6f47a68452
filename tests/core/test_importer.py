from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from densestudio.core import importer
from densestudio.core.errors import ImportFailed
from densestudio.core.importer import (
    ImportOptions,
    ImportProgress,
    SkippedFile,
    relink,
    run_import,
)
from densestudio.core.progress import CancelToken
from densestudio.core.store import ImageFilter, Project
from densestudio.core.thumbnails import ThumbnailCache
from tests.core.bad_files import make_bad_corpus, make_class_folders


def test_import_real_neu_subset_with_folder_labels(project: Project, neu_subset: Path) -> None:
    events = []
    report = run_import(project, [neu_subset], ImportOptions(labels_from_subfolders=True),
                        on_event=events.append)
    assert report.added == 24 and not report.skipped and not report.cancelled
    names = [c.name for c in project.classes()]
    assert names == ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale",
                     "scratches"]
    counts = project.counts()
    assert all(counts.count(c.id) == 4 for c in project.classes())
    assert counts.count(None) == 0
    row = project.page(limit=1)[0]
    assert (row.width, row.height, row.label_source) == (200, 200, "folder")
    progress = [e for e in events if isinstance(e, ImportProgress) and e.phase == "importing"]
    assert progress[-1].done == progress[-1].total == 24
    assert events[-1] == report
    thumbs = ThumbnailCache(project.cache_dir)
    data = thumbs.get(row.content_hash)
    assert data and data[:2] == b"\xff\xd8"


def test_reimport_is_idempotent(project: Project, neu_subset: Path) -> None:
    run_import(project, [neu_subset], ImportOptions(labels_from_subfolders=True))
    again = run_import(project, [neu_subset], ImportOptions(labels_from_subfolders=True))
    assert again.added == 0 and again.already_in_project == 24
    assert "already in project" in again.summary()
    assert project.count_images() == 24


def test_same_content_twice_is_one_image(project: Project, tmp_path: Path) -> None:
    src = make_class_folders(tmp_path / "a", classes=("x",), per_class=3)
    shutil.copytree(src, tmp_path / "copy")
    report = run_import(project, [src, tmp_path / "copy"])
    assert report.added == 3 and report.duplicates == 3
    assert project.count_images() == 3


def test_bad_corpus_never_stops_import(project: Project, tmp_path: Path) -> None:
    corpus = make_bad_corpus(tmp_path / "bad")
    (tmp_path / "bad" / "notes.txt").write_text("ignored: not an image type")
    (tmp_path / "bad" / "empty_folder").mkdir()
    os.symlink(tmp_path / "bad", tmp_path / "bad" / "loop")  # symlink loop
    report = run_import(project, [tmp_path / "bad"])
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    for name, (path, outcome) in corpus.items():
        if outcome == "skip":
            assert path.name in skipped, f"{name} should be reported"
            assert skipped[path.name], f"{name} needs a reason"
        else:
            assert path.name not in skipped, f"{name} should import: {skipped.get(path.name)}"
    assert "loop" in skipped and "loop" in skipped["loop"]
    assert skipped["zero.jpg"] == "empty file (0 bytes)"
    assert "too large" in skipped["bomb.png"]
    ok = [p for p, o in corpus.values() if o == "ok"]
    assert report.added == len(ok) == project.count_images()
    rows = {Path(r.path).name: r for r in project.page(limit=100)}
    assert rows["rotated.jpg"].width == 20 and rows["rotated.jpg"].height == 40, "EXIF respected"
    assert rows["gray16.tif"].bit_depth == 16
    assert rows["cmyk.jpg"].mode == "CMYK"
    assert "Prüfung ✓ 🙂 teil.png" in rows
    thumbs = ThumbnailCache(project.cache_dir)
    assert all(thumbs.get(r.content_hash) for r in rows.values())


def test_unreadable_folder_and_vanishing_file(project: Project, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_class_folders(tmp_path / "data", classes=("a", "b"), per_class=2)
    real_scandir = os.scandir

    def scandir(path: str | os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
        if Path(path).name == "b":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(importer.os, "scandir", scandir)
    real_decode = importer._decode

    def vanish(candidate: importer._Candidate) -> importer._Decoded | SkippedFile:
        if candidate.path.name == "a_000.png":
            candidate.path.unlink()
        return real_decode(candidate)

    monkeypatch.setattr(importer, "_decode", vanish)
    report = run_import(project, [root], ImportOptions(labels_from_subfolders=True))
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "Permission denied" in reasons["b"]
    assert reasons["a_000.png"] == "file vanished during import"
    assert report.added == 1


def test_missing_root_is_a_clear_error(project: Project, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="Not found"):
        run_import(project, [tmp_path / "nowhere"])
    with pytest.raises(ImportFailed):
        run_import(project, [])


def test_single_files_and_non_image_file(project: Project, tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "d", classes=("a",), per_class=2)
    files = sorted((root / "a").iterdir())
    note = tmp_path / "readme.txt"
    note.write_text("x")
    report = run_import(project, [files[0], note])
    assert report.added == 1 and report.skipped[0].reason == "not an image file type"


def test_cancel_mid_import_keeps_committed_batches(project: Project, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_class_folders(tmp_path / "d", classes=("a", "b"), per_class=30, size=(16, 16))
    monkeypatch.setattr(importer, "BATCH_SIZE", 10)
    token = CancelToken()

    def on_event(event: object) -> None:
        if isinstance(event, ImportProgress) and event.done >= 25:
            token.cancel()

    report = run_import(project, [root], ImportOptions(labels_from_subfolders=True),
                        on_event=on_event, cancel=token)
    assert report.cancelled and "cancelled" in report.summary()
    n = project.count_images()
    assert 20 <= n < 60 and n == report.added
    # every committed row is complete: labeled, split, thumbnail present
    thumbs = ThumbnailCache(project.cache_dir)
    for row in project.page(limit=100):
        assert row.label_id is not None and row.split is not None
        assert thumbs.get(row.content_hash)
    # resuming the import adds the rest
    rest = run_import(project, [root], ImportOptions(labels_from_subfolders=True))
    assert project.count_images() == 60 and rest.already_in_project == n


def test_thumbnail_regenerated_when_cache_missing(project: Project, tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "d", classes=("a",), per_class=1, size=(600, 300))
    run_import(project, [root])
    shutil.rmtree(project.cache_dir)
    row = project.page(limit=1)[0]
    cache = ThumbnailCache(project.cache_dir)
    assert cache.get(row.content_hash) is None
    data = cache.get_or_make(row)
    import io

    assert Image.open(io.BytesIO(data)).size == (256, 128)
    assert cache.get(row.content_hash) == data


def test_relink_moved_folder(project: Project, tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "old", classes=("a", "b"), per_class=3)
    run_import(project, [root], ImportOptions(labels_from_subfolders=True))
    labels_before = {r.content_hash: r.label_id for r in project.page(limit=100)}
    shutil.move(root, tmp_path / "moved")
    assert project.refresh_missing()[0] == 6
    assert project.count_images(ImageFilter(missing=True)) == 6
    (tmp_path / "moved" / "a" / "a_000.png").unlink()  # one really lost
    result = relink(project, [tmp_path / "moved"])
    assert (result.relinked, result.still_missing) == (5, 1)
    rows = project.page(limit=100)
    assert {r.content_hash: r.label_id for r in rows} == labels_before, "labels untouched"
    assert all(("/moved/" in r.path) != r.missing for r in rows)


def test_folder_without_images_says_so(project: Project, tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    report = run_import(project, [tmp_path / "empty"])
    assert report.added == 0 and not report.skipped
    assert "no image files found" in report.summary() and "jpg" in report.summary()
