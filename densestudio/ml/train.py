"""Training: ``fit(project, config, on_event, cancel)`` -> run id.

Flow: preflight checks -> label/split snapshot (RunImage rows; relabeling during training
cannot change the run) -> decode-once uint8 cache -> model -> epochs of batched, augmented
steps (AdamW, warmup + cosine or one-cycle, label smoothing, optional EMA) -> per-epoch
validation, metrics rows, atomic "last" and "best" checkpoints -> early stopping ->
predictions for val and test from the best weights.

Checkpoints: ``<project file>-runs/<run id>/last.pt`` (model, EMA, optimizer, scheduler,
scaler, epoch, early-stopping state, RNG) and ``best.pt`` (deployable weights + model
metadata). Both are plain tensors/containers and load with ``torch.load(weights_only=True)``.
A cancelled or crashed run resumes from ``last.pt`` with ``fit(..., resume_run_id=id)``:
it repeats the interrupted epoch exactly (batch order and augmentation are seeded per epoch).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sqlalchemy import select
from torch import nn

from densestudio import __version__
from densestudio.core import runs
from densestudio.core.errors import CancelledError, DenseStudioError
from densestudio.core.models import Image, RunImage
from densestudio.core.progress import CancelToken, EventCallback, ignore_event
from densestudio.core.store import Project
from densestudio.ml import data as D
from densestudio.ml import zoo
from densestudio.ml.config import TrainConfig
from densestudio.ml.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    ImagesSkipped,
    PreparingData,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunStarted,
)
from densestudio.ml.metrics import confusion_matrix, scores
from densestudio.ml.runtime import (
    adamw,
    amp_dtype,
    atomic_save,
    autocast,
    is_out_of_memory,
    predict_probs,
    resolve_device,
    to_input,
)

CHECKPOINT_FORMAT = "densestudio-checkpoint-1"


class TrainingError(DenseStudioError):
    """Training cannot start or could not finish; the message says why and what to do."""


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


# ------------------------------------------------------------------ snapshot
@dataclass(frozen=True)
class Snapshot:
    class_names: tuple[str, ...]
    image_ids: tuple[int, ...]
    labels: tuple[int, ...]
    splits: tuple[str, ...]
    items: tuple[D.CacheItem, ...]
    gray: bool
    fingerprint: str

    def indices(self, split: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == split]


def _current_rows(project: Project) -> tuple[list[str], list[tuple[int, int, str]]]:
    classes = project.classes()
    index = {c.id: i for i, c in enumerate(classes)}
    with project.session() as s:
        rows = s.execute(
            select(Image.id, Image.label_id, Image.split)
            .where(Image.label_id.is_not(None), Image.split.is_not(None), Image.missing.is_(False))
            .order_by(Image.id)
        )
        return [c.name for c in classes], [(i, index[lab], sp) for i, lab, sp in rows]


def load_snapshot(project: Project, run_id: int) -> Snapshot:
    info = runs.get_run(project, run_id)
    with project.session() as s:
        rows = list(
            s.execute(
                select(
                    RunImage.image_id, RunImage.class_index, RunImage.split,
                    Image.path, Image.content_hash, Image.mode,
                )  # fmt: skip
                .join(Image, Image.id == RunImage.image_id)
                .where(RunImage.run_id == run_id)
                .order_by(RunImage.image_id)
            )
        )
    names = info.class_names
    return Snapshot(
        class_names=names,
        image_ids=tuple(r[0] for r in rows),
        labels=tuple(r[1] for r in rows),
        splits=tuple(r[2] for r in rows),
        items=tuple(D.CacheItem(r[0], r[3], r[4]) for r in rows),
        gray=all(r[5] in D.GRAY_MODES for r in rows),
        fingerprint=D.fingerprint([(r[4], names[r[1]], r[2]) for r in rows]),
    )


# ------------------------------------------------------------------ helpers
class EMA:
    """Exponential moving average of a model's weights (and float buffers).

    ``update`` runs every optimizer step with the same model, whose tensors are updated in
    place (optimizer, batch norm, load_state_dict), so the tensor pairs are looked up once
    and the float ones averaged in one fused call instead of walking two state dicts.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._pairs: tuple[list, list, list] | None = None  # averages, sources, other pairs

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._pairs is None:
            ours = self.module.state_dict()
            pairs = [(ours[name], value.detach()) for name, value in model.state_dict().items()]
            floats = [(e, v) for e, v in pairs if v.dtype.is_floating_point]
            self._pairs = ([e for e, _ in floats], [v for _, v in floats],
                           [(e, v) for e, v in pairs if not v.dtype.is_floating_point])
        averages, sources, others = self._pairs
        torch._foreach_lerp_(averages, sources, 1.0 - d)
        for target, value in others:
            target.copy_(value)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of a single image is dropped (batch norm needs 2)."""
    full, rest = divmod(n_train, batch_size)
    return max(1, full + (1 if rest >= 2 else 0))


def _make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, spe: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle" and total_steps >= 8:
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps,
            pct_start=max(0.25, 2.5 / total_steps), div_factor=25.0, final_div_factor=1e3,
        )  # fmt: skip
    # Warmup + cosine (also the fallback for very short one-cycle runs).
    warm = max(1, min(int(cfg.warmup_epochs * spe), total_steps // 4))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _score(cfg: TrainConfig, val_loss: float, val_acc: float, val_f1: float) -> float:
    """Higher is better; ties of accuracy/F1 are broken by a lower validation loss."""
    if cfg.monitor == "val_loss":
        return -val_loss
    main = val_acc if cfg.monitor == "val_acc" else val_f1
    return main - 1e-4 * min(val_loss, 100.0)


def _input_mode(cfg: TrainConfig, gray: bool) -> str:
    if cfg.channels == 3:
        return "RGB"
    if cfg.channels == 1:
        return "L"
    return "L" if gray else "RGB"


def _emit(on_event: EventCallback, event: object) -> None:
    on_event(event)


def model_meta(
    cfg: TrainConfig, class_names: Sequence[str], mode: str, model: zoo.DenseStudioNet
) -> dict:
    return {
        "arch": cfg.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "mode": mode,
        "in_channels": int(model.backbone.features.conv0.in_channels),
        "img_size": cfg.img_size,
        "mean": [float(v) for v in model.mean.flatten()],
        "std": [float(v) for v in model.std.flatten()],
        "tta_views": D.tta_views(cfg.augment) if cfg.tta else 1,
        "app_version": __version__,
    }


def place_model(model: nn.Module, cfg: TrainConfig, device: torch.device) -> bool:
    """Checkpointing flag, device and memory format for training; True if channels_last."""
    model.set_memory_efficient(cfg.memory_efficient)
    use_cl = cfg.channels_last and device.type != "mps"
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    return use_cl


def model_from_meta(meta: dict) -> zoo.DenseStudioNet:
    return zoo.build_model(
        meta["arch"], int(meta["num_classes"]), int(meta["in_channels"]),
        mean=tuple(meta["mean"]), std=tuple(meta["std"]),
    )  # fmt: skip


def load_checkpoint(path: str | Path) -> dict:
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise TrainingError(f"Checkpoint not found: {path}") from exc
    except Exception as exc:  # noqa: BLE001
        raise TrainingError(f"Cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a DenseStudio checkpoint.")
    return ckpt


@dataclass
class StepParts:
    """Everything one optimization step needs (shared by fit and the label audit)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: object
    scaler: object | None
    ema: EMA | None
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    loss_weight: torch.Tensor | None
    cfg: TrainConfig


def make_step_parts(
    model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device,
    channels_last: bool, y_train: torch.Tensor, num_classes: int,
) -> StepParts:
    """Schedule, mixed precision, EMA and class weights around ``opt``: what every training
    loop (a run, a cross-validation fold) steps with."""
    spe = steps_per_epoch(int(y_train.numel()), cfg.batch_size)
    total = spe * cfg.epochs
    dtype = amp_dtype(device, cfg.amp)
    ema = None
    if cfg.ema:
        horizon = max(10.0, 0.05 * total)
        ema = EMA(model, decay=min(0.9998, max(0.9, 1.0 - 1.0 / horizon)))
    loss_weight = (D.class_weights(y_train, num_classes).to(device)
                   if cfg.balance == "weighted_loss" else None)  # fmt: skip
    return StepParts(
        model, opt, _make_scheduler(opt, cfg, total, spe),
        torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
        ema, device, dtype, channels_last, loss_weight, cfg,
    )  # fmt: skip


def optimization_step(
    parts: StepParts, x_uint8: torch.Tensor, y: torch.Tensor, g: torch.Generator, where: str
) -> torch.Tensor:
    """Augment one uint8 batch on the device, forward, loss, backward, clip, step, schedule,
    EMA. Returns the (detached) loss; a non-finite loss stops training before the weights
    are touched."""
    cfg = parts.cfg
    xb = to_input(x_uint8, parts.device, False)
    yb = y.to(parts.device, non_blocking=True)
    if cfg.augment != "none":
        xb = D.augment_batch(xb, cfg.augment, g)
    if parts.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with autocast(parts.device, parts.dtype):
        logits = parts.model(xb)
    loss = F.cross_entropy(
        logits.float(), yb, weight=parts.loss_weight, label_smoothing=cfg.label_smoothing
    )
    if not torch.isfinite(loss):
        raise TrainingError(
            f"The loss became {loss.item()} {where}; lower the learning rate (or turn off "
            "mixed precision) and try again."
        )
    parts.opt.zero_grad(set_to_none=True)
    if parts.scaler is not None:
        parts.scaler.scale(loss).backward()
        parts.scaler.unscale_(parts.opt)
    else:
        loss.backward()
    if cfg.max_grad_norm:
        nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.max_grad_norm)
    if parts.scaler is not None:
        parts.scaler.step(parts.opt)
        parts.scaler.update()
    else:
        parts.opt.step()
    parts.sched.step()
    if parts.ema is not None:
        parts.ema.update(parts.model)
    return loss.detach()


def _skip_unreadable(
    project: Project, run_id: int, snap: Snapshot, pixels: torch.Tensor,
    failures: list[D.DecodeFailure], on_event: EventCallback,
) -> tuple[torch.Tensor, Snapshot]:
    """Drop images that could not be read from the run (with a warning), flag vanished
    files as missing in the project, and return the remaining pixels and snapshot."""
    bad = {f.image_id for f in failures}
    runs.drop_run_images(project, run_id, sorted(bad))
    project.flag_missing([f.image_id for f in failures if not Path(f.path).exists()])
    examples = tuple(f"{Path(f.path).name}: {f.reason}" for f in failures[:5])
    _emit(on_event, ImagesSkipped(run_id, len(failures), examples))
    keep = [i for i, item in enumerate(snap.items) if item.image_id not in bad]
    return pixels[keep], load_snapshot(project, run_id)


# ------------------------------------------------------------------ fit
def fit(
    project: Project,
    config: TrainConfig | None = None,
    on_event: EventCallback = ignore_event,
    cancel: CancelToken | None = None,
    resume_run_id: int | None = None,
    *,
    allow_download: bool = True,
    opener=None,  # noqa: ANN001 - injectable urlopen for weight downloads (tests)
) -> int:
    """Train (or resume) a run; returns its id. See the module docstring."""
    cancel = cancel or CancelToken()
    if resume_run_id is not None:
        info = runs.get_run(project, resume_run_id)
        if info.status == "finished":
            raise TrainingError(f"Run {resume_run_id} already finished; start a new run.")
        cfg = TrainConfig.from_json(info.config).validate()
        run_id = resume_run_id
        snap = load_snapshot(project, run_id)
        runs.update_run(project, run_id, status="running", error=None)
    else:
        if config is None:
            raise TrainingError("No training configuration given.")
        cfg = config.validate()
        problems = check_trainable(project)
        if problems:
            raise TrainingError(" ".join(problems))
        device = resolve_device(cfg.device)  # fail before creating a run row
        weights_file = None
        if cfg.uses_pretrained:
            weights_file = zoo.resolve_weights(
                cfg.arch, cfg.weights_path, allow_download=allow_download, opener=opener,
                on_progress=on_event,
            )  # fmt: skip
        names, rows = _current_rows(project)
        run_id = runs.create_run(
            project, name=cfg.name or f"{cfg.arch} {cfg.img_size}px",
            config_json=cfg.to_json(), class_names=names, snapshot=rows, device=str(device),
            extra={"weights_file": str(weights_file) if weights_file else None},
        )  # fmt: skip
        snap = load_snapshot(project, run_id)
    try:
        return _train(project, run_id, cfg, snap, on_event, cancel, allow_download, opener)
    except CancelledError:
        info = runs.get_run(project, run_id)
        runs.update_run(project, run_id, status="cancelled")
        _emit(on_event, RunCancelled(run_id, info.epochs_done))
        return run_id
    except BaseException as exc:
        if is_out_of_memory(exc):
            message = (
                f"Out of memory while training {cfg.arch} at {cfg.img_size} px with batch "
                f"size {cfg.batch_size}. Try a smaller batch size or image size"
                + (", or turn on memory-efficient mode." if not cfg.memory_efficient else ".")
            )
        elif isinstance(exc, DenseStudioError):
            message = str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            message = "Interrupted."
        else:
            message = f"Training failed: {type(exc).__name__}: {exc}"
        try:
            runs.update_run(project, run_id, status="failed", error=message)
        finally:
            _emit(on_event, RunFailed(run_id, message))
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, DenseStudioError):
            raise
        raise TrainingError(message) from exc


def _train(
    project: Project,
    run_id: int,
    cfg: TrainConfig,
    snap: Snapshot,
    on_event: EventCallback,
    cancel: CancelToken,
    allow_download: bool,
    opener,  # noqa: ANN001
) -> int:
    info = runs.get_run(project, run_id)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    mode = _input_mode(cfg, snap.gray)
    k = len(snap.class_names)

    # ---- data: decode once
    def progress(done: int, total: int, from_disk: int) -> None:
        _emit(on_event, PreparingData(run_id, done, total, from_disk))

    pixels, failures = D.DecodedCache(project.cache_dir).load(
        snap.items, cfg.img_size, mode, progress, cancel
    )
    if failures:
        pixels, snap = _skip_unreadable(project, run_id, snap, pixels, failures, on_event)
    labels = torch.tensor(snap.labels, dtype=torch.long)
    tr = torch.tensor(snap.indices("train"), dtype=torch.long)
    va = torch.tensor(snap.indices("val"), dtype=torch.long)
    if tr.numel() < 2 or va.numel() == 0:
        raise TrainingError("The run needs at least 2 training images and 1 validation image.")
    empty = [n for c, n in enumerate(snap.class_names) if not (labels[tr] == c).any()]
    if empty:
        raise TrainingError(f"No readable training image left for: {', '.join(empty)}.")
    x_train, y_train = pixels[tr], labels[tr]
    x_val, y_val = pixels[va], labels[va]

    # ---- model, optimizer, schedule
    ckpt = None
    if info.checkpoint_last and Path(info.checkpoint_last).is_file():
        ckpt = load_checkpoint(info.checkpoint_last)
    if ckpt is not None:
        model = model_from_meta(ckpt["meta"])
    else:
        weights_file = None
        if cfg.uses_pretrained:
            weights_file = zoo.resolve_weights(
                cfg.arch, cfg.weights_path, allow_download=allow_download, opener=opener,
                on_progress=on_event,
            )  # fmt: skip
        in_ch = 1 if mode == "L" else 3
        if weights_file is not None:
            mean, std = zoo.IMAGENET_MEAN, zoo.IMAGENET_STD
        else:
            mean, std = D.channel_stats(x_train)
        model = zoo.build_model(
            cfg.arch, k, in_ch, mean=mean, std=std, weights_file=weights_file,
        )  # fmt: skip
    meta = model_meta(cfg, snap.class_names, mode, model)
    use_cl = place_model(model, cfg, device)

    head, backbone = model.head_parameters(), model.backbone_parameters()
    bb_lr = cfg.lr * (cfg.backbone_lr_mult if cfg.uses_pretrained else 1.0)
    opt = adamw([{"params": head, "lr": cfg.lr}, {"params": backbone, "lr": bb_lr}],
                device, cfg.lr, cfg.weight_decay)  # fmt: skip
    spe = steps_per_epoch(tr.numel(), cfg.batch_size)
    step_parts = make_step_parts(model, opt, cfg, device, use_cl, y_train, k)
    sched, scaler, ema = step_parts.sched, step_parts.scaler, step_parts.ema
    dtype = step_parts.dtype

    start_epoch, best_score, best_epoch, bad_epochs = 0, None, None, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        start_epoch = int(ckpt["epoch"])
        best_score, best_epoch = ckpt.get("best_score"), ckpt.get("best_epoch")
        bad_epochs = int(ckpt.get("bad_epochs", 0))
        torch.set_rng_state(ckpt["rng_cpu"])
        runs.delete_epoch_metrics_after(project, run_id, start_epoch)
    folder = runs.run_dir(project, run_id)
    last_path, best_path = folder / "last.pt", folder / "best.pt"

    _emit(on_event, RunStarted(
        run_id, cfg.epochs, spe, str(device), int(tr.numel()), int(va.numel()), start_epoch
    ))  # fmt: skip

    eval_model = ema.module if ema is not None else model
    run_start = time.perf_counter()
    images_done = 0
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        frozen = cfg.strategy == "head" or (
            cfg.strategy == "head_then_full" and epoch < cfg.unfreeze_epoch
        )
        model.set_backbone_trainable(not frozen)
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = D.epoch_order(y_train, cfg.balance, g)
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for step in range(spe):
            cancel.raise_if_cancelled()
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            loss = optimization_step(
                step_parts, x_train[idx], y_train[idx], g,
                f"at epoch {epoch + 1}",
            )  # fmt: skip
            n = int(idx.numel())
            loss_sum += float(loss.detach()) * n
            seen += n
            images_done += n
            elapsed = time.perf_counter() - t0
            ips = seen / max(elapsed, 1e-9)
            remaining = (spe - step - 1) + spe * (cfg.epochs - epoch - 1)
            eta = remaining * (elapsed / (step + 1)) if step >= 0 else None
            _emit(on_event, BatchProgress(
                run_id, epoch + 1, step + 1, spe, float(loss.detach()), ips, eta
            ))  # fmt: skip
        train_seconds = time.perf_counter() - t0
        train_ips = seen / max(train_seconds, 1e-9)

        # ---- validate
        probs = predict_probs(
            zoo.ProbabilityModel(eval_model, 1), x_val, device, batch_size=max(64, 2 * cfg.batch_size), dtype=dtype,
            channels_last=use_cl, cancel=cancel,
        )  # fmt: skip
        val_loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), y_val))
        cm = confusion_matrix(y_val.numpy(), probs.argmax(1).numpy(), k)
        sc = scores(cm)
        score = _score(cfg, val_loss, sc.accuracy, sc.macro_f1)
        improved = best_score is None or score > best_score + 1e-9
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch + 1, 0
        else:
            bad_epochs += 1
        lr_now = float(opt.param_groups[0]["lr"])
        seconds = time.perf_counter() - t0
        metric = runs.EpochMetricInfo(
            epoch + 1, loss_sum / max(seen, 1), val_loss, sc.accuracy, sc.macro_f1, lr_now,
            train_ips, seconds,
        )  # fmt: skip

        # ---- checkpoints (files first, then the rows that point at them)
        model_state = {k_: v.detach().cpu().clone() for k_, v in model.state_dict().items()}
        if improved:
            atomic_save(
                {
                    "format": CHECKPOINT_FORMAT, "kind": "best", "epoch": epoch + 1,
                    "meta": meta,
                    "model": {k_: v.detach().cpu().clone()
                              for k_, v in eval_model.state_dict().items()},
                    "metrics": {"val_loss": val_loss, "val_acc": sc.accuracy,
                                "val_macro_f1": sc.macro_f1},
                },
                best_path,
            )  # fmt: skip
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT, "kind": "last", "epoch": epoch + 1, "meta": meta,
                "model": model_state,
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "rng_cpu": torch.get_rng_state(),
            },
            last_path,
        )  # fmt: skip
        runs.update_run(
            project, run_id, epoch_metric=metric, epochs_done=epoch + 1,
            best_epoch=best_epoch, best_score=best_score, checkpoint_last=str(last_path),
            checkpoint_best=str(best_path),
        )  # fmt: skip
        _emit(on_event, EpochEnded(
            run_id, epoch + 1, metric.train_loss, val_loss, sc.accuracy, sc.macro_f1, lr_now,
            train_ips, seconds, improved,
        ))  # fmt: skip
        _emit(on_event, CheckpointSaved(run_id, epoch + 1, str(last_path), False))
        if improved:
            _emit(on_event, CheckpointSaved(run_id, epoch + 1, str(best_path), True))
        if cfg.early_stopping_patience is not None and bad_epochs >= cfg.early_stopping_patience:
            stopped_early = True
            break

    # ---- final evaluation from the best weights
    from densestudio.ml import evaluate

    best = load_checkpoint(best_path)
    eval_model.load_state_dict(best["model"])
    reports = evaluate.evaluate_tensors(
        project, run_id, eval_model, meta, snap, pixels, device, dtype, use_cl,
        subsets=("val", "test"), tta=cfg.tta, on_event=on_event, cancel=cancel,
    )  # fmt: skip
    history = runs.epoch_metrics(project, run_id)
    ips_all = [m.images_per_s for m in history]
    metrics = {
        "best_epoch": best_epoch,
        "epochs_trained": history[-1].epoch if history else 0,
        "stopped_early": stopped_early,
        "train_images_per_s": float(np.mean(ips_all)) if ips_all else None,
        "train_seconds": float(sum(m.seconds for m in history)),
        "data_fingerprint": snap.fingerprint,
        "n_train": int(tr.numel()),
        "n_val": int(va.numel()),
        "n_test": len(snap.indices("test")),
    }
    for subset, rep in reports.items():
        metrics[f"{subset}_acc"] = rep.accuracy
        metrics[f"{subset}_balanced_acc"] = rep.balanced_accuracy
        metrics[f"{subset}_macro_f1"] = rep.macro_f1
        metrics[f"{subset}_loss"] = rep.loss
    runs.update_run(project, run_id, status="finished", metrics=metrics, finished=True)
    _ = run_start
    _emit(on_event, RunFinished(run_id, best_epoch, metrics, stopped_early))
    return run_id
