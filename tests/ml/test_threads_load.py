"""Issue 24, item 5: training keeps its share of a busy CPU. The thread count follows the
cores other programs leave free (measured, never assumed: the tests fake the measurement so
they do not depend on this computer's cores or load), and OpenMP waits passively."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densestudio.core.store import Project
from densestudio.ml import threads
from densestudio.ml.threads import CpuShare, threads_for


def test_threads_follow_the_free_cores() -> None:
    assert threads_for(cores=2, cap=2, others_busy=1.0) == 1  # one busy core: one thread
    assert threads_for(cores=2, cap=2, others_busy=0.3) == 2  # a GUI's bit of CPU: both
    assert threads_for(cores=16, cap=15, others_busy=0.0) == 15  # never above the cap
    assert threads_for(cores=16, cap=16, others_busy=3.6) == 12
    assert threads_for(cores=4, cap=4, others_busy=9.0) == 1  # at least one


def test_cpu_share_measures_other_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    # (all cores' busy seconds, this process's CPU seconds, wall clock)
    samples = iter([(100.0, 10.0, 0.0), (118.0, 18.0, 10.0), (136.0, 34.0, 20.0)])
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: next(samples))
    monkeypatch.setattr(threads, "cores_available", lambda: 2)
    share = CpuShare(cap=2)
    # 18 busy core-seconds in 10 s, 8 of them ours: another program kept one core busy
    assert share.others_busy() == pytest.approx(1.0)
    # 18 in 10 s, 16 ours: the other program stopped
    assert share.others_busy() == pytest.approx(0.2)


def test_cpu_share_without_proc_stat_uses_the_load_average(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: None)
    monkeypatch.setattr(threads, "cores_available", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    share = CpuShare(cap=4)
    assert share.threads(own_threads=2) == 3  # 3 running, 2 of them ours: 1 core taken


def test_apply_sets_torch_threads_and_training_restores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "cores_available", lambda: 1)
    try:
        share = CpuShare(cap=before)
        assert share.apply() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_fit_leaves_the_thread_count_as_it_found_it(
    tiny_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from densestudio.ml.train import fit
    from tests.ml.conftest import tiny_config

    before = torch.get_num_threads()
    calls: list[int] = []
    real = CpuShare.apply

    def spy(self: CpuShare) -> int:
        calls.append(real(self))
        return calls[-1]

    monkeypatch.setattr(CpuShare, "apply", spy)
    fit(tiny_project, tiny_config(epochs=2))
    assert len(calls) == 2  # before each epoch
    assert torch.get_num_threads() == before


def test_openmp_wait_policy_is_left_alone() -> None:
    """Passive waiting cost a third of the quiet speed and gained nothing beside a busy core
    once the threads follow the free cores (bench_load.py): importing DenseStudio must not
    set it."""
    code = "import densestudio, os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["unset"]


def test_only_the_cores_this_process_may_use_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container pinned to some cores, the host's other cores are not ours to share."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  900 0 0 100 0 0 0 0 0 0\n"
                    "cpu0 800 0 0 0 0 0 0 0 0 0\n"  # someone else's busy core
                    "cpu1 100 0 0 100 0 0 0 0 0 0\n"
                    "intr 1 2 3\n")
    monkeypatch.setattr(threads, "_PROC_STAT", str(stat))
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {1}, raising=False)
    busy, _own, _t = threads._cpu_seconds() or (None, None, None)
    assert busy == pytest.approx(100 / os.sysconf("SC_CLK_TCK"))
