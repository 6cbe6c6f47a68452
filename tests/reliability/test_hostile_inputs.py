"""Hostile inputs and odd environments (issue 15), at the core API.

Each test names the item of the issue it guards. CLI-level reproductions of the same cases
are in tests/cli/test_cli_hostile.py; the awkward files come from tests/core/bad_files.py.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import tracemalloc
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import event, select

from densestudio.core import db, importer, runs, splits
from densestudio.core.errors import DenseStudioError, ImportFailed, ProjectError
from densestudio.core.exchange import export_labels_csv
from densestudio.core.files import open_output
from densestudio.core.imaging import (
    ImageDecodeError,
    bytes_hash,
    file_hash,
    load_image,
    probe,
    stream_hash,
)
from densestudio.core.importer import ImportOptions, relink, run_import
from densestudio.core.models import Run
from densestudio.core.near_duplicates import NearDuplicateGroup, move_together
from densestudio.core.store import ImageFilter, Project, set_split_group_by
from densestudio.core.thumbnails import ThumbnailCache
from tests.core.bad_files import (
    make_class_folders,
    make_fifo,
    noise,
    non_utf8_path,
    write_zero_padded_jpeg,
)

T = TypeVar("T")

LABELS = ImportOptions(labels_from_subfolders=True)
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project.create(tmp_path / "test.dsproj")
    yield p
    p.close()


def finishes(fn: Callable[[], T], timeout: float = 20.0) -> T:
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked (a FIFO was opened for reading?)"
    if "error" in result:
        raise result["error"]
    return result["value"]


def locked_ids(project: Project) -> set[int]:
    return set(project.image_ids(ImageFilter(split="test")))


# ------------------------------------------------------------------ 1. locked test set
def test_locked_test_set_takes_no_new_images_on_import(project: Project, tmp_path: Path) -> None:
    run_import(project, [make_class_folders(tmp_path / "a", ("x",), per_class=12)], LABELS)
    before = locked_ids(project)
    assert len(before) == 2
    splits_locked(project)
    run_import(project, [make_class_folders(tmp_path / "b", ("x",), per_class=60, seed=1)],
               LABELS)
    assert locked_ids(project) == before
    counts = project.counts()
    train, val = counts.count(split="train"), counts.count(split="val")
    assert train + val == 70 and abs(train / 70 - 0.7 / 0.85) < 0.03, "train:val kept"


def splits_locked(project: Project) -> None:
    from densestudio.core.store import lock_test_split

    lock_test_split(project, True)


def test_locked_test_set_survives_every_entry_point(project: Project, tmp_path: Path) -> None:
    """Labeling, relabeling, unlabeling, re-split, group-key changes, near-duplicate moves."""
    run_import(project, [make_class_folders(tmp_path / "a", ("x", "y"), per_class=20)], LABELS)
    run_import(project, [make_class_folders(tmp_path / "u", ("z",), per_class=15, seed=3)])
    splits_locked(project)
    locked = locked_ids(project)
    x, y = project.class_by_name("x"), project.class_by_name("y")
    unlabeled = project.image_ids(ImageFilter(unlabeled=True))
    project.set_labels(unlabeled, x.id)  # 15 images get their first label
    project.set_labels(sorted(locked)[:3], y.id)  # relabel test images
    change = project.set_labels(sorted(locked)[3:5], None)  # unlabel, then undo
    project.undo_labels(change)
    from densestudio.core.store import resplit

    resplit(project, (0.2, 0.2, 0.6), seed=7)
    set_split_group_by(project, "folder")
    set_split_group_by(project, r"regex:(\d)")
    set_split_group_by(project, "")
    assert locked_ids(project) == locked
    train_id = project.image_ids(ImageFilter(split="train"))[0]
    group = NearDuplicateGroup((train_id, sorted(locked)[0]), ("train", "test"), 0)
    with pytest.raises(ProjectError, match="locked"):
        move_together(project, [group])
    with project.transaction() as s, pytest.raises(ProjectError, match="locked"):
        splits.set_split(s, [train_id], "test")
    with project.transaction() as s, pytest.raises(ProjectError, match="locked"):
        splits.set_split(s, [sorted(locked)[0]], "train")
    assert locked_ids(project) == locked
    assert project.count_images(ImageFilter(split="none", unlabeled=False)) == 0


# ------------------------------------------------------------------ 2. project-relative paths
def test_checkpoint_paths_are_stored_relative_to_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "X"
    work.mkdir()
    monkeypatch.chdir(work)
    with Project.create("base") as project:  # a relative argument
        assert project.path == work / "base.dsproj" and project.path.is_absolute()
        folder = runs.run_dir(project, 1)
        assert folder.is_absolute()
        run_id = runs.create_run(project, name="r", config_json="{}", class_names=["a"],
                                 snapshot=[])
        folder.mkdir(parents=True)
        (folder / "best.pt").write_bytes(b"model")
        runs.update_run(project, run_id, checkpoint_best=str(folder / "best.pt"),
                        checkpoint_last="base.dsproj-runs/1/best.pt")  # cwd-relative
        with project.session() as s:
            stored = s.scalars(select(Run.checkpoint_best)).one()
        assert stored == "base.dsproj-runs/1/best.pt", "relative to the project folder"
    monkeypatch.chdir("/")
    with Project.open(work / "base.dsproj") as project:
        info = runs.get_run(project, 1)
        assert Path(info.checkpoint_best) == folder / "best.pt"
        assert Path(info.checkpoint_last).is_file()
    moved = tmp_path / "moved"
    work.rename(moved)  # the whole folder moves: the model moves with it
    with Project.open(moved / "base.dsproj") as project:
        assert Path(runs.get_run(project, 1).checkpoint_best).read_bytes() == b"model"


def test_upgrade_fixes_cwd_relative_checkpoint_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A v2 project trained from the parent folder stored 'X/base.dsproj-runs/1/best.pt'."""
    work = tmp_path / "X"
    with Project.create(work / "base.dsproj") as project:
        runs.create_run(project, name="r", config_json="{}", class_names=["a"], snapshot=[])
        runs.create_run(project, name="gone", config_json="{}", class_names=["a"], snapshot=[])
        folder = runs.run_dir(project, 1)
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"model")
    con = sqlite3.connect(work / "base.dsproj")
    con.execute("UPDATE run SET checkpoint_best = 'X/base.dsproj-runs/1/best.pt', "
                "checkpoint_last = 'X/base.dsproj-runs/1/last.pt' WHERE id = 1")
    con.execute("UPDATE run SET checkpoint_best = '/nowhere/best.pt' WHERE id = 2")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    monkeypatch.chdir("/")  # not the folder the paths were relative to
    with Project.open(work / "base.dsproj") as project:
        info = runs.get_run(project, 1)
        assert Path(info.checkpoint_best) == folder / "best.pt", "found in the -runs folder"
        assert Path(info.checkpoint_last) == folder / "last.pt", "missing: the standard place"
        assert runs.get_run(project, 2).checkpoint_best == "/nowhere/best.pt", "kept as is"
    assert db.read_schema_version(work / "base.dsproj") == db.SCHEMA_VERSION
    assert db.backup_path_for(work / "base.dsproj", 2).is_file()


def test_image_paths_are_absolute_whatever_the_import_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_class_folders(tmp_path / "imgs", ("x",), per_class=2)
    monkeypatch.chdir(tmp_path)
    with Project.create("p") as project:
        run_import(project, [Path("imgs")], LABELS)
        assert all(Path(r.path).is_absolute() and Path(r.path).is_file()
                   for r in project.page())


# ------------------------------------------------------------------ 3. names are not URLs
@pytest.mark.parametrize("name", ["other.db?.dsproj", "what?.dsproj", "a#b.dsproj",
                                  "x%20y.dsproj", "sp ace&q=1;.dsproj"])
def test_project_names_are_never_parsed_as_urls(tmp_path: Path, name: str) -> None:
    with Project.create(tmp_path / name) as project:
        project.add_class("kept")
        assert project.path == tmp_path / name
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no stray file"
    with Project.open(tmp_path / name) as project:
        assert [c.name for c in project.classes()] == ["kept"]
    assert db.read_schema_version(tmp_path / name) == db.SCHEMA_VERSION


def test_what_without_suffix_gets_one(tmp_path: Path) -> None:
    with Project.create(tmp_path / "what?") as project:
        assert project.path.name == "what?.dsproj"
    assert not (tmp_path / "what").exists()


def test_database_urls_are_refused_not_created_as_folders(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Other URL schemes are refused; a PostgreSQL URL is a server, never a folder (a
    closed local port here: "cannot reach"); "./" makes any such name a file path."""
    import socket

    from densestudio.core.errors import ServerUnreachable

    monkeypatch.chdir(tmp_path)
    for url in ("sqlite:///x.dsproj", "mysql://host/db", "SQLITE://x"):
        with pytest.raises(ProjectError, match="database URL that DenseStudio cannot open"):
            Project.create(url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(ServerUnreachable, match="cannot reach the database server"):
        Project.create(f"postgresql://nobody:secret@127.0.0.1:{port}/db")
    assert list(tmp_path.iterdir()) == []
    assert db.project_target("C://x.dsproj") == tmp_path / "C:" / "x.dsproj", "a drive"
    with Project.create("./postgresql:/host/db") as project:  # a file, as written
        assert project.path == tmp_path / "postgresql:" / "host" / "db.dsproj"


# ------------------------------------------------------------------ 4. non-UTF-8 file names
def test_non_utf8_names_import_and_relink_losslessly(project: Project, tmp_path: Path) -> None:
    odd = non_utf8_path(tmp_path / "imgs" / "x", b"caf\xe9.png")
    if odd is None:
        pytest.skip("this file system refuses non-UTF-8 names")
    noise((20, 20), seed=1).save(odd)
    noise((20, 20), seed=2).save(tmp_path / "imgs" / "x" / "good.png")
    report = run_import(project, [tmp_path / "imgs"], LABELS)
    assert report.added == 2 and not report.skipped, "the good file is not lost either"
    row = next(r for r in project.page() if "good" not in r.path)
    assert row.path == str(odd) and os.fsencode(row.path).endswith(b"caf\xe9.png")
    assert row.filename == "caf\ufffd.png", "display/sort name is plain text"
    (tmp_path / "imgs").rename(tmp_path / "moved")
    result = relink(project, [tmp_path / "moved"])
    assert (result.relinked, result.still_missing) == (2, 0)
    assert Path(project.image(row.id).path).is_file()
    out = tmp_path / "labels.csv"
    export_labels_csv(project, out)
    assert b"caf\xe9.png" in out.read_bytes(), "exported as the file's own bytes"


# ------------------------------------------------------------------ 5. concurrent writers
def test_overlapping_imports_at_once_both_complete(project: Project, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Another import commits the same files between this import's scan and its commit
    (what two processes at once do): no IntegrityError, nothing twice."""
    data = make_class_folders(tmp_path / "d", ("a", "b"), per_class=5)
    other = Project.open(project.path)
    real_put = ThumbnailCache.put_many
    raced = []

    def put_many_then_race(self: ThumbnailCache, items: Iterable[tuple[str, bytes]]) -> None:
        if not raced:
            raced.append("racing")
            raced.append(run_import(other, [data], LABELS))  # the "other process"
        return real_put(self, items)

    monkeypatch.setattr(ThumbnailCache, "put_many", put_many_then_race)
    report = run_import(project, [data], LABELS)
    other.close()
    assert raced[1].added == 10
    assert report.added == 0 and report.already_in_project == 10
    assert project.count_images() == 10 and len(project.classes()) == 2


def hold_write_lock(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    return con


def test_a_long_writer_is_waited_for_with_a_notice_then_a_clear_error(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "LOCK_NOTICE_S", 0.05)
    monkeypatch.setattr(db, "LOCK_WAIT_S", 0.3)
    notices: list[str] = []
    project.on_lock_wait(notices.append)
    holder = hold_write_lock(project.path)
    with pytest.raises(ProjectError, match="stayed locked by another program"):
        project.add_class("late")
    assert notices == ["waiting for another DenseStudio process that is writing to this "
                       "project (test.dsproj)..."]
    holder.execute("ROLLBACK")
    holder.close()
    assert project.add_class("late").name == "late"


def test_a_writer_that_finishes_while_we_wait_lets_us_through(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "LOCK_NOTICE_S", 0.05)
    holder = hold_write_lock(project.path)
    waiting = threading.Event()

    def on_wait(_message: str) -> None:
        waiting.set()
        holder.execute("COMMIT")  # the other process finishes its transaction

    project.on_lock_wait(on_wait)
    done = threading.Thread(target=lambda: project.add_class("after"), daemon=True)
    done.start()
    done.join(30)
    holder.close()
    assert waiting.is_set() and [c.name for c in project.classes()] == ["after"]


# ------------------------------------------------------------------ 6. special files
@needs_fifo
def test_every_image_reader_refuses_a_fifo_at_once(project: Project, tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "f.jpg")
    for read in (load_image, probe):
        with pytest.raises(ImageDecodeError, match="not a regular file"):
            finishes(lambda read=read: read(fifo))
    with pytest.raises(ImageDecodeError, match="named pipe"):
        finishes(lambda: file_hash(fifo))
    from densestudio.core.store import ImageInfo  # thumbnails regenerate via the same reader

    fake = ImageInfo(1, str(fifo), "f.jpg", str(tmp_path), "h", 1, 1, 1, "L", 8, None, False,
                     None, None, None, None, None)  # type: ignore[arg-type]
    assert finishes(lambda: ThumbnailCache(project.cache_dir).get_or_make(fake)) is None


@needs_fifo
def test_import_of_a_fifo_given_directly_says_not_a_regular_file(project: Project,
                                                                 tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "f.jpg")
    report = finishes(lambda: run_import(project, [fifo]))
    assert [(s.path, s.reason) for s in report.skipped] == [
        (str(fifo), "not a regular file (a named pipe (FIFO))")]


def test_a_device_is_never_read_as_an_image() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(ImageDecodeError, match="character device"):
        finishes(lambda: load_image(Path("/dev/zero")))


# ------------------------------------------------------------------ 7. odd environments
def test_read_only_project_reads_and_refuses_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file cannot be written (root ignores chmod, so the check is faked here;
    tests/cli/test_cli_hostile.py runs the real thing), it opens read-only."""
    path = tmp_path / "p.dsproj"
    with Project.create(path) as project:
        project.add_class("a")
    monkeypatch.setattr(db, "_read_only_reason", lambda _p: "p.dsproj is not writable")
    before = path.read_bytes()
    with Project.open(path) as project:
        assert project.read_only == "p.dsproj is not writable"
        assert [c.name for c in project.classes()] == ["a"]
        with pytest.raises(ProjectError, match="open read-only"):
            project.add_class("b")
        with pytest.raises(ImportFailed, match="read-only"):
            run_import(project, [tmp_path])
        with project.engine.connect() as con, pytest.raises(Exception, match="readonly"):
            con.exec_driver_sql("INSERT INTO meta VALUES ('x', 'y')")  # SQLite's own guard
    assert path.read_bytes() == before


def test_disk_full_during_import_stops_cleanly_and_keeps_what_was_saved(
        project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's max_page_count gives exactly the error of a full disk (SQLITE_FULL)."""
    data = make_class_folders(tmp_path / "d", ("a",), per_class=40, size=(64, 64))
    run_import(project, [make_class_folders(tmp_path / "first", ("a",), per_class=3,
                                            seed=5)], LABELS)
    with project.session() as s:
        pages = s.connection().exec_driver_sql("PRAGMA page_count").scalar()
    event.listen(project.engine, "connect",
                 lambda con, _r: con.execute(f"PRAGMA max_page_count = {pages + 2}"))
    project.engine.dispose()  # new connections get the limit
    monkeypatch.setattr(importer, "BATCH_SIZE", 5)
    with pytest.raises(ImportFailed, match="disk is full") as failure:
        run_import(project, [data], LABELS)
    assert "are saved" in str(failure.value) and "Import again" in str(failure.value)
    kept = project.count_images()
    assert kept >= 3, "the earlier import is intact"
    con = sqlite3.connect(project.path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM image").fetchone()[0] == kept
    con.close()


@pytest.mark.parametrize("damage", ["folder", "garbage"])
def test_damaged_thumbnail_cache_is_moved_aside_and_rebuilt(
    project: Project, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = project.cache_dir / "thumbnails.sqlite"
    cache.parent.mkdir(parents=True)
    if damage == "folder":
        cache.mkdir()
    else:
        cache.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, "densestudio"):
        report = run_import(project, [make_class_folders(tmp_path / "d", ("a",), 3)], LABELS)
    assert report.added == 3
    assert "moved to thumbnails.broken-" in caplog.text
    assert cache.is_file() and all(ThumbnailCache(project.cache_dir).get(r.content_hash)
                                   for r in project.page())
    assert [p for p in cache.parent.iterdir() if p.name.startswith("thumbnails.broken-")]


def test_unusable_thumbnail_cache_only_stops_caching(project: Project, tmp_path: Path) -> None:
    """A cache folder that cannot exist (a file in its place) costs speed, not the import."""
    project.cache_dir.write_text("not a folder")
    report = run_import(project, [make_class_folders(tmp_path / "d", ("a",), 2)], LABELS)
    assert report.added == 2 and ThumbnailCache(project.cache_dir).get("x") is None


def test_bad_schema_version_and_damaged_pages_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dsproj"
    Project.create(bad).close()
    con = sqlite3.connect(bad)
    con.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(ProjectError, match=r"invalid schema version \('two'\)"):
        Project.open(bad)
    damaged = tmp_path / "damaged.dsproj"
    with Project.create(damaged) as project:
        run_import(project, [make_class_folders(tmp_path / "d", ("a",), 30)], LABELS)
    con = sqlite3.connect(damaged)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    roots = [r for (r,) in con.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = "
                                       "'image' AND rootpage > 0")]
    con.close()
    with open(damaged, "r+b") as f:  # the image table's (and indexes') pages: garbage headers
        for root in roots:
            f.seek((root - 1) * 4096)
            f.write(b"\xff" * 16)
    with Project.open(damaged) as project:  # its meta table is fine
        with pytest.raises(ProjectError, match=r"is damaged .*malformed"):
            project.counts()
    garbage = tmp_path / "garbage.dsproj"
    garbage.write_bytes(b"\x00" * 100 + os.urandom(8000))
    with pytest.raises(ProjectError, match="not a DenseStudio project"):
        Project.open(garbage)


# ------------------------------------------------------------------ 8. smaller ones
@pytest.mark.parametrize("ratios", [(float("nan"),) * 3, (float("inf"), 0, 0), (-1, 1, 1),
                                    (0.5, 0.5), (1, 1, 1)])
def test_split_ratios_must_be_finite_non_negative_and_sum_to_one(project: Project,
                                                                 ratios: tuple[float, ...]) -> None:
    from densestudio.core.store import resplit

    with pytest.raises(ProjectError, match="sum to 1"):
        resplit(project, ratios)
    assert splits.check_ratios((0.6, 0.2, 0.2)) == (0.6, 0.2, 0.2)


def test_class_names_are_normalized_and_case_insensitive(project: Project) -> None:
    nfd = unicodedata.normalize("NFD", "café")
    cafe = project.add_class(nfd)
    assert cafe.name == "café" and len(cafe.name) == 4, "stored NFC"
    with pytest.raises(ProjectError, match="'café' already exists"):
        project.add_class("café")
    scratches = project.add_class("scratches")
    with pytest.raises(ProjectError, match="ignore upper/lower case"):
        project.add_class("Scratches")
    with pytest.raises(ProjectError, match="ignore upper/lower case"):
        project.rename_class(cafe.id, "SCRATCHES")
    assert project.rename_class(scratches.id, "Scratches").name == "Scratches", "own case"
    assert project.class_by_name("scratches").id == scratches.id
    assert project.ensure_classes(["SCRATCHES"]) == {"SCRATCHES": scratches.id}
    for bad in ("a\nb", "tab\there", "nul\x00", "x" * 201, "  "):
        with pytest.raises(ProjectError):
            project.add_class(bad)
    assert len(project.classes()) == 2


def test_folder_names_become_valid_classes_with_notes(project: Project, tmp_path: Path) -> None:
    project.add_class("scratches")
    project.add_class("café")
    long_name = "L" * 250
    folders = ["Scratches", unicodedata.normalize("NFD", "café"), long_name, "line\nbreak"]
    for i, folder in enumerate(folders):
        (tmp_path / "d" / folder).mkdir(parents=True)
        noise(seed=i).save(tmp_path / "d" / folder / "img.png")
    report = run_import(project, [tmp_path / "d"], LABELS)
    assert report.added == 4 and not report.skipped
    names = sorted(c.name for c in project.classes())
    assert names == sorted(["scratches", "café", "line break"])
    notes = "\n".join(report.notes)
    assert "folder 'Scratches' labeled as existing class 'scratches'" in notes
    assert "café" not in notes, "an NFD name is the same class, silently: it looks the same"
    assert "is not a class name (a class name can have at most 200 characters, this one " \
           "has 250); its images are left unlabeled" in notes, "refused, not cut (issue 22)"
    assert r"folder 'line\nbreak' labeled as class 'line break' (control characters" in notes
    assert project.count_images(ImageFilter(unlabeled=True)) == 1


def test_formula_like_labels_are_escaped_in_csv(project: Project, tmp_path: Path) -> None:
    for seed, name in enumerate(('=HYPERLINK("x","y")', "+1", "@a", "-2", "ok")):
        make_class_folders(tmp_path / "d", (name,), per_class=1, seed=seed)
    run_import(project, [tmp_path / "d"], LABELS)
    out = tmp_path / "labels.csv"
    export_labels_csv(project, out)
    import csv

    labels = {r["label"] for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert labels == {'\'=HYPERLINK("x","y")', "'+1", "'@a", "'-2", "ok"}


def test_outputs_write_through_links_and_into_pipes_never_replace_them(tmp_path: Path) -> None:
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    with open_output(link) as f:
        f.write("new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "made.csv")
    with open_output(dangling) as f:
        f.write("made")
    assert dangling.is_symlink() and (tmp_path / "made.csv").read_text() == "made"
    if Path("/dev/null").exists():
        with open_output(Path("/dev/null")) as f:
            f.write("gone")
        assert Path("/dev/null").is_char_device()
    if hasattr(os, "mkfifo"):
        fifo = make_fifo(tmp_path / "pipe.csv")
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
        reader.start()

        def write_pipe() -> None:
            with open_output(fifo) as f:
                f.write("piped")

        finishes(write_pipe)
        reader.join(10)
        assert fifo.is_fifo() and got == [b"piped"]
    with pytest.raises(DenseStudioError, match="is a folder"):
        with open_output(tmp_path):
            pass


def test_zero_padded_huge_jpeg_costs_no_memory(project: Project, tmp_path: Path) -> None:
    """256 MiB of zeros after a 64x48 JPEG (sparse: no disk): imported and decoded with
    a few MB, and hashed over every byte (2 GiB behaves the same, it only takes longer)."""
    path = write_zero_padded_jpeg(tmp_path / "padded" / "big.jpg", 256 << 20)
    tracemalloc.start()
    try:
        report = run_import(project, [path.parent])
        img = load_image(path, max_side=32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.added == 1 and img.size == (64, 48)
    assert peak < 32 << 20, f"peak {peak / 2**20:.0f} MiB"
    with open(path, "rb") as f:
        assert project.page()[0].content_hash == stream_hash(f)
    assert bytes_hash(b"") != project.page()[0].content_hash
