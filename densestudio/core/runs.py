"""Training runs as values: runs, their label snapshot, per-epoch metrics and predictions.

Functions over the Run / RunImage / EpochMetric / Prediction tables that return frozen
dataclasses (never ORM objects). The ml layer writes through these too, so every change is
one transaction.

Checkpoints live in a folder beside the project file, ``<project file>-runs/<run id>/``
(not in the regenerable ``-cache`` folder: deleting caches must never lose a trained model).
Their paths are stored relative to the project file's folder (absolute only when outside
it) and come back from here absolute, so no reader depends on the working directory.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, or_, select, update

from densestudio.core.constants import SOURCE_CHANGED
from densestudio.core.errors import ProjectError
from densestudio.core.models import (
    EpochMetric,
    Image,
    Prediction,
    Run,
    RunImage,
    table_of,
    utcnow,
)
from densestudio.core.store import Project

RUN_STATUSES = ("created", "running", "finished", "cancelled", "failed")
SUBSETS = ("train", "val", "test", "unlabeled", "oos")  # oos: label audit (out-of-sample)
TRAIN_KIND = "train"
AUDIT_KIND = "label_audit"  # config["kind"] of a label audit (ml.crossval)
OWNER_KEY = "owner"  # extra["owner"]: host, boot and pid of the process training the run
LIVE_KEY = "live_metric"  # extra["live_metric"]: the checkpoint metric of the best epoch so far


def owner_here() -> dict[str, Any]:
    """What ``extra["owner"]`` holds while this process trains a run."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot": _boot_id()}


@functools.cache  # fixed for the life of the process; the runs list asks on every poll
def _boot_id() -> str | None:
    """Changes at every restart of the computer (Linux): after a power cut the pid of the
    run's process may belong to another program, the boot id tells that it is gone."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists (another user's) or cannot be told: do not call it gone
    return True


@dataclass(frozen=True)
class RunInfo:
    id: int
    name: str
    created_at: datetime
    finished_at: datetime | None
    status: str
    config: dict[str, Any]
    class_names: tuple[str, ...]
    metrics: dict[str, Any]
    best_epoch: int | None
    best_score: float | None
    epochs_done: int
    checkpoint_best: str | None  # absolute
    checkpoint_last: str | None  # absolute
    error: str | None
    device: str | None
    extra: dict[str, Any]

    @property
    def kind(self) -> str:
        """"train" for training runs, "label_audit" for label audits (ml.crossval)."""
        return str(self.config.get("kind", TRAIN_KIND))

    @property
    def planned_epochs(self) -> int:
        """Epochs the run will train: its time budget's plan, else the configured ones."""
        return int(self.extra.get("planned_epochs") or self.config.get("epochs", 0))

    @property
    def resumable(self) -> bool:
        return self.status in ("cancelled", "failed", "running") and (
            self.epochs_done < self.planned_epochs
        )

    @property
    def interrupted(self) -> bool:
        """Marked running, but the process that trains it on this computer is gone (killed,
        crashed, power cut): it will never finish by itself and can be resumed. A run trained
        on another computer (a shared project) cannot be checked and counts as running."""
        owner = self.extra.get(OWNER_KEY)
        if self.status != "running" or not isinstance(owner, dict):
            return False
        if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
            return False
        boot = _boot_id()
        if owner.get("boot") and boot and owner["boot"] != boot:
            return True  # the computer restarted since
        return not _process_alive(owner["pid"])

    @property
    def shown_status(self) -> str:
        """The status to show a person: "interrupted" instead of a running that never ends."""
        return "interrupted" if self.interrupted else self.status


@dataclass(frozen=True)
class EpochMetricInfo:
    epoch: int
    train_loss: float
    val_loss: float | None
    val_acc: float | None
    val_macro_f1: float | None
    lr: float
    images_per_s: float
    seconds: float


@dataclass(frozen=True)
class RunImageInfo:
    image_id: int
    class_index: int
    split: str


@dataclass(frozen=True)
class SnapshotRow:
    """One image of a run's snapshot with what training needs to read it."""

    image_id: int
    class_index: int
    split: str
    path: str
    content_hash: str
    mode: str


@dataclass(frozen=True)
class PredictionInfo:
    image_id: int
    subset: str
    true_index: int | None
    pred_index: int
    confidence: float
    loss: float | None
    probs: np.ndarray  # float32, one per class name of the run

    def __hash__(self) -> int:  # ndarray is unhashable; ids identify a prediction
        return hash((self.image_id, self.subset))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PredictionInfo)
            and (self.image_id, self.subset, self.true_index, self.pred_index)
            == (other.image_id, other.subset, other.true_index, other.pred_index)
            and np.array_equal(self.probs, other.probs)
        )


def runs_dir(project: Project) -> Path:
    return project.runs_dir


def run_dir(project: Project, run_id: int) -> Path:
    return runs_dir(project) / str(run_id)


def _run_info(r: Run, project: Project) -> RunInfo:
    def resolved(stored: str | None) -> str | None:
        """The checkpoint's path; in this project's runs folder when the stored one is gone
        and names an old one (the project file and runs folder were renamed together)."""
        if not stored:
            return None
        path = project.resolve_path(stored)
        here = run_dir(project, r.id) / path.name
        if path != here and path.parent.name == str(r.id) and not path.exists():
            return str(here)
        return str(path)

    return RunInfo(
        id=r.id, name=r.name, created_at=r.created_at, finished_at=r.finished_at,
        status=r.status, config=json.loads(r.config_json or "{}"),
        class_names=tuple(json.loads(r.class_names_json or "[]")),
        metrics=json.loads(r.metrics_json or "{}"), best_epoch=r.best_epoch,
        best_score=r.best_score, epochs_done=r.epochs_done,
        checkpoint_best=resolved(r.checkpoint_best), checkpoint_last=resolved(r.checkpoint_last),
        error=r.error, device=r.device, extra=json.loads(r.extra_json or "{}"),
    )


# ------------------------------------------------------------------ runs
def list_runs(project: Project, kind: str | None = TRAIN_KIND) -> list[RunInfo]:
    """Runs of this kind (default: training runs; None: every run), newest first."""
    with project.session() as s:
        infos = [_run_info(r, project) for r in s.scalars(select(Run).order_by(Run.id.desc()))]
    return [i for i in infos if kind is None or i.kind == kind]


def get_run(project: Project, run_id: int) -> RunInfo:
    with project.session() as s:
        row = s.get(Run, run_id)
        if row is None:
            raise ProjectError(f"No run with id {run_id} in this project.")
        return _run_info(row, project)


def latest_run(
    project: Project, status: str | None = "finished", kind: str | None = TRAIN_KIND
) -> RunInfo | None:
    with project.session() as s:
        stmt = select(Run).order_by(Run.id.desc())
        if status is not None:
            stmt = stmt.where(Run.status == status)
        for row in s.scalars(stmt):
            info = _run_info(row, project)
            if kind is None or info.kind == kind:
                return info
        return None


def run_class_names(project: Project, run_id: int) -> list[str]:
    return list(get_run(project, run_id).class_names)


def create_run(
    project: Project,
    *,
    name: str,
    config_json: str,
    class_names: Sequence[str],
    snapshot: Sequence[tuple[int, int, str]],
    device: str | None = None,
    extra: dict[str, Any] | None = None,
) -> int:
    """A new run with its label snapshot ``(image_id, class_index, split)``, one transaction."""
    with project.transaction() as s:
        row = Run(
            name=name, status="running", config_json=config_json,
            class_names_json=json.dumps(list(class_names)), device=device,
            extra_json=json.dumps(extra or {}),
        )
        s.add(row)
        s.flush()
        run_id = row.id
        rows = [
            {"run_id": run_id, "image_id": i, "class_index": c, "split": sp}
            for i, c, sp in snapshot
        ]
        for start in range(0, len(rows), 5000):
            s.execute(table_of(RunImage).insert(), rows[start : start + 5000])
    return run_id


_UPDATABLE = {
    "name", "status", "finished_at", "best_epoch", "best_score", "epochs_done",
    "checkpoint_best", "checkpoint_last", "error", "device",
}  # fmt: skip


def update_run(
    project: Project,
    run_id: int,
    *,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    epoch_metric: EpochMetricInfo | None = None,
    finished: bool = False,
    **fields: object,
) -> None:
    """Change run columns (and optionally add an epoch's metrics) in one transaction."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    values = dict(fields)
    for key in ("checkpoint_best", "checkpoint_last"):
        if values.get(key):
            values[key] = project.stored_path(str(values[key]))
    if metrics is not None:
        values["metrics_json"] = json.dumps(metrics)
    if extra is not None:
        values["extra_json"] = json.dumps(extra)
    if finished:
        values["finished_at"] = utcnow()
    with project.transaction() as s:
        if values:
            s.execute(update(Run).where(Run.id == run_id).values(**values))
        if epoch_metric is not None:
            s.execute(
                delete(EpochMetric).where(
                    EpochMetric.run_id == run_id, EpochMetric.epoch == epoch_metric.epoch
                )
            )
            s.add(EpochMetric(run_id=run_id, **epoch_metric.__dict__))


def update_run_extra(project: Project, run_id: int, **changes: object) -> dict[str, Any]:
    """Set keys of the run's ``extra`` JSON (run-scoped settings) in one transaction; a value
    of None removes the key. Returns the new ``extra`` dict."""
    with project.transaction() as s:
        row = s.get(Run, run_id)
        if row is None:
            raise ProjectError(f"No run with id {run_id} in this project.")
        extra: dict[str, Any] = json.loads(row.extra_json or "{}")
        for key, value in changes.items():
            if value is None:
                extra.pop(key, None)
            else:
                extra[key] = value
        row.extra_json = json.dumps(extra)
    return extra


def rename_run(project: Project, run_id: int, name: str) -> None:
    update_run(project, run_id, name=name.strip())


def delete_run(project: Project, run_id: int) -> None:
    """Delete a run, its rows (cascade) and its checkpoint files."""
    info = get_run(project, run_id)
    with project.transaction() as s:
        for table in (Prediction, EpochMetric, RunImage):
            s.execute(delete(table).where(table.run_id == run_id))
        s.execute(delete(Run).where(Run.id == run_id))
    for p in (info.checkpoint_best, info.checkpoint_last):
        if p:
            Path(p).unlink(missing_ok=True)
    folder = run_dir(project, run_id)
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ snapshot and metrics
def drop_run_images(project: Project, run_id: int, image_ids: Sequence[int]) -> None:
    """Remove images from a run's snapshot (e.g. files that could not be read)."""
    ids = list(image_ids)
    with project.transaction() as s:
        for start in range(0, len(ids), 5000):
            s.execute(delete(RunImage).where(RunImage.run_id == run_id,
                                             RunImage.image_id.in_(ids[start : start + 5000])))


def current_label_rows(project: Project) -> tuple[list[str], list[tuple[int, int, str]]]:
    """Class names and ``(image_id, class_index, split)`` of every labeled, split, present
    image whose file did not change since it was labeled: what a new run's snapshot holds."""
    classes = project.classes()
    index = {c.id: i for i, c in enumerate(classes)}
    with project.session() as s:
        rows = s.execute(
            select(Image.id, Image.label_id, Image.split)
            .where(Image.label_id.is_not(None), Image.split.is_not(None), Image.missing.is_(False),
                   or_(Image.label_source.is_(None), Image.label_source != SOURCE_CHANGED))
            .order_by(Image.id)
        )
        # The query excludes NULL labels and splits, which mypy cannot see.
        return [c.name for c in classes], [(i, index[lab], sp) for i, lab, sp in rows]  # type: ignore[misc, index]


def snapshot_rows(project: Project, run_id: int) -> list[SnapshotRow]:
    """The run's snapshot joined with each image's path, content hash and mode."""
    with project.session() as s:
        rows = s.execute(
            select(
                RunImage.image_id, RunImage.class_index, RunImage.split,
                Image.path, Image.content_hash, Image.mode,
            )
            .join(Image, Image.id == RunImage.image_id)
            .where(RunImage.run_id == run_id)
            .order_by(RunImage.image_id)
        )
        return [SnapshotRow(*r) for r in rows]


def run_images(project: Project, run_id: int, split: str | None = None) -> list[RunImageInfo]:
    with project.session() as s:
        stmt = select(RunImage.image_id, RunImage.class_index, RunImage.split).where(
            RunImage.run_id == run_id
        )
        if split is not None:
            stmt = stmt.where(RunImage.split == split)
        return [RunImageInfo(*r) for r in s.execute(stmt.order_by(RunImage.image_id))]


def epoch_metrics(project: Project, run_id: int) -> list[EpochMetricInfo]:
    with project.session() as s:
        rows = s.scalars(
            select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch)
        )
        return [
            EpochMetricInfo(
                r.epoch, r.train_loss, r.val_loss, r.val_acc, r.val_macro_f1, r.lr,
                r.images_per_s, r.seconds,
            )
            for r in rows
        ]


def delete_epoch_metrics_after(project: Project, run_id: int, epoch: int) -> None:
    """Drop metrics of epochs after ``epoch`` (a resumed run redoes them)."""
    with project.transaction() as s:
        s.execute(
            delete(EpochMetric).where(EpochMetric.run_id == run_id, EpochMetric.epoch > epoch)
        )


# ------------------------------------------------------------------ predictions
def save_predictions(
    project: Project, run_id: int, subset: str, predictions: Sequence[PredictionInfo]
) -> None:
    """Replace the run's predictions for these images (one transaction)."""
    if subset not in SUBSETS:
        raise ProjectError(f"Unknown subset '{subset}'.")
    ids = [p.image_id for p in predictions]
    with project.transaction() as s:
        for start in range(0, len(ids), 5000):
            s.execute(
                delete(Prediction).where(
                    Prediction.run_id == run_id, Prediction.image_id.in_(ids[start : start + 5000])
                )
            )
        rows = [
            {
                "run_id": run_id, "image_id": p.image_id, "subset": subset,
                "true_index": p.true_index, "pred_index": p.pred_index,
                "confidence": float(p.confidence),
                "loss": None if p.loss is None else float(p.loss),
                "probs": np.asarray(p.probs, dtype=np.float32).tobytes(),
            }
            for p in predictions
        ]
        for start in range(0, len(rows), 5000):
            s.execute(table_of(Prediction).insert(), rows[start : start + 5000])


def predictions(
    project: Project, run_id: int, subset: str | None = None
) -> list[PredictionInfo]:
    with project.session() as s:
        stmt = select(
            Prediction.image_id, Prediction.subset, Prediction.true_index, Prediction.pred_index,
            Prediction.confidence, Prediction.loss, Prediction.probs,
        ).where(Prediction.run_id == run_id)
        if subset is not None:
            stmt = stmt.where(Prediction.subset == subset)
        return [
            PredictionInfo(i, sub, t, p, c, lo, np.frombuffer(pr, dtype=np.float32).copy())
            for i, sub, t, p, c, lo, pr in s.execute(stmt.order_by(Prediction.image_id))
        ]


def prediction_count(project: Project, run_id: int, subset: str | None = None) -> int:
    with project.session() as s:
        stmt = select(func.count()).select_from(Prediction).where(Prediction.run_id == run_id)
        if subset is not None:
            stmt = stmt.where(Prediction.subset == subset)
        return s.scalar(stmt) or 0


def confusion_cell_images(
    project: Project,
    run_id: int,
    subset: str,
    true_index: int,
    pred_index: int,
    descending: bool = True,
) -> list[int]:
    """Image ids in one confusion-matrix cell, most confident prediction first."""
    with project.session() as s:
        order = Prediction.confidence.desc() if descending else Prediction.confidence
        return list(
            s.scalars(
                select(Prediction.image_id)
                .where(
                    Prediction.run_id == run_id,
                    Prediction.subset == subset,
                    Prediction.true_index == true_index,
                    Prediction.pred_index == pred_index,
                )
                .order_by(order, Prediction.image_id)
            )
        )


def top_losses(project: Project, run_id: int, subset: str, limit: int = 50) -> list[int]:
    """Image ids with the highest loss (likely label errors or hard cases) first."""
    with project.session() as s:
        return list(
            s.scalars(
                select(Prediction.image_id)
                .where(
                    Prediction.run_id == run_id,
                    Prediction.subset == subset,
                    Prediction.loss.is_not(None),
                )
                .order_by(Prediction.loss.desc(), Prediction.image_id)
                .limit(limit)
            )
        )
