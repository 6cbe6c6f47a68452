"""The job runner every background job of the GUI goes through, and the settings the app's
background training runs under."""

from __future__ import annotations

import gc
import threading

import torch
from pytestqt.qtbot import QtBot

from densestudio.core.errors import DenseStudioError
from densestudio.core.progress import CancelToken, EventCallback, Progress
from densestudio.ui.jobs import background_training
from densestudio.ui.workers import JobRunner, Worker


def test_background_training_keeps_the_gui_thread_free() -> None:
    """A full garbage collection mid-run walks every object while holding the GIL (150-200
    ms with torch, Qt and SQLAlchemy loaded): the GUI froze once per run. The objects alive
    when a run starts are taken out of the collector's passes; torch gets all cores but one
    and its previous thread count back afterwards."""
    from densestudio.ml.threads import wait_for_warm_up

    wait_for_warm_up()  # (it freezes too, at the end of the start-up imports)
    gc.unfreeze()
    before = torch.get_num_threads()
    try:
        with background_training(threads=1, nice=0):
            assert gc.get_freeze_count() > 100_000
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == before
    finally:
        gc.unfreeze()


# ------------------------------------------------------------------ the job runner
def _wait_for(gate: threading.Event, *, on_event: EventCallback, cancel: CancelToken) -> int:
    """A job that reports progress until ``gate`` opens or it is cancelled."""
    while not gate.wait(0.01):
        on_event(Progress())
        cancel.raise_if_cancelled()
    return 42


def _refuse(*, on_event: EventCallback, cancel: CancelToken) -> int:
    raise DenseStudioError("Not now.")


def test_one_job_per_owner_with_a_typed_result(qtbot: QtBot) -> None:
    errors: list[tuple[str, str]] = []
    runner = JobRunner(lambda t, m: errors.append((t, m)))
    owner, other = object(), object()
    gate = threading.Event()
    first: Worker[int] = Worker(_wait_for, gate)
    results: list[int] = []
    first.on_result(results.append)
    events: list[object] = []
    first.event.connect(events.append)
    assert runner.start(first, owner)
    assert runner.busy(owner) and runner.job_of(owner) is first and not runner.busy(other)
    second = Worker(_wait_for, gate)
    assert not runner.start(second, owner)  # refused: the owner's first job still runs
    assert not second.running
    assert runner.start(Worker(_wait_for, gate), other)  # another owner may
    qtbot.waitUntil(lambda: len(events) > 0)
    with qtbot.waitSignal(first.done, timeout=10_000):
        gate.set()
    assert results == [42] and isinstance(events[0], Progress)
    qtbot.waitUntil(lambda: not runner.running)
    assert not runner.busy(owner) and not runner.busy(other) and errors == []


def test_a_failure_goes_to_the_error_dialog_unless_the_owner_shows_it(qtbot: QtBot) -> None:
    errors: list[tuple[str, str]] = []
    runner = JobRunner(lambda t, m: errors.append((t, m)))
    worker = Worker(_refuse)
    with qtbot.waitSignal(worker.done, timeout=10_000):
        runner.start(worker, error_title="Cannot check")
    assert errors == [("Cannot check", "Not now.")]
    own = Worker(_refuse)
    shown: list[str] = []
    own.failed.connect(shown.append)
    with qtbot.waitSignal(own.done, timeout=10_000):
        runner.start(own, error_title=None)
    assert shown == ["Not now."] and len(errors) == 1


def test_cancel_all_stops_and_waits_for_every_job(qtbot: QtBot) -> None:
    """What a closing project and the quitting app do: no job outlives them."""
    runner = JobRunner(lambda t, m: None)
    gate = threading.Event()  # never opened: only cancelling ends the jobs
    jobs = [Worker(_wait_for, gate) for _ in range(3)]
    cancelled: list[Worker[int]] = []
    for i, job in enumerate(jobs):
        job.cancelled.connect(lambda job=job: cancelled.append(job))
        runner.start(job, owner=i)
    assert len(runner.running) == 3
    assert runner.cancel_all(wait_ms=10_000)
    assert all(not job._thread.is_alive() for job in jobs)
    qtbot.waitUntil(lambda: not runner.running and len(cancelled) == 3)


def test_cancel_one_owner_leaves_the_others_running(qtbot: QtBot) -> None:
    runner = JobRunner(lambda t, m: None)
    gate = threading.Event()
    a, b = Worker(_wait_for, gate), Worker(_wait_for, gate)
    runner.start(a, "a")
    runner.start(b, "b")
    with qtbot.waitSignal(a.cancelled, timeout=10_000):
        runner.cancel("a")
    assert runner.busy("b")
    with qtbot.waitSignal(b.done, timeout=10_000):
        gate.set()


def test_an_owner_may_start_its_next_job_when_the_last_one_is_done(qtbot: QtBot) -> None:
    """A queue (the heatmap service) starts its next job from the last one's ``done``."""
    runner = JobRunner(lambda t, m: None)
    gate = threading.Event()
    gate.set()
    started: list[bool] = []
    first = Worker(_wait_for, gate)
    second = Worker(_wait_for, gate)
    first.done.connect(lambda: started.append(runner.start(second, "queue")))
    runner.start(first, "queue")
    qtbot.waitUntil(lambda: started == [True], timeout=10_000)
    qtbot.waitUntil(lambda: not runner.busy("queue"), timeout=10_000)
