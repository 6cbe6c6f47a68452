"""Training: ``fit(project, config, on_event, cancel)`` -> run id.

Flow, like torchvision's references/classification/train.py: ``fit`` checks, creates the
run (label/split snapshot: relabeling during training cannot change the run) and calls
``_train``, which prepares the data (decode-once uint8 cache, ``_prepare_data``), builds or
restores the model and optimizer (``_build``), then loops ``train_one_epoch`` ->
``validate`` -> ``_save_epoch`` (metrics row, atomic "last" and "best" checkpoints) with
early stopping and an optional time budget (``ml.budget``), and finally predicts val and
test with the best weights (``_finish``).

The checkpoint format lives in ``ml.checkpoint``, the optimization step in ``ml.steps``.
A cancelled or crashed run resumes from ``last.pt`` with ``fit(..., resume_run_id=id)``:
it repeats the interrupted epoch exactly (batch order and augmentation are seeded per epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from densestudio.core import runs
from densestudio.core.errors import CancelledError, DenseStudioError
from densestudio.core.file_changes import check_files, marked_for_review
from densestudio.core.preprocess import Preprocessing
from densestudio.core.progress import CancelToken, EventCallback, ignore_event
from densestudio.core.store import Project
from densestudio.ml import backbone, distributed, zoo
from densestudio.ml import data as D
from densestudio.ml import operating_point as op
from densestudio.ml.budget import CALIBRATION_STEPS, EpochPlanner
from densestudio.ml.checkpoint import (
    CHECKPOINT_FORMAT,
    check_owner,
    cpu_state,
    load_checkpoint,
    model_from_meta,
    model_meta,
    owner_meta,
)
from densestudio.ml.config import TrainConfig
from densestudio.ml.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    EpochsPlanned,
    ImagesChanged,
    ImagesSkipped,
    PreparingData,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
    StartingPointChosen,
)
from densestudio.ml.metrics import Scores, confusion_matrix, scores
from densestudio.ml.runtime import (
    adamw,
    atomic_save,
    is_out_of_memory,
    predict_probs,
    resolve_device,
)
from densestudio.ml.snapshot import Snapshot, load_snapshot
from densestudio.ml.steps import (
    StepParts,
    TrainingError,
    input_mode,
    make_step_parts,
    non_finite_loss,
    optimization_step,
    place_model,
    steps_per_epoch,
)
from densestudio.ml.threads import CpuShare

__all__ = ["TrainingError", "check_trainable", "fit"]

EXTEND_WITHIN = 2  # epochs before the planned end at which a still improving run may extend


# ------------------------------------------------------------------ preflight
def check_trainable(project: Project) -> list[str]:
    """Problems that stop training (empty list = ready). Shown by the GUI before starting."""
    classes = project.classes()
    counts = project.counts()
    problems: list[str] = []
    if len(classes) < 2:
        problems.append(
            f"Training needs at least 2 classes; this project has {len(classes)}. "
            "Add classes and label some images."
        )
        return problems
    for c in classes:
        n_train = counts.count(c.id, "train")
        if n_train == 0:
            total = counts.count(c.id)
            problems.append(
                f"Class '{c.name}' has no training images"
                + (f" ({total} labeled, none in the train split)." if total else ".")
                + " Label more images of it, re-split, or delete the class."
            )
    n_val = sum(counts.count(c.id, "val") for c in classes)
    if n_val == 0:
        problems.append(
            "There are no validation images. Label more images or re-split with a "
            "validation share (e.g. 0.7/0.15/0.15)."
        )
    return problems


# ------------------------------------------------------------------ fit
def fit(
    project: Project,
    config: TrainConfig | None = None,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    resume_run_id: int | None = None,
    *,
    allow_download: bool = True,
    opener: Callable[..., Any] | None = None,  # urlopen for weight downloads (tests stub it)
) -> int:
    """Train (or resume) a run; returns its id. See the module docstring."""
    cancel = cancel or CancelToken()
    started = time.perf_counter()
    world = distributed.current()  # under torchrun: the others train the run rank 0 starts
    if not world.is_main:
        resume_run_id = world.run_id_from_main()
    if resume_run_id is not None:
        info = runs.get_run(project, resume_run_id)
        if info.status == "finished":
            raise TrainingError(f"Run {resume_run_id} already finished; start a new run.")
        cfg = TrainConfig.from_json(info.config).validate()
        run_id = resume_run_id
        if world.is_main:
            runs.update_run(project, run_id, status="running", error=None)
            runs.update_run_extra(project, run_id, **{runs.OWNER_KEY: runs.owner_here()})
    else:
        if config is None:
            raise TrainingError("No training configuration given.")
        if config.good_class is None:  # the project's good class decides OK/NG at the end
            config = config.with_(good_class=op.project_good_class(project).name)
        cfg = config.validate()
        problems = check_trainable(project)
        if problems:
            raise TrainingError(" ".join(problems))
        device = resolve_device(cfg.device)  # fail before creating a run row
        weights_file = _weights_file(cfg, allow_download, opener, on_event)
        if weights_file is not None:  # a damaged or unfitting file fails before a run exists
            zoo.build_model(cfg.arch, 2, weights_file=weights_file)
        cfg, start = starting_point(cfg, weights_file)
        check_files(project)  # before the snapshot: changed files stay out of it
        review = marked_for_review(project)
        if review:
            on_event(ImagesChanged(len(review), tuple(review[:5])))
        names, rows = runs.current_label_rows(project)
        run_id = runs.create_run(
            project, name=cfg.name or f"{cfg.arch} {cfg.img_size}px",
            config_json=cfg.to_json(), class_names=names, snapshot=rows, device=str(device),
            extra={"weights_file": str(weights_file) if weights_file else None,
                   "starting_point": start.kind, "starting_point_text": start.text,
                   runs.OWNER_KEY: runs.owner_here()},
        )  # fmt: skip
        on_event(StartingPointChosen(run_id, start.kind, start.text))
    world.announce_run(run_id)
    try:
        snap = load_snapshot(project, run_id)
        return _train(project, run_id, cfg, snap, on_event, cancel, started,
                      allow_download, opener)  # fmt: skip
    except CancelledError:
        info = runs.get_run(project, run_id)
        if world.is_main:
            runs.update_run(project, run_id, status="cancelled")
        on_event(RunCancelled(run_id, info.epochs_done))
        return run_id
    except BaseException as exc:
        message = _failure_message(exc, cfg)
        try:
            if world.is_main:
                runs.update_run(project, run_id, status="failed", error=message)
        finally:
            on_event(RunFailed(run_id, message))
        if isinstance(exc, (KeyboardInterrupt, DenseStudioError)):
            raise
        raise TrainingError(message) from exc


def _failure_message(exc: BaseException, cfg: TrainConfig) -> str:
    if is_out_of_memory(exc):
        w, h = cfg.canvas
        return (
            f"Out of memory while training {cfg.arch} at {w} x {h} px with batch size "
            f"{cfg.batch_size}. Try a smaller batch size or image size"
            + (", or turn on memory-efficient mode." if not cfg.memory_efficient else ".")
        )
    if isinstance(exc, DenseStudioError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted."
    return f"Training failed: {type(exc).__name__}: {exc}"


def _weights_file(
    cfg: TrainConfig, allow_download: bool, opener: Callable[..., Any] | None,
    on_event: EventCallback,
) -> Path | None:
    if not cfg.uses_pretrained:
        return None
    return zoo.resolve_weights(cfg.arch, cfg.weights_path, allow_download=allow_download,
                               opener=opener, on_progress=on_event)  # fmt: skip


def starting_point(
    cfg: TrainConfig, weights_file: Path | None
) -> tuple[TrainConfig, backbone.StartingPoint]:
    """The run's starting weights and why. A shipped backbone that cannot be used (missing,
    damaged, altered) is reported and the run trains from scratch instead of failing."""
    if weights_file is not None:
        return cfg, backbone.StartingPoint(
            "imagenet", f"Starting from ImageNet weights ({weights_file.name}).")
    if cfg.backbone:
        problem = backbone.check()
        if problem is None:
            return cfg, backbone.StartingPoint(
                "backbone", "Starting from DenseStudio's backbone (pretrained on generated "
                "textures and defects; no ImageNet weights on this computer).")
        scratch = cfg.with_(backbone=False, strategy="full").unfreeze_within_epochs()
        return scratch, backbone.StartingPoint(
            "scratch", f"{problem} Training from scratch (random weights) instead.")
    return cfg, backbone.StartingPoint("scratch", "Starting from random weights (from scratch).")


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class RunData:
    """The run's decoded pixels and labels, split into the parts training uses."""

    snap: Snapshot
    prep: Preprocessing
    pixels: D.Pixels  # uint8 N x C x H x W, snapshot order, read from the cache per batch
    x_train: D.Pixels
    y_train: torch.Tensor
    x_val: D.Pixels
    y_val: torch.Tensor


def _prepare_data(
    project: Project, run_id: int, cfg: TrainConfig, snap: Snapshot,
    on_event: EventCallback, cancel: CancelToken,
) -> RunData:
    prep = cfg.preprocessing(input_mode(cfg, snap.gray))

    def progress(done: int, total: int, from_disk: int) -> None:
        on_event(PreparingData(run_id, done, total, from_disk))

    world = distributed.current()
    pixels, failures = D.DecodedCache(project.cache_dir).load(
        snap.items, prep, progress, cancel, share=(world.rank, world.size)
    )
    if world.any(bool(failures)):
        pixels, snap = _skip_unreadable(project, run_id, snap, pixels, failures, on_event)
    labels = torch.tensor(snap.labels, dtype=torch.long)
    tr = torch.tensor(snap.indices("train"), dtype=torch.long)
    va = torch.tensor(snap.indices("val"), dtype=torch.long)
    if tr.numel() < 2 or va.numel() == 0:
        raise TrainingError("The run needs at least 2 training images and 1 validation image.")
    empty = [n for c, n in enumerate(snap.class_names) if not (labels[tr] == c).any()]
    if empty:
        raise TrainingError(f"No readable training image left for: {', '.join(empty)}.")
    return RunData(snap, prep, pixels, pixels.take(tr), labels[tr], pixels.take(va), labels[va])


def _skip_unreadable(
    project: Project, run_id: int, snap: Snapshot, pixels: D.Pixels,
    failures: list[D.DecodeFailure], on_event: EventCallback,
) -> tuple[D.Pixels, Snapshot]:
    """Drop images that could not be read from the run (with a warning), flag vanished
    files as missing in the project, and return the remaining pixels and snapshot."""
    bad = {f.image_id for f in failures}
    world = distributed.current()
    if world.is_main:
        runs.drop_run_images(project, run_id, sorted(bad))
        project.flag_missing([f.image_id for f in failures if not Path(f.path).exists()])
    world.barrier()  # every process reads the snapshot rank 0 has just reduced
    examples = tuple(f"{Path(f.path).name}: {f.reason}" for f in failures[:5])
    on_event(ImagesSkipped(run_id, len(failures), examples))
    reduced = load_snapshot(project, run_id)
    kept = set(reduced.image_ids)
    keep = [i for i, item in enumerate(snap.items) if item.image_id in kept]
    return pixels.take(keep), reduced


# ------------------------------------------------------------------ model and state
@dataclass
class TrainState:
    """What changes from epoch to epoch and is saved in ``last.pt``."""

    epoch: int = 0  # epochs done
    planned_epochs: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0


def _build(
    cfg: TrainConfig, data: RunData, device: torch.device, ckpt: dict[str, Any] | None,
    weights_file: Path | None,
) -> tuple[StepParts, dict[str, Any], TrainState]:
    """Model, optimizer, schedule, EMA: fresh, or restored from the last checkpoint."""
    k = len(data.snap.class_names)
    if ckpt is not None:
        model = model_from_meta(ckpt["meta"])
    else:
        mean, std = ((zoo.IMAGENET_MEAN, zoo.IMAGENET_STD) if weights_file is not None
                     else D.channel_stats(data.x_train))  # fmt: skip
        model = zoo.build_model(cfg.arch, k, data.prep.channels, mean=mean, std=std,
                                weights_file=weights_file)  # fmt: skip
        if cfg.backbone:
            backbone.apply(model, backbone.load())
    meta = model_meta(cfg, data.snap.class_names, data.prep.mode, model)
    use_cl = place_model(model, cfg, device)
    bb_lr = cfg.lr * (cfg.backbone_lr_mult if cfg.starts_pretrained else 1.0)
    opt = adamw(
        [{"params": model.head_parameters(), "lr": cfg.lr},
         {"params": model.backbone_parameters(), "lr": bb_lr}],
        device, cfg.lr, cfg.weight_decay,
    )  # fmt: skip
    parts = make_step_parts(model, opt, cfg, device, use_cl, data.y_train, k)
    state = TrainState(planned_epochs=cfg.epochs)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        parts.sched.load_state_dict(ckpt["scheduler"])
        if parts.scaler is not None and ckpt.get("scaler"):
            parts.scaler.load_state_dict(ckpt["scaler"])
        if parts.ema is not None and ckpt.get("ema"):
            parts.ema.load_state_dict(ckpt["ema"])
        state = TrainState(
            epoch=int(ckpt["epoch"]),
            planned_epochs=int(ckpt.get("planned_epochs") or cfg.epochs),
            best_score=ckpt.get("best_score"), best_epoch=ckpt.get("best_epoch"),
            bad_epochs=int(ckpt.get("bad_epochs", 0)),
        )  # fmt: skip
        torch.set_rng_state(ckpt["rng_cpu"])
    return parts, meta, state


# ------------------------------------------------------------------ epochs
def train_one_epoch(
    parts: StepParts, data: RunData, epoch: int, cancel: CancelToken,
    on_step: Callable[[int, float, float], None],
) -> tuple[float, int, float]:
    """One pass over the training images (seeded order and augmentation per epoch).
    Returns (mean loss, images seen, seconds). ``on_step(step, loss, seconds so far)``."""
    cfg = parts.cfg
    parts.model.set_backbone_trainable(not (  # type: ignore[operator]
        cfg.strategy == "head" or (cfg.strategy == "head_then_full" and epoch < cfg.unfreeze_epoch)
    ))
    parts.model.train()
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = D.epoch_order(data.y_train, cfg.balance, g)
    spe = steps_per_epoch(int(data.y_train.numel()), cfg.batch_size)
    world = distributed.current()
    cancel = world.agreed(cancel)
    t0 = time.perf_counter()
    loss_sum, seen = 0.0, 0
    for step in range(spe):
        cancel.raise_if_cancelled()
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        idx, part = world.shard(idx)  # this process's part of the batch (all of it if alone)
        loss = float(optimization_step(parts, data.x_train[idx], data.y_train[idx], g,
                                       f"at epoch {epoch + 1}", part))  # fmt: skip
        loss_sum += loss * int(idx.numel())
        seen += int(idx.numel())
        on_step(step + 1, loss, time.perf_counter() - t0)
    loss_sum, seen_all = world.sum(loss_sum, seen)  # over all processes (floats)
    return loss_sum / max(seen_all, 1), int(seen_all), time.perf_counter() - t0


@dataclass(frozen=True)
class Validation:
    loss: float
    scores: Scores
    confusion: np.ndarray | None = None  # rows = true class, columns = predicted

    def defect_recall(self, good: int) -> float:
        """Share of defective images (every class but ``good``) not predicted as good."""
        if self.confusion is None:
            return 0.0
        cm = np.delete(self.confusion, good, axis=0)
        return float(1.0 - cm[:, good].sum() / max(1, cm.sum()))


def validate(parts: StepParts, data: RunData, cancel: CancelToken) -> Validation:
    """Validation loss and scores of the model that is evaluated and exported (EMA if on)."""
    eval_model = parts.ema.module if parts.ema is not None else parts.model
    probs = predict_probs(
        zoo.ProbabilityModel(eval_model, 1), data.x_val, parts.device,
        batch_size=max(64, 2 * parts.cfg.batch_size), dtype=parts.dtype,
        channels_last=parts.channels_last, cancel=cancel,
    )  # fmt: skip
    loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), data.y_val))
    cm = confusion_matrix(data.y_val.numpy(), probs.argmax(1).numpy(), len(data.snap.class_names))
    return Validation(loss, scores(cm), cm)


def monitor_value(cfg: TrainConfig, val: Validation, class_names: tuple[str, ...] = ()) -> float:
    """The metric that picks the checkpoint, as shown live (the validation loss for
    "val_loss"; otherwise higher is better).

    The default, balanced accuracy (mean recall over classes), counts a 30-image defect
    class as much as a 900-image good class; validation loss and accuracy are dominated by
    the big class and pick checkpoints that call small-class defects good.
    "val_defect_recall" averages balanced accuracy with the share of defects not called
    good (never defect recall alone: calling every part defective would win)."""
    if cfg.monitor == "val_loss":
        return val.loss
    sc = val.scores
    if cfg.monitor == "val_defect_recall" and cfg.good_class in class_names:
        return 0.5 * (sc.balanced_accuracy
                      + val.defect_recall(class_names.index(cfg.good_class)))
    return {"val_acc": sc.accuracy, "val_macro_f1": sc.macro_f1}.get(
        cfg.monitor, sc.balanced_accuracy)


def monitor_score(cfg: TrainConfig, val: Validation, class_names: tuple[str, ...] = ()) -> float:
    """Higher is better; ties of the metric are broken by a lower validation loss."""
    if cfg.monitor == "val_loss":
        return -val.loss
    return monitor_value(cfg, val, class_names) - 1e-4 * min(val.loss, 100.0)


def _record_live_metric(project: Project, run_id: int, cfg: TrainConfig, epoch: int,
                        value: float, balanced: float, improved: bool) -> None:
    """The checkpoint-picking metric of the best epoch so far, in the run's ``extra``, so
    the run list shows it while the run trains (or after it stopped)."""
    live = runs.get_run(project, run_id).extra.get(runs.LIVE_KEY)
    if improved or not isinstance(live, dict):
        live = {"metric": cfg.monitor, "best_epoch": epoch, "best_value": value,
                "best_balanced_acc": balanced}
    runs.update_run_extra(project, run_id, **{runs.LIVE_KEY: live})


def _save_epoch(
    project: Project, run_id: int, parts: StepParts, meta: dict[str, Any], state: TrainState,
    val: Validation, improved: bool, metric: runs.EpochMetricInfo,
) -> tuple[Path, Path]:
    """Checkpoint files first, then the rows that point at them."""
    folder = runs.run_dir(project, run_id)
    last_path, best_path = folder / "last.pt", folder / "best.pt"
    if not distributed.current().is_main:
        return last_path, best_path
    eval_model = parts.ema.module if parts.ema is not None else parts.model
    if improved:
        atomic_save({
            "format": CHECKPOINT_FORMAT, "kind": "best", "epoch": state.epoch, "meta": meta,
            "model": cpu_state(eval_model),
            "metrics": {"val_loss": val.loss, "val_acc": val.scores.accuracy,
                        "val_macro_f1": val.scores.macro_f1,
                        "val_balanced_acc": val.scores.balanced_accuracy},
        }, best_path)  # fmt: skip
    atomic_save({
        "format": CHECKPOINT_FORMAT, "kind": "last", "epoch": state.epoch, "meta": meta,
        "model": cpu_state(parts.model),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "optimizer": parts.opt.state_dict(),
        "scheduler": parts.sched.state_dict(),
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "best_score": state.best_score, "best_epoch": state.best_epoch,
        "bad_epochs": state.bad_epochs, "planned_epochs": state.planned_epochs,
        "rng_cpu": torch.get_rng_state(),
    }, last_path)  # fmt: skip
    runs.update_run(
        project, run_id, epoch_metric=metric, epochs_done=state.epoch,
        best_epoch=state.best_epoch, best_score=state.best_score,
        checkpoint_last=str(last_path), checkpoint_best=str(best_path),
    )  # fmt: skip
    return last_path, best_path


# ------------------------------------------------------------------ the run
def _train(
    project: Project, run_id: int, cfg: TrainConfig, snap: Snapshot, on_event: EventCallback,
    cancel: CancelToken, started: float, allow_download: bool,
    opener: Callable[..., Any] | None,
) -> int:
    info = runs.get_run(project, run_id)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    world = distributed.current()
    # the CPU threads follow the cores other programs leave free (at most as many as now)
    share = CpuShare() if device.type == "cpu" and world.size == 1 else None
    try:
        return _train_on(project, run_id, cfg, snap, on_event, cancel, started,
                         allow_download, opener, info, device, world, share)
    finally:
        if share is not None:
            torch.set_num_threads(share.cap)


def _train_on(
    project: Project, run_id: int, cfg: TrainConfig, snap: Snapshot, on_event: EventCallback,
    cancel: CancelToken, started: float, allow_download: bool,
    opener: Callable[..., Any] | None, info: runs.RunInfo, device: torch.device,
    world: distributed.World, share: CpuShare | None,
) -> int:
    data = _prepare_data(project, run_id, cfg, snap, on_event, cancel)
    ckpt = None
    if world.is_main and info.checkpoint_last and Path(info.checkpoint_last).is_file():
        ckpt = load_checkpoint(info.checkpoint_last)
    ckpt = world.broadcast(ckpt)  # every process resumes from rank 0's last.pt
    weights_file = None if ckpt else _weights_file(cfg, allow_download, opener, on_event)
    if ckpt is not None:  # last.pt must be this run's before training goes on from it
        check_owner(ckpt["meta"], str(info.checkpoint_last), run_id, project.project_id,
                    info.class_names, "", project.location)
    parts, meta, state = _build(cfg, data, device, ckpt, weights_file)
    meta.update(owner_meta(run_id, project.project_id, data.snap.fingerprint))
    world.wrap(parts)
    if ckpt is not None and world.is_main:
        runs.delete_epoch_metrics_after(project, run_id, state.epoch)
    n_train, n_val = int(data.y_train.numel()), int(data.y_val.numel())
    spe = steps_per_epoch(n_train, cfg.batch_size)
    planner = None
    if cfg.time_budget_s and ckpt is None:
        planner = EpochPlanner(
            cfg.time_budget_s, spe, n_train, n_val, n_val + len(data.snap.indices("test")),
            cfg.epochs, started=started,
        )  # fmt: skip
    on_event(RunStarted(run_id, state.planned_epochs, spe, str(device), n_train, n_val,
                        state.epoch))  # fmt: skip

    def plan(epochs: int, reason: str) -> None:
        epochs = world.broadcast(epochs)  # rank 0's plan: every process trains as many
        over = planner is not None and planner.over_budget
        if over:
            reason += (f"; {epochs} epochs is the least that trains a usable model, so this "
                       "run takes longer than the budget on this computer")
        if epochs != state.planned_epochs:
            state.planned_epochs = epochs
            parts.retarget(spe * epochs)
            if world.is_main:
                runs.update_run_extra(project, run_id, planned_epochs=epochs)
            on_event(EpochsPlanned(run_id, epochs, cfg.time_budget_s, reason, over))

    stopped_early = False
    epoch_seconds: list[float] = []
    while state.epoch < state.planned_epochs:
        epoch = state.epoch
        timed_from = 0.0

        def on_step(step: int, loss: float, seconds: float, epoch: int = epoch) -> None:
            nonlocal timed_from
            if planner is not None and epoch == 0:
                if step == 2:
                    timed_from = seconds
                elif step == min(CALIBRATION_STEPS, spe) and step > 2:
                    plan(planner.after_steps(step, (seconds - timed_from) / (step - 2)),
                         "measured speed")
            per_step = seconds / step
            left = (spe - step) * per_step
            if planner is not None and planner.epochs:
                eta = left + planner.eta(epoch + 1, epoch_seconds[-1] if epoch_seconds
                                         else spe * per_step)
            else:
                later = state.planned_epochs - epoch - 1
                eta = left + later * (epoch_seconds[-1] if epoch_seconds else spe * per_step)
                if planner is not None:  # not planned yet: the run fits its time budget,
                    # so the budget left bounds it (not the worst case of the most epochs)
                    eta = min(eta, max(0.0, planner.budget_s - planner.elapsed()))
            on_event(BatchProgress(run_id, epoch + 1, step, spe, loss,
                                   cfg.batch_size * step / max(seconds, 1e-9), eta))

        if share is not None:  # measured over data preparation, then over each epoch
            share.apply()
        t0 = time.perf_counter()
        train_loss, seen, train_s = train_one_epoch(parts, data, epoch, cancel, on_step)
        val = world.on_main(lambda: validate(parts, data, cancel))
        if not (math.isfinite(val.loss) and math.isfinite(train_loss)):  # nothing saved
            raise non_finite_loss(val.loss if math.isfinite(train_loss) else train_loss,
                                  f"at epoch {epoch + 1}")
        score = monitor_score(cfg, val, data.snap.class_names)
        improved = state.best_score is None or score > state.best_score + 1e-9
        state.epoch = epoch + 1
        if improved:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch + 1, 0
        else:
            state.bad_epochs += 1
        seconds = time.perf_counter() - t0
        epoch_seconds.append(seconds)
        lr_now = float(parts.opt.param_groups[0]["lr"])
        metric = runs.EpochMetricInfo(
            epoch + 1, train_loss, val.loss, val.scores.accuracy, val.scores.macro_f1, lr_now,
            seen / max(train_s, 1e-9), seconds,
        )  # fmt: skip
        if planner is not None:
            plan(planner.after_epoch(epoch + 1, seconds), "measured epoch time")
            if (cfg.time_cap_s and state.planned_epochs - state.epoch <= EXTEND_WITHIN
                    and (state.best_epoch or 0) >= state.epoch - 1):  # improving near the end
                plan(planner.extend(state.epoch, cfg.time_cap_s,
                                    max(EXTEND_WITHIN, state.planned_epochs // 4)),
                     "validation still improves; within the time cap")
        last_path, best_path = _save_epoch(project, run_id, parts, meta, state, val, improved,
                                           metric)  # fmt: skip
        value = monitor_value(cfg, val, data.snap.class_names)
        if world.is_main:
            _record_live_metric(project, run_id, cfg, epoch + 1, value,
                                val.scores.balanced_accuracy, improved)
        on_event(EpochEnded(
            run_id, epoch + 1, train_loss, val.loss, val.scores.accuracy, val.scores.macro_f1,
            lr_now, metric.images_per_s, seconds, improved,
            val_balanced_acc=val.scores.balanced_accuracy, monitor=cfg.monitor,
            monitor_value=value,
        ))  # fmt: skip
        on_event(CheckpointSaved(run_id, epoch + 1, str(last_path), False))
        if improved:
            on_event(CheckpointSaved(run_id, epoch + 1, str(best_path), True))
        patience = cfg.early_stopping_patience
        if patience is not None and state.bad_epochs >= patience:
            stopped_early = True
            break
    return _finish(project, run_id, cfg, parts, meta, data, state, stopped_early, on_event,
                   cancel, started)  # fmt: skip


def _finish(
    project: Project, run_id: int, cfg: TrainConfig, parts: StepParts, meta: dict[str, Any],
    data: RunData, state: TrainState, stopped_early: bool, on_event: EventCallback,
    cancel: CancelToken, started: float,
) -> int:
    """Predict val and test with the best weights, store the run's final metrics."""
    from densestudio.ml import eval_report, evaluate

    if not distributed.current().is_main:
        return run_id

    eval_model = parts.ema.module if parts.ema is not None else parts.model
    best = load_checkpoint(runs.run_dir(project, run_id) / "best.pt")
    eval_model.load_state_dict(best["model"])
    reports = evaluate.evaluate_tensors(
        project, run_id, eval_model, meta, data.snap, data.pixels, parts.device, parts.dtype,
        parts.channels_last, subsets=("val", "test"), tta=cfg.tta, on_event=on_event,
        cancel=cancel,
    )  # fmt: skip
    history = runs.epoch_metrics(project, run_id)
    ips_all = [m.images_per_s for m in history]
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "epochs_trained": history[-1].epoch if history else 0,
        "stopped_early": stopped_early,
        "train_images_per_s": float(np.mean(ips_all)) if ips_all else None,
        "train_seconds": float(sum(m.seconds for m in history)),
        "wall_seconds": time.perf_counter() - started,
        "data_fingerprint": data.snap.fingerprint,
        "n_train": int(data.y_train.numel()),
        "n_val": int(data.y_val.numel()),
        "n_test": len(data.snap.indices("test")),
    }
    for rep in reports.values():
        metrics.update(eval_report.summary_metrics(rep))
    if cfg.good_class:  # every run with a good class ends with an OK/NG decision
        op.choose_for_run(project, run_id, cfg.good_class, cfg.max_miss_rate)
    runs.update_run(project, run_id, status="finished", metrics=metrics, finished=True)
    on_event(RunFinished(run_id, state.best_epoch, metrics, stopped_early))
    return run_id
