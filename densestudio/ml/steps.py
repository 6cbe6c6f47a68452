"""One optimization step and what it needs: EMA of the weights, learning-rate schedules,
mixed precision, class balance in the loss. Shared by a training run (``ml.train``) and the
label audit's cross-validation folds (``ml.crossval``), so both learn the same way.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densestudio.core.errors import DenseStudioError
from densestudio.ml import data as D
from densestudio.ml import zoo
from densestudio.ml.config import TrainConfig
from densestudio.ml.runtime import amp_dtype, autocast, to_input


class TrainingError(DenseStudioError):
    """Training cannot start or could not finish; the message says why and what to do."""


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
        # averages, sources, other (non-float) pairs
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor],
                           list[tuple[torch.Tensor, torch.Tensor]]] | None = None

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

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of a single image is dropped (batch norm needs 2)."""
    full, rest = divmod(n_train, batch_size)
    return max(1, full + (1 if rest >= 2 else 0))


class WarmupCosine:
    """LR factor: linear warmup, then cosine to zero. A class (not a closure) so that
    LambdaLR saves it in the checkpoint and ``retarget_schedule`` can change its length."""

    def __init__(self, warm: int, total: int) -> None:
        self.warm, self.total = warm, total

    def __call__(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        t = (step - self.warm) / max(1, self.total - self.warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def _onecycle_pct(total_steps: int) -> float:
    return max(0.25, 2.5 / total_steps)


def _make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, spe: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle" and total_steps >= 8:
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps,
            pct_start=_onecycle_pct(total_steps), div_factor=25.0, final_div_factor=1e3,
        )  # fmt: skip
    # Warmup + cosine (also the fallback for very short one-cycle runs).
    warm = max(1, min(int(cfg.warmup_epochs * spe), total_steps // 4))
    return torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(warm, total_steps))


def ema_decay(total_steps: int) -> float:
    """EMA decay that averages over about the last 5 % of the run's steps."""
    horizon = max(10.0, 0.05 * total_steps)
    return min(0.9998, max(0.9, 1.0 - 1.0 / horizon))


def retarget_schedule(sched: object, total_steps: int) -> None:
    """Give a running schedule a new length (a time budget re-planned the epochs): the
    remaining steps follow the same curve, stretched or compressed."""
    if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
        total_steps = max(total_steps, sched.last_epoch + 1)
        sched.total_steps = total_steps
        phases = sched._schedule_phases  # torch's own phase table; only the ends move
        phases[0]["end_step"] = float(_onecycle_pct(total_steps) * total_steps) - 1
        phases[-1]["end_step"] = total_steps - 1
    elif isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
        for fn in sched.lr_lambdas:
            if isinstance(fn, WarmupCosine):
                fn.total = total_steps


def place_model(model: zoo.DenseStudioNet, cfg: TrainConfig, device: torch.device) -> bool:
    """Checkpointing flag, device and memory format for training; True if channels_last."""
    model.set_memory_efficient(cfg.memory_efficient)
    use_cl = cfg.channels_last and device.type != "mps"
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    return use_cl


def input_mode(cfg: TrainConfig, gray: bool) -> str:
    if cfg.channels == 3:
        return "RGB"
    if cfg.channels == 1:
        return "L"
    return "L" if gray else "RGB"


@dataclass
class StepParts:
    """Everything one optimization step needs (shared by fit and the label audit)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    ema: EMA | None
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    loss_weight: torch.Tensor | None
    logit_offset: torch.Tensor | None  # logit adjustment: log class priors added in training
    cfg: TrainConfig
    forward: nn.Module | None = None  # what the step calls instead of ``model`` (DDP)

    def retarget(self, total_steps: int) -> None:
        """A new run length: the schedule and the EMA's horizon follow it."""
        retarget_schedule(self.sched, total_steps)
        if self.ema is not None:
            self.ema.decay = ema_decay(total_steps)


def make_step_parts(
    model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig, device: torch.device,
    channels_last: bool, y_train: torch.Tensor, num_classes: int,
) -> StepParts:
    """Schedule, mixed precision, EMA and class weights around ``opt``: what every training
    loop (a run, a cross-validation fold) steps with."""
    spe = steps_per_epoch(int(y_train.numel()), cfg.batch_size)
    total = spe * cfg.epochs
    dtype = amp_dtype(device, cfg.amp)
    ema = EMA(model, decay=ema_decay(total)) if cfg.ema else None
    loss_weight = (D.class_weights(y_train, num_classes).to(device)
                   if cfg.balance == "weighted_loss" else None)  # fmt: skip
    offset = (D.log_priors(y_train, num_classes).to(device)
              if cfg.balance == "logit_adjust" else None)  # fmt: skip
    return StepParts(
        model, opt, _make_scheduler(opt, cfg, total, spe),
        torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
        ema, device, dtype, channels_last, loss_weight, offset, cfg,
    )  # fmt: skip


def non_finite_loss(value: float, where: str) -> TrainingError:
    """The error that stops a run whose loss is no longer a number: the run stays resumable
    from its last epoch (nothing of the bad step is saved)."""
    return TrainingError(
        f"The loss became {value} {where}: the learning rate is too high (or mixed precision "
        "overflowed). Train again with a lower --lr (or --no-amp).")


def optimization_step(
    parts: StepParts, x_uint8: torch.Tensor, y: torch.Tensor, g: torch.Generator, where: str,
    part: D.BatchPart | None = None,
) -> torch.Tensor:
    """Augment one uint8 batch on the device, forward, loss, backward, clip, step, schedule,
    EMA. Returns the (detached) loss; a non-finite loss stops training before the weights
    are touched. ``part``: the batch is this process's part of a multi-process batch."""
    cfg = parts.cfg
    xb = to_input(x_uint8, parts.device, False)
    yb = y.to(parts.device, non_blocking=True)
    if cfg.augment != "none":
        xb = D.augment_batch(xb, cfg.augment, g, part)
    if parts.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with autocast(parts.device, parts.dtype):
        logits = (parts.forward or parts.model)(xb).float()
    if parts.logit_offset is not None:
        logits = logits + parts.logit_offset
    loss = F.cross_entropy(
        logits, yb, weight=parts.loss_weight, label_smoothing=cfg.label_smoothing
    )
    if not torch.isfinite(loss):
        raise non_finite_loss(loss.item(), where)
    parts.opt.zero_grad(set_to_none=True)
    objective = loss if part is None else loss * part.weight
    if parts.scaler is not None:
        parts.scaler.scale(objective).backward()  # type: ignore[no-untyped-call]  # as below
        parts.scaler.unscale_(parts.opt)
    else:
        objective.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
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
