"""Data pipeline: decoded-image cache, batched tensor augmentation, sampling, stats.

Images are decoded once into the on-disk cache of ``ml.decoded_cache`` (``DecodedCache``,
``Pixels``: batches are read from disk per step, so RAM does not bound the project size).
Augmentation runs on whole batches of tensors on the training device.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from densestudio.ml.decoded_cache import CacheItem as CacheItem
from densestudio.ml.decoded_cache import DecodedCache as DecodedCache
from densestudio.ml.decoded_cache import DecodeFailure as DecodeFailure
from densestudio.ml.decoded_cache import Pixels as Pixels  # ml.data's public name

STATS_SAMPLE = 4096  # images that channel_stats reads at most


# ------------------------------------------------------------------ statistics
def channel_stats(
    x: Pixels | torch.Tensor, sample: int = STATS_SAMPLE
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 N x C x H x W images, in [0, 1] units.

    Exact up to ``sample`` images; beyond that, of ``sample`` images spread evenly over
    the set (normalization needs no more), read in batches: memory stays small."""
    px = x if isinstance(x, Pixels) else Pixels.of(x)
    n = len(px)
    picks = np.unique(np.linspace(0, n - 1, min(n, sample)).round().astype(np.int64))
    total = np.zeros(px.shape[1], np.float64)
    squares = np.zeros(px.shape[1], np.float64)
    for start in range(0, len(picks), 16):  # float32 per batch, float64 across batches
        batch = px[picks[start : start + 16]].float().div_(255.0)
        total += batch.sum(dim=(0, 2, 3)).double().numpy()
        squares += batch.square_().sum(dim=(0, 2, 3)).double().numpy()
    count = len(picks) * px.shape[2] * px.shape[3]
    mean = total / max(count, 1)
    var = (squares - count * mean**2) / max(count - 1, 1)
    std = np.sqrt(np.clip(var, 0.0, None)).clip(1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels, minlength=num_classes)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency loss weights, mean 1 over samples."""
    counts = class_counts(labels, num_classes).float().clamp_min(1)
    return labels.numel() / (num_classes * counts)


def log_priors(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """log of each class's share of ``labels``: what logit adjustment adds in training so
    that the plain logits at prediction time are balanced (Menon et al., 2021)."""
    counts = class_counts(labels, num_classes).float().clamp_min(1)
    return (counts / counts.sum()).log()


def epoch_order(
    labels: torch.Tensor, balance: str, generator: torch.Generator
) -> torch.Tensor:
    """Indices for one epoch: a permutation, or draws with replacement that give every
    class the same share ("sampler") or a share proportional to the square root of its size
    ("sqrt_sampler": small classes seen more often without repeating them as much)."""
    n = labels.numel()
    if balance in ("sampler", "sqrt_sampler"):
        counts = torch.bincount(labels).float()
        per_class = 1.0 / counts if balance == "sampler" else 1.0 / counts.sqrt()
        return torch.multinomial(per_class[labels], n, replacement=True, generator=generator)
    return torch.randperm(n, generator=generator)


def fingerprint(rows: Sequence[tuple[str, str, str]]) -> str:
    """Hash of (content hash, class name, split) rows: identifies the training data."""
    h = hashlib.sha256()
    for row in sorted(rows):
        h.update("\t".join(row).encode() + b"\n")
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ augmentation
@dataclass(frozen=True)
class AugmentSpec:
    hflip: bool = False
    vflip: bool = False
    rot90: bool = False
    affine_p: float = 0.0
    max_rotate_deg: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    max_translate: float = 0.0
    brightness: float = 0.0  # +- additive, in [0, 1] pixel units
    contrast: float = 0.0  # factor in [1 - c, 1 + c]


PRESETS = {
    "none": AugmentSpec(),
    "light": AugmentSpec(
        hflip=True, affine_p=0.5, scale=(0.95, 1.05), max_translate=0.04,
        brightness=0.05, contrast=0.1,
    ),
    "inspection": AugmentSpec(
        hflip=True, vflip=True, rot90=True, affine_p=0.3, max_rotate_deg=5.0,
        scale=(0.95, 1.05), max_translate=0.04, brightness=0.05, contrast=0.1,
    ),
}  # fmt: skip


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


@dataclass(frozen=True)
class BatchPart:
    """The rows of a batch that one process of a multi-process run trains on
    (``ml.distributed``): augmentation draws the parameters of the whole batch of ``total``
    images and applies those of ``positions``; the part's loss counts ``weight`` times."""

    positions: torch.Tensor  # int64 rows of the whole batch
    total: int
    weight: float


def augment_batch(
    x: torch.Tensor, preset: str, generator: torch.Generator, part: BatchPart | None = None
) -> torch.Tensor:
    """Augment a float [0, 1] batch N x C x H x W on its device.

    Random parameters are drawn on the CPU from ``generator`` (reproducible on any device);
    with ``part``, for the whole batch, of which ``x`` holds the rows ``part.positions``.
    """
    spec = PRESETS[preset]
    n = x.shape[0]
    total = n if part is None else part.total
    dev = x.device
    g = generator

    def mine(values: torch.Tensor) -> torch.Tensor:
        return values if part is None else values[part.positions]

    if spec.hflip:
        m = mine(torch.rand(total, generator=g) < 0.5).to(dev)
        x = torch.where(m.view(n, 1, 1, 1), x.flip(3), x)
    if spec.vflip:
        m = mine(torch.rand(total, generator=g) < 0.5).to(dev)
        x = torch.where(m.view(n, 1, 1, 1), x.flip(2), x)
    if spec.rot90 and x.shape[2] == x.shape[3]:
        m = mine(torch.rand(total, generator=g) < 0.5).to(dev)  # with both flips: all 8
        x = torch.where(m.view(n, 1, 1, 1), x.transpose(2, 3), x)
    if spec.affine_p > 0:
        applied = torch.rand(total, generator=g) < spec.affine_p
        k = int(applied.sum())
        if k:
            ang = _uniform(k, -spec.max_rotate_deg, spec.max_rotate_deg, g) * (math.pi / 180)
            sc = _uniform(k, *spec.scale, g)
            tx = _uniform(k, -spec.max_translate, spec.max_translate, g) * 2
            ty = _uniform(k, -spec.max_translate, spec.max_translate, g) * 2
            cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
            theta = torch.stack(
                [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
            )
            slot = mine(applied.cumsum(0) - 1)  # row of ``theta`` for each image
            idx = mine(applied).nonzero().squeeze(1)
            if idx.numel():
                theta = theta[slot[idx]].to(dev, x.dtype)
                idx = idx.to(dev)
                sub = x.index_select(0, idx)
                grid = F.affine_grid(theta, list(sub.shape), align_corners=False)
                sub = F.grid_sample(sub, grid, mode="bilinear", padding_mode="reflection",
                                    align_corners=False)  # fmt: skip
                x = x.index_copy(0, idx, sub)
    if spec.brightness > 0 or spec.contrast > 0:
        b = mine(_uniform(total, -spec.brightness, spec.brightness, g))
        c = mine(_uniform(total, 1 - spec.contrast, 1 + spec.contrast, g))
        b, c = (v.to(dev, x.dtype).view(n, 1, 1, 1) for v in (b, c))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c + mean + b).clamp_(0.0, 1.0)
    return x


def tta_views(preset: str) -> int:
    """How many views test-time augmentation averages for a training preset: the
    symmetries the preset trains on (inspection: flips and 90-degree turns, all 8)."""
    return {"none": 1, "light": 2, "inspection": 8}[preset]
