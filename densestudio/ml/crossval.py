"""Label audit: out-of-sample probabilities by k-fold cross-training, ranked for label errors.

``cross_validate(project, k, config, on_event, cancel)`` splits ALL labeled images (whatever
their train/val/test split) into ``k`` class-stratified folds, trains a small model from
scratch on k - 1 folds and predicts the held-out fold, so every image gets class
probabilities from a model that never saw it. ``label_errors.rank_label_issues`` then ranks
the images by how likely their label is wrong (confident learning).

It reuses the training engine's pieces (decode-once cache, model builder, batched
augmentation, AdamW + one-cycle/cosine schedule, EMA, flip TTA); ``train_on_tensors`` is the
bare loop without run rows, validation or checkpoints. ``fit`` is not involved.

The result is stored in the project so the view survives restarts: a Run row named
"label audit" whose config has ``kind = "label_audit"`` (so training-run lists skip it), the
label snapshot as RunImage rows, one Prediction row per image with subset "oos", and the
images a user confirmed as correctly labeled in the run's ``extra["confirmed"]``. A new audit
replaces the previous one and keeps its confirmations of labels that have not changed since.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import torch
from torch import nn

from densestudio.core import history, queries, runs
from densestudio.core.errors import DenseStudioError
from densestudio.core.file_changes import check_files
from densestudio.core.profile import GRAY_MODES
from densestudio.core.progress import CancelToken, EventCallback, Progress, ignore_event
from densestudio.core.store import Project
from densestudio.ml import data as D
from densestudio.ml import zoo
from densestudio.ml.config import COMPACT_ARCHS, TrainConfig
from densestudio.ml.events import PreparingData
from densestudio.ml.label_errors import (
    ClassCheck,
    LabelIssue,
    check_notes,
    class_checks,
    rank_label_issues,
)
from densestudio.ml.runtime import adamw, amp_dtype, predict_probs, resolve_device
from densestudio.ml.steps import (
    input_mode,
    make_step_parts,
    optimization_step,
    place_model,
    steps_per_epoch,
)

AUDIT_KIND = runs.AUDIT_KIND
AUDIT_NAME = "label audit"
OOS = "oos"
DEFAULT_FOLDS = 5
MAX_FOLDS = 20


class AuditError(DenseStudioError):
    """The label audit cannot run; the message says why and what to do."""


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class AuditStarted:
    run_id: int
    n_images: int
    folds: int
    epochs: int
    device: str


@dataclass(frozen=True)
class AuditProgress(Progress):
    """One optimizer step of one fold (a ``Progress``: the GUI thins them out)."""

    run_id: int
    fold: int  # 1-based
    folds: int
    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based, within the epoch
    steps: int
    eta_s: float | None  # whole remaining audit


@dataclass(frozen=True)
class FoldEnded:
    run_id: int
    fold: int  # 1-based
    folds: int
    held_out: int
    accuracy: float  # of the held-out fold against the given labels
    seconds: float


@dataclass(frozen=True)
class AuditFinished:
    run_id: int
    n_images: int
    n_suspects: int
    oos_accuracy: float
    seconds: float


# ------------------------------------------------------------------ result
@dataclass(frozen=True, eq=False)
class LabelAudit:
    """A finished audit: the snapshot, out-of-sample probabilities and the ranking."""

    run_id: int
    created_at: datetime | None
    class_names: tuple[str, ...]
    image_ids: tuple[int, ...]
    labels: tuple[int, ...]  # given class index at audit time
    probs: np.ndarray  # N x K out-of-sample probabilities
    issues: tuple[LabelIssue, ...]  # every image, most suspicious first (index -> image_ids)
    folds: int
    config: dict[str, Any] = field(default_factory=dict)
    confirmed: frozenset[int] = frozenset()  # image ids the user said are labeled right
    checks: tuple[ClassCheck, ...] = ()  # per class: can its suggestions be trusted?

    @property
    def oos_accuracy(self) -> float:
        if not self.image_ids:
            return 0.0
        return float(np.mean(self.probs.argmax(1) == np.asarray(self.labels)))

    def image_id(self, issue: LabelIssue) -> int:
        return self.image_ids[issue.index]

    def suspects(self, include_confirmed: bool = False) -> list[LabelIssue]:
        """Images whose label looks wrong: flagged by confident learning (another class
        reaches its own per-class threshold and beats the given one) first, then those the
        model prefers another class for, within the guards of ``label_errors`` (none for a
        class the model barely predicts, at most a third of a class). Most suspicious
        first."""
        return [
            i for i in self.issues
            if i.suspect and (include_confirmed or self.image_ids[i.index] not in self.confirmed)
        ]  # fmt: skip

    def notes(self) -> list[str]:
        """Warnings to show with the suspects (unreliable classes, capped classes)."""
        return check_notes(list(self.checks), self.class_names)


# ------------------------------------------------------------------ settings
def audit_config(n_images: int, device: str = "cpu") -> TrainConfig:
    """Small, fast per-fold models: the tiny compact DenseNet-BC from scratch at 64 px.

    Epochs scale so a fold gets ~400 optimizer steps (fewer for big data sets, at least 6
    epochs, at most 30); NEU (1800 images, 5 folds) takes a few minutes on 2 CPU cores.
    """
    gpu = device in ("cuda", "mps")
    n_train = max(1, int(n_images * 0.8))
    batch = max(8, min(64 if gpu else 32, n_train // 4))  # small projects: a few steps/epoch
    spe = max(1, -(-n_train // batch))
    epochs = int(min(30, max(6, round(400 / spe))))
    return TrainConfig(
        arch="densenet_bc_tiny", img_size=64, epochs=epochs, batch_size=batch, lr=3e-3,
        weight_decay=0.05, label_smoothing=0.1, schedule="onecycle", augment="inspection",
        ema=True, tta=True, device="auto", name=AUDIT_NAME,
    )  # fmt: skip


TRAIN_IMAGES_PER_S = 125.0  # densenet_bc_tiny at 128 px, one CPU thread (measured)


def estimate_seconds(n_images: int, k: int, cfg: TrainConfig, threads: int = 1,
                     previous: runs.RunInfo | None = None) -> float:
    """Rough duration of an audit before it starts: k folds x epochs x the training images
    of a fold, plus predicting every image once. The speed comes from the previous audit of
    this project when there is one (scaled to the image size), else from the measured speed
    of the tiny model on a CPU thread (GPU: 10x). Convolutions cost ~ pixels, so speed goes
    with (128 / img_size)^2."""
    def work(n: int, folds: int, epochs: int) -> float:  # images through the model
        return folds * epochs * n * (folds - 1) / folds + n

    if previous is not None and previous.metrics.get("seconds"):
        m, c = previous.metrics, previous.config
        done = work(int(m.get("n_images", n_images)), int(m.get("folds", c.get("folds", k))),
                    int(c.get("epochs", cfg.epochs)))
        size = int(c.get("img_size", cfg.img_size))
        speed = done / float(m["seconds"]) * (size / cfg.img_size) ** 2
    else:
        device = resolve_device(cfg.device).type
        speed = TRAIN_IMAGES_PER_S * max(1, threads) * (128 / cfg.img_size) ** 2
        if device != "cpu":
            speed *= 10
    return work(n_images, k, cfg.epochs) / max(speed, 1e-6)


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) per item; each class is spread evenly over the folds."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)  # small classes do not all start in fold 0
    return folds


# ------------------------------------------------------------------ training
def train_on_tensors(
    x: D.Pixels | torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    num_classes: int,
    device: torch.device,
    on_step: Callable[[int, int, int], None] | None = None,  # (epoch, step, steps)
    cancel: CancelToken | None = None,
) -> nn.Module:
    """Train a compact model from scratch on uint8 ``x`` (N x C x H x W) and labels ``y``
    with the engine's recipe (augmentation, AdamW, schedule, label smoothing, EMA); no
    validation, run rows or checkpoints. Returns the model to predict with (EMA if on), in
    eval mode on ``device``."""
    torch.manual_seed(cfg.seed)
    mean, std = D.channel_stats(x)
    model = zoo.build_model(cfg.arch, num_classes, int(x.shape[1]), mean=mean, std=std)
    use_cl = place_model(model, cfg, device)
    opt = adamw(list(model.parameters()), device, cfg.lr, cfg.weight_decay)
    n = int(y.numel())
    spe = steps_per_epoch(n, cfg.batch_size)
    parts = make_step_parts(model, opt, cfg, device, use_cl, y, num_classes)
    for epoch in range(cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = D.epoch_order(y, cfg.balance, g)
        for step in range(spe):
            if cancel is not None:
                cancel.raise_if_cancelled()
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            optimization_step(parts, x[idx], y[idx], g, "while training a fold")
            if on_step is not None:
                on_step(epoch + 1, step + 1, spe)
    out = parts.ema.module if parts.ema is not None else model
    return out.eval()


# ------------------------------------------------------------------ the audit
def _labeled_rows(project: Project) -> tuple[list[str], list[tuple[int, int, str, str, str, str]]]:
    """Classes that have labeled images, and (id, class index, split, path, hash, mode)."""
    classes = project.classes()
    rows = queries.labeled_present_images(project)
    used = {r[1] for r in rows}
    kept = [c for c in classes if c.id in used]
    index = {c.id: i for i, c in enumerate(kept)}
    return [c.name for c in kept], [
        (i, index[lab], sp or "", path, h, mode) for i, lab, sp, path, h, mode in rows
    ]


def check_auditable(project: Project, k: int = DEFAULT_FOLDS) -> list[str]:
    """Problems that stop an audit (empty list = ready)."""
    if not 2 <= k <= MAX_FOLDS:
        return [f"The number of folds must be between 2 and {MAX_FOLDS} (got {k})."]
    names, rows = _labeled_rows(project)
    if len(names) < 2:
        return [f"A label audit needs labeled images of at least 2 classes; this project has "
                f"{len(names)}."]
    if len(rows) < 2 * k:
        return [f"A label audit with {k} folds needs at least {2 * k} labeled images "
                f"(there are {len(rows)}). Label more images or use fewer folds."]
    return []


def cross_validate(
    project: Project,
    k: int = DEFAULT_FOLDS,
    config: TrainConfig | None = None,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
) -> LabelAudit:
    """Run a label audit (see the module docstring) and return its ranking.

    ``config`` defaults to ``audit_config``; it must use a compact architecture (trained from
    scratch). A cancelled or failed audit leaves nothing behind.
    """
    cancel = cancel or CancelToken()
    problems = check_auditable(project, k)
    if problems:
        raise AuditError(" ".join(problems))
    check_files(project)  # a file replaced since it was labeled stays out (as in train)
    names, rows = _labeled_rows(project)
    cfg = (config or audit_config(len(rows), resolve_device("auto").type)).validate()
    if cfg.uses_pretrained or cfg.arch not in COMPACT_ARCHS:
        raise AuditError(
            "The label audit trains small models from scratch; choose a compact architecture "
            f"({', '.join(COMPACT_ARCHS)})."
        )
    device = resolve_device(cfg.device)
    config_json = json.dumps({**json.loads(cfg.to_json()), "kind": AUDIT_KIND, "folds": k},
                             sort_keys=True)
    previous = list_audits(project)
    run_id = runs.create_run(
        project, name=AUDIT_NAME, config_json=config_json, class_names=names,
        snapshot=[(r[0], r[1], r[2]) for r in rows], device=str(device),
        extra={"confirmed": _carried_confirmations(project, previous, names, rows)},
    )  # fmt: skip
    try:
        audit = _audit(project, run_id, k, cfg, names, rows, device, on_event, cancel)
    except BaseException:
        runs.delete_run(project, run_id)  # a partial audit has no value
        raise
    for old in previous:  # superseded (their confirmations were carried over)
        runs.delete_run(project, old.id)
    return audit


def _carried_confirmations(
    project: Project, previous: list[runs.RunInfo], names: list[str],
    rows: list[tuple[int, int, str, str, str, str]],
) -> list[int]:
    """Images confirmed in the newest earlier audit whose label has not changed since."""
    if not previous:
        return []
    old = previous[0]
    confirmed = {int(i) for i in old.extra.get("confirmed", [])}
    if not confirmed:
        return []
    then = {r.image_id: old.class_names[r.class_index] for r in runs.run_images(project, old.id)
            if r.image_id in confirmed and r.class_index < len(old.class_names)}
    now = {r[0]: names[r[1]] for r in rows}
    return sorted(i for i, name in then.items() if now.get(i) == name)


def _audit(
    project: Project,
    run_id: int,
    k: int,
    cfg: TrainConfig,
    names: list[str],
    rows: list[tuple[int, int, str, str, str, str]],
    device: torch.device,
    on_event: EventCallback,
    cancel: CancelToken,
) -> LabelAudit:
    t_start = time.perf_counter()
    gray = all(r[5] in GRAY_MODES for r in rows)
    mode = input_mode(cfg, gray)
    items = [D.CacheItem(r[0], r[3], r[4]) for r in rows]

    def progress(done: int, total: int, from_disk: int) -> None:
        on_event(PreparingData(run_id, done, total, from_disk))

    pixels, failures = D.DecodedCache(project.cache_dir).load(
        items, cfg.preprocessing(mode), progress, cancel
    )
    bad = {f.image_id for f in failures}
    keep = [i for i, r in enumerate(rows) if r[0] not in bad]
    if len(keep) < 2 * k:
        raise AuditError(f"Only {len(keep)} images could be read; the audit needs {2 * k}.")
    pixels = pixels.take(keep)
    rows = [rows[i] for i in keep]
    labels = np.array([r[1] for r in rows], dtype=np.int64)
    y_all = torch.from_numpy(labels)
    n, num_classes = len(rows), len(names)
    folds = stratified_folds(labels, k, cfg.seed)
    on_event(AuditStarted(run_id, n, k, cfg.epochs, str(device)))

    spes = [steps_per_epoch(int((folds != f).sum()), cfg.batch_size) for f in range(k)]
    total_steps = sum(spes) * cfg.epochs
    done_steps = 0
    t_train = time.perf_counter()
    probs = np.zeros((n, num_classes), dtype=np.float32)
    dtype = amp_dtype(device, cfg.amp)
    views = D.tta_views(cfg.augment) if cfg.tta else 1
    for f in range(k):
        t_fold = time.perf_counter()
        train_idx = torch.from_numpy(np.flatnonzero(folds != f))
        held_idx = np.flatnonzero(folds == f)

        def on_step(epoch: int, step: int, steps: int, f: int = f) -> None:
            nonlocal done_steps
            done_steps += 1
            elapsed = time.perf_counter() - t_train
            eta = elapsed / done_steps * (total_steps - done_steps)
            on_event(AuditProgress(run_id, f + 1, k, epoch, cfg.epochs, step, steps, eta))

        model = train_on_tensors(
            pixels.take(train_idx), y_all[train_idx], cfg.with_(seed=cfg.seed + f), num_classes,
            device, on_step, cancel,
        )  # fmt: skip
        p = predict_probs(
            zoo.ProbabilityModel(model, views), pixels.take(held_idx), device,
            dtype=dtype, channels_last=cfg.channels_last and device.type != "mps",
            cancel=cancel,
        )  # fmt: skip
        probs[held_idx] = p.numpy()
        acc = float(np.mean(p.numpy().argmax(1) == labels[held_idx])) if len(held_idx) else 0.0
        on_event(FoldEnded(run_id, f + 1, k, len(held_idx), acc, time.perf_counter() - t_fold))
        del model
    cancel.raise_if_cancelled()

    pred = probs.argmax(1)
    conf = probs[np.arange(n), pred]
    loss = -np.log(np.clip(probs[np.arange(n), labels], 1e-12, None))
    runs.save_predictions(project, run_id, OOS, [
        runs.PredictionInfo(rows[i][0], OOS, int(labels[i]), int(pred[i]), float(conf[i]),
                            float(loss[i]), probs[i])
        for i in range(n)
    ])  # fmt: skip
    audit = _make_audit(run_id, None, names, [r[0] for r in rows], labels, probs, k,
                        runs.get_run(project, run_id).config, frozenset())
    seconds = time.perf_counter() - t_start
    metrics = {
        "oos_accuracy": audit.oos_accuracy, "n_images": n, "folds": k,
        "n_suspects": len(audit.suspects()), "n_unreadable": len(bad), "seconds": seconds,
    }  # fmt: skip
    runs.update_run(project, run_id, status="finished", metrics=metrics, finished=True,
                    epochs_done=cfg.epochs)
    on_event(AuditFinished(run_id, n, len(audit.suspects()), audit.oos_accuracy, seconds))
    return load_audit(project, run_id) or audit


def _make_audit(
    run_id: int,
    created_at: datetime | None,
    names: list[str] | tuple[str, ...],
    image_ids: list[int],
    labels: np.ndarray,
    probs: np.ndarray,
    folds: int,
    config: dict[str, Any],
    confirmed: frozenset[int],
) -> LabelAudit:
    issues = tuple(rank_label_issues(probs, labels)) if len(image_ids) else ()
    checks = tuple(class_checks(probs, labels, list(issues))) if len(image_ids) else ()
    return LabelAudit(
        run_id=run_id, created_at=created_at, class_names=tuple(names),
        image_ids=tuple(int(i) for i in image_ids), labels=tuple(int(v) for v in labels),
        probs=probs, issues=issues, folds=folds, config=config, confirmed=confirmed,
        checks=checks,
    )  # fmt: skip


# ------------------------------------------------------------------ stored audits
def list_audits(project: Project) -> list[runs.RunInfo]:
    """Finished label audits, newest first."""
    return [r for r in runs.list_runs(project, kind=AUDIT_KIND) if r.status == "finished"]


def load_audit(project: Project, run_id: int | None = None) -> LabelAudit | None:
    """A stored audit (default: the newest finished one), or None when there is none."""
    if run_id is None:
        audits = list_audits(project)
        if not audits:
            return None
        info = audits[0]
    else:
        info = runs.get_run(project, run_id)
        if info.kind != AUDIT_KIND:
            raise AuditError(f"Run {run_id} is not a label audit.")
    preds = runs.predictions(project, info.id, OOS)
    k = len(info.class_names)
    preds = [p for p in preds if p.true_index is not None and len(p.probs) == k]
    probs = (np.stack([p.probs for p in preds]).astype(np.float32) if preds
             else np.zeros((0, k), dtype=np.float32))
    labels = np.array([p.true_index for p in preds], dtype=np.int64)
    confirmed = frozenset(int(i) for i in info.extra.get("confirmed", []))
    return _make_audit(info.id, info.created_at, info.class_names,
                       [p.image_id for p in preds], labels, probs,
                       int(info.config.get("folds", 0)), info.config, confirmed)


def set_confirmed(
    project: Project, run_id: int, image_ids: list[int], confirmed: bool = True
) -> frozenset[int]:
    """Record (or, with ``confirmed=False``, forget) that these images are labeled right."""
    info = runs.get_run(project, run_id)
    current = {int(i) for i in info.extra.get("confirmed", [])}
    if confirmed:
        current.update(int(i) for i in image_ids)
    else:
        current.difference_update(int(i) for i in image_ids)
    runs.update_run(project, run_id, extra={**info.extra, "confirmed": sorted(current)})
    history.record_confirmations(project, image_ids, confirmed)
    return frozenset(current)


__all__ = [
    "AUDIT_KIND", "AuditError", "AuditFinished", "AuditProgress", "AuditStarted", "FoldEnded",
    "LabelAudit", "audit_config", "check_auditable", "cross_validate", "estimate_seconds",
    "list_audits",
    "load_audit", "set_confirmed", "stratified_folds", "train_on_tensors",
]  # fmt: skip
