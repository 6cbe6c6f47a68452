"""Training configuration (one frozen dataclass, stored as JSON on the run row) and defaults.

``ml.recommend`` picks the settings from the data, the device and whether pretrained
weights are actually available; the GUI shows them and the CLI starts from them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from densestudio.core.errors import DenseStudioError
from densestudio.core.preprocess import Preprocessing, canvas_for

ARCHS = (  # smallest first: how the Train tab lists them
    "densenet_bc_tiny",  # growth 12, blocks (4,4,4,4): ~0.14M params, for quick tries and tests
    "densenet_bc_1m",  # compact DenseNet-BC: growth 12, blocks (6,12,24,16), 24 init features
    "densenet121",  # 8.0M
    "densenet169",  # 14.1M
    "densenet201",  # 20.0M
    "densenet161",  # 28.7M
)
COMPACT_ARCHS = ("densenet_bc_1m", "densenet_bc_tiny")
BACKBONE_ARCH = "densenet_bc_1m"  # the architecture of the backbone DenseStudio ships
STRATEGIES = ("full", "head", "head_then_full")
AUGMENTS = ("none", "light", "inspection")
BALANCES = ("none", "weighted_loss", "sampler", "sqrt_sampler", "logit_adjust")
FITS = ("letterbox", "stretch")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCHEDULES = ("cosine", "onecycle")
MONITORS = ("val_balanced_acc", "val_defect_recall", "val_macro_f1", "val_acc", "val_loss")
MIN_IMG_SIZE = 32


class ConfigError(DenseStudioError):
    """A training setting is invalid; the message says which and why."""


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "densenet_bc_1m"
    pretrained: bool = False
    weights_path: str | None = None  # a weights file the user picked (implies pretrained)
    backbone: bool = False  # start the compact model from DenseStudio's shipped backbone
    img_size: int = 128  # base size: the canvas holds about img_size x img_size pixels
    aspect: float = 1.0  # canvas width:height (wide strips get a wide canvas)
    fit: str = "letterbox"  # "letterbox" keeps the aspect ratio | "stretch" squashes
    epochs: int = 28  # with a time budget: the most epochs the budget may allow
    time_budget_s: float | None = None  # fit the run to this wall time (epochs from speed)
    time_cap_s: float | None = None  # the budget may grow to this while validation improves
    batch_size: int = 32
    lr: float = 2e-3  # peak learning rate (head / from-scratch model)
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    strategy: str = "full"  # "full" | "head" | "head_then_full"
    unfreeze_epoch: int = 3  # head_then_full: epochs with a frozen backbone
    backbone_lr_mult: float = 0.1  # pretrained backbone LR = lr * this
    schedule: str = "onecycle"  # "cosine" (linear warmup + cosine) | "onecycle"
    warmup_epochs: float = 1.0
    augment: str = "inspection"  # "none" | "light" | "inspection"
    balance: str = "none"  # "none" | "weighted_loss" | "sampler"
    early_stopping_patience: int | None = None  # epochs without improvement; None = off
    monitor: str = "val_balanced_acc"  # best checkpoint / early stopping metric
    good_class: str | None = None  # the class meaning a good part (the project's, at start)
    max_miss_rate: float = 0.02  # OK/NG point: at most this share of defects passed as good
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "mps"
    amp: bool = True  # bf16/fp16 autocast where the device supports it
    channels_last: bool = True
    memory_efficient: bool = False  # gradient checkpointing in dense blocks (less memory)
    ema: bool = True  # evaluate/export an exponential moving average of the weights
    tta: bool = True  # flip test-time augmentation in evaluation and export
    channels: int | None = None  # 1 or 3 input channels; None = auto (1 if all images gray)
    max_grad_norm: float | None = 5.0
    name: str = ""

    # ------------------------------------------------------------ validation
    @property
    def uses_pretrained(self) -> bool:
        return self.pretrained or self.weights_path is not None

    @property
    def starts_pretrained(self) -> bool:
        """The backbone starts from learned weights (ImageNet or DenseStudio's own)."""
        return self.uses_pretrained or self.backbone

    @property
    def canvas(self) -> tuple[int, int]:
        """Input (width, height) in pixels."""
        return canvas_for(self.img_size, self.aspect)

    def preprocessing(self, mode: str) -> Preprocessing:
        """The run's one preprocessing definition for input ``mode`` ("L" or "RGB")."""
        width, height = self.canvas
        return Preprocessing(width=width, height=height, mode=mode, fit=self.fit)

    def problems(self) -> list[str]:
        p: list[str] = []
        if self.arch not in ARCHS:
            p.append(f"Unknown architecture '{self.arch}' (choose from {', '.join(ARCHS)}).")
        elif self.uses_pretrained and self.arch in COMPACT_ARCHS:
            p.append(f"'{self.arch}' has no pretrained weights; it trains from scratch.")
        if self.backbone and (self.arch != BACKBONE_ARCH or self.uses_pretrained):
            p.append(f"DenseStudio's backbone starts '{BACKBONE_ARCH}' only (without "
                     "ImageNet weights).")
        if self.img_size < MIN_IMG_SIZE:
            p.append(f"Image size must be at least {MIN_IMG_SIZE} px (got {self.img_size}).")
        if self.img_size > 1024:
            p.append(f"Image size must be at most 1024 px (got {self.img_size}).")
        if self.epochs < 1:
            p.append("Epochs must be at least 1.")
        if self.time_budget_s is not None and not self.time_budget_s >= 10:
            p.append("A time budget must be at least 10 seconds (or off).")
        if self.time_cap_s is not None and not (
                self.time_budget_s is not None and self.time_cap_s >= self.time_budget_s):
            p.append("A time cap needs a time budget no longer than the cap.")
        if not 1 / 16 <= self.aspect <= 16:
            p.append(f"Aspect ratio must be between 1:16 and 16:1 (got {self.aspect:g}).")
        if self.batch_size < 2:
            p.append("Batch size must be at least 2 (batch normalization needs it).")
        if not self.lr > 0:
            p.append("Learning rate must be positive.")
        if self.weight_decay < 0:
            p.append("Weight decay cannot be negative.")
        if not 0 <= self.label_smoothing < 1:
            p.append("Label smoothing must be in [0, 1).")
        for name, value, allowed in (
            ("strategy", self.strategy, STRATEGIES),
            ("augment", self.augment, AUGMENTS),
            ("balance", self.balance, BALANCES),
            ("device", self.device, DEVICES),
            ("schedule", self.schedule, SCHEDULES),
            ("monitor", self.monitor, MONITORS),
            ("fit", self.fit, FITS),
        ):
            if value not in allowed:
                p.append(f"Unknown {name} '{value}' (choose from {', '.join(allowed)}).")
        if self.strategy in ("head", "head_then_full") and not self.starts_pretrained:
            p.append(
                f"Strategy '{self.strategy}' freezes a pretrained backbone; "
                "use 'full' for a model trained from scratch."
            )
        if self.strategy == "head_then_full" and not 0 < self.unfreeze_epoch < self.epochs:
            p.append("unfreeze_epoch must be between 1 and epochs - 1.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            p.append("Early-stopping patience must be at least 1 epoch (or off).")
        if self.monitor == "val_defect_recall" and not self.good_class:
            p.append("Choosing checkpoints by defect recall needs the class that means good.")
        if not 0 < self.max_miss_rate < 1:
            p.append("The share of defects passed as good must be between 0 and 1 "
                     f"(got {self.max_miss_rate:g}).")
        if self.channels not in (None, 1, 3):
            p.append("Channels must be 1, 3 or automatic.")
        if self.channels == 1 and self.uses_pretrained:
            p.append("Pretrained models take 3 channels (gray images are replicated).")
        return p

    def validate(self) -> TrainConfig:
        problems = self.problems()
        if problems:
            raise ConfigError(" ".join(problems))
        return self

    # ------------------------------------------------------------ JSON
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> TrainConfig:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        data.setdefault("fit", "stretch")  # runs from before letterboxing squashed images
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: object) -> TrainConfig:
        # values for fields of several types; replace() checks the names at run time
        return replace(self, **changes)  # type: ignore[arg-type]

    def unfreeze_within_epochs(self) -> TrainConfig:
        """The default "head first, then everything" fitted to fewer epochs than it planned
        for: the backbone is unfrozen before the last epoch, and a 1-epoch run trains the
        head only (a user who asked for a number of epochs should not be told to fix a
        setting they never chose)."""
        if self.strategy != "head_then_full" or 0 < self.unfreeze_epoch < self.epochs:
            return self
        if self.epochs < 2:
            return self.with_(strategy="head")
        return self.with_(unfreeze_epoch=max(1, min(self.unfreeze_epoch, self.epochs - 1)))
