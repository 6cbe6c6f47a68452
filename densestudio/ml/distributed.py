"""One training run in several processes: torchrun + DistributedDataParallel (DDP).

``torchrun --nproc-per-node N $(which densestudio) train PROJECT ...`` starts N processes
and sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; ``joined`` (used by the
CLI) makes them one process group - NCCL for tensors on GPUs (process LOCAL_RANK uses
cuda:LOCAL_RANK), Gloo for tensors on the CPU - and the engine asks ``current()`` for its
``World``. A single process is a world of size 1 where every method is a no-op, so plain
training runs exactly the code it always ran.

What the processes agree on, and how:

- The run: rank 0 (the main process) creates or resumes the run row and tells the others
  its id (``announce_run`` / ``run_id_from_main``); only rank 0 writes to the project:
  checkpoints, metric rows, status, predictions. A run started this way is an ordinary
  run in the project, listed live by the GUI.
- Batches: ``batch_size`` is the *global* batch. Every process computes the same seeded
  order of the epoch and the same steps; at each step process r trains on the r-th part
  of the batch one process would take (``shard``), and DDP averages the gradients (each
  part's loss is weighted by its share, so an uneven split is still the batch's mean).
  Steps per epoch, schedule and time budget are those of one process with that batch.
- Augmentation: every process draws the random parameters of the whole batch and applies
  its part's (``data.BatchPart``), so the images are augmented as in one process.
- BatchNorm: SyncBatchNorm on GPUs (statistics of the whole batch, as in one process).
  torch has no SyncBatchNorm for CPU tensors: with Gloo each process normalizes with its
  own part's statistics, so a CPU run matches one process within a tolerance only.
- Validation runs on rank 0, exactly as in one process, and its result is broadcast so
  that every process takes the same early-stopping and best-checkpoint decisions; the
  time-budget planner's epochs are rank 0's (broadcast). The final evaluation is rank 0's.
- Cancel: Ctrl-C (or SIGINT to any process) stops every process at the same step: the
  cancel flag is all-reduced once per step. A killed job resumes like a crashed run:
  ``--resume RUN`` under torchrun again (rank 0 reads ``last.pt`` and broadcasts it, so
  only rank 0 needs to see the run folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.distributed as dist

from densestudio.core.errors import CancelledError
from densestudio.core.progress import CancelToken
from densestudio.ml.data import BatchPart
from densestudio.ml.steps import TrainingError

if TYPE_CHECKING:
    from densestudio.ml.steps import StepParts

T = TypeVar("T")
# Collectives wait this long for a slow process (rank 0 validating a large set, a slow
# shared disk) before the job fails; torch's defaults (10-30 min) are short for decoding.
TIMEOUT = timedelta(hours=2)


def _broadcast(obj: object) -> object:
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank ``rank`` of ``size`` processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------ small collectives
    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` (pickled), in every process."""
        return obj if self.size == 1 else _broadcast(obj)  # type: ignore[return-value]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over the processes."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return tuple(float(v) for v in t)

    def any(self, flag: bool) -> bool:
        """True in every process if it is True in any."""
        return flag if self.size == 1 else self.sum(float(flag))[0] > 0

    # ------------------------------------------------------------ the run
    def announce_run(self, run_id: int | None, error: str | None = None) -> None:
        """Rank 0: tell the others which run to train (or why there is none)."""
        global _announced
        if self.size > 1 and self.is_main and not _announced:
            self.broadcast((run_id, error))
            _announced = True

    def run_id_from_main(self) -> int:
        """The others: the run rank 0 created or resumed."""
        run_id, error = self.broadcast((None, None))
        if run_id is None:
            raise TrainingError(f"The main process (rank 0) could not start the run: {error}")
        return int(run_id)

    def on_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` on rank 0 only; every process gets its result (or its failure:
        a cancel there cancels everywhere)."""
        if self.size == 1:
            return compute()
        if not self.is_main:
            kind, value = self.broadcast((None, None))
        else:
            try:
                value = compute()
            except CancelledError as exc:
                self.broadcast(("cancelled", str(exc)))
                raise
            except BaseException as exc:
                self.broadcast(("failed", f"{type(exc).__name__}: {exc}"))
                raise
            kind, value = self.broadcast(("ok", value))
        if kind == "cancelled":
            raise CancelledError(value)
        if kind == "failed":
            raise TrainingError(f"The main process (rank 0) failed: {value}")
        return value  # type: ignore[return-value]

    def agreed(self, cancel: CancelToken) -> CancelToken:
        """A cancel token that every process sees cancelled at the same check."""
        return cancel if self.size == 1 else _AgreedCancel(self, cancel)

    # ------------------------------------------------------------ training
    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, BatchPart | None]:
        """This process's part of a batch (indices into the training set).

        Parts are contiguous and differ in size by at most one. A short last batch that
        cannot give every process 2 images (batch norm needs 2) gives each process 2,
        wrapping around: those few images count twice in that one step."""
        if self.size == 1:
            return idx, None
        total = int(idx.numel())
        positions = torch.tensor_split(torch.arange(total), self.size)[self.rank]
        if positions.numel() < 2:
            positions = (2 * self.rank + torch.arange(2)) % total
        weight = positions.numel() * self.size / total
        return idx[positions], BatchPart(positions, total, weight)

    def wrap(self, parts: StepParts) -> None:
        """Train ``parts.model`` through DDP (SyncBatchNorm on GPUs). The model object,
        its parameters (the optimizer's) and its state-dict keys stay the same."""
        if self.size == 1:
            return
        from torch.nn.parallel import DistributedDataParallel

        model = parts.model
        cuda = parts.device.type == "cuda"
        if cuda:
            # swaps the children in place (unannotated in torch)
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
        cfg = parts.cfg
        parts.forward = DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if cuda else None,
            find_unused_parameters=cfg.starts_pretrained and cfg.strategy != "full",
        )  # fmt: skip


class _AgreedCancel(CancelToken):
    def __init__(self, world: World, local: CancelToken) -> None:
        super().__init__()
        self.world, self.local = world, local

    @property
    def cancelled(self) -> bool:
        return self.world.any(self.local.cancelled)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise CancelledError("Cancelled by the user.")


SINGLE = World()
_announced = False  # rank 0 has told the others its run (once per process: one run each)


def current() -> World:
    """This process's world: the torchrun job's once ``joined``, else a single process."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return World(dist.get_rank(), dist.get_world_size(), local)
    return SINGLE


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextmanager
def joined() -> Iterator[World]:
    """Join the torchrun job this process belongs to (if any) for the duration, and leave
    it cleanly: rank 0 failing before it announced a run tells the others why."""
    if not launched_by_torchrun() or dist.is_initialized():
        yield current()
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "cpu:gloo,cuda:nccl" if cuda and dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    world = current()
    try:
        yield world
    except BaseException as exc:
        world.announce_run(None, str(exc) or type(exc).__name__)  # if not done yet
        raise
    finally:
        dist.destroy_process_group()
