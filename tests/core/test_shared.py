"""Several labelers on one project (SQLite file and PostgreSQL alike): authors, the conflict
rule, undo/redo under it, per-author counts, the change feed, CSV label import, and what
only a shared project has (URLs, files root, root mapping, schema upgrade on the server)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from densestudio.core import changes, db, machine
from densestudio.core.errors import ProjectError
from densestudio.core.exchange import export_labels_csv, import_labels_csv
from densestudio.core.store import ImageFilter, Project, Seen, conflicts_message
from tests.core.test_store import add_rows
from tests.pg_server import PgServer


def second_client(project: Project) -> Project:
    """Another labeler's connection to the same project."""
    return Project.open(project.target)


# ------------------------------------------------------------------ conflict rule
def test_stale_view_is_refused_per_image_and_the_rest_applied(project: Project) -> None:
    ids = add_rows(project, 5)
    cat, dog = project.add_class("cat"), project.add_class("dog")
    view = project.page()  # alice's gallery
    seen = Seen({r.id: r.label_version for r in view})
    with second_client(project) as bob:
        won = bob.set_labels([ids[0]], dog.id, who="bob")
    assert won.versions == ((ids[0], 1),)
    change = project.set_labels(ids, cat.id, who="alice", expected=seen)
    assert change.image_ids == ids[1:], "the others are applied"
    [conflict] = change.conflicts
    assert (conflict.image_id, conflict.label_id, conflict.labeled_by) == (ids[0], dog.id, "bob")
    assert conflict.message() == ("'img_00000.png' was relabeled by bob a moment ago; your "
                                  "change was not applied")
    assert conflicts_message(change.conflicts, {dog.id: "dog"}).startswith(
        "'img_00000.png' was relabeled as 'dog' by bob")
    row = project.image(ids[0])
    assert (row.label_id, row.labeled_by, row.label_version) == (dog.id, "bob", 1), \
        "never a silent overwrite"
    # a view that has seen bob's change (its new version) may change it
    again = project.set_labels([ids[0]], cat.id, who="alice",
                               expected=Seen({ids[0]: row.label_version}))
    assert len(again) == 1 and not again.conflicts
    assert project.image(ids[0]).labeled_by == "alice"
    # asking for the label the image already has is no conflict, even from a stale view
    same = project.set_labels([ids[0]], cat.id, expected=Seen({ids[0]: 0}))
    assert (len(same), same.conflicts) == (0, ())


def test_seen_seq_protects_images_the_view_has_no_version_for(project: Project) -> None:
    ids = add_rows(project, 3)
    cat, dog = project.add_class("cat"), project.add_class("dog")
    seq = changes.current_seq(project)  # alice's feed is up to date here
    with second_client(project) as bob:
        bob.set_labels([ids[1]], dog.id, who="bob")
    change = project.set_labels(ids, cat.id, who="alice", expected=Seen(seq=seq))
    assert change.image_ids == [ids[0], ids[2]]
    assert [c.image_id for c in change.conflicts] == [ids[1]]
    add_rows(project, 1, prefix="late")  # new since the view, never labeled: no conflict
    late = project.image_ids(ImageFilter(text="late_"))
    assert len(project.set_labels(late, cat.id, expected=Seen(seq=seq))) == 1


def test_undo_and_redo_follow_the_same_rule(project: Project) -> None:
    ids = add_rows(project, 4)
    cat, dog = project.add_class("cat"), project.add_class("dog")
    mine = project.set_labels(ids, cat.id, who="alice")
    with second_client(project) as bob:
        bob.set_labels([ids[0]], dog.id, who="bob")
    conflicts = project.undo_labels(mine).conflicts
    assert [c.image_id for c in conflicts] == [ids[0]] and conflicts[0].labeled_by == "bob"
    assert project.image(ids[0]).label_id == dog.id, "bob's label stays"
    assert project.count_images(ImageFilter(unlabeled=True)) == 3, "the rest is undone"
    with second_client(project) as bob:
        bob.set_labels([ids[1]], dog.id, who="bob")
    conflicts = project.redo_labels(mine).conflicts
    assert [c.image_id for c in conflicts] == [ids[0], ids[1]]
    assert [project.image(i).label_id for i in ids] == [dog.id, dog.id, cat.id, cat.id]
    # restoring a deleted class leaves images relabeled since as they are
    removed = project.delete_class(cat.id)
    project.set_labels([ids[2]], dog.id, who="carol")
    assert [c.image_id for c in project.restore_classes(removed).conflicts] == [ids[2]]
    assert [project.image(i).label_id for i in ids] == [dog.id, dog.id, dog.id, cat.id]


def test_every_label_change_records_its_author_and_counts_by_author(project: Project) -> None:
    ids = add_rows(project, 6)
    cat, dog = project.add_class("cat"), project.add_class("dog")
    project.set_labels(ids[:3], cat.id, who="alice")
    project.set_labels(ids[3:5], cat.id, who="bob")
    project.set_labels(ids[5:], dog.id, who="bob")
    unlabel = project.set_labels(ids[:1], None, who="carol")
    assert unlabel.after[0][1].labeled_by == "carol", "an unlabel records who did it"
    assert project.counts_by_author() == {cat.id: {"alice": 2, "bob": 2}, dog.id: {"bob": 1}}
    with pytest.raises(ProjectError, match="at most 64"):
        project.set_labels(ids, dog.id, who="x" * 65)
    with pytest.raises(ProjectError, match="control"):
        project.set_labels(ids, dog.id, who="a\nb")


# ------------------------------------------------------------------ change feed
def test_change_feed_reports_others_changes_as_plain_data(project: Project) -> None:
    ids = add_rows(project, 3)
    cat = project.add_class("cat")
    feed = changes.ChangeFeed(project)
    assert feed.poll() is None
    with second_client(project) as bob:
        change = bob.set_labels(ids[:2], cat.id, who="bob")
        bob.rename_class(cat.id, "kitten")
    batch = feed.poll()
    assert batch.versions == change.versions and not batch.everything
    assert batch.classes, "a renamed class is news too"
    assert feed.poll() is None, "each change is reported once"
    add_rows(project, 2, prefix="new")
    batch = feed.poll()
    assert batch.added and len(batch.image_ids) == 2, "new images are news"
    project.set_labels(ids, None)
    project.undo_labels(change)
    assert set(feed.poll().image_ids) == set(ids[:2])
    feed.close()


def test_feed_wait_wakes_when_another_client_writes(project: Project) -> None:
    """A worker blocked in ``wait`` hears of a change well within 2 s (NOTIFY on
    PostgreSQL, the 1 s poll on SQLite)."""
    ids = add_rows(project, 2)
    cat = project.add_class("cat")
    feed = changes.ChangeFeed(project)
    got: list[changes.ChangeBatch] = []
    started = threading.Event()

    def worker() -> None:
        started.set()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            batch = feed.wait(timeout=1.0)
            if batch:
                got.append(batch)

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    with second_client(project) as bob:
        t0 = time.monotonic()
        bob.set_labels(ids[:1], cat.id, who="bob")
        thread.join(10)
        latency = time.monotonic() - t0
    feed.close()
    assert got and got[0].image_ids == ids[:1]
    assert latency < 2.0, f"others' changes took {latency:.2f} s to arrive"


# ------------------------------------------------------------------ import-labels
def test_import_labels_by_path_or_hash_with_authors(project: Project, tmp_path: Path) -> None:
    ids = add_rows(project, 4)
    cat = project.add_class("cat")
    rows = project.images_by_ids(ids)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "path,content_hash,class,author\n"
        f"{rows[0].path},,cat,mes-line3\n"
        f",{rows[1].content_hash.upper()},Cat,\n"
        f"{rows[2].path},,scratch,mes-line3\n"
        "/nowhere/x.png,,cat,\n"
        f"{rows[3].path},,,\n", encoding="utf-8")
    report = import_labels_csv(project, csv_file, author="script")
    assert (report.rows, report.changed, report.unchanged) == (5, 2, 0)
    assert report.unknown_classes == {"scratch": 1}
    assert report.unknown_images == ((5, "/nowhere/x.png"),)
    assert report.bad_rows == ((6, "no class"),)
    assert [project.image(i).labeled_by for i in ids[:2]] == ["mes-line3", "script"]
    assert project.image(ids[0]).label_source == "import"
    again = import_labels_csv(project, csv_file, create_classes=True)
    assert again.created_classes == ("scratch",) and again.unchanged == 2
    assert project.image(ids[2]).label_id == project.class_by_name("scratch").id
    assert cat.id in project.counts_by_author()


def test_export_then_import_labels_round_trips(project: Project, tmp_path: Path) -> None:
    ids = add_rows(project, 3)
    a, b = project.add_class("=a"), project.add_class("b")  # a formula-like name
    project.set_labels(ids[:2], a.id, who="ann")
    project.set_labels(ids[2:], b.id, who="ben")
    export_labels_csv(project, tmp_path / "out.csv")
    project.set_labels(ids, None)
    report = import_labels_csv(project, tmp_path / "out.csv")
    assert report.changed == 3 and report.skipped == 0
    assert [(r.label_id, r.labeled_by) for r in project.images_by_ids(ids)] == [
        (a.id, "ann"), (a.id, "ann"), (b.id, "ben")]


def test_import_labels_refuses_a_file_without_the_columns(project: Project,
                                                          tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("file;label\nx.png;a\n")
    with pytest.raises(ProjectError, match="must name the columns"):
        import_labels_csv(project, bad)


# ------------------------------------------------------------------ targets (no server)
HOSTILE = ["other.db?.dsproj", "what?.dsproj", "a#b.dsproj", "x%20y.dsproj",
           "sp ace&q=1;.dsproj", "postgresql:.dsproj", "postgres.dsproj"]


@pytest.mark.parametrize("name", HOSTILE)
def test_file_names_are_never_taken_for_urls(tmp_path: Path, name: str) -> None:
    assert db.project_target(str(tmp_path / name)) == tmp_path / name
    assert db.project_target(tmp_path / name) == tmp_path / name
    assert db.project_target(Path("postgresql://x/y")) == Path.cwd() / "postgresql:" / "x" / "y"


def test_url_forms_and_the_password_is_never_shown() -> None:
    for text in ("postgresql://alice:pw%2Fx@db.plant:5433/line3",
                 "postgresql+psycopg://alice:pw%2Fx@db.plant:5433/line3",
                 "POSTGRES://alice:pw%2Fx@db.plant:5433/line3"):
        target = db.project_target(text)
        assert isinstance(target, db.ServerURL)
        assert target.url.drivername == "postgresql+psycopg"
        assert target.url.password == "pw/x", "used to connect"
        assert target.display == "postgresql://alice@db.plant:5433/line3"
        assert "pw" not in target.key and target.name == "line3"
    with pytest.raises(ProjectError, match="names no database"):
        db.project_target("postgresql://alice:topsecret@db.plant/")
    with pytest.raises(ProjectError) as info:
        db.project_target("postgresql+psycopg2://alice:topsecret@db.plant/x")
    assert "topsecret" not in str(info.value)


# ------------------------------------------------------------------ root mapping
def test_root_map_reads_stored_paths_as_local_ones(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    roots = machine.RootMap((("/mnt/nas/line3", "/Volumes/l3"), ("/srv", "Z:\\srv")))
    assert roots.to_local("/mnt/nas/line3/a/b.png") == "/Volumes/l3/a/b.png"
    assert roots.to_local("/mnt/nas/line30/b.png") == "/mnt/nas/line30/b.png", "whole names"
    assert roots.to_local("/srv/x/y.png") == "Z:\\srv\\x\\y.png"
    assert roots.to_stored("Z:\\srv\\x\\y.png") == "/srv/x/y.png"
    assert roots.to_stored("/Volumes/l3") == "/mnt/nas/line3"
    assert roots.to_local("relative/mnt/nas/line3") == "relative/mnt/nas/line3"


def test_moved_roots_are_mapped_per_machine(project: Project, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Machine A stored /share/...; machine B mounts it at /mnt/b: B reads and writes
    through its roots.json, and the project keeps A's paths."""
    share = tmp_path / "share"
    with project.transaction() as s:
        from densestudio.core.store import bulk_insert_images

        bulk_insert_images(s, [dict(path=str(share / "img" / "x.png"), filename="x.png",
                                    folder=str(share / "img"), content_hash="h",
                                    byte_size=1, width=1, height=1, mode="L")])
    if project.shared:
        project.set_files_root(share / "files")
    mounted = tmp_path / "mnt-b"
    config = tmp_path / "machine-b-config"
    monkeypatch.setenv("DENSESTUDIO_CONFIG_DIR", str(config))
    config.mkdir()
    (config / machine.ROOTS_FILE).write_text(json.dumps({str(share): str(mounted)}))
    try:
        with Project.open(project.target) as b:
            row = b.page()[0]
            assert row.path == str(mounted / "img" / "x.png") and row.folder == str(
                mounted / "img")
            assert b.image_ids(ImageFilter(text="x.png")) == [row.id]
            if b.shared:
                assert b.files_root == mounted / "files"
                assert b.runs_dir == mounted / "files" / "runs"
                assert b.stored_path(mounted / "files" / "runs" / "1" / "best.pt") == \
                    "runs/1/best.pt"
            with b.transaction() as s:  # B relinks within its mount: stored as A's path
                from sqlalchemy import update

                from densestudio.core.models import Image

                s.execute(update(Image).values(path=str(mounted / "img" / "y.png")))
    finally:
        monkeypatch.delenv("DENSESTUDIO_CONFIG_DIR")
        machine.load_root_map()
    from sqlalchemy import text

    with project.engine.connect() as con:
        stored = con.execute(text("SELECT path FROM image")).scalar()
    assert stored == str(share / "img" / "y.png")


# ------------------------------------------------------------------ PostgreSQL only
@pytest.mark.postgres
def test_shared_project_files_live_under_the_files_root(pg_url: str, tmp_path: Path) -> None:
    with Project.create(pg_url) as project:
        assert project.shared and project.location.startswith("postgresql://")
        local = project.files_root
        assert local.is_relative_to(machine.data_dir()), "until one is set: this machine"
        assert project.cache_dir.is_relative_to(machine.cache_dir())
        with pytest.raises(ProjectError, match="no project file"):
            project.path  # noqa: B018 - the property raises
        project.set_files_root(tmp_path / "nas" / "proj")
    with Project.open(pg_url) as again:
        assert again.files_root == tmp_path / "nas" / "proj"
        assert again.resolve_path(again.stored_path(tmp_path / "nas" / "proj" / "r" / "b.pt")) \
            == tmp_path / "nas" / "proj" / "r" / "b.pt"
    with pytest.raises(ProjectError, match="already holds a DenseStudio project"):
        Project.create(pg_url)


@pytest.mark.postgres
def test_server_schema_upgrade_from_v3(pg_url: str) -> None:
    """A v3 schema on the server (no label versions or change numbers) is upgraded in one
    locked transaction, data kept."""
    with Project.create(pg_url) as project:
        ids = add_rows(project, 3)
        a = project.add_class("a")
        project.set_labels(ids, a.id)
        with project.engine.begin() as con:
            con.exec_driver_sql("DROP INDEX ix_image_change_seq")
            con.exec_driver_sql("ALTER TABLE image DROP COLUMN label_version")
            con.exec_driver_sql("ALTER TABLE image DROP COLUMN change_seq")
            con.exec_driver_sql("ALTER TABLE image DROP COLUMN label_seq")
            con.exec_driver_sql("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with Project.open(pg_url) as upgraded:
        assert upgraded.get_meta("schema_version") == str(db.SCHEMA_VERSION)
        assert [r.label_id for r in upgraded.page()] == [a.id] * 3
        assert upgraded.page()[0].label_version == 0
        assert len(upgraded.set_labels(ids, None, expected=Seen({ids[0]: 0}))) == 3


@pytest.mark.postgres
def test_writers_wait_for_each_other_with_a_notice(pg_url: str) -> None:
    """The project write lock: a second writer waits (and says so), then goes on."""
    with Project.create(pg_url) as first, Project.open(pg_url) as second:
        heard: list[str] = []
        second.on_lock_wait(heard.append, wait_s=10)
        second._db.lock_wait.notice_s = 0.05
        with first.transaction() as s:
            s.connection()  # the lock is taken before the first statement ...
            first_class = s  # ... and held until this block ends
            done = threading.Event()
            thread = threading.Thread(target=lambda: (second.add_class("b"), done.set()))
            thread.start()
            assert not done.wait(0.5), "the second writer waits"
            from densestudio.core.store import add_class_in_session

            add_class_in_session(first_class, "a", None)
        thread.join(10)
        assert done.is_set() and "waiting for another DenseStudio client" in heard[0]
        assert [c.name for c in second.classes()] == ["a", "b"]


@pytest.mark.postgres
def test_login_errors_never_show_the_password(pg_server: PgServer, pg_url: str) -> None:
    from tests.pg_server import PASSWORD

    url = pg_server.url("postgres", tcp=True).replace("@", ":wrong-pw-123@")
    with pytest.raises(ProjectError) as info:
        Project.open(url)
    assert "refused the login" in str(info.value) and "wrong-pw-123" not in str(info.value)
    with pytest.raises(ProjectError, match="does not exist on the server"):
        Project.open(pg_server.url("no_such_db"))
    os.environ["PGPASSWORD"] = PASSWORD
    try:
        with pytest.raises(ProjectError, match="not a DenseStudio project"):
            Project.open(pg_server.url("postgres", tcp=True))  # password from PGPASSWORD
    finally:
        del os.environ["PGPASSWORD"]
