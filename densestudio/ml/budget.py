"""Fitting a training run to a time budget ("about 10 minutes on this computer").

A user understands minutes, not epochs. With ``TrainConfig.time_budget_s`` set, training
measures its own speed and plans how many epochs fit: first after a few optimizer steps of
epoch 1 (before the learning-rate schedule has got far), again after epoch 1 with the real
epoch time including validation, and after every later epoch only to shrink the plan when
the computer got slower (another program took the CPU), so the ETA stays honest. The
schedule is stretched or compressed to the planned length (``train.retarget_schedule``).

Prediction costs about a third of a training step per image (forward only, no
augmentation); that is how validation and the final evaluation are estimated before they
have been timed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

FORWARD_SHARE = 1 / 3  # inference time per image / training time per image
CALIBRATION_STEPS = 8  # optimizer steps before the first plan (the first 2 are not timed)
SHRINK_SLACK = 1.10  # after epoch 1, re-plan only when the run would overrun by 10 %
# Fewer epochs than this do not train a usable model (warm-up, EMA and the schedule need room):
# on a computer too slow (or too busy) for the budget the run takes longer and says so,
# rather than finishing on time with a model that calls every defect good.
MIN_EPOCHS = 6


@dataclass
class EpochPlanner:
    budget_s: float
    steps_per_epoch: int
    n_train: int  # images per training epoch
    n_val: int
    n_final: int  # images predicted once training ends (validation + test)
    max_epochs: int
    started: float = field(default_factory=time.perf_counter)
    epochs: int = 0  # the current plan (0 = not planned yet)
    _image_s: float = 0.0  # seconds per training image
    _epoch_times: list[float] = field(default_factory=list)
    _fits: int = 0  # epochs that fit the budget at the last plan, before the minimum

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _final_s(self) -> float:
        return self.n_final * self._image_s * FORWARD_SHARE

    @property
    def min_epochs(self) -> int:
        return min(self.max_epochs, MIN_EPOCHS)

    @property
    def over_budget(self) -> bool:
        """The plan is the minimum number of epochs, and even that does not fit the budget."""
        return self.epochs == self.min_epochs and self._fits < self.min_epochs

    def _clamp(self, epochs: float) -> int:
        self._fits = math.floor(epochs)
        return int(min(self.max_epochs, max(self.min_epochs, self._fits)))

    def after_steps(self, steps_done: int, step_s: float) -> int:
        """First plan, ``steps_done`` steps into epoch 1, steps taking ``step_s`` each."""
        self._image_s = step_s / max(1, self.n_train / self.steps_per_epoch)
        epoch_s = self.steps_per_epoch * step_s + self.n_val * self._image_s * FORWARD_SHARE
        time_left = self.budget_s - self.elapsed() - self._final_s()
        self.epochs = self._clamp((time_left + steps_done * step_s) / max(epoch_s, 1e-9))
        return self.epochs

    def after_epoch(self, epochs_done: int, epoch_s: float) -> int:
        """Re-plan after an epoch that took ``epoch_s`` seconds (training + validation)."""
        self._epoch_times.append(epoch_s)
        recent = sum(self._epoch_times[-2:]) / len(self._epoch_times[-2:])
        self._image_s = recent / max(1.0, self.n_train + self.n_val * FORWARD_SHARE)
        fits = self._clamp(
            epochs_done + (self.budget_s - self.elapsed() - self._final_s()) / max(recent, 1e-9)
        )
        if epochs_done <= 1 or not self.epochs:
            self.epochs = max(epochs_done, fits)
        elif self.expected_total(epochs_done, recent) > SHRINK_SLACK * self.budget_s:
            self.epochs = max(epochs_done, min(self.epochs, fits))
        return self.epochs

    def extend(self, epochs_done: int, cap_s: float, extra: int) -> int:
        """Validation still improves near the planned end: plan up to ``extra`` more epochs,
        as many as finish within ``cap_s`` (the user's cap) and ``max_epochs``. The cap
        becomes the budget later re-plans keep to."""
        if not self._epoch_times or cap_s <= self.budget_s:
            return self.epochs
        recent = sum(self._epoch_times[-2:]) / len(self._epoch_times[-2:])
        fits = epochs_done + math.floor(
            (cap_s - self.elapsed() - self._final_s()) / max(recent, 1e-9))
        longer = min(self.max_epochs, self.epochs + extra, fits)
        if longer > self.epochs:
            self.epochs, self.budget_s = longer, cap_s
        return self.epochs

    def expected_total(self, epochs_done: int, epoch_s: float) -> float:
        """Seconds the whole run takes with the current plan, from its start."""
        return self.elapsed() + (self.epochs - epochs_done) * epoch_s + self._final_s()

    def eta(self, epochs_done: float, epoch_s: float) -> float:
        """Seconds left: the planned epochs still to run and the final evaluation."""
        return max(0.0, (self.epochs - epochs_done) * epoch_s + self._final_s())


# ------------------------------------------------------------------ speed before a run
# Training images/s at 128 x 128 px measured on a 2-core x86 laptop-class CPU with this
# code (bf16 autocast where the CPU has it, channels_last, batch 32); tests/benchmarks/
# bench_defaults.py prints the real figure of every run. Used only to pick an input size
# before the first run; the run itself measures its speed and plans its epochs.
REFERENCE_SPEED_128 = {
    "densenet_bc_tiny": 300.0,
    "densenet_bc_1m": 100.0,
    "densenet121": 22.0,
    "densenet169": 18.0,
    "densenet201": 14.0,
    "densenet161": 9.0,
}
REFERENCE_THREADS = 2
GPU_SPEEDUP = 25.0  # a modest discrete GPU against the reference CPU


def estimated_train_speed(arch: str, pixels: int, device: str) -> float:
    """Rough training images/s for ``arch`` at ``pixels`` input pixels on ``device``."""
    import torch

    base = REFERENCE_SPEED_128.get(arch, 20.0)
    scale = 128 * 128 / max(pixels, 64 * 64)  # cost grows with the pixel count
    if device in ("cuda", "mps"):
        return base * scale * GPU_SPEEDUP
    threads = max(1, torch.get_num_threads())
    speed: float = base * scale * min(8.0, threads / REFERENCE_THREADS) ** 0.8
    return speed


# A measured speed beats the table: the same CPU trains at 34 images/s in one computer and
# 90 in another (AVX512-BF16), and a constant picks the same input size for both (issue 24).
# ``calibrated_train_speed`` times a few optimizer steps of the model on random images
# (a few seconds, once per process, model, device and thread count) and scales by pixels
# as ``estimated_train_speed`` does. The CLI uses it; tests and the GUI thread use the table.
CALIBRATION_SIZE = 96  # px: small enough for a few steps in a few seconds on a slow CPU
CALIBRATION_BATCH = 16
_measured: dict[tuple[str, str, int], float] = {}


def measure_train_speed(arch: str, device: str = "cpu", seconds: float = 3.0) -> float:
    """Training images/s of ``arch`` at 128 x 128 px on ``device``, measured now (cached)."""
    import torch

    from densestudio.ml import zoo
    from densestudio.ml.config import TrainConfig
    from densestudio.ml.runtime import adamw, resolve_device
    from densestudio.ml.steps import make_step_parts, optimization_step, place_model

    key = (arch, device, torch.get_num_threads())
    if key in _measured:
        return _measured[key]
    dev = resolve_device(device)
    size, batch = CALIBRATION_SIZE, CALIBRATION_BATCH
    cfg = TrainConfig(arch=arch, img_size=size, batch_size=batch, device=device, epochs=100)
    model = zoo.build_model(arch, 2, 3)
    channels_last = place_model(model, cfg, dev)
    opt = adamw(list(model.parameters()), dev, cfg.lr, cfg.weight_decay)
    y = torch.arange(batch) % 2
    parts = make_step_parts(model, opt, cfg, dev, channels_last, y, 2)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    model.train()
    optimization_step(parts, x, y, g, "while measuring this computer's speed")  # warm-up
    steps, t0 = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - t0 < seconds:
        optimization_step(parts, x, y, g, "while measuring this computer's speed")
        steps += 1
    per_image_s = (time.perf_counter() - t0) / (steps * batch)
    speed = size * size / (128 * 128) / per_image_s
    _measured[key] = speed
    return speed


def calibrated_train_speed(arch: str, pixels: int, device: str) -> float:
    """Like ``estimated_train_speed``, from this computer's measured speed."""
    return measure_train_speed(arch, device) * 128 * 128 / max(pixels, 64 * 64)
