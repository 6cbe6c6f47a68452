"""Data pipeline: decode-once uint8 cache, batched tensor augmentation, sampling, stats.

Each image is decoded, made upright and turned into the run's input pixels once by its
``core.preprocess.Preprocessing`` (mode, canvas, letterbox or stretch), then kept as uint8
in memory for the whole run and on disk under ``<project>-cache/decoded/<preprocessing>/``
keyed by the image's content hash, so a second run starts without decoding any JPEG. Chunk files are
written atomically (temp file + rename), so concurrent runs and crashes cannot corrupt them.

Augmentation runs on whole batches of tensors on the training device.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from densestudio.core.imaging import ImageDecodeError
from densestudio.core.preprocess import Preprocessing
from densestudio.core.progress import CancelToken

MAX_CHUNKS = 16


@dataclass(frozen=True)
class CacheItem:
    image_id: int
    path: str
    content_hash: str


@dataclass(frozen=True)
class DecodeFailure:
    image_id: int
    path: str
    reason: str


class DecodedCache:
    """Decoded, preprocessed uint8 pixels keyed by content hash and preprocessing."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def folder(self, prep: Preprocessing) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / "decoded" / prep.cache_key

    def _read_disk(self, prep: Preprocessing, wanted: set[str]) -> dict[str, np.ndarray]:
        folder = self.folder(prep)
        found: dict[str, np.ndarray] = {}
        if folder is None or not folder.is_dir():
            return found
        for chunk in sorted(folder.glob("chunk-*.npz")):
            try:
                with np.load(chunk) as data:
                    hashes = [h.decode() for h in data["hashes"]]
                    rows = [i for i, h in enumerate(hashes) if h in wanted and h not in found]
                    if rows:
                        pixels = data["pixels"]
                        for i in rows:
                            found[hashes[i]] = pixels[i]
            except (OSError, ValueError, KeyError):
                chunk.unlink(missing_ok=True)  # a damaged cache file is just regenerated
        return found

    def _write_chunk(self, prep: Preprocessing, items: dict[str, np.ndarray]) -> None:
        folder = self.folder(prep)
        if folder is None or not items:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            hashes = np.array([h.encode() for h in items], dtype="S64")
            pixels = np.stack(list(items.values()))
            fd, tmp = tempfile.mkstemp(prefix=".chunk-", suffix=".npz.tmp", dir=folder)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, hashes=hashes, pixels=pixels)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / f"chunk-{uuid.uuid4().hex}.npz")
            chunks = sorted(folder.glob("chunk-*.npz"))
            if len(chunks) > MAX_CHUNKS:
                self._compact(folder, chunks)
        except OSError:
            pass  # a read-only or full disk only costs speed next time

    def _compact(self, folder: Path, chunks: list[Path]) -> None:
        merged: dict[str, np.ndarray] = {}
        for chunk in chunks:
            with np.load(chunk) as data:
                for h, px in zip(data["hashes"], data["pixels"], strict=False):
                    merged.setdefault(h.decode(), px)
        fd, tmp = tempfile.mkstemp(prefix=".chunk-", suffix=".npz.tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                hashes=np.array([h.encode() for h in merged], dtype="S64"),
                pixels=np.stack(list(merged.values())),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"chunk-{uuid.uuid4().hex}.npz")
        for chunk in chunks:
            chunk.unlink(missing_ok=True)

    def load(
        self,
        items: Sequence[CacheItem],
        prep: Preprocessing,
        on_progress: Callable[[int, int, int], None] | None = None,
        cancel: CancelToken | None = None,
        workers: int | None = None,
    ) -> tuple[torch.Tensor, list[DecodeFailure]]:
        """uint8 tensor N x C x height x width in ``items`` order, and the images that failed.

        Failed images get zeros; callers decide whether that is acceptable.
        """
        out = torch.zeros((len(items), prep.channels, prep.height, prep.width), dtype=torch.uint8)
        wanted = {it.content_hash for it in items}
        known = self._read_disk(prep, wanted)
        from_disk = sum(1 for it in items if it.content_hash in known)
        todo = [(i, it) for i, it in enumerate(items) if it.content_hash not in known]
        for i, it in enumerate(items):
            px = known.get(it.content_hash)
            if px is not None:
                out[i] = torch.from_numpy(px)
        total = len(items)
        if on_progress:
            on_progress(from_disk, total, from_disk)
        failures: list[DecodeFailure] = []
        fresh: dict[str, np.ndarray] = {}

        def work(pair: tuple[int, CacheItem]) -> tuple[int, CacheItem, np.ndarray | str]:
            i, it = pair
            try:
                return i, it, prep.load(it.path)
            except ImageDecodeError as exc:
                return i, it, str(exc)
            except OSError as exc:
                return i, it, f"cannot read: {exc}"

        done = from_disk
        workers = workers or max(1, min(8, os.cpu_count() or 1))
        try:
            with ThreadPoolExecutor(workers) as pool:
                batch = 256
                for start in range(0, len(todo), batch):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    for i, it, px in pool.map(work, todo[start : start + batch]):
                        if isinstance(px, str):
                            failures.append(DecodeFailure(it.image_id, it.path, px))
                        else:
                            out[i] = torch.from_numpy(px)
                            fresh[it.content_hash] = px
                        done += 1
                    if on_progress:
                        on_progress(done, total, from_disk)
        finally:
            self._write_chunk(prep, fresh)  # keep finished work even when cancelled
        return out, failures


# ------------------------------------------------------------------ statistics
def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of a uint8 N x C x H x W tensor, in [0, 1] units."""
    xf = x.float().div_(255.0)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
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


def augment_batch(x: torch.Tensor, preset: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a float [0, 1] batch N x C x H x W on its device.

    Random parameters are drawn on the CPU from ``generator`` (reproducible on any device).
    """
    spec = PRESETS[preset]
    n = x.shape[0]
    dev = x.device
    g = generator
    if spec.hflip:
        m = (torch.rand(n, generator=g) < 0.5).to(dev)
        x = torch.where(m.view(n, 1, 1, 1), x.flip(3), x)
    if spec.vflip:
        m = (torch.rand(n, generator=g) < 0.5).to(dev)
        x = torch.where(m.view(n, 1, 1, 1), x.flip(2), x)
    if spec.rot90 and x.shape[2] == x.shape[3]:
        m = (torch.rand(n, generator=g) < 0.5).to(dev)  # with both flips: all 8 symmetries
        x = torch.where(m.view(n, 1, 1, 1), x.transpose(2, 3), x)
    if spec.affine_p > 0:
        apply = torch.rand(n, generator=g) < spec.affine_p
        k = int(apply.sum())
        if k:
            ang = _uniform(k, -spec.max_rotate_deg, spec.max_rotate_deg, g) * (math.pi / 180)
            sc = _uniform(k, *spec.scale, g)
            tx = _uniform(k, -spec.max_translate, spec.max_translate, g) * 2
            ty = _uniform(k, -spec.max_translate, spec.max_translate, g) * 2
            cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
            theta = torch.stack(
                [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
            ).to(dev, x.dtype)
            idx = apply.nonzero().squeeze(1).to(dev)
            sub = x.index_select(0, idx)
            grid = F.affine_grid(theta, list(sub.shape), align_corners=False)
            sub = F.grid_sample(sub, grid, mode="bilinear", padding_mode="reflection",
                                align_corners=False)  # fmt: skip
            x = x.index_copy(0, idx, sub)
    if spec.brightness > 0 or spec.contrast > 0:
        b = _uniform(n, -spec.brightness, spec.brightness, g).to(dev, x.dtype).view(n, 1, 1, 1)
        c = _uniform(n, 1 - spec.contrast, 1 + spec.contrast, g).to(dev, x.dtype).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c + mean + b).clamp_(0.0, 1.0)
    return x


def tta_views(preset: str) -> int:
    """How many views test-time augmentation averages for a training preset: the
    symmetries the preset trains on (inspection: flips and 90-degree turns, all 8)."""
    return {"none": 1, "light": 2, "inspection": 8}[preset]
