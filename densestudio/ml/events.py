"""Events reported by training, evaluation and export (frozen dataclasses, safe across threads).

The GUI re-emits them as Qt signals; the CLI prints them. They carry ids and numbers only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from densestudio.core.progress import Progress


@dataclass(frozen=True)
class PreparingData(Progress):
    """Decoding/resizing images into the training cache (``done`` of ``total``)."""

    run_id: int | None
    done: int
    total: int
    from_disk_cache: int = 0


@dataclass(frozen=True)
class RunStarted:
    run_id: int
    total_epochs: int
    steps_per_epoch: int
    device: str
    n_train: int
    n_val: int
    start_epoch: int = 0  # > 0 when resuming


@dataclass(frozen=True)
class StartingPointChosen:
    """Where the run's weights start: "imagenet", "backbone" (DenseStudio's own, pretrained
    on generated images) or "scratch"; ``text`` says which and why (e.g. a refused file)."""

    run_id: int
    kind: str
    text: str


@dataclass(frozen=True)
class BatchProgress(Progress):
    run_id: int
    epoch: int  # 1-based
    step: int  # 1-based, within the epoch
    steps: int
    loss: float
    images_per_s: float
    eta_s: float | None  # whole remaining run


@dataclass(frozen=True)
class EpochEnded:
    run_id: int
    epoch: int  # 1-based
    train_loss: float
    val_loss: float | None
    val_acc: float | None
    val_macro_f1: float | None
    lr: float
    images_per_s: float
    seconds: float
    improved: bool = False
    val_balanced_acc: float | None = None
    monitor: str = "val_balanced_acc"  # the metric that picks the checkpoint
    monitor_value: float | None = None  # its value this epoch


@dataclass(frozen=True)
class EpochsPlanned:
    """A time budget (re)planned the run's length from its measured speed."""

    run_id: int
    epochs: int
    budget_s: float | None
    reason: str
    over_budget: bool = False  # the minimum useful run does not fit: it takes longer


@dataclass(frozen=True)
class CheckpointSaved:
    run_id: int
    epoch: int
    path: str
    best: bool


@dataclass(frozen=True)
class EvaluationProgress(Progress):
    run_id: int
    subset: str
    done: int
    total: int


@dataclass(frozen=True)
class RunFinished:
    run_id: int
    best_epoch: int | None
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False


@dataclass(frozen=True)
class RunCancelled:
    run_id: int
    epoch: int  # epochs completed (resume continues after this one)


@dataclass(frozen=True)
class ImagesSkipped:
    """Images of the snapshot that could not be read (moved, deleted, corrupt): the run
    goes on without them; missing files are flagged in the project."""

    run_id: int
    count: int
    examples: tuple[str, ...]  # "name: reason" for the first few


@dataclass(frozen=True)
class ImagesChanged:
    """Labeled images whose file changed since they were labeled (see
    ``core.file_changes``): their labels are marked for review and this run leaves them out."""

    count: int
    examples: tuple[str, ...]  # paths of the first few


@dataclass(frozen=True)
class RunFailed:
    run_id: int
    message: str


@dataclass(frozen=True)
class WeightsDownload(Progress):
    """Pretrained weights download progress (bytes)."""

    filename: str
    done: int
    total: int | None
