"""Label history: every path that changes a label leaves an event; the hash chains of the
history and of approvals show any row edited, deleted or reordered behind the app's back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from densestudio.core import hashchain, history, runs, signoff
from densestudio.core.constants import SOURCE_PREDICTION
from densestudio.core.errors import ProjectError
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.models import LabelEvent
from densestudio.core.store import Project, bulk_insert_images
from tests.core.bad_files import make_class_folders


def add_fake_images(project: Project, n: int) -> list[int]:
    rows = [dict(path=f"/data/img{i}.png", filename=f"img{i}.png", folder="/data",
                 content_hash=f"{i:064x}", byte_size=10, width=8, height=8, mode="L")
            for i in range(n)]
    with project.transaction() as s:
        bulk_insert_images(s, rows)
    return project.image_ids()


def hows(project: Project, image_id: int) -> list[tuple[str, str | None, str | None]]:
    return [(e.how, e.old_class, e.new_class) for e in history.image_history(project, image_id)]


def test_every_store_path_records_who_when_old_new_and_how(project: Project,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENSESTUDIO_USER", "inspector-7")
    a, b, c = add_fake_images(project, 3)
    ids = project.ensure_classes(["ok", "scratch", "spot"])
    change = project.set_labels([a, b], ids["ok"], how=history.HOW_BULK)
    project.set_labels([a], ids["scratch"], how=history.HOW_KEYBOARD)
    # a was changed after the bulk label: undo and redo leave it (the conflict rule), b goes
    assert [x.image_id for x in project.undo_labels(change).conflicts] == [a]
    assert [x.image_id for x in project.redo_labels(change).conflicts] == [a]
    project.set_labels_many([(c, ids["spot"])], source=SOURCE_PREDICTION)
    removed = project.merge_classes([ids["spot"]], ids["scratch"])
    project.restore_classes(removed)
    project.delete_class(ids["ok"])
    assert hows(project, a) == [("bulk", None, "ok"), ("keyboard", "ok", "scratch")]
    assert hows(project, b) == [
        ("bulk", None, "ok"), ("undo", "ok", None), ("redo", None, "ok"),
        ("class-delete", "ok", None)]
    assert hows(project, c) == [
        ("accepted-prediction", None, "spot"), ("class-merge", "spot", "scratch"),
        ("undo", "scratch", "spot")]
    events = history.image_history(project, b)
    assert {e.who for e in events} == {"inspector-7"}
    assert all(e.image_hash == project.image(b).content_hash for e in events)
    assert events[-1].old_class_id == ids["ok"]  # the name survives the class's deletion
    assert [e.id for e in history.all_history(project)] == list(range(1, 10))  # a 2, b 4, c 3
    assert signoff.verify_project(project).ok


def test_unchanged_labels_leave_no_event(project: Project) -> None:
    (a,) = add_fake_images(project, 1)
    ids = project.ensure_classes(["ok"])
    project.set_labels([a], ids["ok"])
    project.set_labels([a], ids["ok"])
    assert len(history.image_history(project, a)) == 1


def test_import_records_labels_and_sources(tmp_path: Path, project: Project) -> None:
    data = make_class_folders(tmp_path / "data", classes=("ok", "ng"), per_class=3)
    run_import(project, [data], ImportOptions(labels_from_subfolders=True))
    events = history.all_history(project)
    assert len(events) == 6 and {e.how for e in events} == {"import"}
    assert {e.new_class for e in events} == {"ok", "ng"}
    (source,) = history.import_sources(project)
    assert source.sources == (str(data.absolute()),) and source.added == 6
    assert source.labels_from_subfolders and not source.cancelled
    run_import(project, [data])  # nothing new: logged, no label events
    assert len(history.import_sources(project)) == 2 and history.history_count(project) == 6


def test_find_image_by_id_path_or_name(project: Project) -> None:
    a, b = add_fake_images(project, 2)
    assert history.find_image(project, str(a)).id == a
    assert history.find_image(project, "/data/img1.png").id == b
    assert history.find_image(project, "IMG1.png").id == b
    with pytest.raises(ProjectError, match="No image"):
        history.find_image(project, "nope.png")


# ------------------------------------------------------------------ tampering
def labeled_project(project: Project, n_changes: int = 6) -> list[int]:
    ids = add_fake_images(project, n_changes)
    classes = project.ensure_classes(["ok", "ng"])
    for i, image_id in enumerate(ids):
        project.set_labels([image_id], classes["ok" if i % 2 else "ng"])
    assert signoff.verify_project(project).ok
    return ids


def sql(project: Project, statement: str, *params: object) -> None:
    """Edit the tables behind the app's back, as a database tool would (either database;
    ``?`` marks the parameters)."""
    names = [f"p{i}" for i in range(len(params))]
    for name in names:
        statement = statement.replace("?", f":{name}", 1)
    with project.engine.begin() as con:
        con.execute(text(statement), dict(zip(names, params, strict=False)))


def problems(project: Project) -> list[str]:
    report = signoff.verify_project(project)
    assert not report.ok
    return list(report.problems)


def test_an_edited_history_row_is_detected(project: Project) -> None:
    labeled_project(project)
    sql(project, "UPDATE label_event SET new_class = 'ok' WHERE id = 3")
    assert problems(project) == ["label history row 3: content was changed after it was written"]


def test_a_deleted_history_row_is_detected(project: Project) -> None:
    labeled_project(project)
    sql(project, "DELETE FROM label_event WHERE id = 4")
    assert problems(project) == ["label history row 5: row 4 before it is missing (deleted)"]


def test_deleting_the_newest_rows_is_detected(project: Project) -> None:
    labeled_project(project)
    sql(project, "DELETE FROM label_event WHERE id >= 5")
    assert problems(project) == [
        "label history chain: the newest 2 rows were deleted (the chain ended at row 6, now "
        "at 4)"]


def test_reordered_history_rows_are_detected(project: Project) -> None:
    labeled_project(project)
    sql(project, "UPDATE label_event SET id = -2 WHERE id = 2")
    sql(project, "UPDATE label_event SET id = 2 WHERE id = 3")
    sql(project, "UPDATE label_event SET id = 3 WHERE id = -2")
    found = problems(project)
    assert any(p.startswith("label history row 2:") for p in found)
    assert any(p.startswith("label history row 3:") for p in found)


def test_a_forged_row_appended_is_detected(project: Project) -> None:
    labeled_project(project)
    with project.engine.connect() as con:
        row = con.exec_driver_sql("SELECT * FROM label_event WHERE id = 6").fetchone()
    sql(project, "INSERT INTO label_event VALUES (7" + ", ?" * (len(row) - 1) + ")", *row[1:])
    assert any("added outside DenseStudio" in p for p in problems(project))


def test_approvals_are_chained_and_anchor_the_label_history(project: Project) -> None:
    labeled_project(project)
    run_id = runs.create_run(project, name="r", config_json="{}", class_names=["ng", "ok"],
                             snapshot=[])
    runs.update_run(project, run_id, status="finished",
                    metrics={"data_fingerprint": "abc", "test_acc": 0.9})
    with pytest.raises(ProjectError, match="why"):
        signoff.approve_run(project, run_id, "  ")
    first = signoff.approve_run(project, run_id, "passed the line trial", by="qa lead")
    second = signoff.approve_run(project, run_id, "re-approved after audit")
    assert first.approved_by == "qa lead" and first.data_fingerprint == "abc"
    assert first.metrics["test_acc"] == 0.9 and first.class_names == ("ng", "ok")
    assert first.label_head == history.head_hash(project)
    assert signoff.approved_run_id(project) == run_id and signoff.latest_approval(
        project).id == second.id
    assert signoff.verify_project(project).ok
    sql(project, "UPDATE approval SET why = 'nothing to see' WHERE id = 1")
    assert problems(project) == ["approvals row 1: content was changed after it was written"]
    sql(project, "UPDATE approval SET why = 'passed the line trial' WHERE id = 1")
    assert signoff.verify_project(project).ok
    # a forger who edits a label row AND recomputes its hash and the head keeps the label
    # chain consistent, but the approvals still point to the old hash
    sql(project, "UPDATE label_event SET who = 'someone else' WHERE id = 6")
    with project.session() as s:
        row = s.get(LabelEvent, 6)
        forged = hashchain.row_hash([getattr(row, f) for f in history.LABEL_CHAIN.fields],
                                    row.prev_hash)
    sql(project, "UPDATE label_event SET hash = ? WHERE id = 6", forged)
    sql(project, "UPDATE meta SET value = ? WHERE key = ?", f"6 {forged}",
        history.LABEL_CHAIN.head_key)
    found = problems(project)
    assert len(found) == 2 and all(
        p.startswith("approvals row") and "the label history it was approved on is gone" in p
        for p in found)


def test_approvals_survive_deleting_the_run_and_metrics_stay_json(project: Project) -> None:
    run_id = runs.create_run(project, name="r", config_json="{}", class_names=["a"],
                             snapshot=[])
    with pytest.raises(ProjectError, match="not a finished"):
        signoff.approve_run(project, run_id, "too early")
    runs.update_run(project, run_id, status="finished", metrics={"x": float("nan"), "y": 1})
    signoff.approve_run(project, run_id, "ok")
    runs.delete_run(project, run_id)
    (kept,) = signoff.approvals(project)
    assert kept.run_id == run_id and kept.metrics == {"y": 1}
    assert json.loads(json.dumps(kept.metrics)) == kept.metrics
    assert signoff.approved_run_id(project) is None  # its model is gone
    assert signoff.verify_project(project).ok


def test_golden_marks(project: Project) -> None:
    a, b, c = add_fake_images(project, 3)
    assert signoff.add_golden(project, [a, b], note="customer complaint 17") == 2
    assert signoff.add_golden(project, [b, c]) == 1
    assert signoff.golden_ids(project) == {a, b, c}
    assert signoff.golden_images(project)[0].note == "customer complaint 17"
    assert signoff.remove_golden(project, [a]) == 1
    assert signoff.golden_ids(project) == {b, c}
    with pytest.raises(ProjectError, match="No image"):
        signoff.add_golden(project, [999])
