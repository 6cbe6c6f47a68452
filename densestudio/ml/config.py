"""Training configuration (one frozen dataclass, stored as JSON on the run row) and defaults.

``default_config`` picks settings from the data size, the device and whether pretrained
weights are actually available; the GUI shows them and the CLI starts from them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from densestudio.core.errors import DenseStudioError
from densestudio.core.preprocess import Preprocessing, canvas_for

ARCHS = (
    "densenet_bc_1m",  # compact DenseNet-BC: growth 12, blocks (6,12,24,16), 24 init features
    "densenet_bc_tiny",  # growth 12, blocks (4,4,4,4): ~0.14M params, for quick tries and tests
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
)
COMPACT_ARCHS = ("densenet_bc_1m", "densenet_bc_tiny")
STRATEGIES = ("full", "head", "head_then_full")
AUGMENTS = ("none", "light", "inspection")
BALANCES = ("none", "weighted_loss", "sampler", "sqrt_sampler", "logit_adjust")
FITS = ("letterbox", "stretch")
DEVICES = ("auto", "cpu", "cuda", "mps")
SCHEDULES = ("cosine", "onecycle")
MONITORS = ("val_balanced_acc", "val_macro_f1", "val_acc", "val_loss")
MIN_IMG_SIZE = 32


class ConfigError(DenseStudioError):
    """A training setting is invalid; the message says which and why."""


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "densenet_bc_1m"
    pretrained: bool = False
    weights_path: str | None = None  # a weights file the user picked (implies pretrained)
    img_size: int = 128  # base size: the canvas holds about img_size x img_size pixels
    aspect: float = 1.0  # canvas width:height (wide strips get a wide canvas)
    fit: str = "letterbox"  # "letterbox" keeps the aspect ratio | "stretch" squashes
    epochs: int = 28  # with a time budget: the most epochs the budget may allow
    time_budget_s: float | None = None  # fit the run to this wall time (epochs from speed)
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
        if self.img_size < MIN_IMG_SIZE:
            p.append(f"Image size must be at least {MIN_IMG_SIZE} px (got {self.img_size}).")
        if self.img_size > 1024:
            p.append(f"Image size must be at most 1024 px (got {self.img_size}).")
        if self.epochs < 1:
            p.append("Epochs must be at least 1.")
        if self.time_budget_s is not None and not self.time_budget_s >= 10:
            p.append("A time budget must be at least 10 seconds (or off).")
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
        if self.strategy in ("head", "head_then_full") and not self.uses_pretrained:
            p.append(
                f"Strategy '{self.strategy}' freezes a pretrained backbone; "
                "use 'full' for a model trained from scratch."
            )
        if self.strategy == "head_then_full" and not 0 < self.unfreeze_epoch < self.epochs:
            p.append("unfreeze_epoch must be between 1 and epochs - 1.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            p.append("Early-stopping patience must be at least 1 epoch (or off).")
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
    def from_json(cls, text: str | dict) -> TrainConfig:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        data.setdefault("fit", "stretch")  # runs from before letterboxing squashed images
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: object) -> TrainConfig:
        return replace(self, **changes)


def default_config(
    n_images: int, device: str = "cpu", weights_available: bool = False
) -> TrainConfig:
    """Sensible settings for ``n_images`` labeled images on ``device`` ("cpu", "cuda", "mps").

    - No pretrained weights, or a CPU with a larger data set: the compact DenseNet-BC from
      scratch (1 channel for gray data), 128 px (64 px above 20k images), inspection
      augmentation (flips + 90-degree rotations + small affine + brightness/contrast),
      one-cycle AdamW (peak 2e-3), EMA of the weights and the checkpoint with the lowest
      validation loss (smoother than accuracy on a few hundred images). Epochs scale so
      that small data sets still get ~1200 optimizer steps (NEU, 1259 training images: 30
      epochs, ~7-8 min on 2 idle CPU cores; tests/benchmarks/bench_train.py). 128 px rather
      than 112: NEU's fine textures (crazing, rolled-in scale) need the pixels. No test-time
      augmentation by default: averaging the 8 flips/rotations cost 8x at prediction time
      on the production line and measured no better on NEU (99.01 % vs 99.14 % mean over 3
      seeds); the option stays (``tta``, ``densestudio evaluate --tta``).
    - Pretrained weights on a GPU: densenet121 at 224 px, head for 2 epochs then everything
      with a 10x lower backbone learning rate.
    - Pretrained weights on a CPU and a small data set (< 3000 images): densenet121 at 128 px,
      head then full, few epochs (a CPU does ~18 images/s at 128 px).
    """
    n_train = max(1, int(n_images * 0.7))
    gpu = device in ("cuda", "mps")
    if weights_available and (gpu or n_images < 3000):
        size = 224 if gpu else 128
        epochs = 12 if gpu else 6
        return TrainConfig(
            arch="densenet121", pretrained=True, img_size=size, epochs=epochs,
            batch_size=32 if gpu else 16, lr=1e-3, weight_decay=0.01,
            strategy="head_then_full", unfreeze_epoch=2, backbone_lr_mult=0.1,
            schedule="cosine", warmup_epochs=0.5, augment="inspection",
            early_stopping_patience=4, device="auto",
        )  # fmt: skip
    steps_per_epoch = max(1, -(-n_train // 32))
    epochs = int(min(60, max(12, round(1200 / steps_per_epoch))))
    size = 128 if n_images <= 20_000 or gpu else 64
    return TrainConfig(
        arch="densenet_bc_1m", pretrained=False, img_size=size, epochs=epochs,
        batch_size=64 if gpu else 32, lr=2e-3, schedule="onecycle",
        augment="inspection", tta=False, device="auto",
    )  # fmt: skip
