"""How many CPU threads torch may use while an interactive app stays responsive.

torch's intra-op pool defaults to one thread per core. When every core is busy (the GUI
thread, another program) OpenMP threads that wait for a core spin, and a step can become
hundreds of times slower. A desktop app therefore trains with one core left free.
``set_num_threads`` is process-wide, so ``limited_threads`` restores the previous value.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import threading
import time
from collections.abc import Iterator

import torch


def interactive_threads(cores: int | None = None) -> int:
    """Threads for background training/inference in a GUI: all cores but one (at least 1)."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            cores = os.cpu_count() or 1
    return max(1, int(cores) - 1)


@contextlib.contextmanager
def limited_threads(n: int | None = None) -> Iterator[int]:
    """Run a block with ``n`` torch threads (default: ``interactive_threads()``)."""
    n = interactive_threads() if n is None else max(1, int(n))
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def lower_thread_priority(increment: int = 5) -> bool:
    """Lower the calling thread's CPU priority (Linux: per-thread nice), so a busy machine
    keeps serving the GUI thread first. Returns False where this is not supported."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
        return True
    except (AttributeError, OSError):  # not Linux/BSD, or not permitted
        return False


_warm_up: threading.Thread | None = None


def freeze_long_lived_objects() -> None:
    """Take every object alive now out of Python's cyclic garbage collector (gc.freeze).

    With torch, Qt and SQLAlchemy loaded the heap holds millions of objects, and a full
    (generation 2) collection walks all of them while holding the GIL: 150-200 ms in
    whichever thread happens to allocate. In the app that was a GUI freeze once per training
    run (found with gc.callbacks in tests/benchmarks/bench_train_gui.py). Afterwards,
    collections only walk objects created since. O(1); the price is that cyclic garbage
    alive at this moment is never reclaimed, which is small at the call sites (after the
    start-up imports, and when a background training run starts).
    """
    gc.freeze()


def _warm_up_torch() -> None:
    # The first optimizer construction imports torch._dynamo, sympy, triton, ... (~900
    # modules, >1 s). Some of those imports hold the GIL for 100+ ms at a time, which would
    # freeze the GUI thread if it happened inside a training run.
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], fused=True)  # as ml.runtime.adamw on the CPU
    param.sum().backward()  # type: ignore[no-untyped-call]  # unannotated in torch
    opt.step()
    freeze_long_lived_objects()


def start_warm_up() -> threading.Thread:
    """Do torch's lazy one-time imports in a background thread, once per process."""
    global _warm_up
    if _warm_up is None:
        _warm_up = threading.Thread(target=_warm_up_torch, name="torch-warm-up", daemon=True)
        _warm_up.start()
    return _warm_up


def wait_for_warm_up() -> None:
    """Called by workers before training: the lazy imports are done (or done now)."""
    start_warm_up().join()


# ------------------------------------------------------------------ a busy computer
# torch's OpenMP pool assumes every core is its own. Beside a program that keeps one core
# busy, a 2-thread step waits for the slower thread at every parallel region (27 images/s
# against 61 with 1 thread on a 2-core CPU, issue 24). So training measures how many cores
# other programs keep busy, at the start and after each epoch, and uses the rest.
_PROC_STAT = "/proc/stat"


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(busy seconds of the cores this process may run on, this process's CPU seconds,
    monotonic time), or None where /proc/stat is not readable (not Linux). Only the cores
    of the affinity mask count: in a container pinned to 2 of 64 cores the other 62 are
    someone else's business."""
    try:
        with open(_PROC_STAT, encoding="ascii") as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
    except OSError:
        return None
    try:
        mine = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (AttributeError, OSError):
        mine = set()
    rows = [row for row in lines if row[0] in mine] or lines[:1]  # else the "cpu" total
    busy = 0
    for row in rows:
        ticks = [int(v) for v in row[1:9]]
        busy += sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    t = os.times()
    return busy / hz, t.user + t.system, time.monotonic()


def cores_available() -> int:
    """Cores this process may run on (its affinity mask, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def threads_for(cores: int, cap: int, others_busy: float) -> int:
    """Threads for the training step: the cores other programs leave free (a core counts
    as taken from 0.5 busy on), at most ``cap``, at least 1."""
    taken = math.floor(max(0.0, others_busy) + 0.5)
    return max(1, min(cap, cores - taken))


class CpuShare:
    """How many cores other programs kept busy since the last look, and so how many threads
    training should use. Linux reads /proc/stat (all cores' busy time minus this process's
    own CPU time); elsewhere the 1-minute load average stands in, less this process's
    threads while it trains."""

    def __init__(self, cap: int | None = None) -> None:
        self.cores = cores_available()
        self.cap = max(1, cap if cap is not None else torch.get_num_threads())
        self._last = _cpu_seconds()

    def others_busy(self, own_threads: int = 0) -> float:
        """Cores busy with other programs since the previous call (or since creation)."""
        now = _cpu_seconds()
        last, self._last = self._last, now
        if now is not None and last is not None and now[2] - last[2] > 0.05:
            busy, own, wall = (a - b for a, b in zip(now, last, strict=True))
            return max(0.0, (busy - own) / wall)
        try:
            return max(0.0, os.getloadavg()[0] - own_threads)
        except (AttributeError, OSError):
            return 0.0

    def threads(self, own_threads: int = 0) -> int:
        return threads_for(self.cores, self.cap, self.others_busy(own_threads))

    def apply(self) -> int:
        """Set torch's thread count to what the computer leaves free now; returns it."""
        n = self.threads(torch.get_num_threads())
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        return n

