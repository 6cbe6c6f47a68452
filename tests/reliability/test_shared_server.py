"""A shared project under load and under failure, on a real PostgreSQL server: two labeler
processes at once (nothing acknowledged is lost, conflicts are reported, never silently
overwritten), and a server killed mid-labeling (the client goes offline, keeps its changes,
also across its own crash, and applies them after the restart)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from densestudio.core.errors import ServerUnreachable
from densestudio.core.offline import LabelQueue
from densestudio.core.store import Project, Seen
from tests.core.test_store import add_rows
from tests.pg_server import PgServer

CHILD = Path(__file__).with_name("labeler_child.py")
pytestmark = pytest.mark.postgres


def test_two_labelers_at_once_lose_nothing(pg_database_url: str) -> None:
    with Project.create(pg_database_url) as project:
        ids = add_rows(project, 40)  # few images, many changes: conflicts on purpose
        for name in ("ok", "scratch", "dent"):
            project.add_class(name)
    ops = 500
    procs = {name: subprocess.Popen([sys.executable, str(CHILD), pg_database_url, name,
                                     str(seed), str(ops)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed, name in enumerate(("alice", "bob"))}
    acks: dict[int, list[tuple[int, int, str]]] = defaultdict(list)  # image -> (v, label, who)
    conflicts = 0
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert lines[0] == "READY" and lines[-1] == "DONE"
        for line in lines[1:-1]:
            step = json.loads(line)
            conflicts += len(step["conflicts"])
            for image_id, version, label in step["ack"]:
                acks[image_id].append((version, label, name))
    changes = sum(len(v) for v in acks.values())
    # thousands of label changes asked for (fixed by the seeds); how many of them meet a
    # change by the other labeler depends on how the two processes interleave
    assert changes + conflicts > 1000 and changes > 500, (changes, conflicts)
    assert conflicts > 0, "stale views met changes by the other labeler, and were told"
    with Project.open(pg_database_url) as project:
        rows = {r.id: r for r in project.images_by_ids(ids)}
    for image_id in ids:
        mine = sorted(acks.get(image_id, []))
        row = rows[image_id]
        # every acknowledged change is in the database, each exactly once: the versions
        # handed out are 1..n without a gap or a double (no lost update) ...
        assert [v for v, _, _ in mine] == list(range(1, row.label_version + 1)), image_id
        # ... and the last one acknowledged is what the image has now
        if mine:
            assert (row.label_id, row.labeled_by) == mine[-1][1:]


def test_server_killed_mid_labeling_then_restarted(pg_server: PgServer,
                                                    pg_database_url: str) -> None:
    with Project.create(pg_database_url) as setup:
        ids = add_rows(setup, 30)
        ok, ng = setup.add_class("ok"), setup.add_class("ng")
    project = Project.open(pg_database_url)
    queue = LabelQueue(project)
    want: dict[int, int] = {}
    try:
        for step in range(10):  # online: written at once
            image_id = ids[step]
            assert queue.set_labels([image_id], ok.id, who="alice") is not None
            want[image_id] = ok.id
        pg_server.kill()  # SIGKILL the postmaster mid-labeling
        for step in range(10, 25):
            image_id = ids[step]
            assert queue.set_labels([image_id], ng.id, who="alice",
                                    expected=Seen({image_id: 0})) is None, "queued"
            want[image_id] = ng.id
        state = queue.state()
        assert not state.online and state.waiting == 15
        assert state.message == "offline — 15 changes waiting"
        with pytest.raises(ServerUnreachable, match="cannot reach the database server"):
            project.counts()
        assert queue.flush().left == 15, "still down: nothing lost, nothing applied"
        crashed = queue.journal.with_name(queue.journal.name.replace(
            f"-{os.getpid()}.", "-999999."))
        queue.journal.rename(crashed)  # the labeling client (another pid) crashes offline ...
        del queue
        pg_server.start()
        again = LabelQueue(project)  # ... and a new one adopts the journal it left
        assert again.state().waiting == 15 and not crashed.exists()
        with Project.open(pg_database_url) as bob:  # bob labels one of them first
            bob.set_labels([ids[24]], ok.id, who="bob")
        result = again.flush()
        assert (result.left, again.state().online, again.state().waiting) == (0, True, 0)
        assert [c.image_id for c in result.conflicts] == [ids[24]], "told, not overwritten"
        assert not again.journal.exists()
        want[ids[24]] = ok.id
        rows = {r.id: r for r in project.images_by_ids(ids)}
        assert {i: rows[i].label_id for i in want} == want
        assert rows[ids[24]].labeled_by == "bob" and rows[ids[20]].labeled_by == "alice"
        assert queue_is_direct_again(again, ids[29], ok.id)
    finally:
        if not pg_server.running():
            pg_server.start()
        project.close()


def queue_is_direct_again(queue: LabelQueue, image_id: int, label: int) -> bool:
    change = queue.set_labels([image_id], label, who="alice")
    return change is not None and change.image_ids == [image_id]


def test_test_server_stops_when_the_run_that_started_it_dies(tmp_path: Path) -> None:
    """`make test` leaves no server running, even when pytest is killed (no atexit then)."""
    from tests import pg_server

    if pg_server.find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found")
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from tests import pg_server; "
            "s = pg_server.start(); print(s._proc.pid, s.root, flush=True); time.sleep(300)")
    run = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parents[2])],
                           stdout=subprocess.PIPE, text=True)
    try:
        pid_text, root = run.stdout.readline().split()
    finally:
        run.kill()  # SIGKILL: no atexit, no fixture teardown
        run.wait(30)
    postmaster = int(pid_text)
    deadline = time.monotonic() + 30
    while _alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(postmaster), "the postmaster outlived the process that started it"
    finally:
        if _alive(postmaster):
            os.kill(postmaster, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running (a zombie left for init to reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
