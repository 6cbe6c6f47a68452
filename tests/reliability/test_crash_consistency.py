"""SIGKILL at random moments during import, labeling and training; nothing acknowledged may
be lost, and an interrupted training run resumes from its last checkpoint.

Each kill point starts a child process doing real work through the store, waits until it
has acknowledged a random number of steps (plus a random sub-step delay, so kills also land
inside transactions), kills it with SIGKILL and then checks the project: SQLite
integrity_check is "ok", it opens, and every acknowledged change is there, all-or-nothing.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from densestudio.core.importer import ImportOptions, run_import
from densestudio.core.store import Project
from densestudio.core.thumbnails import ThumbnailCache
from tests.core.bad_files import make_class_folders
from tests.reliability.crash_child import label_ops

CHILD = Path(__file__).with_name("crash_child.py")
KILLS_IMPORT = 20
KILLS_LABEL = 25
KILLS_TRAIN = 8
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def run_and_kill(args: list[str], kill_after_acks: int, extra_delay_s: float) -> list[str]:
    """Start the child, kill it after it printed ``kill_after_acks`` ACK lines."""
    proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: list[str] = []
    acks = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("ACK"):
            acks += 1
            if acks >= kill_after_acks:
                break
        if line.startswith("DONE"):
            break
    if extra_delay_s:
        time.sleep(extra_delay_s)  # lands the kill at an arbitrary point of the next step
    os.kill(proc.pid, signal.SIGKILL)
    rest, err = proc.communicate(timeout=60)
    lines.extend(x.strip() for x in rest.splitlines())
    assert "Traceback" not in err, err
    return lines


def integrity_ok(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def test_sigkill_during_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_class_folders(tmp_path / "data", classes=("a", "b", "c"), per_class=40,
                              size=(48, 48))
    rng = random.Random(1)
    survived = 0
    for point in range(KILLS_IMPORT):
        path = tmp_path / f"import{point}.dsproj"
        Project.create(path).close()
        run_and_kill(["import", str(path), str(data)], rng.randint(1, 110), rng.random() * 0.02)
        integrity_ok(path)
        with Project.open(path) as project:
            thumbs = ThumbnailCache(project.cache_dir)
            rows = project.page(limit=1000)
            for row in rows:  # no partial rows: complete, labeled, split, with a thumbnail
                assert row.width == 48 and row.height == 48 and row.content_hash
                assert row.label_id is not None and row.split is not None
                assert thumbs.get_or_make(row) is not None
            report = run_import(project, [data], ImportOptions(labels_from_subfolders=True))
            assert report.already_in_project == len(rows)
            assert project.count_images() == 120, "re-running the import completes it"
            thumbs.close()
        survived += 1
    print(f"import: survived {survived}/{KILLS_IMPORT} kill points")
    assert survived == KILLS_IMPORT


def test_sigkill_during_bulk_labeling(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", classes=("a", "b", "c"), per_class=30,
                              size=(16, 16))
    base = tmp_path / "base.dsproj"
    with Project.create(base) as project:
        run_import(project, [data], ImportOptions(labels_from_subfolders=True))
    rng = random.Random(2)
    survived, lost = 0, 0
    for point in range(KILLS_LABEL):
        path = tmp_path / f"label{point}.dsproj"
        src = sqlite3.connect(base)
        dst = sqlite3.connect(path)
        src.backup(dst)
        src.close()
        dst.close()
        with Project.open(path) as project:
            ids = project.image_ids()
            classes = [c.id for c in project.classes()]
            start = {r.id: r.label_id for r in project.page(limit=1000)}
        seed, n_ops = 100 + point, 60
        lines = run_and_kill(["label", str(path), str(seed), str(n_ops)],
                             rng.randint(1, n_ops), rng.random() * 0.01)
        acked = [int(x.split()[1]) for x in lines if x.startswith("ACK")]
        last = max(acked) if acked else -1
        ops = list(label_ops(seed, n_ops, ids, classes))
        expected_states = []
        state = dict(start)
        for n, (op_ids, label) in enumerate(ops):
            for i in op_ids:
                state[i] = label
            if n >= last:
                expected_states.append(dict(state))
            if n == last + 1:
                break
        if last == -1:
            expected_states.insert(0, dict(start))
        integrity_ok(path)
        with Project.open(path) as project:
            actual = {r.id: r.label_id for r in project.page(limit=1000)}
        # exactly the acknowledged ops, plus possibly the one in flight, applied whole
        if actual not in expected_states:
            lost += sum(actual[i] != expected_states[0][i] for i in actual)
        else:
            survived += 1
    print(f"labeling: survived {survived}/{KILLS_LABEL} kill points, labels lost: {lost}")
    assert lost == 0 and survived == KILLS_LABEL


def test_sigkill_during_training_then_resume(tmp_path: Path) -> None:
    from densestudio.core import runs

    data = make_class_folders(tmp_path / "data", classes=("dark", "bright"), per_class=12,
                              size=(32, 32))
    base = tmp_path / "base.dsproj"
    with Project.create(base) as project:
        run_import(project, [data], ImportOptions(labels_from_subfolders=True))
    rng = random.Random(3)
    survived = 0
    for point in range(KILLS_TRAIN):
        path = tmp_path / f"train{point}.dsproj"
        src, dst = sqlite3.connect(base), sqlite3.connect(path)
        src.backup(dst)
        src.close()
        dst.close()
        # kill somewhere between the first batches and the last checkpoint (2 batches/epoch)
        lines = run_and_kill(["train", str(path)], rng.randint(1, 16), rng.random() * 0.05)
        run_ids = [int(x.split()[1]) for x in lines if x.startswith("RUN ")]
        integrity_ok(path)
        with Project.open(path) as project:
            assert project.count_images() == 24
            if not run_ids:  # killed while preparing: nothing to resume, project intact
                survived += 1
                continue
            info = runs.get_run(project, run_ids[0])
            done_before = info.epochs_done
            assert info.status in ("running", "finished")
            if info.status == "finished":
                survived += 1
                continue
            assert info.interrupted and info.resumable, "the killed process is seen to be gone"
        out = subprocess.run([sys.executable, str(CHILD), "train", str(path), str(run_ids[0])],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "DONE" in out.stdout
        with Project.open(path) as project:
            info = runs.get_run(project, run_ids[0])
            assert info.status == "finished" and info.epochs_done == 6
            epochs = [m.epoch for m in runs.epoch_metrics(project, run_ids[0])]
            assert epochs == list(range(1, 7)), "every epoch recorded exactly once"
            if done_before:
                started = [x for x in out.stdout.splitlines() if x.startswith("ACK")]
                assert started, "the resumed run continued"
        survived += 1
    print(f"training: survived {survived}/{KILLS_TRAIN} kill points (all resumed)")
    assert survived == KILLS_TRAIN
