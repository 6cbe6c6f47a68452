"""Label history under SIGKILL: a child labels, undoes and redoes until it is killed at a
random moment; the history must still be an intact hash chain that, replayed from the start,
gives exactly the labels in the project (every change recorded, none half-written)."""

from __future__ import annotations

import random
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from densestudio.core import history, signoff
from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.store import Project
from tests.core.bad_files import make_class_folders
from tests.reliability.crash_child import label_ops
from tests.reliability.test_crash_consistency import integrity_ok, run_and_kill

KILLS = 8
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def replay(project: Project) -> dict[int, int | None]:
    """Labels rebuilt from the history alone; each event must start where the last ended."""
    state: dict[int, int | None] = {i: None for i in project.image_ids()}
    for e in history.all_history(project):
        assert state[e.image_id] == e.old_class_id, f"event {e.id} does not follow on"
        state[e.image_id] = e.new_class_id
    return state


def test_history_survives_sigkill_during_labeling_undo_redo(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", classes=("a", "b", "c"), per_class=20,
                              size=(16, 16))
    base = tmp_path / "base.dsproj"
    with Project.create(base) as project:
        run_import(project, [data], ImportOptions(labels_from_subfolders=True))
        assert history.history_count(project) == 60  # one "import" event per image
    with Project.open(base) as project:
        ids = project.image_ids()
        classes = [c.id for c in project.classes()]
        start = {r.id: r.label_id for r in project.page(limit=1000)}
    rng = random.Random(7)
    survived = 0
    for point in range(KILLS):
        path = tmp_path / f"history{point}.dsproj"
        src, dst = sqlite3.connect(base), sqlite3.connect(path)
        src.backup(dst)
        src.close()
        dst.close()
        lines = run_and_kill(["label-undo", str(path), str(200 + point), "30"],
                             rng.randint(1, 60), rng.random() * 0.01)
        acked = sum(1 for x in lines if x.startswith("ACK"))
        integrity_ok(path)
        with Project.open(path) as project:
            assert signoff.verify_project(project).ok
            actual = {r.id: r.label_id for r in project.page(limit=1000)}
            assert replay(project) == actual
            events = history.all_history(project)
            assert [e.how for e in events[:60]] == ["import"] * 60
            calls = _calls(events[60:])
            steps = _expected_steps(start, ids, classes, 200 + point, acked + 1)
        # each acknowledged store call is there whole; the one in flight whole or not at all
        # (calls that changed no label record nothing)
        done = [s for s in steps[:acked] if s[1]]
        assert calls in (done, done + [s for s in steps[acked : acked + 1] if s[1]])
        survived += 1
    assert survived == KILLS


def _calls(events: Sequence[history.LabelEventInfo]) -> list[tuple[str, frozenset[int]]]:
    """The store calls in the history: runs of events with the same how and time."""
    calls: list[tuple[str, object, set[int]]] = []
    for e in events:
        if calls and calls[-1][0] == e.how and calls[-1][1] == e.at:
            calls[-1][2].add(e.image_id)
        else:
            calls.append((e.how, e.at, {e.image_id}))
    return [(how, frozenset(ids)) for how, _, ids in calls]


def _expected_steps(start: dict[int, int | None], ids: list[int], classes: list[int],
                    seed: int, n_ops: int) -> list[tuple[str, frozenset[int]]]:
    """The images each of the child's store calls (label, undo, redo per op) changes."""
    state = dict(start)
    out: list[tuple[str, frozenset[int]]] = []
    for op_ids, label in label_ops(seed, n_ops, ids, classes):
        changed = frozenset(i for i in op_ids if state[i] != label)
        before = {i: state[i] for i in changed}
        for how in ("bulk", "undo", "redo"):
            out.append((how, changed))
            for i in changed:
                state[i] = before[i] if how == "undo" else label
    return out
