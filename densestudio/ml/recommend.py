"""Training defaults chosen from the data and the computer, with the reasons shown to the user.

``recommend(profile, device, weights_available)`` is what the Train button and
``densestudio train`` start from. It looks at the labeled data (``core.profile``):

- Image shape: the canvas takes the images' typical aspect ratio and every image is
  letterboxed into it (``core.preprocess``), so a thin defect in a 4:1 strip is not squashed.
- Input size: as large as the images really are (never blown up), as long as the time
  budget still buys enough passes over the data on this device (``ml.budget``'s speed
  estimate; the run itself then measures its real speed and plans its epochs).
- Class imbalance: when the largest class has 1.5x the images of the smallest or more,
  training draws classes with square-root-balanced probabilities (see BALANCE below).
  The best checkpoint is always chosen by balanced accuracy (mean recall over classes):
  validation loss and accuracy are dominated by the big class.
- Time budget: about ``DEFAULT_BUDGET_S`` seconds of wall time on this computer.
- Starting point: ImageNet weights when the file is on the computer (densenet121); else the
  backbone DenseStudio ships (``ml.backbone``: the compact model pretrained on generated
  textures and defects), head first, then all layers; from scratch only without either.
  With few labels (under ``FEW_LABELS`` training images in every class) the backbone gives a
  first model in about ``FEW_LABELS_BUDGET_S`` seconds at a small input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from densestudio.core.formatting import duration
from densestudio.core.preprocess import (
    canvas_for,
    typical_aspect,
    typical_short_side,
    typical_side,
)
from densestudio.core.profile import DataProfile
from densestudio.ml.budget import estimated_train_speed
from densestudio.ml.config import TrainConfig

DEFAULT_BUDGET_S = 600.0
IMBALANCE_RATIO = 1.5  # largest / smallest class from which imbalance is handled
BALANCE = "sqrt_sampler"
SIZES = (64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256, 288, 320, 384, 448, 512)
TARGET_STEPS = 1200  # optimizer steps a small data set should get (NEU: 30 epochs)
EPOCH_RANGE = (12, 60)  # the target epochs stay in this range
BUDGET_SHARE = 0.85  # of the budget spent in training steps (the rest: data, validation)
MIN_SHORT_SIDE = 64  # canvas short side below which thin defects get lost
FEW_LABELS = 50  # training images per class below which a first model is made fast
FEW_LABELS_BUDGET_S = 120.0
# Input size cap of the fast first model. NEU, 25 labeled per class, seed 0, busy 2-core CPU,
# backbone of 850 steps: 96 px 91.8 %, 128 px 94.3 %, 160 px 81.8 % (the 2-min budget).
FEW_LABELS_MAX_SIZE = 128


@dataclass(frozen=True)
class Recommendation:
    config: TrainConfig
    reasons: tuple[str, ...]  # one sentence per choice, for the Train tab and the CLI


def _ratio(aspect: float) -> str:
    return f"{aspect:.1f}:1" if aspect >= 1 else f"1:{1 / aspect:.1f}"


def _steps_per_epoch(n_train: int, batch: int) -> int:
    return max(1, -(-n_train // batch))


def target_epochs(n_train: int, batch: int) -> int:
    lo, hi = EPOCH_RANGE
    return int(min(hi, max(lo, round(TARGET_STEPS / _steps_per_epoch(n_train, batch)))))


SpeedFn = Callable[[str, int, str], float]  # (arch, input pixels, device) -> images/s


def measured_speed(arch: str, images_per_s_128: float) -> SpeedFn:
    """A speed function from one known speed of ``arch`` at 128 x 128 px (measured here, or
    an earlier run's); other models keep the reference table."""
    def speed(name: str, pixels: int, device: str) -> float:
        if name != arch:
            return estimated_train_speed(name, pixels, device)
        return images_per_s_128 * 128 * 128 / max(pixels, 64 * 64)
    return speed


def pick_size(
    arch: str, native_side: int, native_short: int, aspect: float, n_train: int, epochs: int,
    budget_s: float, device: str, speed: SpeedFn = estimated_train_speed,
) -> int:
    """The largest size (no larger than the images need) at which ``epochs`` epochs of
    ``n_train`` images fit the budget. Never so small that the canvas's short side drops
    below MIN_SHORT_SIDE px (or the images' own short side): thin defects in wide strips
    would vanish; the run then trains fewer epochs instead."""
    cap = max(SIZES[0], native_side)
    allowed = [s for s in SIZES if s <= cap] or [SIZES[0]]
    need = min(MIN_SHORT_SIDE, native_short or MIN_SHORT_SIDE)
    floor = next((s for s in allowed if min(canvas_for(s, aspect)) >= need), allowed[-1])
    allowed = [s for s in allowed if s >= floor]
    fits = allowed[0]
    for size in allowed:
        if train_seconds(arch, size, aspect, n_train, epochs, device, speed) \
                <= BUDGET_SHARE * budget_s:
            fits = size
    return fits


def train_seconds(arch: str, size: int, aspect: float, n_train: int, epochs: int,
                  device: str, speed: SpeedFn = estimated_train_speed) -> float:
    """Estimated seconds of training steps for ``epochs`` epochs at input ``size``."""
    w, h = canvas_for(size, aspect)
    return epochs * n_train / speed(arch, w * h, device)


def _shrink_reason(arch: str, size: int, native: int, aspect: float, n_train: int,
                   epochs: int, budget_s: float, device: str,
                   speed: SpeedFn = estimated_train_speed) -> str | None:
    """Why the input is smaller than the images, and what the next size up would cost."""
    larger = next((s for s in SIZES if size < s <= native), None)
    if larger is None:
        return None
    now = train_seconds(arch, size, aspect, n_train, epochs, device, speed) / BUDGET_SHARE
    then = train_seconds(arch, larger, aspect, n_train, epochs, device, speed) / BUDGET_SHARE
    return (f"Images are shrunk from about {native} px to {size} px to fit the time budget "
            f"({duration(budget_s)}): {epochs} epochs take about {duration(now)} at {size} px, "
            f"about {duration(then)} at {larger} px. Raise the budget (or the size) for "
            "more detail.")


def recommend(
    profile: DataProfile, device: str = "cpu", weights_available: bool = False,
    budget_s: float = DEFAULT_BUDGET_S, speed: SpeedFn | None = None,
    speed_source: str = "measured now",
    backbone_available: bool = False,
) -> Recommendation:
    """Settings for this data on ``device`` ("cpu", "cuda", "mps") and why. ``speed``:
    training images/s as measured on this computer (``budget.calibrated_train_speed``);
    without it, the reference table (``budget.estimated_train_speed``). ``speed_source``
    says where the speed comes from ("measured now", "from run #3").
    ``weights_available``: ImageNet weights are on the computer; ``backbone_available``:
    DenseStudio's shipped backbone passed its checksum (``ml.backbone.check``)."""
    gpu = device in ("cuda", "mps")
    reasons: list[str] = []
    n_train = sum(profile.train_counts) or max(1, int(profile.n_labeled * 0.7))
    aspect = typical_aspect(list(profile.sizes))
    native = typical_side(list(profile.sizes)) or 128
    short = typical_short_side(list(profile.sizes))
    pretrained = weights_available and (gpu or profile.n_labeled < 3000)
    if pretrained:
        arch, batch = "densenet121", 32 if gpu else 16
        base = TrainConfig(
            arch=arch, pretrained=True, batch_size=batch, lr=1e-3, weight_decay=0.01,
            strategy="head_then_full", unfreeze_epoch=2, backbone_lr_mult=0.1,
            schedule="cosine", warmup_epochs=0.5, augment="inspection", device="auto",
        )  # fmt: skip
        epochs = 12 if gpu else 6
        reasons.append("ImageNet weights are available: densenet121, head first, then all "
                       "layers with a 10x lower backbone learning rate.")  # fmt: skip
    else:
        arch, batch = "densenet_bc_1m", 64 if gpu else 32
        base = TrainConfig(
            arch=arch, batch_size=batch, lr=2e-3, schedule="onecycle", augment="inspection",
            tta=False, device="auto",
        )  # fmt: skip
        epochs = target_epochs(n_train, batch)
        if backbone_available:
            base = base.with_(backbone=True, strategy="head_then_full", backbone_lr_mult=0.5)
            reasons.append("No ImageNet weights on this computer: the compact DenseNet-BC "
                           "(1M parameters) starts from DenseStudio's backbone (pretrained on "
                           "generated textures and defects), head first, then all layers.")
            train_counts = [n for n in profile.train_counts if n > 0]
            if train_counts and max(train_counts) < FEW_LABELS:
                budget_s = min(budget_s, FEW_LABELS_BUDGET_S)
                native = min(native, FEW_LABELS_MAX_SIZE)
                reasons.append(f"Few labels (under {FEW_LABELS} training images per class): "
                               f"a fast first model in about {budget_s / 60:.0f} min at a "
                               "small input size; label more and train again for a better one.")
        else:
            reasons.append("No pretrained weights: the compact DenseNet-BC (1M parameters) "
                           "trained from scratch.")  # fmt: skip
    size = pick_size(arch, native, short, aspect, n_train, epochs, budget_s, device,
                     speed or estimated_train_speed)
    w, h = canvas_for(size, aspect)
    if speed is not None:
        reasons.append(f"This computer trains {arch} at about "
                       f"{speed(arch, 128 * 128, device):.0f} images/s at 128 px "
                       f"({speed_source}): the input size is the largest that buys "
                       f"{epochs} epochs in the budget.")
    if (w, h) == (size, size):
        reasons.append(f"Images are about {native} px: input {w} x {h}, aspect ratio kept "
                       "(letterboxed).")  # fmt: skip
    else:
        reasons.append(f"Images are mostly {_ratio(aspect)}: input {w} x {h} px, aspect "
                       "ratio kept (letterboxed), so thin defects stay visible.")  # fmt: skip
    shrunk = _shrink_reason(arch, size, native, aspect, n_train, epochs, budget_s, device,
                            speed or estimated_train_speed)
    if shrunk:
        reasons.append(shrunk)
    balance = "none"
    if profile.imbalance >= IMBALANCE_RATIO:
        balance = BALANCE
        present = [(c, n) for c, n in zip(profile.class_names, profile.counts, strict=True)
                   if n > 0]  # fmt: skip
        big, small = max(present, key=lambda p: p[1]), min(present, key=lambda p: p[1])
        reasons.append(
            f"Classes are imbalanced ({big[0]} {big[1]}, {small[0]} {small[1]}: "
            f"{profile.imbalance:.0f}:1): small classes are drawn more often "
            "(square-root balanced sampling)."
        )
    reasons.append("Best checkpoint by balanced accuracy: every class counts the same, "
                   "however few images it has.")  # fmt: skip
    minutes = max(1, round(budget_s / 60))
    reasons.append(f"Time budget about {minutes} min on this computer: the run measures its "
                   f"speed and plans its epochs (at most {math.ceil(epochs * 1.5)}).")
    config = base.with_(
        img_size=size, aspect=round(aspect, 3) if (w, h) != (size, size) else 1.0,
        fit="letterbox", balance=balance, monitor="val_balanced_acc",
        epochs=math.ceil(epochs * 1.5), time_budget_s=budget_s,
        unfreeze_epoch=max(1, math.ceil(epochs * 0.1)) if base.backbone else base.unfreeze_epoch,
    )  # fmt: skip
    return Recommendation(config, tuple(reasons))
